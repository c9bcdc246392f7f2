"""ScheduleActor: holds the schedules, fires each when due, and keeps them in its own store."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec
import pykka

from actors.alarm import posting
from actors.base import Actor, tell_or_fail
from actors.protocol.answers import Admission
from actors.protocol.reading import GetTask
from actors.protocol.schedules import (
    AddSchedule,
    AdmitFiring,
    DeleteSchedule,
    FiringAnswered,
    GetSchedule,
    ListSchedules,
    OpenSchedules,
    PauseSchedule,
    PreviousTaskSeen,
    ScheduleAlarmRang,
    StopSchedules,
)
from actors.reply import Reply
from actors.schedule import firing_task, new_schedule, paused_at, rfc3339
from actors.schedule_store import MemoryScheduleStore
from actors.schedule_timer import FiringTimer
from actors.store import StoreError
from actors.task import QUEUED, RUNNING

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from actors.schedule import Schedule
    from actors.schedule_store import OpenScheduleStore, ScheduleStore
    from actors.task import Task

logger = logging.getLogger(__name__)

T = TypeVar("T")

_ALARM_RANG: Final = ScheduleAlarmRang()

FLUSH_AT: Final = 512
"""Changed schedules (after firings) written at once at most: more are written without waiting
for the inbox to empty."""


class ScheduleActor(Actor):
    """Keeps every schedule, and their next firings by time with one alarm thread for all of
    them (``actors/schedule_timer.py``, as the RetryActor has): no thread per schedule.

    A firing first asks the repository for the schedule's last task: while it is queued or
    running, the firing is skipped (counted, logged); otherwise its task goes to the dispatcher
    as AdmitFiring, which lets it in like a due retry, past the line's bound. Its id is the
    schedule's and the firing's time (``actors/schedule.py``), so a firing that was already
    enqueued before a crash is a duplicate when it comes again, never a second task.

    Changes asked through the API are committed before the answer; those of firings (the next
    time, the counts) are written together once the inbox is empty. At start, a schedule whose
    next firing fell due while the service was down fires once, then goes on from now.
    """

    def __init__(
        self,
        dispatcher: pykka.ActorRef,
        repository: pykka.ActorRef,
        open_store: OpenScheduleStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._dispatcher = dispatcher
        self._repository = repository
        self._open_store = open_store or MemoryScheduleStore
        self._clock = clock
        self._store: ScheduleStore | None = None
        # By id, in creation order.
        self._schedules: dict[str, Schedule] = {}
        self._timer: FiringTimer | None = None
        # Schedules whose firing's task is on its way to the repository: a firing due
        # meanwhile is skipped, as if that task were already queued.
        self._in_flight: set[str] = set()
        # Changed by firings, not yet written.
        self._dirty: dict[str, Schedule] = {}
        self._stopped = False

    def on_stop(self) -> None:
        self._stop_alarm()
        if self._store is not None:
            self._write_dirty()
            self._store.close()
        super().on_stop()

    def on_receive(self, message: Any) -> Any:
        match message:
            case ScheduleAlarmRang():
                self._fire_due()
            case PreviousTaskSeen(schedule_id, fire_at, previous):
                self._seen(schedule_id, fire_at, previous)
            case FiringAnswered(schedule_id, task_id, admission):
                self._answered(schedule_id, task_id, admission)
            case AddSchedule(schedule_id, timing, task, reply):
                if schedule_id in self._schedules:
                    reply.set(None)
                else:
                    schedule = new_schedule(schedule_id, timing, task, self._clock())
                    self._change(schedule, reply, schedule)
            case GetSchedule(schedule_id, reply):
                reply.set(self._schedules.get(schedule_id))
            case ListSchedules(reply):
                reply.set(tuple(self._schedules.values()))
            case PauseSchedule(schedule_id, paused, reply):
                self._pause(schedule_id, paused, reply)
            case DeleteSchedule(schedule_id, reply):
                if schedule_id not in self._schedules:
                    reply.set(False)
                else:
                    self._change(None, reply, True, deleted=(schedule_id,))
            case StopSchedules(reply):
                self._stop_alarm()
                reply.set(len(self._schedules))
            case OpenSchedules(reply):
                reply.set(self._open())
            case _:
                return super().on_receive(message)
        if self._dirty and (len(self._dirty) >= FLUSH_AT or self.actor_inbox.empty()):
            self._write_dirty()
        return None

    # --- the API's changes ---------------------------------------------------------------------

    def _change(
        self,
        schedule: Schedule | None,
        reply: Reply[T],
        answer: T,
        deleted: Collection[str] = (),
    ) -> None:
        """Commit ``schedule`` (and the deletion of ``deleted``), then hold it and answer; if
        the store cannot be written, nothing changes and the reply fails with StoreError."""
        changed = [] if schedule is None else [schedule]
        try:
            self._commit(changed, deleted)
        except StoreError as exc:
            logger.error("schedules: %s", exc)
            reply.fail(exc)
            return
        for schedule_id in deleted:
            self._unplan(schedule_id)
            del self._schedules[schedule_id]
            self._in_flight.discard(schedule_id)
        if schedule is not None:
            self._unplan(schedule.id)
            self._schedules[schedule.id] = schedule
            self._plan(schedule)
        reply.set(answer)

    def _pause(self, schedule_id: str, paused: bool, reply: Reply[Schedule | None]) -> None:
        schedule = self._schedules.get(schedule_id)
        if schedule is None or schedule.paused == paused:
            reply.set(schedule)
            return
        changed = paused_at(schedule, paused, self._clock())
        self._change(changed, reply, changed)

    # --- firing --------------------------------------------------------------------------------

    def _fire_due(self) -> None:
        if self._stopped:
            return
        assert self._timer is not None
        now = self._clock()
        for fire_at, schedule_id in self._timer.due(now):
            schedule = self._schedules[schedule_id]
            # The first of its times after now: firings the alarm was too late for (a process
            # paused, a machine asleep) are not made up, as after a restart.
            next_run_at = schedule.timing.next_run(now, schedule.created_at)
            schedule = self._update(schedule, next_run_at=next_run_at)
            self._plan(schedule)
            self._fire(schedule, fire_at)
        self._timer.arm()

    def _fire(self, schedule: Schedule, fire_at: float) -> None:
        """Fire now for ``fire_at``: unless the last firing's task is still queued or running."""
        if schedule.id in self._in_flight:
            self._skip(schedule, fire_at, "the last firing's task is on its way into the line")
        elif schedule.last_task_id is None:
            self._admit(schedule, fire_at)
        else:
            schedule_id = schedule.id
            seen: _Forward[Task | None] = _Forward(
                self.actor_ref, lambda task: PreviousTaskSeen(schedule_id, fire_at, task)
            )
            tell_or_fail(self._repository, GetTask(schedule.last_task_id, seen))

    def _seen(self, schedule_id: str, fire_at: float, previous: Task | None) -> None:
        schedule = self._schedules.get(schedule_id)
        if schedule is None or self._stopped:
            return  # deleted meanwhile, or shutting down
        if previous is not None and previous.status in (QUEUED, RUNNING):
            self._skip(schedule, fire_at, f"its last task {previous.id!r} is {previous.status}")
        elif schedule_id in self._in_flight:
            self._skip(schedule, fire_at, "the last firing's task is on its way into the line")
        else:
            self._admit(schedule, fire_at)

    def _skip(self, schedule: Schedule, fire_at: float, why: str) -> None:
        self._update(schedule, skipped=schedule.skipped + 1)
        logger.info(
            "schedule %r: the firing of %s is skipped: %s",
            schedule.id,
            rfc3339(fire_at),
            why,
            extra={"schedule_id": schedule.id},
        )

    def _admit(self, schedule: Schedule, fire_at: float) -> None:
        task = firing_task(schedule, fire_at, self._clock())
        schedule_id, task_id = schedule.id, task.id
        self._update(schedule, last_task_id=task_id)
        self._in_flight.add(schedule_id)
        answered: _Forward[Admission] = _Forward(
            self.actor_ref, lambda admission: FiringAnswered(schedule_id, task_id, admission)
        )
        tell_or_fail(self._dispatcher, AdmitFiring(task, answered))

    def _answered(self, schedule_id: str, task_id: str, admission: Admission) -> None:
        self._in_flight.discard(schedule_id)
        schedule = self._schedules.get(schedule_id)
        if admission is Admission.ACCEPTED:
            logger.debug("schedule %r fired: task %r", schedule_id, task_id)
            if schedule is not None:
                self._update(schedule, fired=schedule.fired + 1)
        elif admission is Admission.DUPLICATE:
            # The same firing, enqueued before a restart: its task is the one that runs.
            logger.info(
                "schedule %r: task %r exists already; not enqueued again", schedule_id, task_id
            )
        else:
            logger.warning(
                "schedule %r: task %r was refused (%s); this firing is lost",
                schedule_id,
                task_id,
                admission.value,
            )

    def _update(self, schedule: Schedule, **changes: Any) -> Schedule:
        """The schedule with ``changes``, held and marked to be written."""
        schedule = msgspec.structs.replace(schedule, **changes)
        self._schedules[schedule.id] = schedule
        self._dirty[schedule.id] = schedule
        return schedule

    # --- the timer ----------------------------------------------------------------------------

    def _plan(self, schedule: Schedule) -> None:
        """Have the timer ring at the schedule's next firing (none while it is paused)."""
        if schedule.next_run_at is not None and self._timer is not None:
            self._timer.plan(schedule.id, schedule.next_run_at)

    def _unplan(self, schedule_id: str) -> None:
        if self._timer is not None:
            self._timer.unplan(schedule_id)

    def _stop_alarm(self) -> None:
        if not self._stopped:
            self._stopped = True
            if self._timer is not None:
                self._timer.close()

    # --- the store -----------------------------------------------------------------------------

    def _open(self) -> int | StoreError:
        """Open the store, load it, fire once what fell due while down, start the alarm."""
        try:
            self._store = self._open_store()
            loaded = self._store.load()
        except StoreError as exc:
            return exc
        self._timer = FiringTimer(posting(self.actor_ref, _ALARM_RANG), self._clock)
        now = self._clock()
        missed: list[tuple[Schedule, float]] = []
        for schedule in loaded:
            self._schedules[schedule.id] = schedule
            fire_at = schedule.next_run_at
            if fire_at is not None and fire_at <= now:
                # At most one catch-up: the missed time's own id, then on from now.
                schedule = self._update(
                    schedule, next_run_at=schedule.timing.next_run(now, schedule.created_at)
                )
                missed.append((schedule, fire_at))
            self._plan(schedule)
        for schedule, fire_at in missed:
            logger.info(
                "schedule %r: the firing of %s fell due while the service was down: it fires now",
                schedule.id,
                rfc3339(fire_at),
            )
            self._fire(schedule, fire_at)
        if loaded:
            logger.info("%d schedule(s) loaded, %d firing(s) caught up", len(loaded), len(missed))
        return len(loaded)

    def _commit(self, schedules: list[Schedule], deleted: Collection[str] = ()) -> None:
        """Write these and what firings changed, in one transaction; on StoreError nothing is
        written (and what firings changed stays to be written)."""
        assert self._store is not None
        changed = {**self._dirty, **{schedule.id: schedule for schedule in schedules}}
        for schedule_id in deleted:
            changed.pop(schedule_id, None)
        self._store.commit(list(changed.values()), deleted)
        self._dirty.clear()

    def _write_dirty(self) -> None:
        try:
            self._commit([])
        except StoreError as exc:
            # Kept for the next write: a firing's time may be caught up once more after a
            # restart, which its task's id makes harmless.
            logger.error("schedules: %s", exc)


class _Forward(Reply[T]):
    """A Reply whose answer is told to an actor as the message ``make`` builds of it: how one
    actor hears another's answer without waiting for it. A failure (the answering actor
    stopped) is dropped: the system is stopping."""

    __slots__ = ("_make", "_to")

    def __init__(self, to: pykka.ActorRef, make: Callable[[T], object]) -> None:
        super().__init__()
        self._to = to
        self._make = make

    def set(self, value: T) -> bool:
        if not super().set(value):
            return False
        with contextlib.suppress(pykka.ActorDeadError):
            self._to.tell(self._make(value))
        return True
