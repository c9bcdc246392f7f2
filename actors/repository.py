"""RepositoryActor: the only owner of the task map."""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

import pykka

from actors.base import Actor
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
from actors.task import STATUSES, Task

if TYPE_CHECKING:
    from actors.reply import Reply

logger = logging.getLogger(__name__)


class RepositoryActor(Actor):
    """Holds every task by id, in creation order.

    Being the only owner is what makes locks unnecessary: every read and write is a message,
    handled one at a time on this actor's thread. It stores and hands out frozen snapshots, so
    nothing a caller gets can change under it. Callers only ever see these messages, which is
    what lets a durable store sit under this actor without changing them.
    """

    def __init__(self) -> None:
        super().__init__()
        # A dict keeps insertion order, and replacing a value keeps its place: creation order.
        self._tasks: dict[str, Task] = {}

    def on_receive(self, message: Any) -> Any:
        match message:
            case Save(task):
                self._tasks[task.id] = task
            case Insert(task, reply, admitted_by):
                self._insert(task, reply, admitted_by)
            case Refusal(task_id, reply, reason):
                reply.set(Admission.DUPLICATE if task_id in self._tasks else reason)
            case GetTask(task_id, reply):
                reply.set(self._tasks.get(task_id))
            case ListTasks(reply):
                reply.set(list(self._tasks.values()))
            case CountByStatus():
                counts = Counter(task.status for task in self._tasks.values())
                return {status: counts.get(status, 0) for status in STATUSES}
            case _:
                return super().on_receive(message)
        return None

    def _insert(self, task: Task, reply: Reply[Admission], admitted_by: pykka.ActorRef) -> None:
        # The dispatcher hears first and the client second: once the client has its answer, any
        # later message it causes finds the dispatcher already knowing the task's fate.
        if task.id in self._tasks:
            admitted_by.tell(DuplicateId(task.id))
            reply.set(Admission.DUPLICATE)
            return
        self._tasks[task.id] = task
        admitted_by.tell(Inserted(task))
        reply.set(Admission.ACCEPTED)
