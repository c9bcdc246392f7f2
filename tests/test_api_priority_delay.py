"""``priority`` and ``delay_ms`` on ``POST /enqueue`` through falcon's TestClient over real actors:
their validation, a delayed task's wait, and the order one worker runs tasks in."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from tests.api_client import (
    Client,
    Recorder,
    Systems,
    accept,
    enqueue,
    error_of,
    get_task,
    stats,
    status_of,
    wait_for_status,
)
from tests.support import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from actors import TaskView

PRIORITY_RULE = "priority must be an integer from 0 to 9"
DELAY_RULE = "delay_ms must be an integer from 0 to 2592000000 (30 days)"
THIRTY_DAYS_MS = 30 * 86_400_000


@pytest.fixture
def make_client(recorder: Recorder) -> Iterator[Callable[..., Client]]:
    systems = Systems()

    def make(handler: Any = None, **options: Any) -> Client:
        settings = {"workers": 1, "queue_size": 16, **options}
        return systems.client(handler or recorder, **settings)

    yield make
    recorder.release()
    systems.stop_all()


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


def seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def occupy_the_worker(client: Client, recorder: Recorder) -> None:
    accept(client, "occupant", payload={"hold": True})
    wait_until(lambda: recorder.ran("occupant") == [1])


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("priority", [-1, 10, 1.5, "5", True, None], ids=repr)
def test_a_priority_outside_0_to_9_is_400_and_not_stored(client: Client, priority: Any) -> None:
    result = enqueue(client, "p", priority=priority)

    assert result.status_code == 400
    assert error_of(result) == {"error": PRIORITY_RULE}
    assert get_task(client, "p").status_code == 404


@pytest.mark.parametrize("delay_ms", [-1, THIRTY_DAYS_MS + 1, 1.5, "300", False, None], ids=repr)
def test_a_delay_outside_0_to_30_days_is_400_and_not_stored(client: Client, delay_ms: Any) -> None:
    result = enqueue(client, "d", delay_ms=delay_ms)

    assert result.status_code == 400
    assert error_of(result) == {"error": DELAY_RULE}
    assert get_task(client, "d").status_code == 404


@pytest.mark.parametrize("priority", [0, 9])
def test_priorities_at_the_bounds_are_accepted_and_shown_after_the_seed_fields(
    client: Client, priority: int
) -> None:
    body = accept(client, "p", priority=priority)

    assert body["priority"] == priority
    # Fields added after the seed's come after its last one, next_attempt_at, in the order added.
    assert list(body)[-6:] == [
        "next_attempt_at",
        "priority",
        "timeout_ms",
        "result",
        "target",
        "queue",
    ]
    assert get_task(client, "p").json["priority"] == priority


def test_priority_defaults_to_0_and_delay_to_none(client: Client) -> None:
    body = accept(client, "plain")

    assert body["priority"] == 0
    assert body["next_attempt_at"] is None


def test_a_delay_of_0_is_no_delay(client: Client) -> None:
    body = accept(client, "now", delay_ms=0)

    assert body["next_attempt_at"] is None
    wait_for_status(client, "now", "done")


def test_a_delay_of_30_days_is_accepted_and_due_30_days_after_creation(client: Client) -> None:
    body = accept(client, "far", delay_ms=THIRTY_DAYS_MS)

    assert body["status"] == "queued"
    due = seconds(body["next_attempt_at"]) - seconds(body["created_at"])
    assert due == pytest.approx(30 * 86_400, abs=0.001)
    now = stats(client)
    assert (now["scheduled"], now["waiting"], now["tasks"]["queued"]) == (1, 0, 1)


# --- delayed tasks -----------------------------------------------------------------------------


class RunClock:
    """Records when each task's attempt started, by the wall clock the task's times use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started: dict[str, float] = {}

    def __call__(self, task: TaskView) -> None:
        with self._lock:
            self.started[task.id] = time.time()


def test_a_delayed_task_is_queued_with_next_attempt_at_and_runs_once_due_not_before(
    make_client: Callable[..., Client],
) -> None:
    clock = RunClock()
    client = make_client(clock)

    body = accept(client, "later", delay_ms=300)

    assert body["status"] == "queued"
    assert body["attempts"] == 0
    due = seconds(body["next_attempt_at"])
    assert due - seconds(body["created_at"]) == pytest.approx(0.3, abs=0.001)
    done = wait_for_status(client, "later", "done")
    assert clock.started["later"] >= due
    assert done["attempts"] == 1
    assert done["next_attempt_at"] is None
    assert stats(client)["scheduled"] == 0


def test_a_delayed_task_enters_the_line_when_due_behind_tasks_enqueued_after_it(
    client: Client, recorder: Recorder
) -> None:
    occupy_the_worker(client, recorder)
    accept(client, "later", delay_ms=300)
    accept(client, "now")
    wait_until(lambda: stats(client)["scheduled"] == 0)
    assert stats(client)["waiting"] == 2

    recorder.release()
    wait_for_status(client, "later", "done")

    assert [run_id for run_id, _ in recorder.runs] == ["occupant", "now", "later"]


def test_a_delayed_task_takes_no_place_in_the_line_until_due(
    make_client: Callable[..., Client], recorder: Recorder
) -> None:
    client = make_client(queue_size=1)
    occupy_the_worker(client, recorder)

    accept(client, "delayed", delay_ms=60_000)

    assert enqueue(client, "in-line").status_code == 201
    assert stats(client)["waiting"] == 1


def test_a_full_line_refuses_a_delayed_task_too(
    make_client: Callable[..., Client], recorder: Recorder
) -> None:
    client = make_client(queue_size=1)
    occupy_the_worker(client, recorder)
    accept(client, "in-line")

    result = enqueue(client, "delayed", delay_ms=60_000)

    assert result.status_code == 503
    assert result.headers["retry-after"] == "1"
    assert error_of(result) == {"error": "queue is full"}
    assert status_of(client, "delayed") is None


# --- priorities --------------------------------------------------------------------------------


def test_one_worker_runs_higher_priorities_first_and_first_in_first_out_within_one(
    client: Client, recorder: Recorder
) -> None:
    occupy_the_worker(client, recorder)
    plan = [("a", 0), ("b", 5), ("c", 9), ("d", 5), ("e", 0), ("f", 9), ("g", 1)]
    for task_id, priority in plan:
        accept(client, task_id, priority=priority)

    recorder.release()
    wait_until(lambda: stats(client)["totals"]["done"] == len(plan) + 1)

    order = [run_id for run_id, _ in recorder.runs if run_id != "occupant"]
    assert order == ["c", "f", "b", "d", "g", "a", "e"]


def test_a_delayed_task_that_comes_due_runs_by_its_priority_ahead_of_lower_ones_waiting(
    client: Client, recorder: Recorder
) -> None:
    occupy_the_worker(client, recorder)
    accept(client, "low-1")
    accept(client, "low-2")
    accept(client, "urgent-later", priority=9, delay_ms=200)
    wait_until(lambda: stats(client)["scheduled"] == 0)
    assert stats(client)["waiting"] == 3

    recorder.release()
    wait_until(lambda: stats(client)["totals"]["done"] == 4)

    order = [run_id for run_id, _ in recorder.runs if run_id != "occupant"]
    assert order == ["urgent-later", "low-1", "low-2"]


def test_a_batch_is_run_by_priority_too(client: Client, recorder: Recorder) -> None:
    occupy_the_worker(client, recorder)
    items = [{"id": "x", "priority": 1}, {"id": "y", "priority": 3}, {"id": "z", "priority": 1}]

    assert client.simulate_post("/enqueue/batch", json=items).status_code == 201
    recorder.release()
    wait_until(lambda: stats(client)["totals"]["done"] == 4)

    assert [run_id for run_id, _ in recorder.runs] == ["occupant", "y", "x", "z"]


def test_a_retry_that_comes_due_goes_by_its_priority_too(
    make_client: Callable[..., Client], recorder: Recorder
) -> None:
    client = make_client(retry_base_ms=200, retry_max_ms=200, uniform=lambda a, b: a)
    # The occupant is in line before the first attempt fails: it runs while the retry waits.
    flaky = {"gate": "first-attempt", "fail": True}
    accept(client, "urgent-flaky", payload=flaky, priority=9, max_retries=1)
    wait_until(lambda: recorder.ran("urgent-flaky") == [1])
    accept(client, "occupant", payload={"hold": True})
    recorder.open("first-attempt")
    wait_until(lambda: recorder.ran("occupant") == [1])
    accept(client, "low-1")
    accept(client, "low-2")
    wait_until(lambda: stats(client)["scheduled"] == 0)

    recorder.release()
    wait_until(lambda: stats(client)["totals"]["done"] == 3)

    assert recorder.runs == [
        ("urgent-flaky", 1),
        ("occupant", 1),
        ("urgent-flaky", 2),
        ("low-1", 1),
        ("low-2", 1),
    ]
