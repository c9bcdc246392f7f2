"""RepositoryActor on its own: insert, refuse duplicates, hand out snapshots in creation order;
over a durable store, answer nothing before the change it shows is committed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pykka
import pytest

from actors import group_commit as group_commit_module
from actors import outage as outage_module
from actors.group_commit import BATCH_CAP
from actors.paging import Page
from actors.protocol.answers import Admission, BatchAdmission, Outcome, Stock
from actors.protocol.intake import (
    AnswerRefusal,
    PlacesReleased,
    StoreAdmittedBatch,
    StoreAdmittedTask,
    TaskStored,
)
from actors.protocol.lifecycle import Recover, StoreAvailability, TakeStock, WatchStore
from actors.protocol.reading import GetRepositoryStats, GetTask, ListPage
from actors.protocol.running import Save
from actors.protocol.task_actions import StoreAdmittedRequeue
from actors.reply import Reply
from actors.repository import RepositoryActor
from actors.sqlite_store import SqliteStore
from actors.stats import StatusCounts, TaskCounts
from actors.store import MemoryStore, Store, StoreError
from actors.task import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Task, new_task
from tests.support import FlakyStore, ask, wait_until

TIMEOUT_S = 5.0


class TellRecorder:
    """Stands in for the dispatcher's ref: records each message and whether the reply was set."""

    def __init__(self) -> None:
        self.told: list[object] = []
        self.reply_was_set: list[bool] = []
        self.watched: Reply[Admission] | None = None
        self._lock = threading.Lock()

    def tell(self, message: object) -> None:
        with self._lock:
            self.told.append(message)
            self.reply_was_set.append(self.watched is not None and _is_set(self.watched))


def _is_set(reply: Reply[Admission]) -> bool:
    try:
        reply.get(timeout=0)
    except pykka.Timeout:
        return False
    return True


@pytest.fixture
def repository() -> Iterator[pykka.ActorRef]:
    ref = RepositoryActor.start()
    yield ref
    ref.stop()


def get(repository: pykka.ActorRef, task_id: str) -> Task | None:
    reply: Reply[Task | None] = Reply()
    repository.tell(GetTask(task_id, reply))
    return reply.get(timeout=TIMEOUT_S)


def list_all(repository: pykka.ActorRef) -> list[Task]:
    page = ask(repository, ListPage, TIMEOUT_S)
    assert page is not None
    return page.tasks


def insert(
    repository: pykka.ActorRef, task: Task, dispatcher: TellRecorder | None = None
) -> Admission:
    dispatcher = dispatcher or TellRecorder()
    reply: Reply[Admission] = Reply()
    dispatcher.watched = reply
    repository.tell(StoreAdmittedTask(task, reply, dispatcher))  # type: ignore[arg-type]
    return reply.get(timeout=TIMEOUT_S)


def test_an_inserted_task_is_accepted_and_found(repository: pykka.ActorRef) -> None:
    task = new_task("task-1", b'"data"', max_retries=3)

    assert insert(repository, task) is Admission.ACCEPTED
    assert get(repository, "task-1") == task


def test_an_unknown_id_is_answered_with_none(repository: pykka.ActorRef) -> None:
    assert get(repository, "nobody") is None


def test_the_dispatcher_hears_of_an_insert_before_the_client_gets_its_answer(
    repository: pykka.ActorRef,
) -> None:
    dispatcher = TellRecorder()
    task = new_task("task-1", b"null", max_retries=3)

    insert(repository, task, dispatcher)

    assert dispatcher.told == [TaskStored(task)]
    assert dispatcher.reply_was_set == [False]


def test_a_duplicate_id_is_refused_and_the_stored_task_is_unchanged(
    repository: pykka.ActorRef,
) -> None:
    original = new_task("task-1", b'"first"', max_retries=3)
    impostor = new_task("task-1", b'"second"', max_retries=7)
    insert(repository, original)
    dispatcher = TellRecorder()

    assert insert(repository, impostor, dispatcher) is Admission.DUPLICATE

    assert dispatcher.told == [PlacesReleased(("default",))]
    assert dispatcher.reply_was_set == [False]
    assert get(repository, "task-1") == original
    assert list_all(repository) == [original]


def test_a_save_replaces_the_state_of_a_task(repository: pykka.ActorRef) -> None:
    task = new_task("task-1", b"null", max_retries=3)
    insert(repository, task)
    running = msgspec.structs.replace(task, status=RUNNING, attempts=1)

    repository.tell(Save(running))

    assert get(repository, "task-1") == running


def test_tasks_are_listed_in_creation_order_even_after_updates(
    repository: pykka.ActorRef,
) -> None:
    ids = [f"task-{n}" for n in (3, 1, 2, 0)]
    for n, task_id in enumerate(ids):
        insert(repository, new_task(task_id, b"null", max_retries=1, now=1_000.0 + n))

    for n, task_id in enumerate(reversed(ids)):
        updated = new_task(task_id, b"null", max_retries=1, now=2_000.0 + n)
        repository.tell(Save(msgspec.structs.replace(updated, status=DONE, attempts=1)))
    listed = list_all(repository)

    assert [task.id for task in listed] == ids
    assert all(task.status == DONE for task in listed)


def test_a_listing_is_a_snapshot_that_later_changes_do_not_touch(
    repository: pykka.ActorRef,
) -> None:
    task = new_task("task-1", b"null", max_retries=3)
    insert(repository, task)
    listing = list_all(repository)

    repository.tell(Save(msgspec.structs.replace(task, status=DONE, attempts=1)))
    insert(repository, new_task("task-2", b"null", max_retries=3))

    assert listing == [task]
    assert listing[0].status == QUEUED


def test_changing_a_listing_does_not_change_the_repository(repository: pykka.ActorRef) -> None:
    task = new_task("task-1", b"null", max_retries=3)
    insert(repository, task)

    listing = list_all(repository)
    listing.clear()
    listing.append(new_task("intruder", b"null", max_retries=0))

    assert list_all(repository) == [task]


def test_a_task_handed_out_cannot_be_changed_in_place(repository: pykka.ActorRef) -> None:
    insert(repository, new_task("task-1", b"null", max_retries=3))
    handed_out = get(repository, "task-1")
    assert handed_out is not None

    with pytest.raises(AttributeError):
        handed_out.status = DONE  # type: ignore[misc]

    assert get(repository, "task-1") == handed_out
    assert handed_out.status == QUEUED


def test_counts_cover_every_status_including_empty_ones(repository: pykka.ActorRef) -> None:
    base = new_task("a", b"null", max_retries=0)
    for task_id, status in [("a", QUEUED), ("b", DONE), ("c", DONE), ("d", FAILED)]:
        repository.tell(Save(msgspec.structs.replace(base, id=task_id, status=status)))

    counts = ask(repository, TakeStock, TIMEOUT_S).counts

    assert counts == {QUEUED: 1, RUNNING: 0, DONE: 2, FAILED: 1, CANCELLED: 0}


@pytest.mark.parametrize("reason", [Admission.QUEUE_FULL, Admission.SHUTTING_DOWN])
def test_a_refusal_of_a_new_id_answers_the_dispatchers_reason_and_stores_nothing(
    repository: pykka.ActorRef, reason: Admission
) -> None:
    reply: Reply[Admission] = Reply()
    repository.tell(AnswerRefusal("task-1", reply, reason))

    assert reply.get(timeout=TIMEOUT_S) is reason
    assert get(repository, "task-1") is None
    assert list_all(repository) == []


@pytest.mark.parametrize("reason", [Admission.QUEUE_FULL, Admission.SHUTTING_DOWN])
def test_a_refusal_of_a_known_id_answers_duplicate(
    repository: pykka.ActorRef, reason: Admission
) -> None:
    original = new_task("task-1", b'"first"', max_retries=3)
    insert(repository, original)
    reply: Reply[Admission] = Reply()

    repository.tell(AnswerRefusal("task-1", reply, reason))

    assert reply.get(timeout=TIMEOUT_S) is Admission.DUPLICATE
    assert list_all(repository) == [original]


# --- over a durable store: group commit, nothing shown before it is committed ------------------


class GatedStore:
    """A store whose every commit waits for the test's say-so, around a real store.

    ``entered`` is released as each commit begins and ``proceed`` is what the commit waits for,
    so a test can look at the world while a commit is stuck in the middle.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.entered = threading.Semaphore(0)
        self.proceed = threading.Semaphore(0)
        self.batches: list[list[str]] = []
        self.threads: set[int] = {threading.get_ident()}
        self.closed = False

    def load(self) -> list[Task]:
        return self.inner.load()

    def commit(self, tasks: Sequence[Task], deleted: Collection[str] = ()) -> None:
        self.threads.add(threading.get_ident())
        self.entered.release()
        assert self.proceed.acquire(timeout=TIMEOUT_S), "the test never let the commit proceed"
        self.inner.commit(tasks)
        self.batches.append([task.id for task in tasks])

    def close(self) -> None:
        self.threads.add(threading.get_ident())
        self.closed = True
        self.inner.close()

    def check(self) -> None:
        self.inner.check()

    def wait_entered(self) -> None:
        assert self.entered.acquire(timeout=TIMEOUT_S), "no commit began"


def store_heard(dispatcher: TellRecorder) -> list[bool]:
    """What the dispatcher was told of the store, in order: available or not."""
    # Not ``in told``: a NamedTuple equals any other of equal fields, PlacesReleased(1) included.
    return [m.available for m in dispatcher.told if isinstance(m, StoreAvailability)]


def flaky_repository(store: FlakyStore) -> tuple[pykka.ActorRef, TellRecorder]:
    """A repository over ``store``, recovered, telling a recorder of the store's ups and downs."""
    repository = RepositoryActor.start(lambda: store)
    ask(repository, Recover, TIMEOUT_S)
    dispatcher = TellRecorder()
    repository.tell(WatchStore(dispatcher))  # type: ignore[arg-type]
    return repository, dispatcher


def reply_is_set(reply: Reply[Any]) -> bool:
    try:
        reply.get(timeout=0)
    except pykka.Timeout:
        return False
    return True


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[pykka.ActorRef, GatedStore]]:
    """A repository over a gated SqliteStore, opened (and recovered from) on its own thread."""
    stores: list[GatedStore] = []

    def open_store() -> GatedStore:
        stores.append(GatedStore(SqliteStore.open(tmp_path / "tasks.db")))
        return stores[0]

    ref = RepositoryActor.start(open_store)
    assert ask(ref, Recover, TIMEOUT_S) == ()
    yield ref, stores[0]
    ref.stop(block=False)
    for _ in range(BATCH_CAP):  # let any commit still waiting through
        stores[0].proceed.release()


def test_the_store_is_opened_and_used_only_on_the_repository_thread(
    gated: tuple[pykka.ActorRef, GatedStore],
) -> None:
    repository, store = gated
    store.proceed.release()
    insert(repository, new_task("task-1", b"null", max_retries=3))
    repository.stop()

    assert store.closed
    assert len(store.threads) == 1
    assert store.threads != {threading.get_ident()}


def test_no_answer_leaves_before_the_commit_of_what_it_answers(
    gated: tuple[pykka.ActorRef, GatedStore],
) -> None:
    repository, store = gated
    dispatcher = TellRecorder()
    task = new_task("task-1", b'"data"', max_retries=3)
    reply: Reply[Admission] = Reply()
    dispatcher.watched = reply

    repository.tell(StoreAdmittedTask(task, reply, dispatcher))  # type: ignore[arg-type]
    store.wait_entered()

    assert not reply_is_set(reply)
    assert dispatcher.told == []
    store.proceed.release()
    assert reply.get(timeout=TIMEOUT_S) is Admission.ACCEPTED
    assert dispatcher.told == [TaskStored(task)]
    assert dispatcher.reply_was_set == [False]
    assert store.batches == [["task-1"]]


def test_a_read_that_sees_an_uncommitted_change_waits_for_its_commit(
    gated: tuple[pykka.ActorRef, GatedStore],
) -> None:
    repository, store = gated
    first = new_task("first", b"null", max_retries=3)
    repository.tell(Save(first))
    store.wait_entered()
    # Both wait in the inbox behind the stuck commit, so the read is handled with the change
    # staged and not yet committed.
    running = msgspec.structs.replace(first, status=RUNNING, attempts=1)
    repository.tell(Save(running))
    read: Reply[Task | None] = Reply()
    repository.tell(GetTask("first", read))
    store.proceed.release()
    store.wait_entered()

    assert not reply_is_set(read)
    store.proceed.release()
    assert read.get(timeout=TIMEOUT_S) == running
    assert store.batches == [["first"], ["first"]]


def test_a_read_with_nothing_staged_is_answered_at_once(
    gated: tuple[pykka.ActorRef, GatedStore],
) -> None:
    repository, store = gated
    store.proceed.release()
    insert(repository, new_task("task-1", b"null", max_retries=3))

    assert get(repository, "task-1") is not None
    assert [task.id for task in list_all(repository)] == ["task-1"]
    assert store.batches == [["task-1"]]


def test_changes_that_arrive_together_share_one_commit_and_answers_keep_their_order(
    gated: tuple[pykka.ActorRef, GatedStore],
) -> None:
    repository, store = gated
    repository.tell(Save(new_task("opener", b"null", max_retries=0)))
    store.wait_entered()
    dispatcher = TellRecorder()
    replies: list[Reply[Admission]] = []
    for n in range(10):
        replies.append(Reply())
        task = new_task(f"task-{n}", b"null", max_retries=0)
        repository.tell(StoreAdmittedTask(task, replies[-1], dispatcher))  # type: ignore[arg-type]
    duplicate: Reply[Admission] = Reply()
    repository.tell(StoreAdmittedTask(new_task("task-3", b"1", 0), duplicate, dispatcher))  # type: ignore[arg-type]
    store.proceed.release()
    store.wait_entered()

    assert dispatcher.told == []
    assert not any(reply_is_set(reply) for reply in [*replies, duplicate])
    store.proceed.release()
    assert [reply.get(timeout=TIMEOUT_S) for reply in replies] == [Admission.ACCEPTED] * 10
    assert duplicate.get(timeout=TIMEOUT_S) is Admission.DUPLICATE
    assert store.batches == [["opener"], [f"task-{n}" for n in range(10)]]
    assert [type(message) for message in dispatcher.told] == [TaskStored] * 10 + [PlacesReleased]


def test_a_steady_stream_of_changes_is_committed_at_least_every_batch_cap(
    gated: tuple[pykka.ActorRef, GatedStore],
) -> None:
    repository, store = gated
    repository.tell(Save(new_task("opener", b"null", max_retries=0)))
    store.wait_entered()
    for n in range(BATCH_CAP + 10):
        repository.tell(Save(new_task(f"task-{n}", b"null", max_retries=0)))
    for _ in range(3):
        store.proceed.release()
    ask(repository, ListPage, TIMEOUT_S)

    assert [len(batch) for batch in store.batches] == [1, BATCH_CAP, 10]


def test_counts_asked_at_shutdown_are_of_committed_tasks(
    gated: tuple[pykka.ActorRef, GatedStore],
) -> None:
    repository, store = gated
    task = new_task("task-1", b"null", max_retries=0)
    repository.tell(Save(task))
    store.wait_entered()
    repository.tell(Save(msgspec.structs.replace(task, status=DONE, attempts=1)))
    stock: Reply[Stock] = Reply()
    repository.tell(TakeStock(stock))
    # Something behind the question, so the inbox is not empty when it is answered.
    repository.tell(Save(new_task("task-2", b"null", max_retries=0)))
    store.proceed.release()
    store.wait_entered()

    # Held back like any answer, until the commit of what it counts (and what came after).
    with pytest.raises(pykka.Timeout):
        stock.get(timeout=0.05)
    store.proceed.release()
    assert stock.get(timeout=TIMEOUT_S).counts[DONE] == 1
    assert store.batches == [["task-1"], ["task-1", "task-2"]]


def test_stopping_commits_what_is_staged_then_closes_the_store(
    gated: tuple[pykka.ActorRef, GatedStore], tmp_path: Path
) -> None:
    repository, store = gated
    repository.tell(Save(new_task("first", b"null", max_retries=0)))
    store.wait_entered()
    repository.tell(Save(new_task("last", b"null", max_retries=0)))
    # The stop waits in the inbox behind "last", so the inbox is not empty when it is staged.
    repository.stop(block=False)
    store.proceed.release()
    store.proceed.release()
    wait_until(lambda: store.closed, TIMEOUT_S)

    assert store.batches == [["first"], ["last"]]
    reopened = SqliteStore.open(tmp_path / "tasks.db")
    assert [task.id for task in reopened.load()] == ["first", "last"]
    reopened.close()


def test_a_store_that_cannot_be_opened_is_reported_to_the_asker() -> None:
    def refuse() -> Store:
        raise StoreError("is not an SQLite database")

    repository = RepositoryActor.start(refuse)

    found = ask(repository, Recover, TIMEOUT_S)

    assert isinstance(found, StoreError)
    assert str(found) == "is not an SQLite database"


def test_recover_loads_every_stored_task_in_creation_order() -> None:
    store = MemoryStore()
    tasks = [new_task(f"task-{n}", b"null", max_retries=0, now=float(n)) for n in range(3)]
    store.commit(tasks)
    repository = RepositoryActor.start(lambda: store)

    assert ask(repository, Recover, TIMEOUT_S) == tuple(tasks)
    assert list_all(repository) == tasks
    assert insert(repository, new_task("task-1", b"1", max_retries=0)) is Admission.DUPLICATE


def test_a_commit_that_fails_refuses_the_insert_it_held_at_once_and_leaves_no_trace() -> None:
    store = FlakyStore()
    repository, dispatcher = flaky_repository(store)
    store.full.set()

    answer = insert(repository, new_task("task-1", b"null", 0), dispatcher)

    assert answer is Admission.STORE_UNAVAILABLE
    assert repository.is_alive()
    assert get(repository, "task-1") is None
    assert dispatcher.told == [StoreAvailability(False), PlacesReleased(("default",))]
    stats = repository_stats(repository)
    assert (stats.enqueued, stats.rejected.store_unavailable) == (0, 1)
    assert stats.tasks.queued == 0


def test_while_the_store_is_down_new_work_is_refused_at_once_and_reads_answer() -> None:
    store = FlakyStore()
    repository, dispatcher = flaky_repository(store)
    accepted = new_task("accepted", b"null", 0)
    assert insert(repository, accepted, dispatcher) is Admission.ACCEPTED
    store.full.set()
    running = msgspec.structs.replace(accepted, status=RUNNING, attempts=1)
    repository.tell(Save(running))

    assert insert(repository, new_task("first", b"null", 0)) is Admission.STORE_UNAVAILABLE
    assert insert(repository, new_task("second", b"null", 0)) is Admission.STORE_UNAVAILABLE
    assert get(repository, "accepted") == running
    assert list_all(repository) == [running]
    assert store.load() == [accepted]


def test_changes_made_while_the_store_is_down_are_written_once_it_is_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outage_module, "STORE_RETRY_MAX_MS", 10)
    store = FlakyStore()
    repository, dispatcher = flaky_repository(store)
    accepted = new_task("accepted", b"null", 0)
    insert(repository, accepted, dispatcher)
    store.full.set()
    done = msgspec.structs.replace(accepted, status=DONE, attempts=1)
    repository.tell(Save(done))
    assert insert(repository, new_task("refused", b"null", 0)) is Admission.STORE_UNAVAILABLE
    wait_until(lambda: store.checks >= 3, TIMEOUT_S)

    store.full.clear()

    wait_until(lambda: store.load() == [done], TIMEOUT_S)
    wait_until(lambda: store_heard(dispatcher) == [False, True], TIMEOUT_S)
    assert insert(repository, new_task("after", b"null", 0)) is Admission.ACCEPTED
    assert [task.id for task in store.load()] == ["accepted", "after"]


def test_a_task_refused_after_its_commit_reached_the_store_is_deleted_from_it_when_it_is_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outage_module, "STORE_RETRY_MAX_MS", 10)
    store = FlakyStore()
    repository, dispatcher = flaky_repository(store)
    store.written_then_lost.set()

    assert insert(repository, new_task("refused", b"null", 0)) is Admission.STORE_UNAVAILABLE
    assert [task.id for task in store.load()] == ["refused"]
    store.written_then_lost.clear()

    wait_until(lambda: store_heard(dispatcher) == [False, True], TIMEOUT_S)
    assert store.load() == []


class HeldUpStore(FlakyStore):
    """A FlakyStore whose first commit waits for ``go``: what arrives meanwhile is one batch."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go = threading.Event()

    def commit(self, tasks: Sequence[Task], deleted: Collection[str] = ()) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.go.wait(TIMEOUT_S)
            MemoryStore.commit(self, tasks, deleted)  # the first one succeeds, whatever follows
            return
        super().commit(tasks, deleted)


def test_reads_held_for_a_commit_that_fails_never_show_the_work_it_refused() -> None:
    store = HeldUpStore()
    repository, dispatcher = flaky_repository(store)
    first = Reply[Admission]()
    repository.tell(StoreAdmittedTask(new_task("a", b"null", 0), first, dispatcher))  # type: ignore[arg-type]
    assert store.entered.wait(TIMEOUT_S)
    # Behind the commit of "a", in one batch: "b" inserted, then read about, then the commit.
    refused, found = Reply[Admission](), Reply[Task | None]()
    page, stats = Reply[Page | None](), Reply[TaskCounts]()
    repository.tell(StoreAdmittedTask(new_task("b", b"null", 0), refused, dispatcher))  # type: ignore[arg-type]
    repository.tell(GetTask("b", found))
    repository.tell(ListPage(page))
    repository.tell(GetRepositoryStats(stats))
    store.full.set()
    store.go.set()

    assert first.get(timeout=TIMEOUT_S) is Admission.ACCEPTED
    assert refused.get(timeout=TIMEOUT_S) is Admission.STORE_UNAVAILABLE
    assert found.get(timeout=TIMEOUT_S) is None
    shown = page.get(timeout=TIMEOUT_S)
    assert shown is not None
    assert [task.id for task in shown.tasks] == ["a"]
    assert stats.get(timeout=TIMEOUT_S).tasks.queued == 1


def test_a_store_that_fails_with_nothing_to_write_is_checked_until_it_is_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outage_module, "STORE_RETRY_MAX_MS", 10)
    store = FlakyStore()
    repository, dispatcher = flaky_repository(store)
    store.full.set()
    assert insert(repository, new_task("refused", b"null", 0)) is Admission.STORE_UNAVAILABLE
    wait_until(lambda: store.checks >= 3, TIMEOUT_S)

    store.full.clear()

    wait_until(lambda: store_heard(dispatcher) == [False, True], TIMEOUT_S)
    assert insert(repository, new_task("after", b"null", 0)) is Admission.ACCEPTED


def test_a_store_failure_is_logged_critical_once_however_often_the_retries_fail(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(outage_module, "STORE_RETRY_MAX_MS", 1)
    store = FlakyStore()
    repository, dispatcher = flaky_repository(store)
    store.full.set()

    insert(repository, new_task("refused", b"null", 0), dispatcher)
    wait_until(lambda: store.checks >= 10, TIMEOUT_S)
    store.full.clear()
    wait_until(lambda: store_heard(dispatcher) == [False, True], TIMEOUT_S)

    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1, critical
    assert "database or disk is full" in critical[0].getMessage()
    assert any("available again" in r.getMessage() for r in caplog.records)


def test_a_retry_by_hand_whose_commit_fails_is_refused_and_the_task_stays_failed() -> None:
    store = FlakyStore()
    failed = msgspec.structs.replace(new_task("t", b"null", 0), status=FAILED, attempts=1)
    store.commit([failed])
    repository, dispatcher = flaky_repository(store)
    store.full.set()
    reply: Reply[Outcome] = Reply()

    repository.tell(StoreAdmittedRequeue("t", reply, dispatcher))  # type: ignore[arg-type]

    assert reply.get(timeout=TIMEOUT_S) == Outcome(None, refused=Admission.STORE_UNAVAILABLE)
    assert get(repository, "t") == failed
    assert dispatcher.told == [StoreAvailability(False), PlacesReleased(("default",))]
    assert repository_stats(repository).tasks.failed == 1


def test_a_batch_whose_commit_fails_is_refused_whole_and_leaves_no_trace() -> None:
    store = FlakyStore()
    repository, dispatcher = flaky_repository(store)
    store.full.set()
    reply: Reply[BatchAdmission] = Reply()
    tasks = (new_task("a", b"null", 0), new_task("b", b"null", 0))

    repository.tell(StoreAdmittedBatch(tasks, reply, dispatcher, 2))  # type: ignore[arg-type]

    assert reply.get(timeout=TIMEOUT_S) == BatchAdmission(Admission.STORE_UNAVAILABLE)
    assert list_all(repository) == []
    assert dispatcher.told == [StoreAvailability(False), PlacesReleased(2)]


def test_without_a_store_nothing_is_held_back(repository: pykka.ActorRef) -> None:
    assert ask(repository, Recover, TIMEOUT_S) == ()
    dispatcher = TellRecorder()

    assert insert(repository, new_task("task-1", b"null", 0), dispatcher) is Admission.ACCEPTED
    assert len(dispatcher.told) == 1


def test_a_change_nobody_waits_on_shares_the_next_commit(
    gated: tuple[pykka.ActorRef, GatedStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit_module, "COMMIT_DELAY_S", 60.0)
    repository, store = gated
    store.proceed.release()
    repository.tell(Save(new_task("running", b"null", max_retries=0)))

    insert(repository, new_task("inserted", b"null", max_retries=0))

    assert store.batches == [["running", "inserted"]]


def test_a_change_nobody_waits_on_is_committed_after_the_commit_delay(
    gated: tuple[pykka.ActorRef, GatedStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit_module, "COMMIT_DELAY_S", 0.01)
    repository, store = gated
    store.proceed.release()

    repository.tell(Save(new_task("done", b"null", max_retries=0)))

    wait_until(lambda: store.batches == [["done"]], TIMEOUT_S)


# --- stats --------------------------------------------------------------------------------------


def repository_stats(repository: pykka.ActorRef) -> TaskCounts:
    reply: Reply[TaskCounts] = Reply()
    repository.tell(GetRepositoryStats(reply))
    return reply.get(timeout=TIMEOUT_S)


def test_stats_count_tasks_per_status_as_they_change(repository: pykka.ActorRef) -> None:
    first, second = new_task("a", b"null", 3), new_task("b", b"null", 3)
    insert(repository, first)
    insert(repository, second)
    repository.tell(Save(msgspec.structs.replace(first, status=RUNNING)))
    repository.tell(Save(msgspec.structs.replace(first, status=DONE)))
    repository.tell(Save(msgspec.structs.replace(second, status=FAILED)))
    repository.tell(Save(new_task("saved-only", b"null", 3)))

    counts = repository_stats(repository).tasks

    assert counts == StatusCounts(queued=1, running=0, done=1, failed=1, cancelled=0)
    assert counts == StatusCounts(**ask(repository, TakeStock, TIMEOUT_S).counts)


def test_stats_count_every_intake_answer_by_how_it_ended(repository: pykka.ActorRef) -> None:
    insert(repository, new_task("a", b"null", 3))
    insert(repository, new_task("b", b"null", 3))
    insert(repository, new_task("a", b"null", 3))  # duplicate on insert
    for task_id, reason in [
        ("a", Admission.QUEUE_FULL),  # known id: a duplicate, not a refusal for room
        ("c", Admission.QUEUE_FULL),
        ("d", Admission.QUEUE_FULL),
        ("e", Admission.SHUTTING_DOWN),
    ]:
        reply: Reply[Admission] = Reply()
        repository.tell(AnswerRefusal(task_id, reply, reason))

    stats = repository_stats(repository)

    refused = stats.rejected
    assert (stats.enqueued, refused.duplicate, refused.full, refused.shutting_down) == (2, 2, 2, 1)


def test_stats_count_the_recovered_tasks_per_status() -> None:
    store = MemoryStore()
    base = new_task("a", b"null", 3)
    store.commit(
        [
            msgspec.structs.replace(base, id=i, status=s)
            for i, s in [("a", DONE), ("b", QUEUED), ("c", DONE)]
        ]
    )
    repository = RepositoryActor.start(lambda: store)
    ask(repository, Recover, TIMEOUT_S)

    stats = repository_stats(repository)

    assert stats.tasks == StatusCounts(queued=1, running=0, done=2, failed=0, cancelled=0)
    assert stats.enqueued == 0


# --- pages: ListPage ---------------------------------------------------------------------------


def list_page(
    repository: pykka.ActorRef,
    *,
    status: str | None = None,
    limit: int | None = None,
    after: str | None = None,
) -> Page | None:
    reply: Reply[Page | None] = Reply()
    repository.tell(ListPage(reply, status, limit, after))
    return reply.get(timeout=TIMEOUT_S)


def insert_many(repository: pykka.ActorRef, ids: Sequence[str]) -> None:
    for n, task_id in enumerate(ids):
        insert(repository, new_task(task_id, b"null", max_retries=1, now=1_000.0 + n))


def test_a_page_without_conditions_is_every_task_in_creation_order(
    repository: pykka.ActorRef,
) -> None:
    insert_many(repository, ["c", "a", "b"])

    page = list_page(repository)

    assert page == Page(list_all(repository), more=False)


def test_pages_of_a_limit_follow_each_other_in_creation_order(
    repository: pykka.ActorRef,
) -> None:
    ids = [f"task-{n}" for n in (5, 3, 1, 4, 0, 2, 6)]
    insert_many(repository, ids)

    first = list_page(repository, limit=3)
    second = list_page(repository, limit=3, after="task-1")
    last = list_page(repository, limit=3, after="task-2")

    assert first is not None and second is not None and last is not None
    assert ([t.id for t in first.tasks], first.more) == (ids[0:3], True)
    assert ([t.id for t in second.tasks], second.more) == (ids[3:6], True)
    assert ([t.id for t in last.tasks], last.more) == (ids[6:], False)


def test_a_page_that_ends_exactly_at_the_last_task_says_nothing_more_follows(
    repository: pykka.ActorRef,
) -> None:
    insert_many(repository, ["a", "b", "c", "d"])

    page = list_page(repository, limit=2, after="b")

    assert page is not None
    assert ([t.id for t in page.tasks], page.more) == (["c", "d"], False)


def test_a_page_after_the_last_task_is_empty(repository: pykka.ActorRef) -> None:
    insert_many(repository, ["a", "b"])

    assert list_page(repository, limit=5, after="b") == Page([], more=False)


def test_a_page_filters_by_status_and_says_more_only_if_a_match_follows(
    repository: pykka.ActorRef,
) -> None:
    ids = [f"t{n}" for n in range(8)]
    insert_many(repository, ids)
    for task_id in ("t1", "t4", "t5"):
        task = get(repository, task_id)
        assert task is not None
        repository.tell(Save(msgspec.structs.replace(task, status=DONE, attempts=1)))

    first = list_page(repository, status=DONE, limit=2)
    second = list_page(repository, status=DONE, limit=2, after="t4")
    queued = list_page(repository, status=QUEUED, after="t4")

    assert first is not None and second is not None and queued is not None
    assert ([t.id for t in first.tasks], first.more) == (["t1", "t4"], True)
    assert ([t.id for t in second.tasks], second.more) == (["t5"], False)
    assert [t.id for t in queued.tasks] == ["t6", "t7"]
    assert all(t.status == DONE for t in first.tasks + second.tasks)


def test_a_page_after_an_unknown_id_is_answered_with_none(repository: pykka.ActorRef) -> None:
    insert_many(repository, ["a"])

    assert list_page(repository, after="nobody") is None
    assert list_page(repository, limit=1, after="A") is None


def test_pages_see_tasks_inserted_after_an_earlier_page(repository: pykka.ActorRef) -> None:
    insert_many(repository, ["a", "b"])
    assert list_page(repository, limit=2) == Page(list_all(repository), more=False)

    insert(repository, new_task("c", b"null", max_retries=1))
    insert(repository, new_task("d", b"null", max_retries=1))
    page = list_page(repository, limit=1, after="b")

    assert page is not None
    assert ([t.id for t in page.tasks], page.more) == (["c"], True)


def test_pages_cover_the_tasks_recovered_from_the_store() -> None:
    store = MemoryStore()
    store.commit([new_task(f"old-{n}", b"null", max_retries=1, now=float(n)) for n in range(3)])
    repository = RepositoryActor.start(lambda: store)
    try:
        assert len(ask(repository, Recover, TIMEOUT_S)) == 3
        insert(repository, new_task("new", b"null", max_retries=1))

        page = list_page(repository, limit=2, after="old-1")
    finally:
        repository.stop()

    assert page is not None
    assert ([t.id for t in page.tasks], page.more) == (["old-2", "new"], False)


def test_a_page_that_sees_an_uncommitted_change_waits_for_its_commit(
    gated: tuple[pykka.ActorRef, GatedStore],
) -> None:
    repository, store = gated
    first = new_task("first", b"null", max_retries=3)
    repository.tell(Save(first))
    store.wait_entered()
    running = msgspec.structs.replace(first, status=RUNNING, attempts=1)
    repository.tell(Save(running))
    read: Reply[Page | None] = Reply()
    repository.tell(ListPage(read, RUNNING, 10))
    store.proceed.release()
    store.wait_entered()

    assert not reply_is_set(read)
    store.proceed.release()
    assert read.get(timeout=TIMEOUT_S) == Page([running], more=False)
