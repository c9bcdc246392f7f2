"""RepositoryActor: the only owner of the task map."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pykka

from actors.messages import (
    Admission,
    CountByStatus,
    GetTask,
    Insert,
    Inserted,
    InsertRefused,
    ListTasks,
    Save,
)
from actors.task import STATUSES, Task

logger = logging.getLogger(__name__)


class RepositoryActor(pykka.ThreadingActor):
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
            case GetTask(task_id):
                return self._tasks.get(task_id)
            case ListTasks():
                return list(self._tasks.values())
            case CountByStatus():
                counts = Counter(task.status for task in self._tasks.values())
                return {status: counts.get(status, 0) for status in STATUSES}
            case _:
                return super().on_receive(message)
        return None

    def _insert(
        self, task: Task, reply: pykka.Future[Admission], admitted_by: pykka.ActorRef
    ) -> None:
        # The dispatcher hears first and the client second: once the client has its answer, any
        # later message it causes finds the dispatcher already knowing the task's fate.
        if task.id in self._tasks:
            admitted_by.tell(InsertRefused(task.id))
            reply.set(Admission.DUPLICATE)
            return
        self._tasks[task.id] = task
        admitted_by.tell(Inserted(task))
        reply.set(Admission.ACCEPTED)
