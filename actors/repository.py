"""RepositoryActor: the only owner of the task map, and of the durable store under it."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import msgspec
import pykka

from actors.alarm import Alarm, posting
from actors.base import Actor, fail_replies, tell_question
from actors.group_commit import GroupCommit, deliver
from actors.outage import StoreOutage
from actors.paging import CreationOrder, Page
from actors.protocol.answers import Admission, BatchAdmission, Outcome, Stock
from actors.protocol.intake import (
    AnswerRefusal,
    BatchStored,
    PlacesReleased,
    StoreAdmittedBatch,
    StoreAdmittedTask,
    TaskStored,
)
from actors.protocol.lifecycle import (
    CommitDue,
    Recover,
    StoreAvailability,
    SweepRetention,
    TakeStock,
    WatchStore,
)
from actors.protocol.queues import LoadPausedQueues, SaveQueuePaused
from actors.protocol.reading import GetRepositoryStats, GetTask, ListPage
from actors.protocol.running import Save, SaveRunning
from actors.protocol.task_actions import (
    CancelInLine,
    CancelInRepository,
    DeleteTask,
    StoreAdmittedRequeue,
)
from actors.reply import Reply, SystemStopped
from actors.retention import FinishedOrder, Retention
from actors.stats import Rejected, StatusCounts, TaskCounts
from actors.store import QueueStates, StoreError
from actors.task import (
    CANCELLED,
    DONE,
    FAILED,
    FINAL_STATUSES,
    QUEUED,
    RUNNING,
    STATUSES,
    Task,
    log_fields,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.group_commit import Held
    from actors.outage import Failure
    from actors.protocol.intake import Places
    from actors.store import OpenStore

logger = logging.getLogger(__name__)

RETENTION_SWEEP_S: Final = 1.0
"""The longest the retention alarm sleeps: a clock moved on (in tests) is seen within this."""

MAX_CANCEL_ROUNDS: Final = 8
"""How often a CancelInLine may go round the actors looking for a task on its way between them. One
round more always finds it; the bound is only a guard against a bug turning into a loop."""

_COMMIT_DUE = CommitDue()
_SWEEP = SweepRetention()
replace = msgspec.structs.replace


class _Acceptance(NamedTuple):
    """New work applied to the map but not yet committed: granted (the dispatcher told, the
    client answered) once it is, withdrawn if the commit fails, leaving no trace."""

    tasks: tuple[Task, ...]
    before: tuple[Task | None, ...]
    """Each task's state before (None: it is new); what a withdrawal puts back."""
    admitted_by: pykka.ActorRef
    notice: object
    """For the dispatcher, once committed: TaskStored or BatchStored."""
    reply: Reply[Any]
    granted: object
    refused: Callable[[Admission], object]
    """The client's answer when the work is withdrawn, for the reason given."""
    places: Places
    """Places the dispatcher reserved: given back if withdrawn."""


class RepositoryActor(Actor):
    """Holds every task by id, in creation order; with a store, also keeps them durable.

    Being the only owner is what makes locks unnecessary: every read and write is a message,
    handled one at a time on this actor's thread. It stores and hands out frozen snapshots, so
    nothing a caller gets can change under it. Callers only ever see these messages, whether a
    store sits under it or not.

    With a store, each change is applied to the map at once and staged in a GroupCommit
    (actors/group_commit.py), which holds back every message this actor sends (answers to reads
    included) until the changes are committed, many in one transaction. Without a store nothing
    is staged and nothing is held: it answers at once, as a purely in-memory map.
    """

    _send: Callable[[Callable[[Any], object], Any], None]
    """Send now, or (with a store) after the commit of what is staged: GroupCommit.send."""
    _accept: Callable[[_Acceptance], None]
    """New work is in the map: granted at once without a store, else after the commit
    (GroupCommit.accept)."""

    def __init__(
        self,
        open_store: OpenStore | None = None,
        *,
        retention: Retention | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        # A dict keeps insertion order, and replacing a value keeps its place: creation order.
        self._tasks: dict[str, Task] = {}
        # Where each task stands in creation order, for GET /tasks?after=; follows the map lazily.
        self._order = CreationOrder()
        self._open_store = open_store
        # With a store (from Recover on): what is not committed yet, and what waits for it.
        self._group: GroupCommit | None = None
        self._send = deliver
        self._accept = self._grant
        # Tasks per status, kept up to date on every change so GET /stats never scans the map;
        # and every intake answer since start, by how it ended.
        self._counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        self._enqueued = 0
        self._refused: Counter[Admission] = Counter()
        self._cancelled = 0
        self._evicted = 0
        # Finished tasks are forgotten oldest first by these rules (none: kept for ever); the
        # clock is what their age is measured with, injected so tests can move it on.
        self._retention = retention if retention is not None and retention.enabled else None
        self._clock = clock
        self._finished_order = FinishedOrder()
        self._sweep_alarm: Alarm | None = None
        self._sweep_set = False
        # No earlier than this (clock time) can the oldest finished task expire: until then a
        # finish need not look at the order. Lowered by each finish, set exactly by each sweep.
        self._next_expiry = math.inf
        # Whether the store cannot be written now. Meanwhile staged changes wait for the next
        # try, and nothing is held: new work is refused.
        self._outage = StoreOutage()
        self._watcher: pykka.ActorRef | None = None
        # The store, if it keeps which queues are paused (actors/store.py's QueueStates).
        self._queue_states: QueueStates | None = None

    def on_start(self) -> None:
        if self._retention is not None and self._retention.ttl_s > 0:
            self._sweep_alarm = Alarm(
                posting(self.actor_ref, _SWEEP), name="repository-retention-alarm"
            )

    def on_receive(self, message: Any) -> Any:
        answer = self._handle(message)
        group = self._group
        if group is not None:
            group.settle(self.actor_inbox)
        return answer

    def on_stop(self) -> None:
        super().on_stop()
        try:
            if self._sweep_alarm is not None:
                self._sweep_alarm.close()
            if self._group is not None:
                self._group.close()  # a last commit releases what is held for it
        finally:
            self._fail_held("stopped")

    def on_failure(self, *exc_info: Any) -> None:
        super().on_failure(*exc_info)
        self._fail_held("crashed")
        if self._sweep_alarm is not None:
            self._sweep_alarm.close()
        if self._group is not None:
            with contextlib.suppress(Exception):
                self._group.release()

    def _fail_held(self, why: str) -> None:
        """Fail every question whose answer is still held for a commit that will never come."""
        if self._group is None:
            return
        held = self._group.take_held()
        error = SystemStopped(f"the repository {why} before the commit its answer waited for")
        for send, value in held:
            answering = getattr(send, "__self__", None)  # a Reply's own set
            if isinstance(answering, Reply):
                answering.fail(error)
            else:
                fail_replies(value, error)  # a grant, a CancelInLine going round again

    def _handle(self, message: Any) -> Any:
        match message:
            case Save(task):
                self._save(task)
            case SaveRunning(task, committed):
                self._save(task)
                self._send(committed.set, None)
            case StoreAdmittedTask(task, reply, admitted_by):
                self._insert(task, reply, admitted_by)
            case StoreAdmittedBatch(tasks, reply, admitted_by, places, refusal):
                self._insert_batch(tasks, reply, admitted_by, places, refusal)
            case CancelInRepository(task_id, reply, found, dispatcher, rounds):
                self._mark_cancelled(task_id, reply, found, dispatcher, rounds)
            case StoreAdmittedRequeue(task_id, reply, admitted_by, refusal, queue):
                self._requeue(task_id, reply, admitted_by, refusal, queue)
            case DeleteTask(task_id, reply):
                self._delete(task_id, reply)
            case SweepRetention():
                self._sweep_set = False
                self._apply_retention()
            case AnswerRefusal(task_id, reply, reason):
                answer = Admission.DUPLICATE if task_id in self._tasks else reason
                self._refused[answer] += 1
                self._send(reply.set, answer)
            case GetTask(task_id, reply):
                self._send(reply.set, self._tasks.get(task_id))
            case ListPage(reply, status, limit, after, newest_first, queue):
                page = self._order.page(
                    self._tasks,
                    status=status,
                    limit=limit,
                    after=after,
                    newest_first=newest_first,
                    queue=queue,
                )
                self._send(reply.set, page)
            case TakeStock(reply):
                self._send(reply.set, self._stock())
            case GetRepositoryStats(reply):
                self._send(reply.set, self._stats())
            case CommitDue():
                if self._group is not None:
                    self._group.due()
            case WatchStore(dispatcher):
                self._watcher = dispatcher
                if self._outage.down:
                    self._tell_watcher(available=False)
            case Recover(reply):
                self._send(reply.set, self._recover())
            case LoadPausedQueues(reply):
                self._send(reply.set, self._paused_queues())
            case SaveQueuePaused(name, paused, info, reply):
                self._save_paused(name, paused)
                self._send(reply.set, info)
            case _:
                return super().on_receive(message)
        return None

    def _save(self, task: Task) -> None:
        old = self._tasks.get(task.id)
        self._tasks[task.id] = task
        if old is not None:
            self._counts[old.status] -= 1
        self._counts[task.status] += 1
        group = self._group
        if group is not None:
            group.stage(task)
        if (
            self._retention is not None
            and task.status in FINAL_STATUSES
            and (old is None or old.status not in FINAL_STATUSES)
        ):
            self._finished_order.finished(task.id)
            rules = self._retention
            expiry = task.updated_at + rules.ttl_s
            if expiry < self._next_expiry:
                self._next_expiry = expiry
            # Every finish passes here, on this actor's thread, which every task needs: only the
            # count rule is checked now. The age rule is the sweep alarm's, within a second.
            if 0 < rules.max_finished < self._finished_count() or not self._sweep_set:
                self._apply_retention()

    def _insert(self, task: Task, reply: Reply[Admission], admitted_by: pykka.ActorRef) -> None:
        # The dispatcher hears first and the client second: once the client has its answer, any
        # later message it causes finds the dispatcher already knowing the task's fate.
        places = (task.queue,) if task.next_attempt_at is None else ()
        refusal = Admission.DUPLICATE if task.id in self._tasks else self._unavailable()
        if refusal is not None:
            self._refused[refusal] += 1
            self._send(admitted_by.tell, PlacesReleased(places))
            self._send(reply.set, refusal)
            return
        self._tasks[task.id] = task
        self._counts[task.status] += 1
        self._enqueued += 1
        self._accept(
            _Acceptance(
                (task,),
                (None,),
                admitted_by,
                TaskStored(task),
                reply,
                Admission.ACCEPTED,
                _same,
                places,
            )
        )

    def _insert_batch(
        self,
        tasks: tuple[Task, ...],
        reply: Reply[BatchAdmission],
        admitted_by: pykka.ActorRef,
        places: Places,
        refusal: Admission | None,
    ) -> None:
        """All of ``tasks`` or none: a taken or repeated id refuses the batch, whatever the line."""
        seen: set[str] = set()
        for index, task in enumerate(tasks):
            if task.id in self._tasks or task.id in seen:
                self._refused[Admission.DUPLICATE] += 1
                if places:
                    self._send(admitted_by.tell, PlacesReleased(places))
                self._send(reply.set, BatchAdmission(Admission.DUPLICATE, index))
                return
            seen.add(task.id)
        if refusal is None:
            refusal = self._unavailable()
            if refusal is not None and places:
                self._send(admitted_by.tell, PlacesReleased(places))
        if refusal is not None:
            self._refused[refusal] += 1
            self._send(reply.set, BatchAdmission(refusal))
            return
        for task in tasks:
            self._tasks[task.id] = task
        self._counts[QUEUED] += len(tasks)
        self._enqueued += len(tasks)
        self._accept(
            _Acceptance(
                tasks,
                (None,) * len(tasks),
                admitted_by,
                BatchStored(tasks, places),
                reply,
                BatchAdmission(Admission.ACCEPTED),
                BatchAdmission,
                places,
            )
        )

    def _mark_cancelled(
        self,
        task_id: str,
        reply: Reply[Outcome],
        found: bool,
        dispatcher: pykka.ActorRef,
        rounds: int,
    ) -> None:
        task = self._tasks.get(task_id)
        if found and (task is None or task.status != QUEUED):
            # Cannot happen: what waits in line or in the heap is stored as queued first. Said
            # loudly, but an answer still goes out and this actor (every task's owner) lives on.
            logger.error("task %r was taken out to cancel but is stored as %r", task_id, task)
            self._send(reply.set, Outcome(None, conflict="task could not be cancelled"))
        elif found:
            assert task is not None
            # Out of the line or the retry heap: queued, and now it can never run.
            cancelled = replace(
                task, status=CANCELLED, updated_at=self._clock(), next_attempt_at=None
            )
            self._cancelled += 1
            self._save(cancelled)
            logger.debug("task %r cancelled", task_id, extra=log_fields(cancelled))
            self._send(reply.set, Outcome(cancelled))
        elif task is None:
            self._send(reply.set, Outcome(None))
        elif task.status != QUEUED:
            self._send(reply.set, Outcome(None, conflict=f"task is {task.status}"))
        elif rounds >= MAX_CANCEL_ROUNDS:
            logger.error("task %r: cancel gave up after %d rounds", task_id, rounds)
            self._send(reply.set, Outcome(None, conflict="task is being moved; try again"))
        else:
            # Queued, yet neither in line nor waiting: on its way between actors. Round again,
            # behind the message that carries it (held messages keep their order).
            again = CancelInLine(task_id, reply, rounds + 1)
            self._send(functools.partial(_round_again, dispatcher), again)

    def _requeue(
        self,
        task_id: str,
        reply: Reply[Outcome],
        admitted_by: pykka.ActorRef,
        refusal: Admission | None,
        queue: str,
    ) -> None:
        task = self._tasks.get(task_id)
        refused: Outcome | None = None
        if task is None:
            refused = Outcome(None)
        elif task.queue != queue:
            # Deleted and enqueued again in another queue since the API looked it up.
            refused = Outcome(None, conflict="task changed queue; try again")
        elif task.status not in (FAILED, CANCELLED):
            conflict = f"task is {task.status}; only a failed or cancelled task can be retried"
            refused = Outcome(None, conflict=conflict)
        elif refusal is not None:
            refused = Outcome(None, refused=refusal)
        elif self._outage.down:
            refused = Outcome(None, refused=Admission.STORE_UNAVAILABLE)
        if refused is not None:
            if refusal is None:  # the dispatcher reserved a place for it: give it back
                self._send(admitted_by.tell, PlacesReleased((queue,)))
            self._send(reply.set, refused)
            return
        assert task is not None  # refused above otherwise
        # A fresh round: attempts from 0; last_error stays until the next attempt replaces it.
        queued = replace(
            task, status=QUEUED, attempts=0, updated_at=self._clock(), next_attempt_at=None
        )
        if self._retention is not None:
            self._finished_order.unfinished(task_id)
        self._save(queued)
        logger.debug("task %r queued again by hand", task_id, extra=log_fields(task))
        self._accept(
            _Acceptance(
                (queued,),
                (task,),
                admitted_by,
                TaskStored(queued),
                reply,
                Outcome(queued),
                _refused_outcome,
                places=(queue,),
            )
        )

    def _delete(self, task_id: str, reply: Reply[Outcome]) -> None:
        task = self._tasks.get(task_id)
        if task is None:
            self._send(reply.set, Outcome(None))
        elif self._outage.down:
            self._send(reply.set, Outcome(None, refused=Admission.STORE_UNAVAILABLE))
        elif task.status not in FINAL_STATUSES:
            why = "running" if task.status == RUNNING else "queued"
            conflict = f"task is {why}; only a finished task can be deleted"
            self._send(reply.set, Outcome(None, conflict=conflict))
        else:
            if self._retention is not None:
                self._finished_order.unfinished(task_id)
            self._remove(task)
            logger.debug("task %r deleted", task_id, extra=log_fields(task))
            self._send(reply.set, Outcome(task))

    def _remove(self, task: Task) -> None:
        del self._tasks[task.id]
        self._counts[task.status] -= 1
        self._order.invalidate()
        if self._group is not None:
            self._group.delete(task.id)

    def _apply_retention(self) -> None:
        """Evict what the rules no longer keep, and have the sweep alarm set. Cheap when
        nothing is due: two comparisons and a clock reading."""
        rules = self._retention
        assert rules is not None
        finished = self._finished_count()
        now = self._clock()
        if not (0 < rules.max_finished < finished) and not (
            rules.ttl_s > 0 and now >= self._next_expiry
        ):
            self._arm_sweep(now)
            return
        evicted = self._finished_order.evict(self._tasks, finished, rules, now)
        for task_id in evicted:
            self._remove(self._tasks[task_id])
        if evicted:
            self._evicted += len(evicted)
            logger.debug("evicted %d finished task(s)", len(evicted))
        expiry = self._finished_order.next_expiry(self._tasks, rules)
        self._next_expiry = math.inf if expiry is None else expiry
        self._arm_sweep(now)

    def _finished_count(self) -> int:
        counts = self._counts
        return counts[DONE] + counts[FAILED] + counts[CANCELLED]

    def _arm_sweep(self, now: float) -> None:
        """Have the alarm ring when the oldest finished task expires, or within
        RETENTION_SWEEP_S: a clock moved on by a test is noticed that soon."""
        if self._sweep_alarm is None or self._sweep_set or self._next_expiry == math.inf:
            return
        wait_s = min(RETENTION_SWEEP_S, max(0.0, self._next_expiry - now))
        self._sweep_alarm.set(time.monotonic() + wait_s)
        self._sweep_set = True

    def _stock(self) -> Stock:
        # A next attempt whose time has come is due: in line, or on its way there.
        now = self._clock()
        awaiting = sum(
            1
            for task in self._tasks.values()
            if task.status == QUEUED and (task.next_attempt_at or 0.0) > now
        )
        return Stock(dict(self._counts), self._counts[QUEUED] - awaiting, awaiting)

    def _stats(self) -> TaskCounts:
        refused = self._refused
        return TaskCounts(
            tasks=StatusCounts(**self._counts),
            store=(
                "none"
                if self._group is None
                else "available"
                if not self._outage.down
                else "unavailable"
            ),
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
        )

    def _grant(self, acceptance: _Acceptance) -> None:
        """The dispatcher hears first and the client second. The dispatcher has stopped only at
        shutdown: then nobody would ever run the work, so it is withdrawn and refused."""
        try:
            acceptance.admitted_by.tell(acceptance.notice)
        except pykka.ActorDeadError:
            self._withdraw(acceptance, Admission.SHUTTING_DOWN)
            logger.debug("new work refused: the dispatcher stopped before it got in")
        else:
            acceptance.reply.set(acceptance.granted)

    def _withdraw(self, acceptance: _Acceptance, reason: Admission) -> None:
        """The commit that was to keep this new work failed, or the dispatcher that was to run
        it has stopped: undo it, and refuse it for ``reason``."""
        new = 0
        for task, before in zip(acceptance.tasks, acceptance.before, strict=True):
            if self._tasks.get(task.id) is not task:
                # Cannot happen: nobody has heard of it since (the dispatcher's notice is what
                # was held). Said loudly; this actor, every task's owner, lives on.
                logger.error("task %r changed before its acceptance was withdrawn", task.id)
                continue
            if before is None:
                new += 1
                # Its row may be in the store already (a commit that reached the file and failed
                # after it, or one before the dispatcher was found stopped): removing it deletes
                # the row at the next commit, so a refusal leaves no trace.
                self._remove(task)
            else:
                self._save(before)  # a retry by hand: the finished task as it was
        if new:
            self._enqueued -= new
            self._refused[reason] += 1
        if acceptance.places:
            with contextlib.suppress(pykka.ActorDeadError):  # stopped first, at shutdown
                acceptance.admitted_by.tell(PlacesReleased(acceptance.places))
        acceptance.reply.set(acceptance.refused(reason))

    def _unavailable(self) -> Admission | None:
        """STORE_UNAVAILABLE while the store is down: the refusal of anything new."""
        return Admission.STORE_UNAVAILABLE if self._outage.down else None

    def _store_failed(self, exc: StoreError, failure: Failure, held: list[Held]) -> None:
        """A commit failed (GroupCommit keeps what was staged for the next try): withdraw new
        work whose answer was held for it, and send every other answer held for it."""
        now = time.monotonic()
        if failure.began:
            self._tell_watcher(available=False)
        logger.log(
            failure.level,
            "%s; new tasks are refused (503 store unavailable) until it can be written again "
            "(%d failed write(s) in %.0f s; retrying)",
            exc,
            self._outage.failures,
            now - self._outage.began_at,
        )
        # Each task the failed commit was to accept, as it is now that it is not: None if new.
        withdrawn: dict[str, Task | None] = {}
        for _, value in held:
            if isinstance(value, _Acceptance):
                self._withdraw(value, Admission.STORE_UNAVAILABLE)
                withdrawn.update((task.id, self._tasks.get(task.id)) for task in value.tasks)
        for send, value in held:
            if not isinstance(value, _Acceptance):
                deliver(send, self._without(withdrawn, value) if withdrawn else value)

    def _without(self, withdrawn: dict[str, Task | None], answer: object) -> object:
        """``answer``, held for a commit that failed, as if the work it withdrew never came:
        a refused request leaves no trace, in the answers to reads made meanwhile either."""
        match answer:
            case Task(id=task_id) if task_id in withdrawn:
                return withdrawn[task_id]
            case Page(tasks, more):
                return Page(_replaced(tasks, withdrawn), more)
            case TaskCounts():
                return self._stats()
            case Stock():
                return self._stock()
        return answer

    def _store_back(self) -> None:
        logger.warning(
            "the store is available again after %.1f s and %d failed write(s); new tasks are "
            "accepted",
            time.monotonic() - self._outage.began_at,
            self._outage.failures,
        )
        self._tell_watcher(available=True)

    def _tell_watcher(self, *, available: bool) -> None:
        if self._watcher is not None:
            with contextlib.suppress(pykka.ActorDeadError):  # stopped first, at shutdown
                self._watcher.tell(StoreAvailability(available))

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
        if isinstance(store, QueueStates):
            self._queue_states = store
        alarm = Alarm(posting(self.actor_ref, _COMMIT_DUE), name="repository-commit-alarm")
        self._group = GroupCommit(
            store,
            alarm,
            self._outage,
            grant=self._grant,
            failed=self._store_failed,
            back=self._store_back,
        )
        self._send = self._group.send
        self._accept = self._group.accept
        self._tasks = {task.id: task for task in stored}
        self._counts = dict.fromkeys(STATUSES, 0)
        self._counts.update(Counter(task.status for task in self._tasks.values()))
        if self._retention is not None:
            finished = sorted(
                (task for task in stored if task.is_final), key=lambda task: task.updated_at
            )
            for task in finished:
                self._finished_order.finished(task.id)
            self._next_expiry = -math.inf  # not known yet: look at the order
            self._apply_retention()
        return tuple(self._tasks.values())

    def _paused_queues(self) -> frozenset[str] | StoreError:
        if self._queue_states is None:
            return frozenset()
        try:
            return self._queue_states.paused_queues()
        except StoreError as exc:
            return exc

    def _save_paused(self, name: str, paused: bool) -> None:
        """Keep a queue's pause for the next start. A store that cannot be written now loses
        it (logged): the pause itself holds in this process all the same."""
        if self._queue_states is None:
            return
        try:
            self._queue_states.save_paused(name, paused)
        except StoreError as exc:
            logger.error(
                "queue %r %s, but not kept for the next start: %s",
                name,
                "paused" if paused else "resumed",
                exc,
            )


def _same(reason: Admission) -> Admission:
    return reason


def _refused_outcome(reason: Admission) -> Outcome:
    return Outcome(None, refused=reason)


def _replaced(tasks: list[Task], withdrawn: dict[str, Task | None]) -> list[Task]:
    """``tasks`` with each withdrawn one as it is now, or left out if it is gone."""
    now = (withdrawn.get(task.id, task) for task in tasks)
    return [task for task in now if task is not None]


def _round_again(dispatcher: pykka.ActorRef, message: CancelInLine) -> None:
    """Send a CancelInLine round again; once shutdown has stopped the dispatcher, answer for it."""
    try:
        tell_question(dispatcher, message)
    except pykka.ActorDeadError:
        message.reply.set(Outcome(None, refused=Admission.SHUTTING_DOWN))
