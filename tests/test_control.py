"""Acting on tasks in a running system: cancel, retry by hand, delete, priorities, delays,
batches. The API tests check the HTTP side; these check the actors' promises, races included."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from actors import (
    CANCELLED,
    DONE,
    FAILED,
    KEEP_ALL,
    QUEUED,
    RUNNING,
    Admission,
    TaskSystem,
    new_task,
)
from tests.handlers import Gate
from tests.support import ANSWER_S, all_tasks, starting_systems, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from actors import Task, TaskView


@pytest.fixture
def start() -> Iterator[Callable[..., TaskSystem]]:
    yield from starting_systems(workers=1, queue_size=100, retention=KEEP_ALL)


class Recorder:
    """A handler that records the id of every attempt, in order, and fails ids it is told to."""

    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self._lock = threading.Lock()
        self._runs: list[str] = []
        self.fail = set(fail)

    def __call__(self, task: TaskView) -> None:
        with self._lock:
            self._runs.append(task.id)
        if task.id in self.fail:
            raise RuntimeError(f"{task.id} fails")

    @property
    def runs(self) -> list[str]:
        with self._lock:
            return list(self._runs)


class GatedRecorder(Recorder):
    """A Recorder whose attempts wait for the gate first."""

    def __init__(self, gate: Gate, fail: frozenset[str] = frozenset()) -> None:
        super().__init__(fail)
        self.gate = gate

    def __call__(self, task: TaskView) -> None:
        self.gate(task)
        super().__call__(task)


def status_of(system: TaskSystem, task_id: str) -> str | None:
    task = system.get_async(task_id).get(timeout=ANSWER_S)
    return None if task is None else task.status


def task(task_id: str, **options: object) -> Task:
    return new_task(task_id, b"null", 0, **options)  # type: ignore[arg-type]


def blocked(
    start: Callable[..., TaskSystem], **options: object
) -> tuple[TaskSystem, Gate, GatedRecorder]:
    """A system whose one worker is held inside task "blocker" until the gate opens."""
    gate = Gate()
    handler = GatedRecorder(gate)
    system = start(handler, **options)
    system.submit_async(task("blocker")).get(timeout=ANSWER_S)
    wait_until(lambda: gate.entered == 1)
    return system, gate, handler


# --- priorities and delays ----------------------------------------------------------------------


def test_with_one_worker_higher_priorities_run_first_and_fifo_within_one(
    start: Callable[..., TaskSystem],
) -> None:
    system, gate, handler = blocked(start)
    for task_id, priority in [("a0", 0), ("b5", 5), ("c9", 9), ("d5", 5), ("e0", 0), ("f9", 9)]:
        assert (
            system.submit_async(task(task_id, priority=priority)).get(timeout=ANSWER_S)
            is Admission.ACCEPTED
        )

    gate.open()

    wait_until(lambda: len(handler.runs) == 7)
    assert handler.runs == ["blocker", "c9", "f9", "b5", "d5", "a0", "e0"]


def test_a_retry_keeps_its_priority(start: Callable[..., TaskSystem]) -> None:
    system, gate, handler = blocked(start)
    handler.fail.add("flaky")
    system.submit_async(new_task("flaky", b"null", 1, priority=9)).get(timeout=ANSWER_S)
    gate.open()
    wait_until(lambda: handler.runs.count("flaky") == 2)

    flaky = system.get_async("flaky").get(timeout=ANSWER_S)
    assert flaky is not None and flaky.priority == 9 and flaky.attempts == 2


def test_a_delayed_task_waits_without_a_place_in_line_then_runs(
    start: Callable[..., TaskSystem],
) -> None:
    system, gate, handler = blocked(start, queue_size=1)
    accepted = task("later", delay_s=0.3)
    assert accepted.next_attempt_at is not None

    assert system.submit_async(accepted).get(timeout=ANSWER_S) is Admission.ACCEPTED
    assert status_of(system, "later") == QUEUED
    # The line's one place is still free for a task that runs at once.
    assert system.submit_async(task("now")).get(timeout=ANSWER_S) is Admission.ACCEPTED
    assert system.submit_async(task("over")).get(timeout=ANSWER_S) is Admission.QUEUE_FULL
    gate.open()

    wait_until(lambda: status_of(system, "later") == DONE)
    done = system.get_async("later").get(timeout=ANSWER_S)
    assert done is not None and done.updated_at >= accepted.next_attempt_at
    assert handler.runs == ["blocker", "now", "later"]


def test_a_full_line_refuses_a_delayed_task_too(start: Callable[..., TaskSystem]) -> None:
    system, gate, _ = blocked(start, queue_size=1)
    assert system.submit_async(task("fills-the-line")).get(timeout=ANSWER_S) is Admission.ACCEPTED

    assert (
        system.submit_async(task("delayed", delay_s=60)).get(timeout=ANSWER_S)
        is Admission.QUEUE_FULL
    )
    assert system.get_async("delayed").get(timeout=ANSWER_S) is None
    gate.open()


# --- cancel ------------------------------------------------------------------------------------


def test_a_task_cancelled_in_line_never_runs(start: Callable[..., TaskSystem]) -> None:
    system, gate, handler = blocked(start)
    system.submit_async(task("victim")).get(timeout=ANSWER_S)
    system.submit_async(task("after")).get(timeout=ANSWER_S)

    outcome = system.cancel_async("victim").get(timeout=ANSWER_S)

    assert outcome.task is not None and outcome.task.status == CANCELLED
    assert outcome.task.next_attempt_at is None
    gate.open()
    wait_until(lambda: status_of(system, "after") == DONE)
    assert "victim" not in handler.runs
    assert status_of(system, "victim") == CANCELLED
    stats = system.stats_async().get(timeout=ANSWER_S)
    assert (stats.totals.cancelled, stats.tasks.cancelled) == (1, 1)


def test_a_delayed_task_can_be_cancelled_and_leaves_the_schedule(
    start: Callable[..., TaskSystem],
) -> None:
    system = start(Recorder())
    system.submit_async(task("someday", delay_s=3600)).get(timeout=ANSWER_S)
    # The stats' actors answer separately: the schedule may show the task a moment later.
    wait_until(lambda: system.stats_async().get(timeout=ANSWER_S).scheduled == 1)

    outcome = system.cancel_async("someday").get(timeout=ANSWER_S)

    assert outcome.task is not None and outcome.task.status == CANCELLED
    assert system.stats_async().get(timeout=ANSWER_S).scheduled == 0


def test_a_task_awaiting_its_retry_can_be_cancelled(start: Callable[..., TaskSystem]) -> None:
    handler = Recorder(fail=frozenset({"flaky"}))
    system = start(handler, retry_base_ms=60_000, retry_max_ms=60_000)
    system.submit_async(new_task("flaky", b"null", 3)).get(timeout=ANSWER_S)
    wait_until(lambda: system.stats_async().get(timeout=ANSWER_S).scheduled == 1)

    outcome = system.cancel_async("flaky").get(timeout=ANSWER_S)

    assert outcome.task is not None
    assert (outcome.task.status, outcome.task.attempts) == (CANCELLED, 1)
    assert outcome.task.last_error == "RuntimeError: flaky fails"
    assert system.stats_async().get(timeout=ANSWER_S).scheduled == 0


@pytest.mark.parametrize(("final", "fails"), [(DONE, False), (FAILED, True)])
def test_a_finished_task_cannot_be_cancelled(
    start: Callable[..., TaskSystem], final: str, fails: bool
) -> None:
    system = start(Recorder(fail=frozenset({"t"} if fails else ())))
    system.submit_async(task("t")).get(timeout=ANSWER_S)
    wait_until(lambda: status_of(system, "t") == final)

    outcome = system.cancel_async("t").get(timeout=ANSWER_S)

    assert outcome == (None, f"task is {final}", None)
    assert status_of(system, "t") == final


def test_a_running_task_cannot_be_cancelled(start: Callable[..., TaskSystem]) -> None:
    system, gate, _ = blocked(start)

    assert system.cancel_async("blocker").get(timeout=ANSWER_S).conflict == "task is running"
    assert status_of(system, "blocker") == RUNNING
    gate.open()
    wait_until(lambda: status_of(system, "blocker") == DONE)


def test_cancelling_twice_or_an_unknown_id(start: Callable[..., TaskSystem]) -> None:
    system, gate, _ = blocked(start)
    system.submit_async(task("once")).get(timeout=ANSWER_S)
    system.cancel_async("once").get(timeout=ANSWER_S)

    assert system.cancel_async("once").get(timeout=ANSWER_S).conflict == "task is cancelled"
    assert system.cancel_async("nobody").get(timeout=ANSWER_S) == (None, None, None)
    gate.open()


def test_cancel_racing_the_worker_pickup_either_wins_cleanly(
    start: Callable[..., TaskSystem],
) -> None:
    """Each task is cancelled the moment it is submitted, while the idle worker takes it. Every
    cancel answers; a cancelled task never ran, and a task that ran was refused as running/done.
    Delayed tasks (due almost at once) race the retry actor's hand-back as well."""
    handler = Recorder()
    system = start(handler, workers=2)
    outcomes = {}
    for n in range(300):
        task_id = f"race-{n}"
        system.submit_async(task(task_id, delay_s=0.001 if n % 3 == 0 else 0.0)).get(
            timeout=ANSWER_S
        )
        outcomes[task_id] = system.cancel_async(task_id).get(timeout=ANSWER_S)

    wait_until(lambda: all(status_of(system, t) in (DONE, CANCELLED) for t in outcomes))
    ran = set(handler.runs)
    for task_id, outcome in outcomes.items():
        if outcome.task is not None:
            assert outcome.task.status == CANCELLED
            assert task_id not in ran, task_id
            assert status_of(system, task_id) == CANCELLED
        else:
            assert outcome.conflict in ("task is running", "task is done"), outcome
            assert task_id in ran, task_id
    assert len(ran) + system.stats_async().get(timeout=ANSWER_S).totals.cancelled == 300


# --- retry by hand -----------------------------------------------------------------------------


def test_a_failed_task_retried_by_hand_gets_a_fresh_round(
    start: Callable[..., TaskSystem],
) -> None:
    handler = Recorder(fail=frozenset({"t"}))
    system = start(handler)
    system.submit_async(new_task("t", b"null", 1, priority=4)).get(timeout=ANSWER_S)
    wait_until(lambda: status_of(system, "t") == FAILED)
    handler.fail.clear()

    outcome = system.requeue_async("t").get(timeout=ANSWER_S)

    assert outcome.task is not None
    assert (outcome.task.status, outcome.task.attempts) == (QUEUED, 0)
    assert outcome.task.last_error == "RuntimeError: t fails"  # kept until the next attempt
    assert outcome.task.priority == 4
    wait_until(lambda: status_of(system, "t") == DONE)
    done = system.get_async("t").get(timeout=ANSWER_S)
    assert done is not None and done.attempts == 1
    assert handler.runs == ["t", "t", "t"]


def test_a_cancelled_task_can_be_retried_by_hand(start: Callable[..., TaskSystem]) -> None:
    system, gate, handler = blocked(start)
    system.submit_async(task("t")).get(timeout=ANSWER_S)
    system.cancel_async("t").get(timeout=ANSWER_S)

    assert system.requeue_async("t").get(timeout=ANSWER_S).task is not None
    gate.open()
    wait_until(lambda: status_of(system, "t") == DONE)
    assert handler.runs.count("t") == 1


def test_only_failed_or_cancelled_tasks_can_be_retried(start: Callable[..., TaskSystem]) -> None:
    system, gate, _ = blocked(start)
    system.submit_async(task("waiting")).get(timeout=ANSWER_S)

    assert system.requeue_async("blocker").get(timeout=ANSWER_S).conflict == (
        "task is running; only a failed or cancelled task can be retried"
    )
    assert system.requeue_async("waiting").get(timeout=ANSWER_S).conflict is not None
    assert system.requeue_async("nobody").get(timeout=ANSWER_S) == (None, None, None)
    gate.open()
    wait_until(lambda: status_of(system, "waiting") == DONE)
    assert system.requeue_async("waiting").get(timeout=ANSWER_S).conflict is not None
    # Refused requeues gave their reserved places back: the line still takes queue_size tasks.
    assert system.stats_async().get(timeout=ANSWER_S).waiting == 0


def test_a_retry_by_hand_is_refused_by_a_full_line_and_after_shutdown_began(
    start: Callable[..., TaskSystem],
) -> None:
    system, gate, _ = blocked(start, queue_size=1)
    system.submit_async(task("dropped")).get(timeout=ANSWER_S)
    system.cancel_async("dropped").get(timeout=ANSWER_S)
    system.submit_async(task("fills")).get(timeout=ANSWER_S)

    assert system.requeue_async("dropped").get(timeout=ANSWER_S).refused is Admission.QUEUE_FULL
    assert status_of(system, "dropped") == CANCELLED
    system.begin_shutdown()
    assert system.requeue_async("dropped").get(timeout=ANSWER_S).refused is Admission.SHUTTING_DOWN
    gate.open()


# --- delete ------------------------------------------------------------------------------------


def test_delete_forgets_a_finished_task_and_its_id_can_be_used_again(
    start: Callable[..., TaskSystem],
) -> None:
    system = start(Recorder())
    for task_id in ("a", "b", "c"):
        system.submit_async(task(task_id)).get(timeout=ANSWER_S)
    wait_until(lambda: status_of(system, "c") == DONE)
    system.list_page_async(limit=1).get(
        timeout=ANSWER_S
    )  # builds the paging index, which the delete must not confuse

    assert system.delete_async("b").get(timeout=ANSWER_S).task is not None

    assert system.get_async("b").get(timeout=ANSWER_S) is None
    assert system.delete_async("b").get(timeout=ANSWER_S) == (None, None, None)
    assert system.submit_async(task("b")).get(timeout=ANSWER_S) is Admission.ACCEPTED
    wait_until(lambda: status_of(system, "b") == DONE)
    page = system.list_page_async(limit=10).get(timeout=ANSWER_S)
    assert page is not None and [t.id for t in page.tasks] == ["a", "c", "b"]
    newest = system.list_page_async(limit=10, newest_first=True).get(timeout=ANSWER_S)
    assert newest is not None and [t.id for t in newest.tasks] == ["b", "c", "a"]
    assert system.stats_async().get(timeout=ANSWER_S).tasks.done == 3


def test_an_unfinished_task_cannot_be_deleted(start: Callable[..., TaskSystem]) -> None:
    system, gate, _ = blocked(start)
    system.submit_async(task("waiting")).get(timeout=ANSWER_S)

    assert (
        system.delete_async("blocker").get(timeout=ANSWER_S).conflict
        == "task is running; only a finished task can be deleted"
    )
    assert (
        system.delete_async("waiting").get(timeout=ANSWER_S).conflict
        == "task is queued; only a finished task can be deleted"
    )
    assert status_of(system, "waiting") == QUEUED
    gate.open()


# --- batches -----------------------------------------------------------------------------------


def test_a_batch_is_stored_whole_in_input_order(start: Callable[..., TaskSystem]) -> None:
    system, gate, handler = blocked(start)
    batch = [task(f"b{n}") for n in range(5)] + [task("delayed", delay_s=3600)]

    assert system.submit_batch_async(batch).get(timeout=ANSWER_S).admission is Admission.ACCEPTED

    assert [t.id for t in all_tasks(system)] == ["blocker", "b0", "b1", "b2", "b3", "b4", "delayed"]
    stats = system.stats_async().get(timeout=ANSWER_S)
    assert (stats.waiting, stats.scheduled, stats.totals.enqueued) == (5, 1, 7)
    gate.open()
    wait_until(lambda: len(handler.runs) == 6)
    assert handler.runs == ["blocker", "b0", "b1", "b2", "b3", "b4"]


@pytest.mark.parametrize(
    ("ids", "position"),
    [(["new-1", "taken", "new-2"], 1), (["x", "y", "x"], 2), (["p", "p", "taken"], 1)],
)
def test_a_batch_with_a_taken_or_repeated_id_stores_nothing(
    start: Callable[..., TaskSystem], ids: list[str], position: int
) -> None:
    system, gate, _ = blocked(start)
    system.submit_async(task("taken")).get(timeout=ANSWER_S)
    before = system.stats_async().get(timeout=ANSWER_S)

    answer = system.submit_batch_async([task(task_id) for task_id in ids]).get(timeout=ANSWER_S)

    assert answer == (Admission.DUPLICATE, position)
    assert [t.id for t in all_tasks(system)] == ["blocker", "taken"]
    after = system.stats_async().get(timeout=ANSWER_S)
    assert after.waiting == before.waiting == 1
    assert after.totals.enqueued == before.totals.enqueued
    assert after.totals.rejected.duplicate == before.totals.rejected.duplicate + 1
    gate.open()


def test_a_batch_the_line_cannot_hold_stores_nothing_and_frees_its_places(
    start: Callable[..., TaskSystem],
) -> None:
    system, gate, _ = blocked(start, queue_size=3)
    system.submit_async(task("one")).get(timeout=ANSWER_S)

    assert (
        system.submit_batch_async([task(f"b{n}") for n in range(3)]).get(timeout=ANSWER_S).admission
        is Admission.QUEUE_FULL
    )
    assert system.get_async("b0").get(timeout=ANSWER_S) is None
    # Delayed tasks take no place: with room for two, two plus any delayed ones get in.
    fits = [task("c0"), task("c1"), task("c2", delay_s=3600), task("c3", delay_s=3600)]
    assert system.submit_batch_async(fits).get(timeout=ANSWER_S).admission is Admission.ACCEPTED
    assert system.submit_async(task("over")).get(timeout=ANSWER_S) is Admission.QUEUE_FULL
    gate.open()


def test_batches_are_atomic_against_concurrent_single_enqueues(
    start: Callable[..., TaskSystem],
) -> None:
    """Threads enqueue single tasks whose ids are in batches sent at the same time. Each batch
    is stored whole or not at all, and no id is ever accepted twice."""
    system = start(Recorder(), workers=2, queue_size=100_000)
    batches = [[f"id-{b}-{n}" for n in range(20)] for b in range(60)]
    # Every other batch races a single enqueue of one of its ids (a different one each time).
    contested = [batches[b][b % 20] for b in range(0, 60, 2)]
    accepted_singles: list[str] = []
    batch_answers: dict[int, tuple[Admission, int | None]] = {}
    lock = threading.Lock()
    go = threading.Barrier(5)

    def singles(share: list[str]) -> None:
        go.wait()
        for task_id in share:
            if system.submit_async(task(task_id)).get(timeout=ANSWER_S) is Admission.ACCEPTED:
                with lock:
                    accepted_singles.append(task_id)

    def send_batches() -> None:
        go.wait()
        for b, ids in enumerate(batches):
            batch_answers[b] = tuple(
                system.submit_batch_async([task(i) for i in ids]).get(timeout=ANSWER_S)
            )  # type: ignore[assignment]

    threads = [threading.Thread(target=singles, args=(contested[k::4],)) for k in range(4)]
    threads.append(threading.Thread(target=send_batches))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    stored = [t.id for t in all_tasks(system)]
    assert len(stored) == len(set(stored))
    stored_set = set(stored)
    singles_set = set(accepted_singles)
    assert singles_set <= stored_set
    from_batches: set[str] = set()
    for b, ids in enumerate(batches):
        admission, position = batch_answers[b]
        if admission is Admission.ACCEPTED:
            assert set(ids) <= stored_set, b
            assert not set(ids) & singles_set, b
            from_batches.update(ids)
        else:
            # Refused for the one id a single enqueue got first: none of the rest is stored.
            assert (admission, position) == (Admission.DUPLICATE, b % 20), b
            assert stored_set & set(ids) == {ids[b % 20]} <= singles_set, b
    assert stored_set == from_batches | singles_set
    assert len(stored) == len(from_batches) + len(singles_set)
    # Odd batches raced nobody.
    assert all(batch_answers[b][0] is Admission.ACCEPTED for b in range(1, 60, 2))
