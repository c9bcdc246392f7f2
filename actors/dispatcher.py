"""DispatcherActor: admission, the bounded waiting line, and handing tasks to idle workers."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

import pykka

from actors.base import Actor, tell_or_fail, tell_question
from actors.line import WaitingLine
from actors.protocol.answers import Admission, BatchAdmission, Outcome, Readiness
from actors.protocol.intake import (
    AdmitBatch,
    AdmitTask,
    AnswerRefusal,
    BatchStored,
    PlacesReleased,
    StoreAdmittedBatch,
    StoreAdmittedTask,
    TaskStored,
)
from actors.protocol.lifecycle import BeginShutdown, Connect, Recovered, StoreAvailability, WhenIdle
from actors.protocol.reading import GetDispatcherStats, GetReadiness, GetRetryStats
from actors.protocol.running import AttemptFinished, Run, Save
from actors.protocol.task_actions import (
    AdmitRequeue,
    CancelInLine,
    CancelInRepository,
    StoreAdmittedRequeue,
)
from actors.protocol.waiting import HoldUntilDue, TasksDue, WaitingCancelled
from actors.reply import SystemStopped
from actors.stats import LineCounts, Workers
from actors.task import DONE, FAILED, log_fields

if TYPE_CHECKING:
    from collections.abc import Iterable

    from actors.reply import Reply
    from actors.task import Task

logger = logging.getLogger(__name__)

DEFAULT_SCHEDULED_MAX = 100_000
"""Tasks that may wait for their time before new delayed tasks are refused (SCHEDULED_MAX)."""
_READINESS: Final = {
    None: Readiness.READY,
    Admission.SHUTTING_DOWN: Readiness.SHUTTING_DOWN,
    Admission.STORE_UNAVAILABLE: Readiness.STORE_UNAVAILABLE,
    Admission.QUEUE_FULL: Readiness.FULL,
    Admission.TOO_MANY_SCHEDULED: Readiness.TOO_MANY_SCHEDULED,
}


class DispatcherActor(Actor):
    """Owns the waiting line: at most ``queue_size`` tasks wait, not counting running ones.

    A new task first reserves a place here, then the repository stores it (or refuses a
    duplicate), then it becomes a place in line. Each worker gets one task at a time, only when
    idle, so no worker's inbox ever holds a backlog: the line is the only queue, highest
    priority first. Retries and delayed tasks wait with the retry actor, come back through here
    when due and always get in, full line or not. This actor also decides whether a queued
    task can still be cancelled: it is the one that hands tasks to workers.

    Every task that goes to wait with the retry actor goes from here, so this actor also
    counts them (the retry actor tells it of those cancelled there): at most
    ``scheduled_max`` may wait before new delayed tasks are refused. Retries are never
    refused: their tasks were accepted already.
    """

    def __init__(
        self,
        queue_size: int,
        repository: pykka.ActorRef,
        scheduled_max: int = DEFAULT_SCHEDULED_MAX,
    ) -> None:
        super().__init__()
        self._queue_size = queue_size
        self._scheduled_max = scheduled_max
        # Tasks sent to wait with the retry actor and not yet due, nor cancelled there.
        self._scheduled = 0
        self._repository = repository
        self._workers: tuple[pykka.ActorRef, ...] = ()
        self._retry: pykka.ActorRef | None = None
        self._line = WaitingLine()
        # Places held for tasks the repository is storing right now.
        self._reserved = 0
        self._idle: list[int] = []
        # The id of the task each worker runs (None: idle), so a cancel can tell it is too late.
        self._running: list[str | None] = []
        self._shutting_down = False
        # Told by the repository: while its store cannot be written, new work is refused here.
        self._store_down = False
        self._idle_waiters: list[Reply[None]] = []
        # Totals since start, for GET /stats: counted where the events already pass.
        self._attempts = 0
        self._retries = 0
        self._done = 0
        self._failed = 0

    def on_receive(self, message: Any) -> Any:
        match message:
            case AdmitTask(task, reply):
                self._admit(task, reply)
            case TaskStored(task):
                self._stored((task,), 1 if task.next_attempt_at is None else 0)
            case PlacesReleased(places):
                self._reserved -= places
            case AttemptFinished(worker, task, retry_delay_s):
                self._finished(worker, task, retry_delay_s)
            case TasksDue(tasks):
                self._scheduled -= len(tasks)
                self._line.extend(tasks)
                self._dispatch()
            case WaitingCancelled(cancelled):
                self._scheduled -= cancelled
            case AdmitBatch(tasks, reply):
                self._admit_batch(tasks, reply)
            case BatchStored(tasks, places):
                self._stored(tasks, places)
            case CancelInLine(task_id, reply, rounds):
                self._cancel(task_id, reply, rounds)
            case AdmitRequeue(task_id, reply):
                refusal = self._refusal(1)
                told = tell_or_fail(
                    self._repository, StoreAdmittedRequeue(task_id, reply, self.actor_ref, refusal)
                )
                if refusal is None and told:
                    self._reserved += 1
            case GetDispatcherStats(reply, retry_reply):
                reply.set(self._totals())
                if retry_reply is not None:
                    self._ask_retry_stats(retry_reply)
            case GetReadiness(reply):
                reply.set(self._readiness())
            case WhenIdle(reply):
                self._idle_waiters.append(reply)
                self._answer_idle_waiters()
            case BeginShutdown(reply):
                self._shutting_down = True
                reply.set(True)
            case StoreAvailability(available):
                self._store_down = not available
            case Connect(workers, retry):
                self._workers, self._retry = workers, retry
                self._idle = list(range(len(workers)))
                self._running = [None] * len(workers)
            case Recovered(line, waiting):
                self._line.extend(line)
                for task, delay_s in waiting:
                    self._schedule(task, delay_s)
                self._dispatch()
            case _:
                return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        super().on_stop()
        self._fail_idle_waiters("stopped")

    def on_failure(self, *exc_info: Any) -> None:
        super().on_failure(*exc_info)
        self._fail_idle_waiters("crashed")

    def _fail_idle_waiters(self, why: str) -> None:
        """Nobody is left to say when the workers are idle: fail the waits for it."""
        error = SystemStopped(f"the dispatcher {why} before the workers were idle")
        for waiter in self._idle_waiters:
            waiter.fail(error)
        self._idle_waiters.clear()

    def _admit(self, task: Task, reply: Reply[Admission]) -> None:
        # A delayed task takes no place until it is due, yet a full line refuses it too
        # (``_refusal(0)``): otherwise a flood of short delays would walk around the bound.
        places = 1 if task.next_attempt_at is None else 0
        refusal = self._refusal(places, 1 - places)
        if refusal is not None:
            tell_or_fail(self._repository, AnswerRefusal(task.id, reply, refusal))
        elif tell_or_fail(self._repository, StoreAdmittedTask(task, reply, self.actor_ref)):
            self._reserved += places

    def _admit_batch(self, tasks: tuple[Task, ...], reply: Reply[BatchAdmission]) -> None:
        places = sum(1 for task in tasks if task.next_attempt_at is None)
        refusal = self._refusal(places, len(tasks) - places)
        if refusal is not None:
            places = 0
        insert = StoreAdmittedBatch(tasks, reply, self.actor_ref, places, refusal)
        if tell_or_fail(self._repository, insert):
            self._reserved += places

    def _refusal(self, places: int, scheduled: int = 0) -> Admission | None:
        """Why ``places`` more tasks cannot get into the line now (any, if 0), and
        ``scheduled`` more new ones wait for their time, or None.

        The admission rules, all of them, for single tasks, batches, retries by hand and
        readiness. Delayed tasks are bounded twice: by a line with room (else a flood of
        short delays would walk around QUEUE_SIZE) and by ``scheduled_max``. Tasks stored
        while this one was being decided are not counted yet, so requests that arrive
        together may pass the bound by what they carry (see WaitingCancelled).
        """
        if self._shutting_down:
            return Admission.SHUTTING_DOWN
        if self._store_down:
            return Admission.STORE_UNAVAILABLE
        free = self._queue_size - self._occupied()
        if free <= 0 or places > free:
            return Admission.QUEUE_FULL
        if scheduled and self._scheduled + scheduled > self._scheduled_max:
            return Admission.TOO_MANY_SCHEDULED
        return None

    def _stored(self, tasks: Iterable[Task], places: int) -> None:
        """Stored tasks take their places in line, or wait with the retry actor until due."""
        self._reserved -= places
        for task in tasks:
            if task.next_attempt_at is None:
                self._line.append(task)
            else:
                self._schedule(task, task.next_attempt_at - time.time())
        self._dispatch()

    def _cancel(self, task_id: str, reply: Reply[Outcome], rounds: int) -> None:
        if self._store_down:
            # A cancel is a promise that the task never runs: not one to make unwritten.
            reply.set(Outcome(None, refused=Admission.STORE_UNAVAILABLE))
        elif task_id in self._running:
            reply.set(Outcome(None, conflict="task is running"))
        elif self._line.remove(task_id) is not None:
            tell_or_fail(self._repository, CancelInRepository(task_id, reply, True, self.actor_ref))
        else:
            # Not here: perhaps waiting with the retry actor, which passes the question on.
            assert self._retry is not None
            try:
                tell_question(self._retry, CancelInLine(task_id, reply, rounds))
            except pykka.ActorDeadError:
                reply.set(Outcome(None, refused=Admission.SHUTTING_DOWN))

    def _ask_retry_stats(self, reply: Reply[int]) -> None:
        assert self._retry is not None
        try:
            tell_question(self._retry, GetRetryStats(reply))
        except pykka.ActorDeadError:
            reply.set(0)  # stopped at shutdown: nothing waits for a next attempt any more

    def _schedule(self, task: Task, delay_s: float) -> None:
        assert self._retry is not None
        try:
            self._retry.tell(HoldUntilDue(task, delay_s))
            self._scheduled += 1
        except pykka.ActorDeadError:
            # An attempt that outlived the shutdown deadline: its retry is abandoned, and
            # the saved state (queued, next_attempt_at) says so.
            logger.warning(
                "task %r: next attempt not scheduled, shutting down",
                task.id,
                extra=log_fields(task),
            )

    def _finished(self, worker: int, task: Task, retry_delay_s: float | None) -> None:
        self._idle.append(worker)
        self._running[worker] = None
        if retry_delay_s is not None:
            self._retries += 1
        elif task.status == DONE:
            self._done += 1
        elif task.status == FAILED:
            self._failed += 1
        # Saved before it is scheduled, so the stored state is never behind the retry's own.
        self._repository.tell(Save(task))
        if retry_delay_s is not None:
            self._schedule(task, retry_delay_s)
        self._dispatch()
        self._answer_idle_waiters()

    def _dispatch(self) -> None:
        if self._shutting_down:
            return
        while self._line and self._idle:
            worker = self._idle.pop()
            task = self._line.popleft()
            self._running[worker] = task.id
            self._workers[worker].tell(Run(task))
            self._attempts += 1

    def _occupied(self) -> int:
        # Reserved tasks go straight to idle workers when stored, so they only count as waiting
        # beyond the idle workers. (A non-empty line means no worker is idle.)
        return len(self._line) + self._reserved - len(self._idle)

    def _readiness(self) -> Readiness:
        """What an AdmitTask of a delayed task would meet now: the same check, from
        ``_refusal``."""
        return _READINESS[self._refusal(0, 1)]

    def _totals(self) -> LineCounts:
        workers = len(self._workers)
        return LineCounts(
            waiting=len(self._line),
            workers=Workers(total=workers, busy=workers - len(self._idle)),
            queue_size=self._queue_size,
            scheduled_max=self._scheduled_max,
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
