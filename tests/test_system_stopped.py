"""An actor that stops or crashes under a running TaskSystem: every question still pending on it
(in its inbox, held back behind a commit, or on its way to it) is answered at once with
SystemStopped, never left to time out; the actors that remain live on."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pykka
import pytest

from actors import RUNNING, Admission, MemoryStore, SystemStopped, TaskSystem, new_task
from actors.dispatcher import DispatcherActor
from actors.protocol.lifecycle import WhenIdle
from actors.reply import Reply
from actors.repository import RepositoryActor
from tests.support import ANSWER_S, starting_systems, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Sequence

    from actors import Task, TaskView


class GatedStore(MemoryStore):
    """Each commit waits for the test to let it through; from commit ``raise_at`` on, a commit
    raises an error that is not a StoreError: a bug, which crashes the repository."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Semaphore(0)
        self.proceed = threading.Semaphore(0)
        self.commits = 0
        self.raise_at: int | None = None

    def commit(self, tasks: Sequence[Task], deleted: Collection[str] = ()) -> None:
        self.commits += 1
        self.entered.release()
        if not self.proceed.acquire(timeout=ANSWER_S):
            raise AssertionError("the test never let the commit through")
        if self.raise_at is not None and self.commits >= self.raise_at:
            raise RuntimeError("a bug in the store")
        super().commit(tasks, deleted)


def noop(task: TaskView) -> None:
    pass


def later(task_id: str) -> Task:
    """A task that waits a minute for its time: nothing runs (and commits) during the test."""
    return new_task(task_id, b"null", 0, delay_s=60)


@pytest.fixture
def start() -> Iterator[Callable[..., TaskSystem]]:
    yield from starting_systems()


@pytest.fixture
def store() -> Iterator[GatedStore]:
    store = GatedStore()
    yield store
    store.raise_at = None
    for _ in range(100):  # whatever is still committing at the end goes through
        store.proceed.release()


def repository_ref() -> pykka.ActorRef:
    (ref,) = pykka.ActorRegistry.get_by_class(RepositoryActor)
    return ref


def flush_dispatcher(system: TaskSystem) -> None:
    """Wait until the dispatcher has handled everything sent to it so far (and passed on what
    goes on to the repository)."""
    system.ready_async().get(timeout=ANSWER_S)


def test_a_submit_on_its_way_to_a_repository_that_stops_is_failed_at_once(
    start: Callable[..., TaskSystem], store: GatedStore
) -> None:
    system = start(noop, workers=1, open_store=lambda: store)
    first = system.submit_async(later("first"))
    assert store.entered.acquire(timeout=ANSWER_S)  # the repository is inside the commit
    stopped = repository_ref().stop(block=False)
    on_its_way = system.submit_async(later("second"))
    flush_dispatcher(system)  # its StoreAdmittedTask waits in the repository inbox, behind stop

    store.proceed.release()

    assert first.get(timeout=ANSWER_S) is Admission.ACCEPTED
    with pytest.raises(SystemStopped):
        on_its_way.get(timeout=ANSWER_S)
    stopped.get(timeout=ANSWER_S)


def test_a_submit_after_the_repository_stopped_is_failed_at_once_and_the_dispatcher_lives_on(
    start: Callable[..., TaskSystem],
) -> None:
    system = start(noop, workers=1)
    repository_ref().stop(timeout=ANSWER_S)

    for reply in (
        system.submit_async(later("a")),
        system.submit_batch_async([later("b")]),
        system.cancel_async("a"),
        system.requeue_async("a"),
    ):
        with pytest.raises(SystemStopped):
            reply.get(timeout=ANSWER_S)
    flush_dispatcher(system)


def test_reads_and_submits_held_behind_a_commit_are_failed_at_once_when_the_repository_crashes(
    start: Callable[..., TaskSystem], store: GatedStore
) -> None:
    system = start(noop, workers=1, open_store=lambda: store)
    first = system.submit_async(later("first"))
    assert store.entered.acquire(timeout=ANSWER_S)
    # Behind the commit, in this order: stored (staged), read (held for the next commit, not
    # the message being handled when it fails), stored again; that next commit raises.
    second = system.submit_async(later("second"))
    flush_dispatcher(system)
    read = system.get_async("first")
    third = system.submit_async(later("third"))
    flush_dispatcher(system)
    store.raise_at = 2

    store.proceed.release()
    assert first.get(timeout=ANSWER_S) is Admission.ACCEPTED
    assert store.entered.acquire(timeout=ANSWER_S)
    store.proceed.release()

    for reply in (second, read, third):
        with pytest.raises(SystemStopped):
            reply.get(timeout=ANSWER_S)
    later_read = system.get_async("first")
    with pytest.raises(SystemStopped):
        later_read.get(timeout=ANSWER_S)


def test_stop_after_the_repository_crashed_returns_at_once_naming_it(
    start: Callable[..., TaskSystem], store: GatedStore
) -> None:
    system = start(noop, workers=1, open_store=lambda: store)
    store.raise_at = 1
    crashed = system.submit_async(later("first"))
    store.proceed.release()
    with pytest.raises(SystemStopped):
        crashed.get(timeout=ANSWER_S)

    summary = system.stop(time.monotonic() + ANSWER_S)

    assert summary.unanswered == ("repository",)
    assert summary.drained


def test_a_wait_for_idle_workers_is_failed_at_once_when_the_dispatcher_stops(
    start: Callable[..., TaskSystem],
) -> None:
    release = threading.Event()
    system = start(lambda task: release.wait(ANSWER_S), workers=1)
    system.submit_async(new_task("running", b"null", 0)).get(timeout=ANSWER_S)
    wait_until(
        lambda: (
            (task := system.get_async("running").get(timeout=ANSWER_S)) and task.status == RUNNING
        )
    )
    (dispatcher,) = pykka.ActorRegistry.get_by_class(DispatcherActor)
    idle: Reply[None] = Reply()
    dispatcher.tell(WhenIdle(idle))

    dispatcher.stop(timeout=ANSWER_S)

    with pytest.raises(SystemStopped):
        idle.get(timeout=ANSWER_S)
    release.set()
