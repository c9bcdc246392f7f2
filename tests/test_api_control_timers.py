"""Cancel, retry and delete against a task's pending timer (a delay or a retry backoff) through
the API: the old timer must not run the task again once it has been acted on."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest

from tests.api_client import Client, Systems, accept, get_task, stats, wait_for_status
from tests.handlers import BLOCK_LIMIT_S, HandlerFailure
from tests.support import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from actors import TaskView

TIMER_MS = 300
"""The delay or backoff left pending; a marker delayed twice as long proves it has passed."""


class FailsFirstRunOnly:
    """Records each run as ``(id, attempt)``. Payload ``"fail-first"``: the id's very first run
    fails once ``let_first_runs_fail()`` is called, later ones succeed at once; ``"hold"``: the
    attempt runs until ``release()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._first_runs_fail = threading.Event()
        self.runs: list[tuple[str, int]] = []

    def __call__(self, task: TaskView) -> None:
        with self._lock:
            first = all(run_id != task.id for run_id, _ in self.runs)
            self.runs.append((task.id, task.attempts))
        if task.payload == "hold" and not self._released.wait(BLOCK_LIMIT_S):
            raise HandlerFailure("held too long")
        if first and task.payload == "fail-first":
            if not self._first_runs_fail.wait(BLOCK_LIMIT_S):
                raise HandlerFailure("never told to fail")
            raise HandlerFailure("first run fails")

    def ran(self, task_id: str) -> list[int]:
        with self._lock:
            return [attempt for run_id, attempt in self.runs if run_id == task_id]

    def let_first_runs_fail(self) -> None:
        self._first_runs_fail.set()

    def release(self) -> None:
        self._released.set()
        self._first_runs_fail.set()


@pytest.fixture
def handler() -> Iterator[FailsFirstRunOnly]:
    handler = FailsFirstRunOnly()
    yield handler
    handler.release()


@pytest.fixture
def client(handler: FailsFirstRunOnly) -> Iterator[Client]:
    systems = Systems()
    options: dict[str, Any] = {"workers": 1, "queue_size": 8, "retry_base_ms": TIMER_MS}
    options |= {"retry_max_ms": TIMER_MS, "uniform": lambda a, b: a}
    yield systems.client(handler, **options)
    handler.release()
    systems.stop_all()


def hold_the_worker(client: Client, handler: FailsFirstRunOnly) -> None:
    """Keep the only worker busy: however slow the test, a timer that comes due only puts its
    task in line, where cancel still finds it queued."""
    accept(client, "occupant", payload="hold")
    wait_until(lambda: handler.ran("occupant") == [1])


def fail_once_then_hold_the_worker(
    client: Client, handler: FailsFirstRunOnly, task_id: str
) -> None:
    """``task_id`` fails its first attempt and waits for its retry while the worker is held (the
    occupant is in line before the attempt ends, so it runs before the retry is due)."""
    accept(client, task_id, payload="fail-first", max_retries=3)
    wait_until(lambda: handler.ran(task_id) == [1])
    accept(client, "occupant", payload="hold")
    handler.let_first_runs_fail()
    wait_until(lambda: handler.ran("occupant") == [1])
    assert handler.ran(task_id) == [1]


def let_the_old_timer_pass(client: Client) -> None:
    """Run a marker due after the old timer: with one worker, anything the old timer put in
    line ran before the marker did."""
    accept(client, "marker", delay_ms=2 * TIMER_MS)
    wait_for_status(client, "marker", "done")


def test_a_task_cancelled_while_awaiting_a_retry_then_retried_runs_once_more_only(
    client: Client, handler: FailsFirstRunOnly
) -> None:
    fail_once_then_hold_the_worker(client, handler, "flaky")
    assert client.simulate_post("/task/cancel", params={"id": "flaky"}).status_code == 200
    assert client.simulate_post("/task/retry", params={"id": "flaky"}).status_code == 200
    handler.release()
    wait_for_status(client, "flaky", "done")

    let_the_old_timer_pass(client)

    assert handler.ran("flaky") == [1, 1]
    final = get_task(client, "flaky").json
    assert (final["status"], final["attempts"]) == ("done", 1)


def test_a_delayed_task_cancelled_then_retried_runs_at_once_and_only_once(
    client: Client, handler: FailsFirstRunOnly
) -> None:
    hold_the_worker(client, handler)
    accept(client, "delayed", delay_ms=TIMER_MS)
    assert client.simulate_post("/task/cancel", params={"id": "delayed"}).status_code == 200
    retried = client.simulate_post("/task/retry", params={"id": "delayed"})
    assert retried.status_code == 200
    assert retried.json["next_attempt_at"] is None
    handler.release()
    wait_for_status(client, "delayed", "done")

    let_the_old_timer_pass(client)

    assert handler.ran("delayed") == [1]


def test_a_deleted_delayed_id_enqueued_again_is_not_run_by_the_old_delay(
    client: Client, handler: FailsFirstRunOnly
) -> None:
    hold_the_worker(client, handler)
    accept(client, "reused", delay_ms=TIMER_MS)
    assert client.simulate_post("/task/cancel", params={"id": "reused"}).status_code == 200
    assert client.simulate_delete("/task", params={"id": "reused"}).status_code == 204
    accept(client, "reused", delay_ms=60_000)
    handler.release()

    let_the_old_timer_pass(client)

    assert handler.ran("reused") == []
    again = get_task(client, "reused").json
    assert again["status"] == "queued"
    assert again["next_attempt_at"] is not None
    assert stats(client)["scheduled"] == 1


def test_a_deleted_id_enqueued_again_is_not_run_by_the_old_retry_backoff(
    client: Client, handler: FailsFirstRunOnly
) -> None:
    fail_once_then_hold_the_worker(client, handler, "reborn")
    assert client.simulate_post("/task/cancel", params={"id": "reborn"}).status_code == 200
    assert client.simulate_delete("/task", params={"id": "reborn"}).status_code == 204
    accept(client, "reborn", delay_ms=60_000)
    handler.release()

    let_the_old_timer_pass(client)

    assert handler.ran("reborn") == [1]
    assert get_task(client, "reborn").json["status"] == "queued"
