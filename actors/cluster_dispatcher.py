"""ClusterDispatcherActor: an instance's workers, fed with work claimed from the shared table.

In a cluster the waiting line is the table (actors/pg_store.py), shared by every instance; this
actor keeps none. When a worker is idle and there may be work (a task enqueued here or, by
NOTIFY, elsewhere; an attempt's end; a retry or delayed task come due; the poll), it asks the
repository to claim as many due tasks as it has idle workers, one claim at a time, and hands
each claimed task to an idle worker. Admission is decided where the cluster's counts are, in
the intake commit; here only what this instance alone knows: it is shutting down, or its
database connection is down.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Final

import pykka

from actors.alarm import Alarm
from actors.attempt_counts import AttemptCounts
from actors.base import Actor, tell_or_fail
from actors.protocol.answers import Admission, Outcome, Readiness
from actors.protocol.cluster import AskReadiness, Claim, Claimed, LineStats, Wake
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
from actors.protocol.reading import GetDispatcherStats, GetReadiness
from actors.protocol.running import AttemptFinished, Run, Save
from actors.protocol.task_actions import AdmitRequeue, CancelInLine, StoreAdmittedRequeue
from actors.protocol.waiting import HoldUntilDue, TasksDue
from actors.reply import SystemStopped
from actors.stats import LineCounts, Workers

if TYPE_CHECKING:
    from collections.abc import Iterable

    from actors.reply import Reply
    from actors.task import Task

logger = logging.getLogger(__name__)

POLL_INTERVAL_S: Final = 1.0
"""How often an instance with an idle worker looks for work nobody told it of: the fallback
for a notification lost while the listener was reconnecting, and for delayed tasks enqueued on
an instance that has gone."""

_WAKE = Wake()


class ClusterDispatcherActor(Actor):
    """Hands claimed tasks to idle workers, one at a time each."""

    def __init__(self, repository: pykka.ActorRef, queue_size: int, scheduled_max: int) -> None:
        super().__init__()
        self._repository = repository
        self._queue_size = queue_size
        self._scheduled_max = scheduled_max
        self._workers: tuple[pykka.ActorRef, ...] = ()
        self._retry: pykka.ActorRef | None = None
        self._idle: list[int] = []
        self._running: list[str | None] = []
        # One claim at a time; a wake-up during it claims again once it is answered.
        self._claiming = False
        self._woken = False
        self._shutting_down = False
        self._store_down = False
        self._idle_waiters: list[Reply[None]] = []
        self._poll: Alarm | None = None
        self._counts = AttemptCounts()

    def on_start(self) -> None:
        self._poll = Alarm(self._ring, name="dispatcher-poll-alarm")
        self._poll.set(time.monotonic() + POLL_INTERVAL_S)

    def on_stop(self) -> None:
        super().on_stop()
        self._close()

    def on_failure(self, *exc_info: Any) -> None:
        super().on_failure(*exc_info)
        self._close()

    def _close(self) -> None:
        if self._poll is not None:
            self._poll.close()
        error = SystemStopped("the dispatcher stopped before the workers were idle")
        for waiter in self._idle_waiters:
            waiter.fail(error)
        self._idle_waiters.clear()

    def on_receive(self, message: Any) -> Any:
        match message:
            case AdmitTask(task, reply):
                refusal = self._refusal()
                if refusal is not None:
                    tell_or_fail(self._repository, AnswerRefusal(task.id, reply, refusal))
                else:
                    tell_or_fail(self._repository, StoreAdmittedTask(task, reply, self.actor_ref))
            case AdmitBatch(tasks, reply):
                insert = StoreAdmittedBatch(tasks, reply, self.actor_ref, (), self._refusal())
                tell_or_fail(self._repository, insert)
            case TaskStored(task):
                self._stored((task,))
            case BatchStored(tasks, _):
                self._stored(tasks)
            case Claimed(tasks, limit):
                self._claimed(tasks, limit)
            case Wake() | TasksDue():
                self._woken = True
                self._claim()
            case AttemptFinished(worker, task, retry_delay_s):
                self._finished(worker, task, retry_delay_s)
            case CancelInLine(task_id, reply, _):
                if self._store_down:
                    reply.set(Outcome(None, refused=Admission.STORE_UNAVAILABLE))
                elif task_id in self._running:
                    reply.set(Outcome(None, conflict="task is running"))
                else:
                    tell_or_fail(self._repository, message)
            case AdmitRequeue(task_id, reply):
                refusal = self._refusal()
                tell_or_fail(
                    self._repository, StoreAdmittedRequeue(task_id, reply, self.actor_ref, refusal)
                )
            case GetDispatcherStats(reply, retry_reply):
                tell_or_fail(self._repository, LineStats(self._totals(), reply, retry_reply))
            case GetReadiness(reply):
                refusal = self._refusal()
                if refusal is Admission.SHUTTING_DOWN:
                    reply.set(Readiness.SHUTTING_DOWN)
                elif refusal is Admission.STORE_UNAVAILABLE:
                    reply.set(Readiness.STORE_UNAVAILABLE)
                else:
                    tell_or_fail(self._repository, AskReadiness(reply))
            case WhenIdle(reply):
                self._idle_waiters.append(reply)
                self._answer_idle_waiters()
            case BeginShutdown(reply):
                self._shutting_down = True
                reply.set(True)
            case StoreAvailability(available):
                self._store_down = not available
            case Recovered(_, waiting):
                for task, delay_s in waiting:
                    self._wake_at(task, delay_s)
            case PlacesReleased():
                pass  # no places are reserved here: the cluster's counts are in the table
            case Connect(workers, retry):
                self._workers, self._retry = workers, retry
                self._idle = list(range(len(workers)))
                self._running = [None] * len(workers)
                self._woken = True
                self._claim()
            case _:
                return super().on_receive(message)
        return None

    def _refusal(self) -> Admission | None:
        """What this instance alone refuses for: the queue's bounds are the intake commit's."""
        if self._shutting_down:
            return Admission.SHUTTING_DOWN
        if self._store_down:
            return Admission.STORE_UNAVAILABLE
        return None

    def _stored(self, tasks: Iterable[Task]) -> None:
        for task in tasks:
            if task.next_attempt_at is not None:
                self._wake_at(task, task.next_attempt_at - time.time())
        self._woken = True
        self._claim()

    def _wake_at(self, task: Task, delay_s: float) -> None:
        """Have the retry actor's timer wake this dispatcher when ``task`` is due: whichever
        instance is idle then claims it."""
        if self._retry is None:
            return
        with contextlib.suppress(pykka.ActorDeadError):
            self._retry.tell(HoldUntilDue(task, max(0.0, delay_s)))

    def _claim(self) -> None:
        if self._claiming or self._shutting_down or self._store_down or not self._idle:
            return
        if not self._woken:
            return
        self._woken = False
        if tell_or_fail(self._repository, Claim(len(self._idle), self.actor_ref)):
            self._claiming = True

    def _claimed(self, tasks: tuple[Task, ...], limit: int) -> None:
        self._claiming = False
        for task in tasks:
            # The claim asked for no more than the idle workers, and only this actor makes
            # a worker busy: there is one for each.
            worker = self._idle.pop()
            self._running[worker] = task.id
            self._workers[worker].tell(Run(task))
            self._counts.attempts += 1
        if len(tasks) == limit:
            self._woken = True  # a full claim: more may be due
        self._claim()
        self._answer_idle_waiters()

    def _finished(self, worker: int, task: Task, retry_delay_s: float | None) -> None:
        self._idle.append(worker)
        self._running[worker] = None
        self._counts.ended(task, retry_delay_s)
        self._repository.tell(Save(task))
        if retry_delay_s is not None:
            self._wake_at(task, retry_delay_s)
        self._woken = True
        self._claim()
        self._answer_idle_waiters()

    def _ring(self) -> None:
        # On the alarm's thread: the poll, then the next one.
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(_WAKE)
            assert self._poll is not None
            self._poll.set(time.monotonic() + POLL_INTERVAL_S)

    def _totals(self) -> LineCounts:
        workers = len(self._workers)
        return LineCounts(
            waiting=0,  # the cluster's, filled in by the repository
            workers=Workers(total=workers, busy=workers - len(self._idle)),
            queue_size=self._queue_size,
            scheduled_max=self._scheduled_max,
            attempts=self._counts.attempts,
            retries=self._counts.retries,
            done=self._counts.done,
            failed=self._counts.failed,
        )

    def _answer_idle_waiters(self) -> None:
        # Not while a claim is on its way: the tasks it brings are about to run here.
        if self._idle_waiters and len(self._idle) == len(self._workers) and not self._claiming:
            for waiter in self._idle_waiters:
                waiter.set(None)
            self._idle_waiters.clear()
