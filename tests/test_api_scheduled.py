"""``SCHEDULED_MAX``: new delayed tasks are refused once that many wait for their time; retries
of accepted tasks never are. Through falcon's TestClient over real actors."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.api_client import (
    Client,
    Recorder,
    Systems,
    accept,
    enqueue,
    error_of,
    stats,
    stored_ids,
    wait_for_status,
)
from tests.handlers import always_fail
from tests.support import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

DAY_MS = 86_400_000
TOO_MANY = {"error": "too many scheduled tasks"}


@pytest.fixture
def make_client(recorder: Recorder) -> Iterator[Callable[..., Client]]:
    systems = Systems()

    def make(handler: Any = None, **options: Any) -> Client:
        settings = {"workers": 1, "queue_size": 16, "scheduled_max": 3, **options}
        return systems.client(handler or recorder, **settings)

    yield make
    recorder.release()
    systems.stop_all()


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


def batch(client: Client, tasks: list[dict[str, Any]]) -> Any:
    return client.simulate_post("/enqueue/batch", body=json.dumps(tasks))


def fill(client: Client, count: int) -> None:
    for number in range(count):
        accept(client, f"later-{number}", delay_ms=DAY_MS)


def test_a_delayed_task_beyond_scheduled_max_is_503_and_not_stored(client: Client) -> None:
    fill(client, 3)

    refused = enqueue(client, "one-too-many", delay_ms=DAY_MS)

    assert refused.status_code == 503
    assert error_of(refused) == TOO_MANY
    assert refused.headers["retry-after"] == "1"
    assert "one-too-many" not in stored_ids(client)
    assert stats(client)["totals"]["rejected"]["too_many_scheduled"] == 1


def test_a_task_without_delay_is_accepted_while_scheduled_max_is_reached(client: Client) -> None:
    fill(client, 3)

    assert enqueue(client, "now").status_code == 201


def test_a_batch_counts_all_its_delayed_tasks_and_is_refused_whole(client: Client) -> None:
    fill(client, 1)

    refused = batch(
        client,
        [
            {"id": "b1", "delay_ms": DAY_MS},
            {"id": "b2"},
            {"id": "b3", "delay_ms": DAY_MS},
            {"id": "b4", "delay_ms": 1000},
        ],
    )
    fits = batch(client, [{"id": "c1", "delay_ms": DAY_MS}, {"id": "c2"}, {"id": "c3"}])

    assert refused.status_code == 503
    assert error_of(refused) == TOO_MANY
    assert refused.headers["retry-after"] == "1"
    assert fits.status_code == 201
    assert not {"b1", "b2", "b3", "b4"} & set(stored_ids(client))


def test_a_known_id_is_still_409_when_scheduled_max_is_reached(client: Client) -> None:
    fill(client, 3)

    assert enqueue(client, "later-0", delay_ms=DAY_MS).status_code == 409


def test_a_cancelled_or_due_task_makes_room(client: Client) -> None:
    fill(client, 2)
    accept(client, "soon", delay_ms=50)
    assert enqueue(client, "refused", delay_ms=DAY_MS).status_code == 503

    wait_until(lambda: enqueue(client, "after-due", delay_ms=DAY_MS).status_code == 201)
    cancelled = client.simulate_post("/task/cancel", params={"id": "later-0"})
    assert cancelled.status_code == 200, cancelled.text

    assert enqueue(client, "after-cancel", delay_ms=DAY_MS).status_code == 201


def test_retries_are_never_refused_by_scheduled_max(make_client: Callable[..., Client]) -> None:
    client = make_client(always_fail, scheduled_max=1, retry_base_ms=20, retry_max_ms=20)
    accept(client, "waiting", delay_ms=DAY_MS)
    for number in range(3):
        accept(client, f"failing-{number}", max_retries=2)

    for number in range(3):
        failed = wait_for_status(client, f"failing-{number}", "failed")
        assert failed["attempts"] == 3


def test_stats_and_readyz_report_the_bound(client: Client) -> None:
    fill(client, 2)
    ready = client.simulate_get("/readyz")
    fill_last = enqueue(client, "third", delay_ms=DAY_MS)
    at_bound = client.simulate_get("/readyz")
    counts = stats(client)

    assert ready.status_code == 200
    assert fill_last.status_code == 201
    assert at_bound.status_code == 503
    assert at_bound.json == {"status": "too many scheduled tasks"}
    assert counts["scheduled"] == 3
    assert counts["scheduled_max"] == 3
