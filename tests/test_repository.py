"""RepositoryActor on its own: insert, refuse duplicates, hand out snapshots in creation order."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import msgspec
import pykka
import pytest

from actors.messages import (
    Admission,
    CountByStatus,
    DuplicateId,
    GetTask,
    Insert,
    Inserted,
    ListTasks,
    Refusal,
    Save,
)
from actors.reply import Reply
from actors.repository import RepositoryActor
from actors.task import DONE, FAILED, QUEUED, RUNNING, Task, new_task

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
    reply: Reply[list[Task]] = Reply()
    repository.tell(ListTasks(reply))
    return reply.get(timeout=TIMEOUT_S)


def insert(
    repository: pykka.ActorRef, task: Task, dispatcher: TellRecorder | None = None
) -> Admission:
    dispatcher = dispatcher or TellRecorder()
    reply: Reply[Admission] = Reply()
    dispatcher.watched = reply
    repository.tell(Insert(task, reply, dispatcher))  # type: ignore[arg-type]
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

    assert dispatcher.told == [Inserted(task)]
    assert dispatcher.reply_was_set == [False]


def test_a_duplicate_id_is_refused_and_the_stored_task_is_unchanged(
    repository: pykka.ActorRef,
) -> None:
    original = new_task("task-1", b'"first"', max_retries=3)
    impostor = new_task("task-1", b'"second"', max_retries=7)
    insert(repository, original)
    dispatcher = TellRecorder()

    assert insert(repository, impostor, dispatcher) is Admission.DUPLICATE

    assert dispatcher.told == [DuplicateId("task-1")]
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

    counts = repository.ask(CountByStatus(), timeout=TIMEOUT_S)

    assert counts == {QUEUED: 1, RUNNING: 0, DONE: 2, FAILED: 1}


@pytest.mark.parametrize("reason", [Admission.QUEUE_FULL, Admission.SHUTTING_DOWN])
def test_a_refusal_of_a_new_id_answers_the_dispatchers_reason_and_stores_nothing(
    repository: pykka.ActorRef, reason: Admission
) -> None:
    reply: Reply[Admission] = Reply()
    repository.tell(Refusal("task-1", reply, reason))

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

    repository.tell(Refusal("task-1", reply, reason))

    assert reply.get(timeout=TIMEOUT_S) is Admission.DUPLICATE
    assert list_all(repository) == [original]
