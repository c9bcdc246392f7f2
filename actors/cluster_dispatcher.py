"""ClusterDispatcherActor: an instance's workers, fed with work claimed from the shared table.

In a cluster the waiting lines are the table (actors/pg_store.py), shared by every instance;
this actor keeps none. Each queue QUEUES declares has workers of its own here. When a queue has
an idle worker and there may be work (a task enqueued here or, by NOTIFY, elsewhere; an
attempt's end; a retry or delayed task come due; a resume; a token of its rate; the poll), it
asks the repository to claim as many due tasks of that queue as the queue has idle workers, and
hands each claimed task to an idle worker of the queue. One claim is out at a time, for every
queue ready when it goes, in one statement: what becomes ready meanwhile goes in the next, as
the workers of a single queue do, so that four queues cost no more claims than one. A claim
also waits for the inbox to empty (or for CLAIM_DEFER_MAX messages), so that the queues woken
by one burst of messages, an intake commit's, go together. Whether
a queue is paused, and how fast it may start attempts, is the cluster's, kept in the database
and applied by the claim itself (actors/pg_queues.py). Admission is decided where the cluster's
counts are, in the intake commit; here only what this instance alone knows: it is shutting
down, or its database connection is down.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Final

import pykka

from actors.alarm import Alarm, posting
from actors.attempt_counts import AttemptCounts
from actors.base import Actor, tell_or_fail
from actors.protocol.answers import Admission, Outcome, Readiness
from actors.protocol.cluster import (
    AskReadiness,
    Claim,
    Claimed,
    FillQueues,
    LineStats,
    Wake,
    Want,
)
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
from actors.protocol.reading import GetDispatcherStats, GetReadiness
from actors.protocol.running import AttemptFinished, Run, Save
from actors.protocol.task_actions import AdmitRequeue, CancelInLine, StoreAdmittedRequeue
from actors.protocol.waiting import HoldUntilDue, TasksDue
from actors.queues import QueueInfo, QueueSpec
from actors.reply import SystemStopped
from actors.stats import LineCounts
from actors.task import DEFAULT_QUEUE

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from actors.reply import Reply
    from actors.task import Task

logger = logging.getLogger(__name__)

POLL_INTERVAL_S: Final = 1.0
"""How often an instance with an idle worker looks for work nobody told it of: the fallback
for a notification lost while the listener was reconnecting, and for delayed tasks enqueued on
an instance that has gone."""

CLAIM_DEFER_MAX: Final = 32
"""Messages handled at most while claims wait for the inbox to empty: under a steady stream of
messages a woken queue still claims."""

_WAKE = Wake()
_TOKENS_DUE = TokensDue()


class _Queue:
    """One queue's workers on this instance, and its claims. Used on the dispatcher's thread."""

    __slots__ = ("claiming", "idle", "spec", "token_at", "woken", "workers")

    def __init__(self, spec: QueueSpec, workers: Sequence[int]) -> None:
        self.spec = spec
        self.workers = tuple(workers)
        self.idle = list(reversed(self.workers))  # popped from the end: the first worker first
        # In the claim that is out; a wake-up during it claims again once it is answered.
        self.claiming = False
        self.woken = False
        # When the queue's rate allows its next start, if a claim was held back for it.
        self.token_at: float | None = None

    def info(self) -> QueueInfo:
        """This instance's part; the repository fills in the cluster's."""
        spec = self.spec
        busy = spec.workers - len(self.idle)
        return QueueInfo(spec.name, spec.workers, busy, 0, 0, False, spec.max_per_second)


class ClusterDispatcherActor(Actor):
    """Hands claimed tasks to the idle workers of their queue, one at a time each."""

    def __init__(
        self,
        repository: pykka.ActorRef,
        queue_size: int,
        scheduled_max: int,
        queues: Sequence[QueueSpec] | None = None,
    ) -> None:
        super().__init__()
        self._repository = repository
        self._queue_size = queue_size
        self._scheduled_max = scheduled_max
        # Without ``queues``: one queue, default, with every worker Connect brings.
        self._specs = tuple(queues) if queues is not None else None
        self._queues: dict[str, _Queue] = {}
        self._queue_of: list[_Queue] = []
        self._workers: tuple[pykka.ActorRef, ...] = ()
        self._retry: pykka.ActorRef | None = None
        self._running: list[str | None] = []
        self._shutting_down = False
        self._store_down = False
        self._idle_waiters: list[Reply[None]] = []
        self._poll: Alarm | None = None
        self._tokens: Alarm | None = None
        self._tokens_at: float | None = None
        self._deferred = 0
        self._counts = AttemptCounts()

    def on_start(self) -> None:
        self._poll = Alarm(self._ring, name="dispatcher-poll-alarm")
        self._poll.set(time.monotonic() + POLL_INTERVAL_S)
        if self._specs is not None and any(s.max_per_second is not None for s in self._specs):
            self._tokens = Alarm(posting(self.actor_ref, _TOKENS_DUE), name="rate-limit-alarm")

    def on_stop(self) -> None:
        super().on_stop()
        self._close()

    def on_failure(self, *exc_info: Any) -> None:
        super().on_failure(*exc_info)
        self._close()

    def _close(self) -> None:
        for alarm in (self._poll, self._tokens):
            if alarm is not None:
                alarm.close()
        error = SystemStopped("the dispatcher stopped before the workers were idle")
        for waiter in self._idle_waiters:
            waiter.fail(error)
        self._idle_waiters.clear()

    def on_receive(self, message: Any) -> Any:
        answer = self._handle(message)
        self._deferred += 1
        if self._deferred >= CLAIM_DEFER_MAX or self.actor_inbox.empty():
            self._deferred = 0
            self._claim_ready()
        self._answer_idle_waiters()
        return answer

    def _handle(self, message: Any) -> Any:
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
            case Claimed(queue, tasks, limit, next_token_s):
                self._claimed(self._queues[queue], tasks, limit, next_token_s)
            case Wake() | TasksDue():
                self._wake(self._queues.values())
            case TokensDue():
                self._tokens_due()
            case GetQueues(reply):
                infos = tuple(queue.info() for queue in self._queues.values())
                tell_or_fail(self._repository, FillQueues(infos, reply))
            case PauseQueue(name, paused, reply):
                self._pause(name, paused, reply)
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
                    tell_or_fail(self._repository, AskReadiness(tuple(self._queues), reply))
            case WhenIdle(reply):
                self._idle_waiters.append(reply)
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
                self._connect(workers, retry)
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

    def _connect(self, workers: tuple[pykka.ActorRef, ...], retry: pykka.ActorRef) -> None:
        self._workers, self._retry = workers, retry
        specs = self._specs or (QueueSpec(DEFAULT_QUEUE, len(workers)),)
        if sum(spec.workers for spec in specs) != len(workers):
            raise ValueError("the queues' workers do not add up to the workers connected")
        first = 0
        for spec in specs:
            self._queues[spec.name] = _Queue(spec, range(first, first + spec.workers))
            first += spec.workers
        self._queue_of = [queue for queue in self._queues.values() for _ in queue.workers]
        self._running = [None] * len(workers)
        self._wake(self._queues.values())

    def _stored(self, tasks: Iterable[Task]) -> None:
        woken = set()
        for task in tasks:
            if task.next_attempt_at is not None:
                self._wake_at(task, task.next_attempt_at - time.time())
            elif task.queue in self._queues:
                woken.add(task.queue)
        self._wake(self._queues[name] for name in woken)

    def _wake_at(self, task: Task, delay_s: float) -> None:
        """Have the retry actor's timer wake this dispatcher when ``task`` is due: whichever
        instance is idle then claims it."""
        if self._retry is None:
            return
        with contextlib.suppress(pykka.ActorDeadError):
            self._retry.tell(HoldUntilDue(task, max(0.0, delay_s)))

    def _wake(self, queues: Iterable[_Queue]) -> None:
        """There may be work for ``queues``: claimed once the inbox is empty."""
        for queue in queues:
            queue.woken = True

    def _ready(self, queue: _Queue) -> bool:
        """Whether ``queue`` is to claim: woken, with idle workers, not in the claim out."""
        if self._shutting_down or self._store_down:
            return False
        return queue.woken and bool(queue.idle) and not queue.claiming

    def _claim_ready(self) -> None:
        if any(queue.claiming for queue in self._queues.values()):
            return  # one claim out at a time: what gets ready meanwhile goes in the next
        ready = [queue for queue in self._queues.values() if self._ready(queue)]
        if not ready:
            return
        wants = tuple(Want(q.spec.name, len(q.idle), q.spec.max_per_second) for q in ready)
        if tell_or_fail(self._repository, Claim(wants, self.actor_ref)):
            for queue in ready:
                queue.woken = False
                queue.claiming = True

    def _claimed(
        self, queue: _Queue, tasks: tuple[Task, ...], limit: int, next_token_s: float | None
    ) -> None:
        queue.claiming = False
        for task in tasks:
            # The claim asked for no more than the queue's idle workers, and only this actor
            # makes a worker busy: there is one for each.
            worker = queue.idle.pop()
            self._running[worker] = task.id
            self._workers[worker].tell(Run(task))
            self._counts.attempts += 1
        if len(tasks) == limit:
            queue.woken = True  # a full claim: more may be due
        if next_token_s is not None:
            self._token_at(queue, time.monotonic() + next_token_s)

    def _finished(self, worker: int, task: Task, retry_delay_s: float | None) -> None:
        queue = self._queue_of[worker]
        queue.idle.append(worker)
        self._running[worker] = None
        self._counts.ended(task, retry_delay_s)
        self._repository.tell(Save(task))
        if retry_delay_s is not None:
            self._wake_at(task, retry_delay_s)
        self._wake((queue,))

    def _pause(self, name: str, paused: bool, reply: Reply[QueueInfo | None]) -> None:
        """Pause or resume ``name`` for the whole cluster: the repository writes it (and
        answers with the queue); after a resume this instance claims at once, after the
        write, as the repository takes its messages in order."""
        queue = self._queues.get(name)
        if queue is None:
            reply.set(None)
            return
        tell_or_fail(self._repository, SaveQueuePaused(name, paused, queue.info(), reply))
        if not paused:
            self._wake((queue,))

    def _token_at(self, queue: _Queue, at: float) -> None:
        """Claim for ``queue`` again when its rate allows: one alarm for all queues, set for
        the earliest token one of them waits for."""
        queue.token_at = at
        if self._tokens is None or (self._tokens_at is not None and self._tokens_at <= at):
            return
        self._tokens_at = at
        self._tokens.set(at)

    def _tokens_due(self) -> None:
        self._tokens_at = None
        now = time.monotonic()
        due = [q for q in self._queues.values() if q.token_at is not None and q.token_at <= now]
        for queue in due:
            queue.token_at = None
        later = [q.token_at for q in self._queues.values() if q.token_at is not None]
        if later and self._tokens is not None:
            self._tokens_at = min(later)
            self._tokens.set(self._tokens_at)
        self._wake(due)

    def _ring(self) -> None:
        # On the alarm's thread: the poll, then the next one.
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(_WAKE)
            assert self._poll is not None
            self._poll.set(time.monotonic() + POLL_INTERVAL_S)

    def _idle_count(self) -> int:
        return sum(len(queue.idle) for queue in self._queues.values())

    def _totals(self) -> LineCounts:
        workers = len(self._workers)
        return self._counts.line_counts(
            waiting=0,  # the cluster's, filled in by the repository
            workers=workers,
            busy=workers - self._idle_count(),
            queue_size=self._queue_size,
            scheduled_max=self._scheduled_max,
        )

    def _answer_idle_waiters(self) -> None:
        if not self._idle_waiters or self._idle_count() != len(self._workers):
            return
        # Not while a claim is on its way or about to go: the tasks it brings would run here.
        if not any(queue.claiming or self._ready(queue) for queue in self._queues.values()):
            for waiter in self._idle_waiters:
                waiter.set(None)
            self._idle_waiters.clear()
