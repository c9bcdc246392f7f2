"""ClusterRepositoryActor: the repository of an instance of a cluster, over the shared table.

It answers the RepositoryActor's messages (actors/protocol/), so the dispatcher, the workers
and the API see no difference in how they ask; but it keeps no map of the tasks: in a cluster
the table is the one view every instance shares (actors/pg_store.py), so every read goes there.
It is this instance's only owner of the tasks' database connections: the one it uses, and the
listener's (actors/pg_listener.py), which it starts and stops. (The schedules have theirs,
owned by the ClusterScheduleActor: actors/pg_schedule_store.py says why.)

Intake goes through a GroupCommit (actors/group_commit.py), as with SQLite: many enqueues per
transaction, and nobody answered before the commit. The outcome of attempts is written in
batches too, once the inbox is empty, and kept for the next try while the database is down.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import msgspec
import pykka

from actors.alarm import Alarm, posting
from actors.base import Actor
from actors.group_commit import GroupCommit
from actors.leases import renew, renew_interval_s, rescue, rescue_interval_s
from actors.outage import StoreOutage
from actors.pg_listener import Listener
from actors.pg_queues import QueueLines, queue_lines
from actors.pg_retention import sweep
from actors.pg_store import Claims
from actors.protocol.answers import Admission, BatchAdmission, Outcome, Readiness, Stock
from actors.protocol.cluster import (
    AskReadiness,
    Claim,
    Claimed,
    FillQueues,
    LineStats,
    Tick,
    Wake,
)
from actors.protocol.intake import (
    AnswerRefusal,
    BatchStored,
    StoreAdmittedBatch,
    StoreAdmittedTask,
    TaskStored,
)
from actors.protocol.lifecycle import (
    CommitDue,
    Recover,
    Recovered,
    StoreAvailability,
    TakeStock,
    WatchStore,
)
from actors.protocol.queues import SaveQueuePaused
from actors.protocol.reading import GetRepositoryStats, GetTask, ListPage
from actors.protocol.running import Save, SaveRunning
from actors.protocol.task_actions import CancelInLine, DeleteTask, StoreAdmittedRequeue
from actors.reply import Reply, SystemStopped
from actors.stats import Rejected, StatusCounts, TaskCounts
from actors.store import StoreError
from actors.task import STATUSES

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.backoff import Uniform
    from actors.group_commit import Held
    from actors.outage import Failure
    from actors.pg_store import PgStore
    from actors.protocol.cluster import Want
    from actors.queues import QueueInfo
    from actors.retention import Retention
    from actors.task import Task
    from actors.worker import RetryPolicy

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_S: Final = 1.0
"""How often retention runs: a batch or a few of deletions, by one statement each."""

OUTCOMES_CAP: Final = 256
"""Outcomes written in one statement at most; more are written even with the inbox busy."""

_TICK = Tick()
_COMMIT_DUE = CommitDue()


class _Intake(NamedTuple):
    """A new task staged for the intake commit: granted once committed, unless the commit
    refused it (a taken id, a full queue), withdrawn if the commit failed."""

    tasks: tuple[Task, ...]
    reply: Reply[Admission]
    admitted_by: pykka.ActorRef


class ClusterRepositoryActor(Actor):
    """One instance's access to the cluster's tasks: intake, reads, claims, leases, outcomes."""

    def __init__(
        self,
        open_store: Callable[[], PgStore],
        *,
        retry: RetryPolicy,
        uniform: Uniform,
        retention: Retention | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._open_store = open_store
        self._retry = retry
        self._uniform = uniform
        self._retention = retention if retention is not None and retention.enabled else None
        self._clock = clock
        self._store: PgStore | None = None
        self._group: GroupCommit | None = None
        self._commit_alarm: Alarm | None = None
        self._tick_alarm: Alarm | None = None
        self._listener: Listener | None = None
        self._outage = StoreOutage()
        self._watcher: pykka.ActorRef | None = None
        # Ids staged for the intake commit: a second enqueue of one before it is a duplicate.
        self._staged: set[str] = set()
        # Outcomes of attempts to write (latest per id): batched, and kept through an outage.
        self._outcomes: dict[str, Task] = {}
        self._enqueued = 0
        self._refused: Counter[Admission] = Counter()
        self._cancelled = 0
        self._evicted = 0
        # The last counts read, answered while the database cannot be read.
        self._counts = StatusCounts(**dict.fromkeys(STATUSES, 0))
        self._lines = QueueLines({}, frozenset())
        now = time.monotonic()
        self._next_renew = self._next_rescue = self._next_sweep = now

    # --- the actor --------------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        answer = self._handle(message)
        if self._group is not None:
            self._group.settle(self.actor_inbox)
            if (
                self._outcomes
                and not self._outage.down
                and (len(self._outcomes) >= OUTCOMES_CAP or self.actor_inbox.empty())
            ):
                self._write_outcomes()
        return answer

    def on_stop(self) -> None:
        super().on_stop()
        try:
            if self._group is not None:
                self._write_outcomes()
                # After the workers stopped: attempts still running here were cut off at the
                # shutdown deadline. Counted as interrupted now, not when their lease runs out.
                self._rescue(own=True)
                self._group.close()  # a last intake commit, then the store is closed
        finally:
            self._close()

    def on_failure(self, *exc_info: Any) -> None:
        super().on_failure(*exc_info)
        self._close()

    def _close(self) -> None:
        for closing in (self._listener, self._tick_alarm, self._commit_alarm):
            if closing is not None:
                with contextlib.suppress(Exception):
                    closing.close()
        if self._group is not None:
            error = SystemStopped("the repository stopped before the commit its answer waited for")
            for _, value in self._group.take_held():
                if isinstance(value, _Intake):
                    value.reply.fail(error)
        if self._store is not None:
            self._store.close()

    def _handle(self, message: Any) -> Any:
        match message:
            case StoreAdmittedTask(task, reply, admitted_by):
                self._insert(task, reply, admitted_by)
            case StoreAdmittedBatch(tasks, reply, admitted_by, _, refusal):
                self._insert_batch(tasks, reply, admitted_by, refusal)
            case AnswerRefusal(task_id, reply, reason):
                answer = reason
                if reason is not Admission.STORE_UNAVAILABLE and self._reads(
                    lambda store: store.exists(task_id), False
                ):
                    answer = Admission.DUPLICATE
                self._refused[answer] += 1
                reply.set(answer)
            case Claim(wants, dispatcher):
                claims = self._claim(wants)
                with contextlib.suppress(pykka.ActorDeadError):
                    for want in wants:
                        tasks = tuple(claims.tasks.get(want.queue, ()))
                        wait_s = claims.next_token_s.get(want.queue)
                        dispatcher.tell(Claimed(want.queue, tasks, want.limit, wait_s))
            case SaveRunning(_, committed):
                committed.set(None)  # the claim committed the attempt's start already
            case Save(task):
                self._outcomes[task.id] = task
            case GetTask(task_id, reply):
                self._read(reply, lambda store: store.get(task_id))
            case ListPage(reply, status, limit, after, newest_first, queue):
                self._read(
                    reply,
                    lambda store: store.page(
                        status=status,
                        limit=limit,
                        after=after,
                        newest_first=newest_first,
                        queue=queue,
                    ),
                )
            case GetRepositoryStats(reply):
                reply.set(self._stats())
            case LineStats(line, reply, scheduled):
                waiting, waiting_for_time = self._read_lines().totals()
                reply.set(msgspec.structs.replace(line, waiting=waiting))
                if scheduled is not None:
                    scheduled.set(waiting_for_time)
            case AskReadiness(queues, reply):
                reply.set(self._readiness(queues))
            case FillQueues(queues, reply):
                lines = self._read_lines()
                reply.set(tuple(lines.fill(info) for info in queues))
            case SaveQueuePaused(name, paused, info, reply):
                self._pause(name, paused, info, reply)
            case CancelInLine(task_id, reply, _):
                outcome = self._act(reply, lambda store: store.cancel(task_id, self._clock()))
                self._cancelled += outcome.task is not None
            case StoreAdmittedRequeue(task_id, reply, admitted_by, refusal):
                self._requeue(task_id, reply, admitted_by, refusal)
            case DeleteTask(task_id, reply):
                self._act(reply, lambda store: store.delete(task_id))
            case TakeStock(reply):
                counts = self._read_counts()
                waiting, waiting_for_time = self._read_lines().totals()
                reply.set(Stock(msgspec.structs.asdict(counts), waiting, waiting_for_time))
            case Tick():
                self._tick()
            case CommitDue():
                if self._group is not None:
                    self._group.due()
            case WatchStore(dispatcher):
                self._watch(dispatcher)
            case Recover(reply):
                reply.set(self._recover())
            case _:
                return super().on_receive(message)
        return None

    # --- intake -----------------------------------------------------------------------------------

    def _insert(self, task: Task, reply: Reply[Admission], admitted_by: pykka.ActorRef) -> None:
        refusal = None
        if self._outage.down:
            refusal = Admission.STORE_UNAVAILABLE
        elif task.id in self._staged:
            refusal = Admission.DUPLICATE
        if refusal is not None:
            self._refused[refusal] += 1
            reply.set(refusal)
            return
        assert self._group is not None
        self._staged.add(task.id)
        self._group.accept(_Intake((task,), reply, admitted_by))

    def _grant(self, intake: _Intake) -> None:
        """The intake commit took the task, or refused it (store.refused)."""
        assert self._store is not None
        (task,) = intake.tasks
        self._staged.discard(task.id)
        refusal = self._store.refused.get(task.id)
        if refusal is not None:
            self._refused[refusal] += 1
            intake.reply.set(refusal)
            return
        self._enqueued += 1
        # The dispatcher hears first (it may claim the task at once), the client second.
        with contextlib.suppress(pykka.ActorDeadError):
            intake.admitted_by.tell(TaskStored(task))
        intake.reply.set(Admission.ACCEPTED)

    def _insert_batch(
        self,
        tasks: tuple[Task, ...],
        reply: Reply[BatchAdmission],
        admitted_by: pykka.ActorRef,
        refusal: Admission | None,
    ) -> None:
        if refusal is None and self._outage.down:
            refusal = Admission.STORE_UNAVAILABLE
        if refusal is not None:
            self._refused[refusal] += 1
            reply.set(BatchAdmission(refusal))
            return
        # Its own transaction, all or nothing: one taken id refuses the batch.
        answer = self._writes(
            lambda store: store.insert_batch(tasks), BatchAdmission(Admission.STORE_UNAVAILABLE)
        )
        if answer.admission is Admission.ACCEPTED:
            self._enqueued += len(tasks)
            with contextlib.suppress(pykka.ActorDeadError):
                admitted_by.tell(BatchStored(tasks, ()))
        else:
            self._refused[answer.admission] += 1
        reply.set(answer)

    def _requeue(
        self,
        task_id: str,
        reply: Reply[Outcome],
        admitted_by: pykka.ActorRef,
        refusal: Admission | None,
    ) -> None:
        if refusal is not None:
            reply.set(Outcome(None, refused=refusal))
            return
        outcome = self._writes(
            lambda store: store.requeue(task_id, self._clock()),
            Outcome(None, refused=Admission.STORE_UNAVAILABLE),
        )
        if outcome.task is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                admitted_by.tell(TaskStored(outcome.task))
        reply.set(outcome)

    def _intake_failed(self, exc: StoreError, failure: Failure, held: list[Held]) -> None:
        """The intake commit failed: every task it was to take is refused (503), and deleted
        at the next commit in case the commit reached the database after all."""
        self._went_down(exc, failure)
        assert self._group is not None
        for _, value in held:
            if isinstance(value, _Intake):
                for task in value.tasks:
                    self._staged.discard(task.id)
                    self._group.delete(task.id)
                self._refused[Admission.STORE_UNAVAILABLE] += 1
                value.reply.set(Admission.STORE_UNAVAILABLE)

    # --- reads and actions ------------------------------------------------------------------------

    def _read(self, reply: Reply[Any], read: Callable[[PgStore], object]) -> None:
        assert self._store is not None
        if self._outage.error is not None:
            # Not tried again here: an unreachable host could hold this actor for seconds at
            # each read. The tick tries the database.
            reply.fail(self._outage.error)
            return
        try:
            reply.set(read(self._store))
        except StoreError as exc:
            self._failed(exc)
            reply.fail(exc)

    def _act(self, reply: Reply[Outcome], act: Callable[[PgStore], Outcome]) -> Outcome:
        """Cancel or delete: refused (503) while the database cannot be written."""
        outcome = self._writes(act, Outcome(None, refused=Admission.STORE_UNAVAILABLE))
        reply.set(outcome)
        return outcome

    def _reads(self, read: Callable[[PgStore], Any], default: Any) -> Any:
        """A read whose last answer (``default``) is good enough in an outage."""
        return self._writes(read, default)

    def _writes(self, write: Callable[[PgStore], Any], default: Any) -> Any:
        """``write``'s answer, or ``default`` if the database failed (an outage begins)."""
        assert self._store is not None
        if self._outage.down:
            return default
        try:
            return write(self._store)
        except StoreError as exc:
            self._failed(exc)
            return default

    def _read_counts(self) -> StatusCounts:
        self._counts = self._reads(lambda store: store.counts(), self._counts)
        return self._counts

    def _read_lines(self) -> QueueLines:
        self._lines = self._reads(queue_lines, self._lines)
        return self._lines

    def _readiness(self, queues: tuple[str, ...]) -> Readiness:
        store = self._store
        assert store is not None
        if self._outage.down:
            return Readiness.STORE_UNAVAILABLE
        lines = self._read_lines()
        if self._outage.down:
            return Readiness.STORE_UNAVAILABLE
        return lines.readiness(queues, store.queue_size, store.scheduled_max)

    def _pause(
        self, name: str, paused: bool, info: QueueInfo, reply: Reply[QueueInfo | None]
    ) -> None:
        """Pause or resume a queue for the cluster; answered with the queue as the database
        has it then, or failed (503) if it could not be written: then nothing changed."""
        assert self._store is not None
        if self._outage.error is not None:
            reply.fail(self._outage.error)
            return
        try:
            self._store.pause(name, paused=paused)
        except StoreError as exc:
            self._failed(exc)
            reply.fail(exc)
            return
        logger.info("queue %r %s for the cluster", name, "paused" if paused else "resumed")
        lines = self._read_lines()
        reply.set(lines.fill(info))

    def _stats(self) -> TaskCounts:
        refused = self._refused
        return TaskCounts(
            tasks=self._read_counts(),
            store="unavailable" if self._outage.down else "available",
            enqueued=self._enqueued,
            rejected=Rejected(
                full=refused[Admission.QUEUE_FULL],
                duplicate=refused[Admission.DUPLICATE],
                shutting_down=refused[Admission.SHUTTING_DOWN],
                store_unavailable=refused[Admission.STORE_UNAVAILABLE],
                too_many_scheduled=refused[Admission.TOO_MANY_SCHEDULED],
                invalid=0,
            ),
            cancelled=self._cancelled,
            evicted=self._evicted,
            instance=self._store.instance_id if self._store is not None else None,
        )

    # --- outcomes, leases, retention --------------------------------------------------------------

    def _claim(self, wants: tuple[Want, ...]) -> Claims:
        """Claim, writing the outcomes that wait in the same round trip (an attempt's end is
        followed by its worker's claim)."""
        assert self._store is not None
        nothing = Claims({}, set(), {})
        if self._outage.down:
            return nothing
        outcomes = list(self._outcomes.values())[:OUTCOMES_CAP]
        try:
            claimed = self._store.claim_many(wants, outcomes)
        except StoreError as exc:
            self._failed(exc)
            return nothing
        self._written(outcomes, claimed.written)
        return claimed

    def _write_outcomes(self) -> None:
        if not self._outcomes or self._outage.down:
            return
        assert self._store is not None
        outcomes = list(self._outcomes.values())[:OUTCOMES_CAP]
        try:
            written = self._store.finish(outcomes)
        except StoreError as exc:
            self._failed(exc)
            return
        self._written(outcomes, written)

    def _written(self, outcomes: list[Task], written: set[str]) -> None:
        for task in outcomes:
            del self._outcomes[task.id]
            if task.id not in written:
                logger.warning(
                    "task %r attempt %d: its outcome (%s) is dropped, its lease ran out and "
                    "another instance counted the attempt as interrupted",
                    task.id,
                    task.attempts,
                    task.status,
                )

    def _tick(self) -> None:
        assert self._store is not None and self._group is not None
        now = time.monotonic()
        if self._outage.down:
            self._group.commit()  # tries the database: reconnects, or stays down
        if not self._outage.down:
            lease_ms = self._store.lease_ms
            if now >= self._next_renew:
                self._next_renew = now + renew_interval_s(lease_ms)
                self._writes(renew, 0)
            self._write_outcomes()
            if now >= self._next_rescue:
                self._next_rescue = now + rescue_interval_s(lease_ms)
                self._rescue()
            if self._retention is not None and now >= self._next_sweep:
                self._next_sweep = now + SWEEP_INTERVAL_S
                rules = self._retention
                self._evicted += self._writes(lambda store: sweep(store, rules, self._clock()), 0)
        self._arm_tick()

    def _rescue(self, *, own: bool = False) -> None:
        rescued = self._writes(lambda store: rescue(store, self._retry, self._uniform, own=own), [])
        waiting = tuple(
            (task, max(0.0, task.next_attempt_at - time.time()))
            for task in rescued
            if task.next_attempt_at is not None
        )
        if waiting and self._watcher is not None and not own:
            with contextlib.suppress(pykka.ActorDeadError):
                self._watcher.tell(Recovered((), waiting))

    def _arm_tick(self) -> None:
        if self._tick_alarm is None:
            return
        due = min(self._next_renew, self._next_rescue)
        if self._retention is not None:
            due = min(due, self._next_sweep)
        if self._outage.down:
            due = min(due, time.monotonic() + 0.5)
        self._tick_alarm.set(due)

    # --- the database coming and going ------------------------------------------------------------

    def _failed(self, exc: StoreError) -> None:
        """A statement failed: the database is down until a check succeeds (the tick tries)."""
        failure = self._outage.failed(exc, time.monotonic())
        self._went_down(exc, failure)
        self._arm_tick()

    def _went_down(self, exc: StoreError, failure: Failure) -> None:
        if failure.began:
            self._tell_watcher(available=False)
        logger.log(
            failure.level,
            "%s; new tasks are refused (503 store unavailable) until it is back (%d failure(s))",
            exc,
            self._outage.failures,
        )

    def _back(self) -> None:
        logger.warning(
            "the database is available again after %.1f s; new tasks are accepted",
            time.monotonic() - self._outage.began_at,
        )
        self._tell_watcher(available=True)

    def _tell_watcher(self, *, available: bool) -> None:
        if self._watcher is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                self._watcher.tell(StoreAvailability(available))
                if available:
                    self._watcher.tell(Wake())

    def _watch(self, dispatcher: pykka.ActorRef) -> None:
        self._watcher = dispatcher
        assert self._store is not None
        self._listener = Listener(self._store.url, self._store.instance_id, dispatcher)
        if self._outage.down:
            self._tell_watcher(available=False)

    def _recover(self) -> tuple[Task, ...] | StoreError:
        try:
            store = self._open_store()
        except StoreError as exc:
            return exc
        self._store = store
        self._commit_alarm = Alarm(
            posting(self.actor_ref, _COMMIT_DUE), name="repository-commit-alarm"
        )
        self._group = GroupCommit(
            store,
            self._commit_alarm,
            self._outage,
            grant=self._grant,
            failed=self._intake_failed,
            back=self._back,
        )
        self._tick_alarm = Alarm(posting(self.actor_ref, _TICK), name="repository-lease-alarm")
        self._arm_tick()
        return ()
