"""DispatcherActor: admission, each queue's bounded waiting line, and handing tasks to idle
workers."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

import pykka

from actors.alarm import Alarm, posting
from actors.attempt_counts import AttemptCounts
from actors.base import Actor, tell_or_fail, tell_question
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
from actors.protocol.queues import GetQueues, PauseQueue, SaveQueuePaused, TokensDue
from actors.protocol.reading import GetDispatcherStats, GetReadiness, GetRetryStats
from actors.protocol.running import AttemptFinished, Run, Save
from actors.protocol.schedules import AdmitFiring
from actors.protocol.task_actions import (
    AdmitRequeue,
    CancelInLine,
    CancelInRepository,
    StoreAdmittedRequeue,
)
from actors.protocol.waiting import HoldUntilDue, TasksDue, WaitingCancelled
from actors.queues import QueueSpec, QueueState
from actors.reply import SystemStopped
from actors.stats import LineCounts
from actors.task import DEFAULT_QUEUE, log_fields

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from actors.protocol.intake import Places
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
_TOKENS_DUE: Final = TokensDue()


class DispatcherActor(Actor):
    """Owns each queue's waiting line: at most ``queue_size`` tasks wait in each, not counting
    running ones. Each queue has workers of its own (actors/queues.py): a task of one queue
    never waits for another's worker, and a full queue refuses only its own new tasks.

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

    A paused queue keeps taking tasks but starts none; a queue with ``max_per_second`` starts
    no more than that many attempts a second (a token bucket per queue, and one alarm for all
    of them, set for the earliest token some queue waits for).
    """

    def __init__(
        self,
        queue_size: int,
        repository: pykka.ActorRef,
        scheduled_max: int = DEFAULT_SCHEDULED_MAX,
        queues: Sequence[QueueSpec] | None = None,
        paused: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        self._queue_size = queue_size
        self._scheduled_max = scheduled_max
        # Tasks sent to wait with the retry actor and not yet due, nor cancelled there.
        self._scheduled = 0
        self._repository = repository
        self._workers: tuple[pykka.ActorRef, ...] = ()
        self._retry: pykka.ActorRef | None = None
        # Without ``queues``: one queue, default, with every worker Connect brings.
        self._specs = tuple(queues) if queues is not None else None
        self._paused_at_start = paused
        self._queues = self._build_queues(self._specs or (QueueSpec(DEFAULT_QUEUE, 0),))
        # The queue of each worker, by the worker's number.
        self._queue_of: list[QueueState] = []
        # The id of the task each worker runs (None: idle), so a cancel can tell it is too late.
        self._running: list[str | None] = []
        self._rate_alarm: Alarm | None = None
        self._rate_alarm_at: float | None = None
        self._unknown_queues: set[str] = set()
        self._shutting_down = False
        # Told by the repository: while its store cannot be written, new work is refused here.
        self._store_down = False
        self._idle_waiters: list[Reply[None]] = []
        # Totals since start, for GET /stats: counted where the events already pass.
        self._counts = AttemptCounts()

    def on_start(self) -> None:
        if any(state.bucket is not None for state in self._queues.values()):
            self._rate_alarm = Alarm(posting(self.actor_ref, _TOKENS_DUE), name="rate-limit-alarm")

    def on_receive(self, message: Any) -> Any:
        match message:
            case AdmitTask(task, reply):
                self._admit(task, reply)
            case AdmitFiring(task, reply):
                self._admit_firing(task, reply)
            case TaskStored(task):
                self._stored((task,), () if task.next_attempt_at is not None else (task.queue,))
            case PlacesReleased(places):
                self._release(places)
            case AttemptFinished(worker, task, retry_delay_s):
                self._finished(worker, task, retry_delay_s)
            case TasksDue(tasks):
                self._scheduled -= len(tasks)
                touched = set()
                for task in tasks:
                    state = self._state(task.queue)
                    state.scheduled -= 1
                    state.line.append(task)
                    touched.add(state)
                for state in touched:
                    self._dispatch(state)
            case WaitingCancelled(cancelled, queue):
                self._scheduled -= cancelled
                self._state(queue).scheduled -= cancelled
            case AdmitBatch(tasks, reply):
                self._admit_batch(tasks, reply)
            case BatchStored(tasks, places):
                self._stored(tasks, places)
            case CancelInLine(task_id, reply, rounds):
                self._cancel(task_id, reply, rounds)
            case AdmitRequeue(task_id, reply, queue):
                state = self._state(queue)
                refusal = self._refusal(((state, 1),))
                requeue = StoreAdmittedRequeue(task_id, reply, self.actor_ref, refusal, queue)
                told = tell_or_fail(self._repository, requeue)
                if refusal is None and told:
                    state.reserved += 1
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
                self._connect(workers, retry)
            case Recovered(line, waiting):
                for task in line:
                    self._state(task.queue).line.append(task)
                for task, delay_s in waiting:
                    self._schedule(task, delay_s)
                self._dispatch_all()
            case TokensDue():
                self._rate_alarm_at = None
                self._dispatch_all()
            case GetQueues(reply):
                reply.set(tuple(state.info() for state in self._queues.values()))
            case PauseQueue(name, paused, reply):
                self._pause(name, paused, reply)
            case _:
                return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        super().on_stop()
        self._close_rate_alarm()
        self._fail_idle_waiters("stopped")

    def on_failure(self, *exc_info: Any) -> None:
        super().on_failure(*exc_info)
        self._close_rate_alarm()
        self._fail_idle_waiters("crashed")

    def _close_rate_alarm(self) -> None:
        if self._rate_alarm is not None:
            self._rate_alarm.close()

    def _build_queues(self, specs: Sequence[QueueSpec]) -> dict[str, QueueState]:
        now = time.monotonic()
        queues: dict[str, QueueState] = {}
        first = 0
        for spec in specs:
            workers = range(first, first + spec.workers)
            paused = spec.name in self._paused_at_start
            queues[spec.name] = QueueState(spec, workers, paused=paused, now=now)
            first += spec.workers
        return queues

    def _connect(self, workers: tuple[pykka.ActorRef, ...], retry: pykka.ActorRef) -> None:
        self._workers, self._retry = workers, retry
        if self._specs is None:
            # One queue with every worker; what it already holds stays with it.
            before = self._queues[DEFAULT_QUEUE]
            state = QueueState(
                QueueSpec(DEFAULT_QUEUE, len(workers)),
                range(len(workers)),
                paused=before.paused,
                now=time.monotonic(),
            )
            state.line, state.reserved, state.scheduled = (
                before.line,
                before.reserved,
                before.scheduled,
            )
            self._queues = {DEFAULT_QUEUE: state}
        elif sum(spec.workers for spec in self._specs) != len(workers):
            raise ValueError("the queues' workers do not add up to the workers connected")
        self._queue_of = [state for state in self._queues.values() for _ in state.workers]
        self._running = [None] * len(workers)

    def _state(self, queue: str) -> QueueState:
        """The queue named ``queue``; for a name no longer declared (a task stored before
        QUEUES changed), ``default`` or else the first queue, said once in the log."""
        state = self._queues.get(queue)
        if state is not None:
            return state
        fallback = self._queues.get(DEFAULT_QUEUE) or next(iter(self._queues.values()))
        if queue not in self._unknown_queues:
            self._unknown_queues.add(queue)
            logger.warning(
                "tasks of queue %r, which QUEUES does not declare, run in queue %r",
                queue,
                fallback.spec.name,
            )
        return fallback

    def _release(self, places: Places) -> None:
        for queue in places:
            self._state(queue).reserved -= 1

    def _pause(self, name: str, paused: bool, reply: Reply[Any]) -> None:
        state = self._queues.get(name)
        if state is None:
            reply.set(None)
            return
        if state.paused != paused:
            logger.info("queue %r %s", name, "paused" if paused else "resumed")
        state.paused = paused
        if not paused:
            self._dispatch(state)
        save = SaveQueuePaused(name, paused, state.info(), reply)
        tell_or_fail(self._repository, save)

    def _fail_idle_waiters(self, why: str) -> None:
        """Nobody is left to say when the workers are idle: fail the waits for it."""
        error = SystemStopped(f"the dispatcher {why} before the workers were idle")
        for waiter in self._idle_waiters:
            waiter.fail(error)
        self._idle_waiters.clear()

    def _admit(self, task: Task, reply: Reply[Admission]) -> None:
        # A delayed task takes no place until it is due, yet a full line refuses it too
        # (``places`` 0): otherwise a flood of short delays would walk around the bound.
        state = self._state(task.queue)
        places = 1 if task.next_attempt_at is None else 0
        refusal = self._refusal(((state, places),), 1 - places)
        if refusal is not None:
            tell_or_fail(self._repository, AnswerRefusal(task.id, reply, refusal))
        elif tell_or_fail(self._repository, StoreAdmittedTask(task, reply, self.actor_ref)):
            state.reserved += places

    def _admit_firing(self, task: Task, reply: Reply[Admission]) -> None:
        """A schedule's firing gets in like a due retry, past the line's bound: only shutting
        down and a store that cannot be written refuse it."""
        if self._shutting_down or self._store_down:
            down = Admission.STORE_UNAVAILABLE
            refusal = Admission.SHUTTING_DOWN if self._shutting_down else down
            tell_or_fail(self._repository, AnswerRefusal(task.id, reply, refusal))
        elif tell_or_fail(self._repository, StoreAdmittedTask(task, reply, self.actor_ref)):
            self._state(task.queue).reserved += 1

    def _admit_batch(self, tasks: tuple[Task, ...], reply: Reply[BatchAdmission]) -> None:
        demand: Counter[QueueState] = Counter()
        for task in tasks:
            demand[self._state(task.queue)] += 1 if task.next_attempt_at is None else 0
        places = sum(demand.values())
        refusal = self._refusal(demand.items(), len(tasks) - places)
        reserved: Places = ()
        if refusal is None:
            reserved = tuple(task.queue for task in tasks if task.next_attempt_at is None)
        insert = StoreAdmittedBatch(tasks, reply, self.actor_ref, reserved, refusal)
        if tell_or_fail(self._repository, insert) and refusal is None:
            for state, count in demand.items():
                state.reserved += count

    def _refusal(
        self, demand: Iterable[tuple[QueueState, int]], scheduled: int = 0
    ) -> Admission | None:
        """Why, for each (queue, places) of ``demand``, ``places`` more tasks cannot get into
        that queue's line now (any, if 0), and ``scheduled`` more new ones wait for their time,
        or None.

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
        for state, places in demand:
            free = self._queue_size - state.occupied()
            if free <= 0 or places > free:
                return Admission.QUEUE_FULL
        if scheduled and self._scheduled + scheduled > self._scheduled_max:
            return Admission.TOO_MANY_SCHEDULED
        return None

    def _stored(self, tasks: Iterable[Task], places: Places) -> None:
        """Stored tasks take their places in line, or wait with the retry actor until due."""
        self._release(places)
        touched: set[QueueState] = set()
        for task in tasks:
            if task.next_attempt_at is None:
                state = self._state(task.queue)
                state.line.append(task)
                touched.add(state)
            else:
                self._schedule(task, task.next_attempt_at - time.time())
        for state in touched:
            self._dispatch(state)

    def _cancel(self, task_id: str, reply: Reply[Outcome], rounds: int) -> None:
        if self._store_down:
            # A cancel is a promise that the task never runs: not one to make unwritten.
            reply.set(Outcome(None, refused=Admission.STORE_UNAVAILABLE))
        elif task_id in self._running:
            reply.set(Outcome(None, conflict="task is running"))
        elif any(state.line.remove(task_id) is not None for state in self._queues.values()):
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
            self._state(task.queue).scheduled += 1
        except pykka.ActorDeadError:
            # An attempt that outlived the shutdown deadline: its retry is abandoned, and
            # the saved state (queued, next_attempt_at) says so.
            logger.warning(
                "task %r: next attempt not scheduled, shutting down",
                task.id,
                extra=log_fields(task),
            )

    def _finished(self, worker: int, task: Task, retry_delay_s: float | None) -> None:
        state = self._queue_of[worker]
        state.idle.append(worker)
        self._running[worker] = None
        self._counts.ended(task, retry_delay_s)
        # Saved before it is scheduled, so the stored state is never behind the retry's own.
        self._repository.tell(Save(task))
        if retry_delay_s is not None:
            self._schedule(task, retry_delay_s)
        self._dispatch(state)
        self._answer_idle_waiters()

    def _dispatch_all(self) -> None:
        for state in self._queues.values():
            self._dispatch(state)

    def _dispatch(self, state: QueueState) -> None:
        """Hand this queue's next tasks to its idle workers, unless it is paused, and no faster
        than its rate allows (the alarm is set for its next token)."""
        if self._shutting_down or state.paused:
            return
        line, idle, bucket = state.line, state.idle, state.bucket
        while line and idle:
            if bucket is not None:
                now = time.monotonic()
                if not bucket.take(now):
                    self._wake_at(bucket.next_at(now))
                    return
            worker = idle.pop()
            task = line.popleft()
            self._running[worker] = task.id
            self._workers[worker].tell(Run(task))
            self._counts.attempts += 1

    def _wake_at(self, deadline: float) -> None:
        """Have the one rate-limit alarm ring by ``deadline``: the earliest a queue waits for
        wins, and each queue sets its own again when the alarm rings."""
        if self._rate_alarm_at is not None and self._rate_alarm_at <= deadline:
            return
        assert self._rate_alarm is not None
        self._rate_alarm_at = deadline
        self._rate_alarm.set(deadline)

    def _readiness(self) -> Readiness:
        """What an AdmitTask of a delayed task would meet now, in the queue with the most room:
        the same check, from ``_refusal``. Not ready only when no queue would take it."""
        refusals = [self._refusal(((state, 0),), 1) for state in self._queues.values()]
        if None in refusals:
            return Readiness.READY
        return _READINESS[refusals[0]]

    def _totals(self) -> LineCounts:
        workers = len(self._workers)
        idle = sum(len(state.idle) for state in self._queues.values())
        return self._counts.line_counts(
            waiting=sum(len(state.line) for state in self._queues.values()),
            workers=workers,
            busy=workers - idle,
            queue_size=self._queue_size,
            scheduled_max=self._scheduled_max,
        )

    def _answer_idle_waiters(self) -> None:
        idle = sum(len(state.idle) for state in self._queues.values())
        if self._idle_waiters and idle == len(self._workers):
            for waiter in self._idle_waiters:
                waiter.set(None)
            self._idle_waiters.clear()
