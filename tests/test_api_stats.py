"""``GET /stats`` and ``GET /readyz`` through falcon's TestClient, real actors."""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

import falcon.testing
import pykka
import pytest

from actors import TaskSystem, noop
from api import create_app
from tests.handlers import Gate, fail_times
from tests.support import no_jitter, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from actors.worker import Handler

Client = falcon.testing.TestClient


@pytest.fixture
def make_client() -> Iterator[Callable[..., tuple[Client, TaskSystem]]]:
    """A TestClient over a fresh TaskSystem running ``handler``, and the system; stopped after."""
    systems: list[TaskSystem] = []

    def make(handler: Handler, **options: Any) -> tuple[Client, TaskSystem]:
        options = {"retry_base_ms": 1, "retry_max_ms": 10, "uniform": no_jitter, **options}
        system = TaskSystem.start(handler, **options)
        systems.append(system)
        return Client(create_app(system)), system

    yield make
    for system in systems:
        # A system the test already stopped has no actors left to stop.
        with contextlib.suppress(pykka.ActorDeadError):
            system.stop(time.monotonic() + 5)


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.open()


def post(client: Client, body: object) -> int:
    text = body if isinstance(body, str) else json.dumps(body)
    return client.simulate_post("/enqueue", body=text).status_code


def stats(client: Client) -> dict[str, Any]:
    result = client.simulate_get("/stats")
    assert result.status_code == 200, result.text
    assert result.headers["content-type"] == "application/json"
    body: dict[str, Any] = result.json
    assert body.pop("uptime_s") >= 0
    return body


def readyz(client: Client) -> tuple[int, dict[str, Any]]:
    result = client.simulate_get("/readyz")
    assert result.headers["content-type"] == "application/json"
    return result.status_code, result.json


def test_stats_count_exactly_what_happened_to_every_enqueue(
    make_client: Callable[..., tuple[Client, TaskSystem]], gate: Gate
) -> None:
    client, system = make_client(gate, workers=1, queue_size=2)
    assert post(client, {"id": "a"}) == 201
    wait_until(lambda: gate.entered == 1)
    assert post(client, {"id": "b"}) == 201
    assert post(client, {"id": "c"}) == 201
    assert post(client, {"id": "d"}) == 503  # the line is full
    assert post(client, {"id": "a"}) == 409
    for invalid in ["not json", {"id": ""}, [], {"id": "x", "status": "done"}]:
        assert post(client, invalid) == 400

    assert stats(client) == {
        "tasks": {"queued": 2, "running": 1, "done": 0, "failed": 0, "cancelled": 0},
        "waiting": 2,
        "scheduled": 0,
        "workers": {"total": 1, "busy": 1},
        "queue_size": 2,
        "scheduled_max": 100_000,
        "store": "none",
        "totals": {
            "enqueued": 3,
            "rejected": {
                "full": 1,
                "duplicate": 1,
                "shutting_down": 0,
                "store_unavailable": 0,
                "too_many_scheduled": 0,
                "invalid": 4,
            },
            "attempts": 1,
            "retries": 0,
            "done": 0,
            "failed": 0,
            "cancelled": 0,
            "evicted": 0,
            "processes_replaced": {"timeout": 0, "crash": 0, "max_tasks": 0, "max_memory": 0},
            "threads_abandoned": 0,
        },
        "queues": [
            {
                "name": "default",
                "workers": 1,
                "busy": 1,
                "waiting": 2,
                "scheduled": 0,
                "paused": False,
                "max_per_second": None,
            }
        ],
    }

    gate.open()
    wait_until(lambda: stats(client)["totals"]["done"] == 3)
    after = stats(client)
    assert after["tasks"] == {"queued": 0, "running": 0, "done": 3, "failed": 0, "cancelled": 0}
    assert (after["waiting"], after["workers"]["busy"], after["totals"]["attempts"]) == (0, 0, 3)

    system.begin_shutdown()
    assert post(client, {"id": "late"}) == 503
    assert post(client, {"id": "b"}) == 409  # a known id is a conflict, even now
    assert stats(client)["totals"]["rejected"] == {
        "full": 1,
        "duplicate": 2,
        "shutting_down": 1,
        "store_unavailable": 0,
        "too_many_scheduled": 0,
        "invalid": 4,
    }


def test_stats_count_retries_and_how_each_task_ended(
    make_client: Callable[..., tuple[Client, TaskSystem]],
) -> None:
    client, _ = make_client(fail_times, workers=2)
    assert post(client, {"id": "ok", "payload": {"failures": 0}}) == 201
    assert post(client, {"id": "twice", "payload": {"failures": 2}, "max_retries": 3}) == 201
    assert post(client, {"id": "never", "payload": {"failures": 9}, "max_retries": 1}) == 201

    def unfinished() -> int:
        # One answer for both counts: a retry moves a task from running back to queued.
        tasks = stats(client)["tasks"]
        return tasks["queued"] + tasks["running"]

    wait_until(lambda: unfinished() == 0)
    body = stats(client)

    assert body["tasks"] == {"queued": 0, "running": 0, "done": 2, "failed": 1, "cancelled": 0}
    totals = body["totals"]
    # ok: 1 attempt; twice: 3 attempts, 2 retries; never: 2 attempts, 1 retry, failed.
    assert (totals["attempts"], totals["retries"], totals["done"], totals["failed"]) == (6, 3, 2, 1)
    assert (body["waiting"], body["scheduled"], body["workers"]) == (0, 0, {"total": 2, "busy": 0})


def test_a_task_waiting_for_its_retry_is_scheduled_not_waiting(
    make_client: Callable[..., tuple[Client, TaskSystem]],
) -> None:
    client, _ = make_client(fail_times, workers=1, retry_base_ms=60_000, retry_max_ms=60_000)
    assert post(client, {"id": "later", "payload": {"failures": 1}}) == 201

    wait_until(lambda: stats(client)["scheduled"] == 1)
    body = stats(client)

    assert body["tasks"]["queued"] == 1
    assert (body["waiting"], body["workers"]["busy"]) == (0, 0)
    assert (body["totals"]["attempts"], body["totals"]["retries"]) == (1, 1)


def test_workers_busy_counts_the_attempts_running_now(
    make_client: Callable[..., tuple[Client, TaskSystem]], gate: Gate
) -> None:
    client, _ = make_client(gate, workers=3, queue_size=5)
    for n in range(2):
        assert post(client, {"id": f"task-{n}"}) == 201
    wait_until(lambda: gate.entered == 2)

    body = stats(client)

    assert body["workers"] == {"total": 3, "busy": 2}
    assert (body["tasks"]["running"], body["waiting"]) == (2, 0)


def test_readyz_is_ready_while_the_line_has_room(
    make_client: Callable[..., tuple[Client, TaskSystem]],
) -> None:
    client, _ = make_client(noop)

    assert readyz(client) == (200, {"status": "ready"})
    assert client.simulate_get("/healthz").json == {"status": "ok"}


def test_readyz_is_full_exactly_when_an_enqueue_would_be_refused_as_full(
    make_client: Callable[..., tuple[Client, TaskSystem]], gate: Gate
) -> None:
    client, _ = make_client(gate, workers=1, queue_size=1)
    assert post(client, {"id": "running"}) == 201
    wait_until(lambda: gate.entered == 1)
    assert readyz(client) == (200, {"status": "ready"})
    assert post(client, {"id": "waiting"}) == 201

    assert readyz(client) == (503, {"status": "full"})
    assert post(client, {"id": "refused"}) == 503

    gate.open()
    wait_until(lambda: readyz(client)[0] == 200)
    assert readyz(client) == (200, {"status": "ready"})


def test_readyz_is_shutting_down_once_shutdown_began_and_after_the_actors_stopped(
    make_client: Callable[..., tuple[Client, TaskSystem]],
) -> None:
    client, system = make_client(noop)

    system.begin_shutdown()
    assert readyz(client) == (503, {"status": "shutting down"})
    assert client.simulate_get("/healthz").status_code == 200

    system.stop(time.monotonic() + 5)
    assert readyz(client) == (503, {"status": "shutting down"})
