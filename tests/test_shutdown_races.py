"""Shutdown racing the actors: a task on its way to a stopped dispatcher still gets its client an
answer and leaves no trace, and ``TaskSystem.stop()`` always returns its summary."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import msgspec
import pykka

from actors import QUEUED, Admission, MemoryStore, TaskSystem, new_task
from actors.base import Actor
from actors.dispatcher import DispatcherActor
from actors.protocol.answers import Outcome
from actors.protocol.intake import StoreAdmittedBatch, StoreAdmittedTask
from actors.protocol.reading import GetTask, ListPage
from actors.protocol.running import Save
from actors.protocol.task_actions import StoreAdmittedRequeue
from actors.reply import Reply
from actors.repository import RepositoryActor
from actors.task import FAILED
from tests.support import wait_until

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from actors import BatchAdmission, Task, TaskView

ANSWER_S = 5.0


def stopped_actor() -> pykka.ActorRef:
    """A dispatcher as shutdown leaves it: stopped, so every tell to it raises."""
    ref = Actor.start()
    ref.stop()
    return ref


def stored(repository: pykka.ActorRef, task_id: str) -> Task | None:
    found: Reply[Task | None] = Reply()
    repository.tell(GetTask(task_id, found))
    return found.get(timeout=ANSWER_S)


def test_an_insert_after_the_dispatcher_stopped_answers_shutting_down_and_leaves_no_trace() -> None:
    repository = RepositoryActor.start()
    reply: Reply[Admission] = Reply()

    repository.tell(StoreAdmittedTask(new_task("late", b"null", 0), reply, stopped_actor()))

    assert reply.get(timeout=ANSWER_S) is Admission.SHUTTING_DOWN
    assert stored(repository, "late") is None
    assert repository.is_alive()
    repository.stop()


def test_a_batch_after_the_dispatcher_stopped_answers_shutting_down_and_leaves_no_trace() -> None:
    repository = RepositoryActor.start()
    reply: Reply[BatchAdmission] = Reply()
    tasks = (new_task("a", b"null", 0), new_task("b", b"null", 0))

    repository.tell(StoreAdmittedBatch(tasks, reply, stopped_actor(), 2))

    assert reply.get(timeout=ANSWER_S).admission is Admission.SHUTTING_DOWN
    listed: Reply[Any] = Reply()
    repository.tell(ListPage(listed, None, None, None, False))
    assert list(listed.get(timeout=ANSWER_S).tasks) == []
    assert repository.is_alive()
    repository.stop()


def test_a_retry_by_hand_after_the_dispatcher_stopped_is_refused_and_the_task_kept() -> None:
    repository = RepositoryActor.start()
    repository.tell(
        Save(msgspec.structs.replace(new_task("f", b"null", 0), status=FAILED, attempts=1))
    )
    reply: Reply[Outcome] = Reply()

    repository.tell(StoreAdmittedRequeue("f", reply, stopped_actor()))

    assert reply.get(timeout=ANSWER_S) == Outcome(None, refused=Admission.SHUTTING_DOWN)
    kept = stored(repository, "f")
    assert kept is not None and kept.status == FAILED and kept.attempts == 1
    repository.stop()


class GatedStore(MemoryStore):
    """A store whose commits wait for the test to open the gate: a slow disk, on cue."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.committing = threading.Event()

    def commit(self, tasks: Sequence[Task], deleted: Collection[str] = ()) -> None:
        self.committing.set()
        if not self.gate.wait(ANSWER_S):
            raise AssertionError("the test never opened the gate")
        super().commit(tasks, deleted)


def noop(task: TaskView) -> None:
    pass


def test_stop_racing_a_durable_enqueue_answers_the_client_and_returns_its_summary() -> None:
    store = GatedStore()
    store.gate.set()  # recovery's commits, if any, pass
    system = TaskSystem.start(noop, workers=1, open_store=lambda: store)
    store.gate.clear()
    store.committing.clear()
    answer = system.submit_async(new_task("racing", b"null", 0))
    assert store.committing.wait(ANSWER_S)  # stored and being committed, its answer held
    summary: list[Any] = []
    stopping = threading.Thread(
        target=lambda: summary.append(system.stop(time.monotonic() + 2)), name="stopping"
    )
    stopping.start()
    # The dispatcher stops while the commit holds the answer; then the commit completes.
    wait_until(lambda: not pykka.ActorRegistry.get_by_class(DispatcherActor))
    store.gate.set()
    stopping.join(ANSWER_S * 3)

    assert answer.get(timeout=ANSWER_S) is Admission.SHUTTING_DOWN
    assert not stopping.is_alive()
    assert len(summary) == 1
    assert summary[0].counts.get(QUEUED, 0) == 0
    # No trace: the row committed before the answer was known is gone again.
    assert [task.id for task in store.load()] == []


class StopsThenWaits:
    """Stands in for the retry actor's ref in ``TaskSystem.stop()``: stops the real one, then
    runs ``after_stop`` before stop() goes on to the dispatcher (the window being tested)."""

    def __init__(self, ref: pykka.ActorRef, after_stop: Any) -> None:
        self._ref = ref
        self._after_stop = after_stop

    def tell(self, *args: Any, **kwargs: Any) -> Any:
        return self._ref.tell(*args, **kwargs)

    def stop(self, *args: Any, **kwargs: Any) -> Any:
        stopped = self._ref.stop(*args, **kwargs)
        self._after_stop()
        return stopped


def test_an_attempt_ending_between_the_retry_actors_stop_and_the_dispatchers_is_counted() -> None:
    started, release = threading.Event(), threading.Event()

    def fails_when_released(task: TaskView) -> None:
        started.set()
        release.wait(ANSWER_S)
        raise RuntimeError("ended after the deadline")

    system = TaskSystem.start(fails_when_released, workers=1, retry_base_ms=60_000)
    system.submit_async(new_task("late", b"null", 3)).get(timeout=ANSWER_S)
    assert started.wait(ANSWER_S)

    def attempt_ends_now() -> None:
        release.set()
        wait_until(
            lambda: (
                (task := system.get_async("late").get(timeout=ANSWER_S)) is not None
                and task.status == QUEUED
            )
        )

    system._retry = StopsThenWaits(system._retry, attempt_ends_now)  # type: ignore[assignment]
    summary = system.stop(time.monotonic() + 0.05)

    assert summary.counts[QUEUED] == 1
    assert summary.abandoned_in_line + summary.abandoned_retries == 1
    assert summary.abandoned_retries == 1
