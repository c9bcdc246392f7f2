"""Recovery at start: the rules on their own, then TaskSystem over a real SQLite file."""

from __future__ import annotations

import logging
import threading
import time
from functools import partial
from typing import TYPE_CHECKING

import msgspec
import pykka
import pytest

from actors import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    Admission,
    Task,
    TaskSystem,
    TaskView,
    new_task,
)
from actors.recovery import INTERRUPTED, plan_recovery
from actors.sqlite_store import SqliteStore
from actors.store import StoreError
from actors.worker import RetryPolicy
from tests.support import ANSWER_S, all_tasks, no_jitter, starting_systems, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

TIMEOUT_S = 5.0
NOW = 1_800_000_000.0
POLICY = RetryPolicy(base_ms=100, max_ms=1_000)

replace = msgspec.structs.replace


def a_task(task_id: str, status: str = QUEUED, **fields: object) -> Task:
    return replace(
        new_task(task_id, b'"data"', max_retries=3, now=NOW - 60), status=status, **fields
    )


# --- the rules ---------------------------------------------------------------------------------


def test_queued_tasks_go_back_in_line_in_creation_order() -> None:
    tasks = [a_task(f"q-{n}") for n in range(3)]

    recovered = plan_recovery(tasks, now=NOW, policy=POLICY, uniform=no_jitter)

    assert recovered.line == tuple(tasks)
    assert (recovered.retries, recovered.saves) == ((), ())


def test_a_task_waiting_for_a_retry_is_due_at_its_next_attempt_or_now_if_that_passed() -> None:
    later = a_task("later", attempts=1, last_error="boom", next_attempt_at=NOW + 2.5)
    overdue = a_task("overdue", attempts=1, last_error="boom", next_attempt_at=NOW - 10)

    recovered = plan_recovery([later, overdue], now=NOW, policy=POLICY, uniform=no_jitter)

    assert recovered.retries == ((later, 2.5), (overdue, 0.0))
    assert (recovered.line, recovered.saves, recovered.waiting) == ((), (), 2)


@pytest.mark.parametrize(("attempts", "delay_s"), [(1, 0.1), (2, 0.2), (3, 0.4)])
def test_a_running_task_with_retries_left_counts_a_failed_attempt_and_waits_its_backoff(
    attempts: int, delay_s: float
) -> None:
    running = a_task("running", RUNNING, attempts=attempts)

    recovered = plan_recovery([running], now=NOW, policy=POLICY, uniform=no_jitter)

    waiting = replace(
        running,
        status=QUEUED,
        last_error=INTERRUPTED,
        updated_at=NOW,
        next_attempt_at=NOW + delay_s,
    )
    assert recovered.saves == (waiting,)
    assert recovered.retries == ((waiting, pytest.approx(delay_s)),)
    assert (recovered.interrupted, recovered.interrupted_failed) == (1, 0)


def test_a_running_task_out_of_retries_is_failed_as_interrupted() -> None:
    running = a_task("running", RUNNING, attempts=4)  # max_retries=3: that was the last one

    recovered = plan_recovery([running], now=NOW, policy=POLICY, uniform=no_jitter)

    failed = replace(running, status=FAILED, last_error=INTERRUPTED, updated_at=NOW)
    assert recovered.saves == (failed,)
    assert (recovered.line, recovered.retries) == ((), ())
    assert (recovered.interrupted, recovered.interrupted_failed) == (1, 1)


def test_done_and_failed_tasks_are_left_alone() -> None:
    finished = [a_task("done", DONE, attempts=1), a_task("failed", FAILED, attempts=4)]

    recovered = plan_recovery(finished, now=NOW, policy=POLICY, uniform=no_jitter)

    assert (recovered.line, recovered.retries, recovered.saves) == ((), (), ())
    assert recovered.finished == 2


def test_the_log_line_counts_each_kind() -> None:
    recovered = plan_recovery(
        [
            a_task("q"),
            a_task("w", attempts=1, next_attempt_at=NOW + 1),
            a_task("r", RUNNING, attempts=1),
            a_task("r-last", RUNNING, attempts=4),
            a_task("d", DONE, attempts=1),
        ],
        now=NOW,
        policy=POLICY,
        uniform=no_jitter,
    )

    assert recovered.describe() == (
        "recovered 5 task(s) from the store: 1 queued, 1 waiting for their time, 2 interrupted "
        "(1 to retry, 1 out of retries), 1 finished"
    )


# --- TaskSystem over a real file ---------------------------------------------------------------


class Runs:
    """A handler that records each attempt (id, attempt number, wall time) across threads."""

    def __init__(self, body: Callable[[TaskView], object] = lambda view: None) -> None:
        self._body = body
        self._lock = threading.Lock()
        self.log: list[tuple[str, int, float]] = []

    def __call__(self, view: TaskView) -> None:
        with self._lock:
            self.log.append((view.id, view.attempts, time.time()))
        self._body(view)

    def ids(self) -> list[str]:
        with self._lock:
            return [task_id for task_id, _, _ in self.log]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "tasks.db"


def seed(db: Path, *tasks: Task) -> None:
    store = SqliteStore.open(db)
    store.commit(tasks)
    store.close()


def on_disk(db: Path) -> dict[str, Task]:
    store = SqliteStore.open(db)
    try:
        return {task.id: task for task in store.load()}
    finally:
        store.close()


@pytest.fixture
def start(db: Path) -> Iterator[Callable[..., TaskSystem]]:
    """Starts systems over ``db``, small retry delays; stops each afterwards unless the test did."""
    yield from starting_systems(open_store=partial(SqliteStore.open, db))


def settled(system: TaskSystem, task_id: str) -> Task:
    def final() -> Task | None:
        task = system.get_async(task_id).get(timeout=ANSWER_S)
        return task if task is not None and task.is_final else None

    task = wait_until(final, TIMEOUT_S)
    assert task is not None
    return task


def test_a_queued_task_runs_after_a_restart(start: Callable[..., TaskSystem], db: Path) -> None:
    seed(db, a_task("queued"))
    runs = Runs()

    system = start(runs)

    assert settled(system, "queued").status == DONE
    assert [(task_id, attempt) for task_id, attempt, _ in runs.log] == [("queued", 1)]


def test_a_task_waiting_for_a_retry_runs_at_its_next_attempt_time_not_before(
    start: Callable[..., TaskSystem], db: Path
) -> None:
    due = time.time() + 0.3
    seed(db, a_task("waiting", attempts=1, last_error="boom", next_attempt_at=due))
    runs = Runs()

    system = start(runs)
    waiting = system.get_async("waiting").get(timeout=ANSWER_S)
    done = settled(system, "waiting")

    assert waiting is not None and waiting.status == QUEUED
    assert (done.status, done.attempts, done.last_error) == (DONE, 2, "boom")
    [(_, attempt, ran_at)] = runs.log
    assert attempt == 2
    assert ran_at >= due


def test_a_task_whose_retry_came_due_while_stopped_runs_at_once(
    start: Callable[..., TaskSystem], db: Path
) -> None:
    seed(db, a_task("overdue", attempts=2, last_error="boom", next_attempt_at=time.time() - 3600))

    system = start(Runs())

    assert (settled(system, "overdue").status, settled(system, "overdue").attempts) == (DONE, 3)


def test_an_interrupted_attempt_is_stored_as_failed_and_waits_for_its_retry(
    start: Callable[..., TaskSystem], db: Path
) -> None:
    seed(db, a_task("running", RUNNING, attempts=1))
    runs = Runs()
    before = time.time()

    system = start(runs, retry_base_ms=60_000, retry_max_ms=60_000)
    waiting = system.get_async("running").get(timeout=ANSWER_S)
    system.stop(deadline=time.monotonic() + TIMEOUT_S)

    assert waiting is not None
    assert (waiting.status, waiting.attempts, waiting.last_error) == (QUEUED, 1, INTERRUPTED)
    assert waiting.next_attempt_at is not None
    assert before + 60 <= waiting.next_attempt_at <= time.time() + 60
    assert on_disk(db)["running"] == waiting
    assert runs.log == []


def test_an_interrupted_attempt_with_retries_left_runs_again(
    start: Callable[..., TaskSystem], db: Path
) -> None:
    seed(db, a_task("running", RUNNING, attempts=2))
    runs = Runs()

    system = start(runs)
    done = settled(system, "running")

    assert (done.status, done.attempts, done.last_error) == (DONE, 3, INTERRUPTED)
    assert [(task_id, attempt) for task_id, attempt, _ in runs.log] == [("running", 3)]


def test_an_interrupted_last_attempt_is_failed_and_never_runs(
    start: Callable[..., TaskSystem], db: Path
) -> None:
    seed(db, a_task("last", RUNNING, attempts=4), a_task("marker"))
    runs = Runs()

    system = start(runs, workers=1)
    settled(system, "marker")
    failed = system.get_async("last").get(timeout=ANSWER_S)
    system.stop(deadline=time.monotonic() + TIMEOUT_S)

    assert failed is not None
    assert (failed.status, failed.attempts, failed.last_error) == (FAILED, 4, INTERRUPTED)
    assert failed.next_attempt_at is None
    assert on_disk(db)["last"] == failed
    assert runs.ids() == ["marker"]


def test_done_and_failed_tasks_never_run_again_and_stay_as_they_were(
    start: Callable[..., TaskSystem], db: Path
) -> None:
    done = a_task("done", DONE, attempts=1)
    failed = a_task("failed", FAILED, attempts=4, last_error="gave up")
    seed(db, done, failed, a_task("marker"))
    runs = Runs()

    system = start(runs, workers=1)
    settled(system, "marker")

    assert runs.ids() == ["marker"]
    assert system.get_async("done").get(timeout=ANSWER_S) == done
    assert system.get_async("failed").get(timeout=ANSWER_S) == failed


def test_recovered_tasks_run_ahead_of_new_work(start: Callable[..., TaskSystem], db: Path) -> None:
    seed(db, *(a_task(f"recovered-{n}") for n in range(3)))
    release = threading.Event()
    runs = Runs(lambda view: release.wait(TIMEOUT_S))

    system = start(runs, workers=1, queue_size=10)
    accepted = system.submit_async(new_task("new", b"null", max_retries=0)).get(timeout=ANSWER_S)
    release.set()

    assert accepted is Admission.ACCEPTED
    settled(system, "new")
    assert runs.ids() == ["recovered-0", "recovered-1", "recovered-2", "new"]


def test_recovered_tasks_all_get_in_line_even_past_its_bound(
    start: Callable[..., TaskSystem], db: Path
) -> None:
    seed(db, *(a_task(f"recovered-{n}") for n in range(5)))
    release = threading.Event()
    runs = Runs(lambda view: release.wait(TIMEOUT_S))

    system = start(runs, workers=1, queue_size=2)
    # They fill the line, so new work is refused until it drains; none of them was refused.
    refused = system.submit_async(new_task("new", b"null", max_retries=0)).get(timeout=ANSWER_S)
    release.set()

    assert refused is Admission.QUEUE_FULL
    assert [settled(system, f"recovered-{n}").status for n in range(5)] == [DONE] * 5
    assert runs.ids() == [f"recovered-{n}" for n in range(5)]


def test_creation_order_and_duplicate_ids_survive_a_restart(
    start: Callable[..., TaskSystem],
) -> None:
    first = start(Runs())
    for task_id in ("c", "a", "b"):
        assert (
            first.submit_async(new_task(task_id, b"null", max_retries=0)).get(timeout=ANSWER_S)
            is Admission.ACCEPTED
        )
    before = [settled(first, task_id) for task_id in ("c", "a", "b")]
    first.stop(deadline=time.monotonic() + TIMEOUT_S)

    second = start(Runs())

    assert all_tasks(second) == before
    assert (
        second.submit_async(new_task("a", b'"again"', max_retries=5)).get(timeout=ANSWER_S)
        is Admission.DUPLICATE
    )
    assert all_tasks(second) == before


def test_a_stop_keeps_queued_and_waiting_tasks_for_the_next_start(
    start: Callable[..., TaskSystem],
) -> None:
    started, release = threading.Event(), threading.Event()

    def handler(view: TaskView) -> None:
        if view.id == "fails-once" and view.attempts == 1:
            raise RuntimeError("not yet")
        if view.id == "blocker":
            started.set()
            release.wait(TIMEOUT_S)

    runs = Runs(handler)
    first = start(runs, workers=1, retry_base_ms=60_000, retry_max_ms=60_000)
    first.submit_async(new_task("fails-once", b"null", max_retries=1)).get(timeout=ANSWER_S)
    wait_until(
        lambda: (
            (task := first.get_async("fails-once").get(timeout=ANSWER_S))
            and task.next_attempt_at is not None
        )
    )
    first.submit_async(new_task("blocker", b"null", max_retries=0)).get(timeout=ANSWER_S)
    assert started.wait(TIMEOUT_S)
    first.submit_async(new_task("in-line-1", b"null", max_retries=0)).get(timeout=ANSWER_S)
    first.submit_async(new_task("in-line-2", b"null", max_retries=0)).get(timeout=ANSWER_S)
    first.begin_shutdown()
    release.set()
    summary = first.stop(deadline=time.monotonic() + TIMEOUT_S)

    assert summary.kept is True
    assert (summary.abandoned_in_line, summary.abandoned_retries) == (2, 1)
    assert summary.counts == {QUEUED: 3, RUNNING: 0, DONE: 1, FAILED: 0, CANCELLED: 0}

    second = start(runs, workers=1, retry_base_ms=1, retry_max_ms=10)
    for task_id in ("in-line-1", "in-line-2"):
        assert settled(second, task_id).status == DONE
    waiting = second.get_async("fails-once").get(timeout=ANSWER_S)
    assert waiting is not None and waiting.status == QUEUED  # its retry is a minute away
    assert runs.ids() == ["fails-once", "blocker", "in-line-1", "in-line-2"]


def test_a_start_logs_one_line_with_what_it_recovered(
    start: Callable[..., TaskSystem], db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db, a_task("q"), a_task("d", DONE, attempts=1))
    caplog.set_level(logging.INFO, logger="actors.system")

    start(Runs())

    [line] = [record.getMessage() for record in caplog.records if "recovered" in record.message]
    assert line.startswith("recovered 2 task(s) from the store: 1 queued, 0 waiting for their time")


def test_a_start_without_a_store_logs_no_recovery(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="actors.system")

    system = TaskSystem.start(Runs())
    system.stop(deadline=time.monotonic() + TIMEOUT_S)

    assert not [record for record in caplog.records if "recovered" in record.getMessage()]


def test_an_unusable_store_stops_the_start_with_no_actor_left_running(db: Path) -> None:
    db.write_text("not a database\n")

    with pytest.raises(StoreError, match="not an SQLite database"):
        TaskSystem.start(Runs(), open_store=partial(SqliteStore.open, db))

    assert pykka.ActorRegistry.get_all() == []
    assert db.read_text() == "not a database\n"


def test_tasks_recovered_waiting_for_their_retry_count_against_scheduled_max(
    start: Callable[..., TaskSystem], db: Path
) -> None:
    later = time.time() + 3600
    seed(db, *(a_task(f"waiting-{n}", attempts=1, next_attempt_at=later) for n in range(2)))

    system = start(Runs(), scheduled_max=2)
    refused = system.submit_async(new_task("delayed", b"null", max_retries=0, delay_s=60)).get(
        timeout=ANSWER_S
    )
    undelayed = system.submit_async(new_task("now", b"null", max_retries=0)).get(timeout=ANSWER_S)

    assert refused == Admission.TOO_MANY_SCHEDULED
    assert undelayed == Admission.ACCEPTED
    assert system.stats_async().get(timeout=ANSWER_S).scheduled == 2
