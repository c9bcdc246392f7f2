"""DispatcherActor: admission, the bounded waiting line, and handing tasks to idle workers."""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import pykka

from actors.base import Actor
from actors.messages import (
    Admission,
    AttemptFinished,
    BeginShutdown,
    Connect,
    DispatcherStats,
    DuplicateId,
    GetDispatcherStats,
    GetReadiness,
    Insert,
    Inserted,
    Readiness,
    Refusal,
    RetriesDue,
    Run,
    Save,
    ScheduleRetry,
    Submit,
    WhenIdle,
)
from actors.task import DONE, FAILED

if TYPE_CHECKING:
    from actors.reply import Reply
    from actors.task import Task

logger = logging.getLogger(__name__)


class DispatcherActor(Actor):
    """Owns the waiting line: at most ``queue_size`` tasks wait, not counting running ones.

    A new task first reserves a place here, then the repository stores it (or refuses a
    duplicate), then it becomes a place in line. Each worker gets one task at a time, only when
    idle, so no worker's inbox ever holds a backlog: the line is the only queue. Retries come
    back through here too and always get in, full line or not.
    """

    def __init__(self, queue_size: int, repository: pykka.ActorRef) -> None:
        super().__init__()
        self._queue_size = queue_size
        self._repository = repository
        self._workers: tuple[pykka.ActorRef, ...] = ()
        self._retry: pykka.ActorRef | None = None
        self._line: deque[Task] = deque()
        # Places held for tasks the repository is storing right now.
        self._reserved = 0
        self._idle: list[int] = []
        self._shutting_down = False
        self._idle_waiters: list[Reply[None]] = []
        # Totals since start, for GET /stats: counted where the events already pass.
        self._attempts = 0
        self._retries = 0
        self._done = 0
        self._failed = 0

    def on_receive(self, message: Any) -> Any:
        match message:
            case Submit(task, reply):
                self._admit(task, reply)
            case Inserted(task):
                self._reserved -= 1
                self._line.append(task)
                self._dispatch()
            case DuplicateId():
                self._reserved -= 1
            case AttemptFinished(worker, task, retry_delay_s):
                self._finished(worker, task, retry_delay_s)
            case RetriesDue(tasks):
                self._line.extend(tasks)
                self._dispatch()
            case GetDispatcherStats(reply):
                reply.set(self._totals())
            case GetReadiness(reply):
                reply.set(self._readiness())
            case WhenIdle(reply):
                self._idle_waiters.append(reply)
                self._answer_idle_waiters()
            case BeginShutdown():
                self._shutting_down = True
            case Connect(workers, retry):
                self._workers, self._retry = workers, retry
                self._idle = list(range(len(workers)))
            case _:
                return super().on_receive(message)
        return None

    def _admit(self, task: Task, reply: Reply[Admission]) -> None:
        if self._shutting_down:
            self._repository.tell(Refusal(task.id, reply, Admission.SHUTTING_DOWN))
            return
        if self._is_full():
            self._repository.tell(Refusal(task.id, reply, Admission.QUEUE_FULL))
            return
        self._reserved += 1
        self._repository.tell(Insert(task, reply, self.actor_ref))

    def _finished(self, worker: int, task: Task, retry_delay_s: float | None) -> None:
        self._idle.append(worker)
        if retry_delay_s is not None:
            self._retries += 1
        elif task.status == DONE:
            self._done += 1
        elif task.status == FAILED:
            self._failed += 1
        # Saved before it is scheduled, so the stored state is never behind the retry's own.
        self._repository.tell(Save(task))
        if retry_delay_s is not None:
            assert self._retry is not None
            try:
                self._retry.tell(ScheduleRetry(task, retry_delay_s))
            except pykka.ActorDeadError:
                # An attempt that outlived the shutdown deadline: its retry is abandoned, and
                # the saved state (queued, next_attempt_at) says so.
                logger.warning(
                    "task %r: retry not scheduled, shutting down",
                    task.id,
                    extra={"task_id": task.id, "attempt": task.attempts},
                )
        self._dispatch()
        self._answer_idle_waiters()

    def _dispatch(self) -> None:
        if self._shutting_down:
            return
        while self._line and self._idle:
            self._workers[self._idle.pop()].tell(Run(self._line.popleft()))
            self._attempts += 1

    def _is_full(self) -> bool:
        # Reserved tasks go straight to idle workers when stored, so they only count as waiting
        # beyond the idle workers. (A non-empty line means no worker is idle.)
        return len(self._line) + self._reserved - len(self._idle) >= self._queue_size

    def _readiness(self) -> Readiness:
        if self._shutting_down:
            return Readiness.SHUTTING_DOWN
        return Readiness.FULL if self._is_full() else Readiness.READY

    def _totals(self) -> DispatcherStats:
        workers = len(self._workers)
        return DispatcherStats(
            waiting=len(self._line),
            busy=workers - len(self._idle),
            workers=workers,
            queue_size=self._queue_size,
            attempts=self._attempts,
            retries=self._retries,
            done=self._done,
            failed=self._failed,
        )

    def _answer_idle_waiters(self) -> None:
        if self._idle_waiters and len(self._idle) == len(self._workers):
            for waiter in self._idle_waiters:
                waiter.set(None)
            self._idle_waiters.clear()
