"""TaskSystem end to end without HTTP: real actors, injected handlers, small retry delays."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence

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
from actors import system as system_module
from actors.dispatcher import DispatcherActor
from actors.store import MemoryStore
from actors.system import ShutdownSummary
from tests.support import ANSWER_S, all_tasks, starting_systems, wait_until

TIMEOUT_S = 5.0


def a_minute(a: float, b: float) -> float:
    """A jitter so long that no retry comes due during a test."""
    return 60_000.0


class Calls:
    """A handler wrapper that counts attempts per task id, safely across worker threads."""

    def __init__(self, body: Callable[[TaskView], object]) -> None:
        self._body = body
        self._lock = threading.Lock()
        self.per_id: Counter[str] = Counter()

    def __call__(self, view: TaskView) -> None:
        with self._lock:
            self.per_id[view.id] += 1
        self._body(view)


@pytest.fixture
def start() -> Iterator[Callable[..., TaskSystem]]:
    """Starts systems with small retry delays; stops each afterwards unless the test did."""
    yield from starting_systems()


def submit(system: TaskSystem, task_id: str, max_retries: int = 3) -> Admission:
    return system.submit_async(new_task(task_id, b'"data"', max_retries=max_retries)).get(
        timeout=ANSWER_S
    )


def final(system: TaskSystem, task_id: str) -> Task:
    def settled() -> Task | None:
        task = system.get_async(task_id).get(timeout=ANSWER_S)
        return task if task is not None and task.is_final else None

    task = wait_until(settled, TIMEOUT_S)
    assert task is not None
    return task


def reaches(system: TaskSystem, task_id: str, status: str, attempts: int) -> Task:
    def there() -> Task | None:
        task = system.get_async(task_id).get(timeout=ANSWER_S)
        ok = task is not None and task.status == status and task.attempts == attempts
        return task if ok else None

    task = wait_until(there, TIMEOUT_S)
    assert task is not None
    return task


def test_an_accepted_task_is_found_at_once_as_accepted(start: Callable[..., TaskSystem]) -> None:
    release = threading.Event()
    system = start(lambda view: release.wait(TIMEOUT_S), workers=1)
    submit(system, "busy")
    task = new_task("task-1", b'{"a": 1}', max_retries=2)

    assert system.submit_async(task).get(timeout=ANSWER_S) is Admission.ACCEPTED
    assert system.get_async("task-1").get(timeout=ANSWER_S) == task
    release.set()


def test_a_task_that_fails_twice_then_succeeds_ends_done_after_three_attempts(
    start: Callable[..., TaskSystem],
) -> None:
    def flaky(view: TaskView) -> None:
        if view.attempts < 3:
            raise RuntimeError(f"failure {view.attempts}")

    calls = Calls(flaky)
    system = start(calls)

    assert submit(system, "task-1", max_retries=3) is Admission.ACCEPTED
    task = final(system, "task-1")

    assert (task.status, task.attempts, task.next_attempt_at) == (DONE, 3, None)
    assert calls.per_id == {"task-1": 3}


@pytest.mark.parametrize("max_retries", [0, 1, 4])
def test_a_task_that_always_fails_ends_failed_after_max_retries_plus_one_attempts(
    start: Callable[..., TaskSystem], max_retries: int
) -> None:
    def always_fails(view: TaskView) -> None:
        raise ValueError(f"attempt {view.attempts} went wrong")

    calls = Calls(always_fails)
    system = start(calls)

    submit(system, "task-1", max_retries=max_retries)
    task = final(system, "task-1")

    attempts = max_retries + 1
    assert (task.status, task.attempts) == (FAILED, attempts)
    assert task.last_error == f"ValueError: attempt {attempts} went wrong"
    assert task.next_attempt_at is None
    assert calls.per_id == {"task-1": attempts}


def test_a_duplicate_id_is_refused_and_the_stored_task_is_unchanged(
    start: Callable[..., TaskSystem],
) -> None:
    system = start(lambda view: None)
    original = new_task("task-1", b'"first"', max_retries=1)
    system.submit_async(original).get(timeout=ANSWER_S)

    assert (
        system.submit_async(new_task("task-1", b'"second"', max_retries=5)).get(timeout=ANSWER_S)
        is Admission.DUPLICATE
    )
    stored = final(system, "task-1")
    assert (stored.payload, stored.max_retries) == (b'"first"', 1)


def test_a_full_line_refuses_new_tasks_and_stores_none_of_them(
    start: Callable[..., TaskSystem],
) -> None:
    release = threading.Event()
    system = start(lambda view: release.wait(TIMEOUT_S), workers=1, queue_size=2)
    submit(system, "running")
    reaches(system, "running", RUNNING, 1)
    assert [submit(system, "waiting-1"), submit(system, "waiting-2")] == [Admission.ACCEPTED] * 2

    assert submit(system, "refused") is Admission.QUEUE_FULL
    assert system.get_async("refused").get(timeout=ANSWER_S) is None

    release.set()
    for task_id in ["running", "waiting-1", "waiting-2"]:
        assert final(system, task_id).status == DONE
    assert [task.id for task in all_tasks(system)] == ["running", "waiting-1", "waiting-2"]


def test_stop_counts_every_status_and_the_tasks_it_abandons(
    start: Callable[..., TaskSystem],
) -> None:
    blocker_started, release = threading.Event(), threading.Event()

    def handler(view: TaskView) -> None:
        if view.id.startswith("fails"):
            raise RuntimeError("no")
        if view.id == "blocker":
            blocker_started.set()
            release.wait(TIMEOUT_S)

    system = start(handler, workers=1, queue_size=5, uniform=a_minute)
    submit(system, "done-1")
    submit(system, "fails-for-good", max_retries=0)
    submit(system, "fails-then-waits", max_retries=3)
    final(system, "fails-for-good")
    waiting = reaches(system, "fails-then-waits", QUEUED, 1)
    assert waiting.next_attempt_at is not None
    submit(system, "blocker")
    assert blocker_started.wait(TIMEOUT_S)
    submit(system, "in-line-1")
    submit(system, "in-line-2")

    system.begin_shutdown()
    release.set()
    summary = system.stop(deadline=time.monotonic() + TIMEOUT_S)

    assert summary == ShutdownSummary(
        counts={QUEUED: 3, RUNNING: 0, DONE: 2, FAILED: 1, CANCELLED: 0},
        abandoned_in_line=2,
        abandoned_retries=1,
        drained=True,
    )


def test_stop_waits_for_a_running_attempt_to_finish(start: Callable[..., TaskSystem]) -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(view: TaskView) -> None:
        started.set()
        release.wait(TIMEOUT_S)
        finished.set()

    system = start(slow, workers=1, queue_size=1)
    submit(system, "slow")
    assert started.wait(TIMEOUT_S)
    submit(system, "waiting")
    summaries: list[ShutdownSummary] = []
    stopper = threading.Thread(target=lambda: summaries.append(system.stop()))
    stopper.start()

    # Refused as full until shutdown begins, then as shutting down: never stored either way.
    probes = (f"probe-{n}" for n in itertools.count())
    wait_until(lambda: submit(system, next(probes)) is Admission.SHUTTING_DOWN)
    assert stopper.is_alive()
    release.set()
    stopper.join(TIMEOUT_S)

    assert finished.is_set()
    assert summaries == [
        ShutdownSummary(
            counts={QUEUED: 1, RUNNING: 0, DONE: 1, FAILED: 0, CANCELLED: 0},
            abandoned_in_line=1,
            abandoned_retries=0,
            drained=True,
        )
    ]


def test_stop_gives_up_on_a_running_attempt_at_the_deadline(
    start: Callable[..., TaskSystem],
) -> None:
    started, release = threading.Event(), threading.Event()

    def stuck(view: TaskView) -> None:
        started.set()
        release.wait(TIMEOUT_S)

    system = start(stuck, workers=1)
    submit(system, "stuck")
    assert started.wait(TIMEOUT_S)
    try:
        began = time.monotonic()
        summary = system.stop(deadline=began + 0.2)
        took_s = time.monotonic() - began
    finally:
        release.set()

    assert summary.drained is False
    assert summary.counts[RUNNING] == 1
    assert 0.2 <= took_s < 2.0


def test_stop_with_nothing_running_is_prompt(start: Callable[..., TaskSystem]) -> None:
    system = start(lambda view: None, workers=4)
    submit(system, "task-1")
    final(system, "task-1")

    began = time.monotonic()
    summary = system.stop(deadline=began + 30)

    assert time.monotonic() - began < 1.0
    assert summary == ShutdownSummary(
        counts={QUEUED: 0, RUNNING: 0, DONE: 1, FAILED: 0, CANCELLED: 0},
        abandoned_in_line=0,
        abandoned_retries=0,
        drained=True,
    )


@pytest.mark.parametrize(("workers", "queue_size"), [(0, 1), (1, 0)])
def test_a_system_needs_a_worker_and_a_place_in_line(workers: int, queue_size: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TaskSystem.start(lambda view: None, workers=workers, queue_size=queue_size)


def test_an_exception_whose_message_raises_system_exit_leaves_the_system_running(
    start: Callable[..., TaskSystem],
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise SystemExit("no message")

    def handler(view: TaskView) -> None:
        if view.id == "unprintable":
            raise Unprintable

    system = start(handler, workers=1)
    submit(system, "unprintable", max_retries=0)
    submit(system, "after")

    assert final(system, "unprintable").status == FAILED
    assert final(system, "after").status == DONE


# --- shutdown whatever state the actors are in ---------------------------------------------------

STOP_GRACE_BOUND_S = system_module.STOP_GRACE_S + 1.0
"""How long after its deadline ``stop`` may still take, at worst, with actors dead or stuck."""


def test_begin_shutdown_and_stop_survive_a_dispatcher_that_has_died(
    start: Callable[..., TaskSystem],
) -> None:
    system = start(lambda view: None)
    [dispatcher] = pykka.ActorRegistry.get_by_class(DispatcherActor)
    dispatcher.stop()

    system.begin_shutdown()
    started = time.monotonic()
    summary = system.stop(deadline=time.monotonic() + 0.5)

    assert time.monotonic() - started < 0.5 + STOP_GRACE_BOUND_S
    assert "dispatcher" in summary.unanswered


class StuckStore(MemoryStore):
    """A store whose commits hang until ``release`` is set: a repository stuck in its store."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def commit(self, tasks: Sequence[Task], deleted: Collection[str] = ()) -> None:
        self.entered.set()
        self.release.wait(30)
        super().commit(tasks, deleted)


def test_stop_gives_up_on_a_repository_stuck_in_its_store_after_its_deadline(
    start: Callable[..., TaskSystem],
) -> None:
    store = StuckStore()
    system = start(lambda view: None, open_store=lambda: store)
    system.submit_async(new_task("stuck", b"null", 0))
    assert store.entered.wait(TIMEOUT_S)
    try:
        started = time.monotonic()
        summary = system.stop(deadline=time.monotonic() + 0.5)

        assert time.monotonic() - started < 0.5 + STOP_GRACE_BOUND_S
        assert "repository" in summary.unanswered
    finally:
        store.release.set()
