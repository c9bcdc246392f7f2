"""RepositoryActor: the only owner of the task map, and of the durable store under it."""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final, TypeVar

import pykka

from actors.alarm import Alarm
from actors.base import Actor
from actors.messages import (
    Admission,
    CommitDue,
    CountByStatus,
    DuplicateId,
    GetRepositoryStats,
    GetTask,
    Insert,
    Inserted,
    ListPage,
    ListTasks,
    Recover,
    Refusal,
    RepositoryStats,
    Save,
)
from actors.paging import CreationOrder
from actors.store import StoreError
from actors.task import STATUSES, Task

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.reply import Reply
    from actors.store import OpenStore, Store

logger = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_CAP: Final = 512
"""Changes plus held-back messages that may wait on one commit. Under a steady load the inbox
never empties; this bounds how long an answer waits for its commit (and what is held meanwhile)."""

COMMIT_DELAY_S: Final = 0.05
"""How long changes that nobody is waiting on (a worker's "running", "done") may wait to share
a commit with later ones. Each commit is a trip into SQLite that lets go of the GIL, and under
load getting it back costs more than the write itself; waiting like this halved the commits of
the intake benchmark. A crash inside the delay loses only what nobody has seen: at worst an
attempt runs again, which at-least-once allows."""

_COMMIT_DUE = CommitDue()


class RepositoryActor(Actor):
    """Holds every task by id, in creation order; with a store, also keeps them durable.

    Being the only owner is what makes locks unnecessary: every read and write is a message,
    handled one at a time on this actor's thread. It stores and hands out frozen snapshots, so
    nothing a caller gets can change under it. Callers only ever see these messages, whether a
    store sits under it or not.

    With a store (group commit): each change is applied to the map at once and staged; every
    message this actor sends while changes are staged (answers to reads included) is held back
    until they are committed, in one transaction for all of them. The commit comes as soon as
    the inbox is empty and someone is waiting on it, or ``BATCH_CAP`` is reached, or (when
    nobody is waiting) ``COMMIT_DELAY_S`` after the first change. So nobody ever learns of a
    state that a crash could still take back, and many changes share one commit. Without a
    store nothing is staged and nothing is held: it answers at once, as a purely in-memory map.
    """

    def __init__(self, open_store: OpenStore | None = None) -> None:
        super().__init__()
        # A dict keeps insertion order, and replacing a value keeps its place: creation order.
        self._tasks: dict[str, Task] = {}
        # Where each task stands in creation order, for GET /tasks?after=; follows the map lazily.
        self._order = CreationOrder()
        self._open_store = open_store
        self._store: Store | None = None
        # Changes not yet committed, latest state per id, in the order each id was first staged
        # (so new tasks are stored in creation order), and the messages waiting for them.
        self._staged: dict[str, Task] = {}
        self._held: list[tuple[Callable[[Any], object], object]] = []
        # Rings COMMIT_DELAY_S after a change nobody waits on; started with the store. Set at
        # most once until it rings, even if a commit came first: setting it wakes its thread,
        # and once per commit that cost more than the commits it saved.
        self._alarm: Alarm | None = None
        self._alarm_set = False
        # Tasks per status, kept up to date on every change so GET /stats never scans the map;
        # and every intake answer since start, by how it ended.
        self._counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        self._enqueued = 0
        self._refused: Counter[Admission] = Counter()

    def on_receive(self, message: Any) -> Any:
        answer = self._handle(message)
        if self._staged:
            if len(self._staged) + len(self._held) >= BATCH_CAP or (
                self._held and self.actor_inbox.empty()
            ):
                self._commit()
            elif not self._alarm_set:
                assert self._alarm is not None
                self._alarm.set(time.monotonic() + COMMIT_DELAY_S)
                self._alarm_set = True
        return answer

    def on_stop(self) -> None:
        if self._store is not None:
            if self._staged:
                self._commit()
            self._close_store()

    def on_failure(self, *exc_info: object) -> None:
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._close_store()

    def _handle(self, message: Any) -> Any:
        match message:
            case Save(task):
                old = self._tasks.get(task.id)
                self._tasks[task.id] = task
                if old is not None:
                    self._counts[old.status] -= 1
                self._counts[task.status] += 1
                if self._store is not None:
                    self._staged[task.id] = task
            case Insert(task, reply, admitted_by):
                self._insert(task, reply, admitted_by)
            case Refusal(task_id, reply, reason):
                answer = Admission.DUPLICATE if task_id in self._tasks else reason
                self._refused[answer] += 1
                self._send(reply.set, answer)
            case GetTask(task_id, reply):
                self._send(reply.set, self._tasks.get(task_id))
            case ListTasks(reply):
                self._send(reply.set, list(self._tasks.values()))
            case ListPage(reply, status, limit, after):
                page = self._order.page(self._tasks, status=status, limit=limit, after=after)
                self._send(reply.set, page)
            case CountByStatus():
                # Answered through pykka's future, which cannot be held back: commit first.
                if self._staged:
                    self._commit()
                counts = Counter(task.status for task in self._tasks.values())
                return {status: counts.get(status, 0) for status in STATUSES}
            case GetRepositoryStats(reply):
                self._send(reply.set, self._stats())
            case CommitDue():
                self._alarm_set = False
                if self._staged:
                    self._commit()
            case Recover():
                return self._recover()
            case _:
                return super().on_receive(message)
        return None

    def _insert(self, task: Task, reply: Reply[Admission], admitted_by: pykka.ActorRef) -> None:
        # The dispatcher hears first and the client second: once the client has its answer, any
        # later message it causes finds the dispatcher already knowing the task's fate.
        if task.id in self._tasks:
            self._refused[Admission.DUPLICATE] += 1
            self._send(admitted_by.tell, DuplicateId(task.id))
            self._send(reply.set, Admission.DUPLICATE)
            return
        self._tasks[task.id] = task
        self._counts[task.status] += 1
        self._enqueued += 1
        if self._store is not None:
            self._staged[task.id] = task
        self._send(admitted_by.tell, Inserted(task))
        self._send(reply.set, Admission.ACCEPTED)

    def _stats(self) -> RepositoryStats:
        return RepositoryStats(
            counts=dict(self._counts),
            enqueued=self._enqueued,
            duplicate=self._refused[Admission.DUPLICATE],
            full=self._refused[Admission.QUEUE_FULL],
            shutting_down=self._refused[Admission.SHUTTING_DOWN],
        )

    def _send(self, send: Callable[[T], object], value: T) -> None:
        """Send now, or after the commit if anything staged could still be lost."""
        if self._staged:
            self._held.append((send, value))
        else:
            send(value)

    def _commit(self) -> None:
        assert self._store is not None
        try:
            self._store.commit(tuple(self._staged.values()))
        except StoreError as exc:
            # Nothing more can be made durable, and nothing held back may be released as if it
            # were: this actor stops, and requests waiting on it time out with a 503.
            logger.critical("the store %s; the task system stops", exc)
            raise
        self._staged.clear()
        held, self._held = self._held, []
        for send, value in held:
            send(value)

    def _recover(self) -> tuple[Task, ...] | StoreError:
        if self._open_store is None:
            return ()
        try:
            store = self._open_store()
            try:
                stored = store.load()
            except BaseException:
                store.close()
                raise
        except StoreError as exc:
            return exc
        self._store = store
        self._alarm = Alarm(self._ring, name="repository-commit-alarm")
        self._tasks = {task.id: task for task in stored}
        self._counts = dict.fromkeys(STATUSES, 0)
        self._counts.update(Counter(task.status for task in self._tasks.values()))
        return tuple(stored)

    def _ring(self) -> None:
        # Runs on the alarm's thread: it only posts a message.
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(_COMMIT_DUE)

    def _close_store(self) -> None:
        assert self._store is not None
        if self._alarm is not None:
            self._alarm.close()
        self._store.close()
