"""``GET /metrics`` through falcon's TestClient over real actors: exact counts after known work."""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any, Final

import falcon.testing
import pykka
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from actors import TaskSystem, noop
from actors.queues import QueueSpec
from api import create_app
from api.metrics import Metrics
from tests.handlers import Gate, fail_times
from tests.prometheus import Scrape
from tests.support import no_jitter, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from actors.worker import Handler

Client = falcon.testing.TestClient

TOKEN: Final = "metrics-Token_0123456789"
AUTH: Final = {"Authorization": f"Bearer {TOKEN}"}


class Served:
    """One app over one system, with the scrapes it has answered counted."""

    def __init__(self, client: Client, system: TaskSystem, headers: dict[str, str]) -> None:
        self.client = client
        self.system = system
        self.headers = headers
        self.scrapes = 0

    def post(self, body: object) -> int:
        text = body if isinstance(body, str) else json.dumps(body)
        return self.client.simulate_post("/enqueue", body=text, headers=self.headers).status_code

    def scrape(self) -> Scrape:
        result = self.client.simulate_get("/metrics", headers=self.headers)
        assert result.status_code == 200, result.text
        assert result.headers["content-type"] == CONTENT_TYPE_LATEST
        self.scrapes += 1
        return Scrape(result.text)


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """An app with metrics whose workers observe into it, over a fresh system; stopped after."""
    systems: list[TaskSystem] = []

    def make(handler: Handler, *, api_token: str | None = None, **options: Any) -> Served:
        queues = options.get("queues")
        metrics = Metrics([spec.name for spec in queues]) if queues else Metrics()
        options = {"retry_base_ms": 1, "retry_max_ms": 10, "uniform": no_jitter, **options}
        system = TaskSystem.start(handler, observer=metrics.tasks, **options)
        systems.append(system)
        app = create_app(system, api_token=api_token, metrics=metrics)
        return Served(Client(app), system, AUTH if api_token else {})

    yield make
    for system in systems:
        with contextlib.suppress(pykka.ActorDeadError):
            system.stop(time.monotonic() + 5)


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.open()


def test_every_enqueue_is_counted_by_outcome_and_the_gauges_say_where_tasks_are(
    serve: Callable[..., Served], gate: Gate
) -> None:
    served = serve(gate, workers=1, queue_size=2)
    assert served.post({"id": "a"}) == 201
    wait_until(lambda: gate.entered == 1)
    assert served.post({"id": "b"}) == 201
    assert served.post({"id": "c"}) == 201
    assert served.post({"id": "d"}) == 503  # the line is full
    assert served.post({"id": "a"}) == 409
    for invalid in ["not json", {"id": ""}, [], {"id": "x", "status": "done"}]:
        assert served.post(invalid) == 400

    scrape = served.scrape()

    assert scrape.value("taskqueue_tasks_enqueued_total") == 3
    assert scrape.labelled("taskqueue_tasks_rejected_total", "reason") == {
        "full": 1,
        "duplicate": 1,
        "shutting_down": 0,
        "store_unavailable": 0,
        "too_many_scheduled": 0,
        "invalid": 4,
    }
    assert scrape.labelled("taskqueue_tasks", "status") == {
        "queued": 2,
        "running": 1,
        "done": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert scrape.value("taskqueue_tasks_waiting") == 2
    assert scrape.value("taskqueue_tasks_scheduled") == 0
    assert scrape.value("taskqueue_workers") == 1
    assert scrape.value("taskqueue_workers_busy") == 1
    assert scrape.value("taskqueue_queue_size") == 2
    assert scrape.value("taskqueue_scheduled_max") == 100_000
    assert scrape.value("taskqueue_attempts_started_total") == 1
    assert scrape.labelled("taskqueue_attempts_total", "outcome") == {
        "done": 0,
        "retry": 0,
        "failed": 0,
    }

    gate.open()
    wait_until(lambda: served.scrape().labelled("taskqueue_tasks", "status")["done"] == 3)
    after = served.scrape()
    assert after.labelled("taskqueue_attempts_total", "outcome") == {
        "done": 3,
        "retry": 0,
        "failed": 0,
    }
    assert (after.value("taskqueue_tasks_waiting"), after.value("taskqueue_workers_busy")) == (0, 0)
    assert (
        after.value("taskqueue_attempt_duration_seconds_count", queue="default", outcome="done")
        == 3
    )
    assert (
        after.value("taskqueue_task_enqueue_to_final_seconds_count", queue="default", status="done")
        == 3
    )

    served.system.begin_shutdown()
    assert served.post({"id": "late"}) == 503
    assert served.scrape().labelled("taskqueue_tasks_rejected_total", "reason") == {
        "full": 1,
        "duplicate": 1,
        "shutting_down": 1,
        "store_unavailable": 0,
        "too_many_scheduled": 0,
        "invalid": 4,
    }


def test_attempts_are_counted_and_timed_by_how_they_ended(serve: Callable[..., Served]) -> None:
    served = serve(fail_times, workers=2)
    assert served.post({"id": "ok", "payload": {"failures": 0}}) == 201
    assert served.post({"id": "twice", "payload": {"failures": 2}, "max_retries": 3}) == 201
    assert served.post({"id": "never", "payload": {"failures": 9}, "max_retries": 1}) == 201

    def settled() -> Scrape | None:
        scrape = served.scrape()
        tasks = scrape.labelled("taskqueue_tasks", "status")
        return scrape if tasks["done"] + tasks["failed"] == 3 else None

    wait_until(settled)
    scrape = served.scrape()

    # ok: 1 attempt; twice: 3 attempts, 2 retries; never: 2 attempts, 1 retry, failed.
    assert scrape.value("taskqueue_attempts_started_total") == 6
    outcomes = {"done": 2, "retry": 3, "failed": 1}
    assert scrape.labelled("taskqueue_attempts_total", "outcome") == outcomes
    for outcome, count in outcomes.items():
        assert (
            scrape.value(
                "taskqueue_attempt_duration_seconds_count", queue="default", outcome=outcome
            )
            == count
        )
        assert (
            scrape.value(
                "taskqueue_attempt_duration_seconds_bucket",
                queue="default",
                outcome=outcome,
                le="+Inf",
            )
            == count
        )
    assert (
        scrape.value(
            "taskqueue_task_enqueue_to_final_seconds_count", queue="default", status="done"
        )
        == 2
    )
    assert (
        scrape.value(
            "taskqueue_task_enqueue_to_final_seconds_count", queue="default", status="failed"
        )
        == 1
    )
    assert (
        scrape.value(
            "taskqueue_task_enqueue_to_final_seconds_sum", queue="default", status="failed"
        )
        > 0
    )


@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")  # wsgiref's, for BREW
def test_http_requests_are_counted_by_route_template_method_and_status(
    serve: Callable[..., Served],
) -> None:
    served = serve(noop)
    client = served.client
    assert served.post({"id": "a"}) == 201
    assert served.post({"id": "a"}) == 409
    assert served.post("nope") == 400
    assert client.simulate_get("/task", params={"id": "a"}).status_code == 200
    assert client.simulate_get("/task", params={"id": "missing"}).status_code == 404
    assert client.simulate_get("/no/such/route").status_code == 404
    assert client.simulate_get("/another-unknown-path").status_code == 404
    assert client.simulate_delete("/tasks").status_code == 405
    assert client.simulate_request("BREW", "/tasks").status_code == 400  # falcon: no such method

    served.scrape()
    scrape = served.scrape()

    def requests(route: str, method: str, status: str) -> float:
        return scrape.value(
            "taskqueue_http_requests_total", route=route, method=method, status=status
        )

    assert requests("/enqueue", "POST", "201") == 1
    assert requests("/enqueue", "POST", "409") == 1
    assert requests("/enqueue", "POST", "400") == 1
    assert requests("/task", "GET", "200") == 1
    assert requests("/task", "GET", "404") == 1
    # Unknown paths share one label: clients cannot grow the number of series.
    assert requests("unmatched", "GET", "404") == 2
    assert requests("/tasks", "DELETE", "405") == 1
    assert requests("/tasks", "other", "400") == 1
    # This scrape is counted once it has been answered: the first one only.
    assert requests("/metrics", "GET", "200") == 1
    assert len(scrape.matching("taskqueue_http_requests_total")) == 9
    assert scrape.value("taskqueue_http_request_duration_seconds_count", route="/enqueue") == 3
    assert scrape.value("taskqueue_http_request_duration_seconds_count", route="unmatched") == 2
    assert scrape.value("taskqueue_http_request_duration_seconds_sum", route="/enqueue") > 0


def test_every_metric_is_named_with_the_prefix_and_typed() -> None:
    system = TaskSystem.start(noop, workers=1)
    try:
        text = Client(create_app(system)).simulate_get("/metrics").text
    finally:
        system.stop(time.monotonic() + 5)
    scrape = Scrape(text)

    assert all(name.startswith("taskqueue_") for name in scrape.types)
    assert scrape.types == {
        "taskqueue_attempt_duration_seconds": "histogram",
        "taskqueue_task_enqueue_to_final_seconds": "histogram",
        "taskqueue_http_requests": "counter",
        "taskqueue_http_request_duration_seconds": "histogram",
        "taskqueue_tasks_enqueued": "counter",
        "taskqueue_tasks_rejected": "counter",
        "taskqueue_attempts_started": "counter",
        "taskqueue_attempts": "counter",
        "taskqueue_tasks_cancelled": "counter",
        "taskqueue_tasks_evicted": "counter",
        "taskqueue_worker_processes_replaced": "counter",
        "taskqueue_worker_threads_abandoned": "counter",
        "taskqueue_tasks": "gauge",
        "taskqueue_tasks_waiting": "gauge",
        "taskqueue_tasks_scheduled": "gauge",
        "taskqueue_workers": "gauge",
        "taskqueue_workers_busy": "gauge",
        "taskqueue_queue_size": "gauge",
        "taskqueue_scheduled_max": "gauge",
        "taskqueue_queue_waiting": "gauge",
        "taskqueue_queue_scheduled": "gauge",
        "taskqueue_queue_workers": "gauge",
        "taskqueue_queue_busy": "gauge",
        "taskqueue_queue_paused": "gauge",
        "taskqueue_queue_max_per_second": "gauge",
    }
    assert scrape.value("taskqueue_queue_workers", queue="default") == 1
    assert scrape.value("taskqueue_queue_paused", queue="default") == 0
    assert scrape.value("taskqueue_tasks_cancelled_total") == 0
    assert scrape.value("taskqueue_tasks_evicted_total") == 0
    for reason in ("timeout", "crash", "max_tasks", "max_memory"):
        assert scrape.value("taskqueue_worker_processes_replaced_total", reason=reason) == 0
    assert scrape.value("taskqueue_worker_threads_abandoned_total") == 0


def test_with_api_token_metrics_need_the_token(serve: Callable[..., Served]) -> None:
    served = serve(noop, api_token=TOKEN)

    refused = served.client.simulate_get("/metrics")

    assert refused.status_code == 401
    assert refused.json == {"error": "unauthorized"}
    assert served.scrape().value("taskqueue_workers") == 4
    # The refused scrape was counted under the route it asked for.
    assert (
        served.scrape().value(
            "taskqueue_http_requests_total", route="/metrics", method="GET", status="401"
        )
        == 1
    )


def test_a_401_is_counted_under_the_route_it_asked_for(serve: Callable[..., Served]) -> None:
    served = serve(noop, api_token=TOKEN)
    client = served.client

    assert client.simulate_get("/stats").status_code == 401
    assert client.simulate_get("/task", params={"id": "a"}).status_code == 401
    assert client.simulate_delete("/tasks").status_code == 401
    assert client.simulate_get("/no/such/route").status_code == 401
    scrape = served.scrape()

    def requests(route: str, method: str) -> float:
        return scrape.value(
            "taskqueue_http_requests_total", route=route, method=method, status="401"
        )

    assert requests("/stats", "GET") == 1
    assert requests("/task", "GET") == 1
    assert requests("/tasks", "DELETE") == 1
    # A path no route has is still one label, token or not.
    assert requests("unmatched", "GET") == 1
    assert scrape.value("taskqueue_http_request_duration_seconds_count", route="/stats") == 1


def test_metrics_public_opens_metrics_and_nothing_else() -> None:
    system = TaskSystem.start(noop, workers=1)
    try:
        client = Client(create_app(system, api_token=TOKEN, metrics_public=True))
        scraped = client.simulate_get("/metrics")
        stats = client.simulate_get("/stats")
    finally:
        system.stop(time.monotonic() + 5)

    assert scraped.status_code == 200
    assert Scrape(scraped.text).value("taskqueue_workers") == 1
    assert stats.status_code == 401


def test_without_metrics_there_is_no_metrics_route() -> None:
    system = TaskSystem.start(noop, workers=1)
    try:
        client = Client(create_app(system, metrics=False))
        missing = client.simulate_get("/metrics")
        document = client.simulate_get("/openapi.json").json
    finally:
        system.stop(time.monotonic() + 5)

    assert missing.status_code == 404
    assert "/metrics" not in document["paths"]


def test_a_scrape_after_the_actors_stopped_is_a_503_not_a_crash() -> None:
    system = TaskSystem.start(noop, workers=1)
    client = Client(create_app(system))
    system.stop(time.monotonic() + 5)

    result = client.simulate_get("/metrics")

    assert result.status_code == 503
    assert result.json == {"error": "task system stopped"}


def test_each_app_has_a_registry_of_its_own(serve: Callable[..., Served]) -> None:
    first, second = serve(noop), serve(noop)
    assert first.post({"id": "only-in-the-first"}) == 201

    assert first.scrape().value("taskqueue_tasks_enqueued_total") == 1
    assert second.scrape().value("taskqueue_tasks_enqueued_total") == 0


def test_the_histograms_are_labelled_by_queue_with_every_queue_shown_from_the_start(
    serve: Callable[..., Served],
) -> None:
    served = serve(fail_times, queues=[QueueSpec("default", 1), QueueSpec("emails", 1)])
    before = served.scrape()
    assert served.post({"id": "mail", "payload": {"failures": 0}, "queue": "emails"}) == 201

    def settled() -> Scrape | None:
        scrape = served.scrape()
        return scrape if scrape.labelled("taskqueue_tasks", "status")["done"] == 1 else None

    scrape = wait_until(settled)

    for queue in ("default", "emails"):
        assert (
            before.value("taskqueue_attempt_duration_seconds_count", queue=queue, outcome="done")
            == 0
        )
    count = "taskqueue_attempt_duration_seconds_count"
    assert scrape.value(count, queue="emails", outcome="done") == 1
    assert scrape.value(count, queue="default", outcome="done") == 0
    final = "taskqueue_task_enqueue_to_final_seconds_count"
    assert scrape.value(final, queue="emails", status="done") == 1
    assert scrape.value(final, queue="default", status="done") == 0
