"""ClusterScheduleActor: the schedule actor of an instance of a cluster, over the shared table.

It answers the ScheduleActor's messages (actors/protocol/schedules.py), so the API sees no
difference; but the schedules are the cluster's, in PostgreSQL (actors/pg_schedule_store.py),
and every instance's timer rings for every schedule. Its copy of the schedules says only when
to try: a firing goes ahead only if the schedule's row still names that time, so of the
instances that try, one enqueues the task, and a copy that is out of date (a schedule deleted,
paused or fired elsewhere) fires nothing and learns the row as it is. When the timer rings,
every firing due is tried in one transaction (FIRINGS_PER_TRANSACTION at most; several if more
are due): a burst costs a few round trips, not a few per firing.

Reads (GET /schedule, /schedules) and the API's changes go to the table, like a cluster's
task reads. What another instance's API changed is read every SYNC_INTERVAL_S, so a schedule
created on one instance fires even if that instance is gone.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar

import pykka

from actors.alarm import posting
from actors.base import Actor
from actors.pg_schedule_store import FIRINGS_PER_TRANSACTION, Firing
from actors.protocol.cluster import Wake
from actors.protocol.schedules import (
    AddSchedule,
    DeleteSchedule,
    GetSchedule,
    ListSchedules,
    OpenSchedules,
    PauseSchedule,
    ScheduleAlarmRang,
    StopSchedules,
)
from actors.schedule import new_schedule, rfc3339
from actors.schedule_timer import FiringTimer
from actors.store import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.pg_schedule_store import Fired, PgScheduleStore
    from actors.reply import Reply
    from actors.schedule import Schedule

logger = logging.getLogger(__name__)

T = TypeVar("T")

SYNC_INTERVAL_S: Final = 0.5
"""How often the instance reads what the API changed on other instances: a schedule created,
paused, resumed or deleted elsewhere is honoured here within this (and at once by a firing,
which checks the row)."""

RETRY_S: Final = 1.0
"""While the database cannot be reached, firings are tried again this often (the first one due
tries; the others wait for it): each try may wait for a connection's timeout."""

BUSY_RETRY_S: Final = 0.2
"""How soon a firing whose row another instance held is tried again (with whatever else is due
then, in one transaction): by then that instance has moved the row on (and this one learns its
next time), or its transaction failed and this one fires, still within a second of the time."""

LATE_S: Final = 1.0
"""A firing later than this is logged: no instance could fire it in time (none ran, or the
database was down)."""

_SYNC: Final = "\x00sync"
"""The timer's key for the next read of changes: no schedule's id holds a control character."""

_ALARM_RANG: Final = ScheduleAlarmRang()
_WAKE: Final = Wake()


class ClusterScheduleActor(Actor):
    """Fires the cluster's schedules when due, with one timer for all of them, and answers the
    API's questions about them from the shared table."""

    def __init__(
        self,
        dispatcher: pykka.ActorRef,
        open_store: Callable[[], PgScheduleStore],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._dispatcher = dispatcher
        self._open_store = open_store
        self._clock = clock
        self._store: PgScheduleStore | None = None
        # This instance's copy, by id: when its timer tries each schedule next.
        self._schedules: dict[str, Schedule] = {}
        self._version: int | None = None
        self._timer: FiringTimer | None = None
        self._stopped = False
        # While the database cannot be reached: firings wait until this (the clock's time).
        self._down_until: float | None = None

    def on_stop(self) -> None:
        self._stop_timer()
        if self._store is not None:
            self._store.close()
        super().on_stop()

    def on_receive(self, message: Any) -> Any:
        match message:
            case ScheduleAlarmRang():
                self._rang()
            case AddSchedule(schedule_id, timing, task, reply):
                schedule = new_schedule(schedule_id, timing, task, self._clock())
                self._ask(reply, lambda store: self._added(schedule, store.add(schedule)))
            case GetSchedule(schedule_id, reply):
                self._ask(reply, lambda store: store.get(schedule_id))
            case ListSchedules(reply):
                self._ask(reply, lambda store: tuple(store.load()))
            case PauseSchedule(schedule_id, paused, reply):
                self._ask(
                    reply, lambda store: self._hold(store.pause(schedule_id, paused, self._clock()))
                )
            case DeleteSchedule(schedule_id, reply):
                self._ask(reply, lambda store: self._forget(schedule_id, store.delete(schedule_id)))
            case StopSchedules(reply):
                self._stop_timer()
                reply.set(len(self._schedules))
            case OpenSchedules(reply):
                reply.set(self._open())
            case _:
                return super().on_receive(message)
        return None

    def _ask(self, reply: Reply[T], ask: Callable[[PgScheduleStore], T]) -> None:
        """Answer with what ``ask`` reads or changes in the table; a StoreError fails the reply
        (503 for the client)."""
        assert self._store is not None
        try:
            reply.set(ask(self._store))
        except StoreError as exc:
            logger.warning("schedules: %s", exc)
            reply.fail(exc)

    # --- this instance's copy ------------------------------------------------------------------

    def _added(self, schedule: Schedule, added: bool) -> Schedule | None:
        return self._hold(schedule) if added else None

    def _hold(self, schedule: Schedule | None) -> Schedule | None:
        """Keep the row as it is now, and have the timer try it at its next time."""
        if schedule is not None:
            self._schedules[schedule.id] = schedule
            self._plan(schedule.id, schedule.next_run_at)
        return schedule

    def _forget(self, schedule_id: str, answer: bool = True) -> bool:
        self._schedules.pop(schedule_id, None)
        if self._timer is not None:
            self._timer.unplan(schedule_id)
        return answer

    def _plan(self, key: str, at: float | None) -> None:
        if self._timer is None:
            return
        if at is None:
            self._timer.unplan(key)
        else:
            self._timer.plan(key, at)

    # --- firing --------------------------------------------------------------------------------

    def _rang(self) -> None:
        if self._stopped or self._timer is None:
            return
        now = self._clock()
        due: list[tuple[str, float]] = []
        for _, key in self._timer.due(now):
            if key == _SYNC:
                self._sync(now)
            elif (schedule := self._schedules.get(key)) is not None and (
                schedule.next_run_at is not None
            ):
                due.append((key, schedule.next_run_at))
        for start in range(0, len(due), FIRINGS_PER_TRANSACTION):
            # Each batch its own reading of the clock: the ones before it took time.
            self._fire(due[start : start + FIRINGS_PER_TRANSACTION], self._clock())
        self._timer.arm()

    def _fire(self, due: list[tuple[str, float]], now: float) -> None:
        """Try the firings the copy says are due (id, time), in one transaction; the rows
        decide which happen."""
        assert self._store is not None
        if self._down_until is not None and now < self._down_until:
            for schedule_id, _ in due:
                self._plan(schedule_id, self._down_until)
            return
        try:
            answers = self._store.fire_batch(due, now)
        except StoreError as exc:
            self._failed(exc, now)
            for schedule_id, _ in due:
                self._plan(schedule_id, now + RETRY_S)
            return
        self._available()
        enqueued = False
        for (schedule_id, fire_at), fired in zip(due, answers, strict=True):
            self._fired(schedule_id, fire_at, fired, now)
            enqueued = enqueued or fired.outcome is Firing.FIRED
        if enqueued:
            # The notification wakes the other instances; this one's dispatcher hears here.
            with contextlib.suppress(pykka.ActorDeadError):
                self._dispatcher.tell(_WAKE)

    def _fired(self, schedule_id: str, fire_at: float, fired: Fired, now: float) -> None:
        """Go on from what the firing of ``schedule_id`` at ``fire_at`` did."""
        match fired.outcome:
            case Firing.GONE:
                self._forget(schedule_id)
            case Firing.BUSY:
                self._plan(schedule_id, now + BUSY_RETRY_S)
            case Firing.STALE:
                # Fired by another instance, or paused or resumed: on from the row as it is.
                logger.debug(
                    "schedule %r: the firing of %s is not this instance's",
                    schedule_id,
                    rfc3339(fire_at),
                )
                self._hold(fired.schedule)
            case Firing.SKIPPED:
                logger.info(
                    "schedule %r: the firing of %s is skipped: its last task %r is %s",
                    schedule_id,
                    rfc3339(fire_at),
                    fired.task_id,
                    fired.why,
                    extra={"schedule_id": schedule_id},
                )
                self._hold(fired.schedule)
            case Firing.FIRED:
                if now - fire_at > LATE_S:
                    logger.info(
                        "schedule %r: the firing of %s fires now, %.1f s late "
                        "(no instance could fire it in time)",
                        schedule_id,
                        rfc3339(fire_at),
                        now - fire_at,
                    )
                logger.debug("schedule %r fired: task %r", schedule_id, fired.task_id)
                self._hold(fired.schedule)
            case Firing.DUPLICATE:
                logger.info(
                    "schedule %r: task %r exists already; not enqueued again",
                    schedule_id,
                    fired.task_id,
                )
                self._hold(fired.schedule)

    def _failed(self, exc: StoreError, now: float) -> None:
        if self._down_until is None:
            logger.warning("schedules: %s; firings wait until it is back", exc)
        else:
            logger.debug("schedules: %s", exc)
        self._down_until = now + RETRY_S

    def _available(self) -> None:
        if self._down_until is not None:
            self._down_until = None
            logger.warning("schedules: the database is available again; firings go on")

    # --- what other instances changed ----------------------------------------------------------

    def _sync(self, now: float) -> None:
        """Read what the API changed since the last read, and plan the next read."""
        assert self._store is not None
        self._plan(_SYNC, now + SYNC_INTERVAL_S)
        if self._down_until is not None and now < self._down_until:
            return
        try:
            changes = self._store.changes(self._version)
        except StoreError as exc:
            self._failed(exc, now)
            return
        self._available()
        if changes is not None:
            self._version = changes.version
            for schedule_id in [i for i in self._schedules if i not in changes.ids]:
                self._forget(schedule_id)
            for schedule in changes.changed:
                self._hold(schedule)

    def _open(self) -> int | StoreError:
        """Connect, read every schedule and start the timer: a schedule whose time passed while
        no instance ran fires at once, once (its row then moves on from now)."""
        try:
            self._store = self._open_store()
            changes = self._store.changes(None)
        except StoreError as exc:
            return exc
        assert changes is not None
        self._timer = FiringTimer(posting(self.actor_ref, _ALARM_RANG), self._clock)
        self._version = changes.version
        for schedule in changes.changed:
            self._hold(schedule)
        self._plan(_SYNC, self._clock() + SYNC_INTERVAL_S)
        if changes.changed:
            logger.info("%d schedule(s) of the cluster loaded", len(changes.changed))
        return len(changes.changed)

    def _stop_timer(self) -> None:
        if not self._stopped:
            self._stopped = True
            if self._timer is not None:
                self._timer.close()
