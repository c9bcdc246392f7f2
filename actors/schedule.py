"""The schedule: when it fires (a cron expression in a time zone, or a fixed period), and the
task each firing enqueues."""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from cronsim import CronSim, CronSimError

from actors.task import Task

MIN_EVERY_MS: Final = 1000
"""The shortest period: one firing a second at most, so each firing's id (to the second) is new."""

MAX_EVERY_MS: Final = 366 * 86_400_000
"""The longest period, a year and a day: longer is a cron expression's job."""

FIRE_ID_SUFFIX_LENGTH: Final = len("@2026-11-30T02:00:00Z")
"""What a firing adds to the schedule's id to make its task's id."""


class InvalidTiming(ValueError):
    """A schedule's timing that cannot be used; the message says why, for the client."""


class Timing(msgspec.Struct, frozen=True, gc=False):
    """When a schedule fires: ``cron`` (five fields, read in ``timezone``) or ``every_ms``.

    Build it with ``timing_of``, which checks it: a Timing is always usable.
    """

    cron: str | None
    every_ms: int | None
    timezone: str = "UTC"

    def first_run(self, created_at: float) -> float:
        """The first firing of a schedule created at ``created_at`` (seconds since the epoch)."""
        if self.every_ms is not None:
            return created_at + self.every_ms / 1000
        return self.next_run(created_at, created_at)

    def next_run(self, after: float, anchor: float) -> float:
        """The first firing strictly after ``after``.

        A cron schedule fires at the whole seconds its expression names in its time zone, DST
        gaps and repeats as cronsim (Debian cron) defines them: a time that a gap skips runs
        at the first moment after it, and a repeated hour runs once. A period's firings are
        ``anchor`` plus a whole number of periods (the phase never drifts, however late the
        alarm).
        """
        if self.every_ms is not None:
            period = self.every_ms / 1000
            periods = math.floor((after - anchor) / period) + 1
            return anchor + max(periods, 1) * period
        assert self.cron is not None
        # cronsim counts from the whole second anyway: the same second, the same answer.
        return _next_cron(self.cron, self.timezone, math.floor(after))


@functools.lru_cache(maxsize=4096)
def _next_cron(cron: str, timezone: str, after_s: int) -> float:
    """The first time ``cron`` names in ``timezone`` after the second ``after_s``; cached, as
    schedules that share an expression come due together and ask it with the same second."""
    fired = next(CronSim(cron, datetime.fromtimestamp(after_s, ZoneInfo(timezone))))
    return fired.timestamp()


def timing_of(cron: str | None, every_ms: int | None, timezone: str | None) -> Timing:
    """The Timing these fields describe, or InvalidTiming saying what is wrong."""
    if (cron is None) == (every_ms is None):
        raise InvalidTiming("give exactly one of cron and every_ms")
    zone_name = "UTC" if timezone is None else timezone
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: a key that is not a name at all ("../etc/passwd", "", a NUL); OSError:
        # a directory of the database ("America"), a name too long for a file.
        raise InvalidTiming(f"unknown timezone {zone_name!r}") from None
    if every_ms is not None:
        if not MIN_EVERY_MS <= every_ms <= MAX_EVERY_MS:
            raise InvalidTiming(
                f"every_ms must be an integer from {MIN_EVERY_MS} to {MAX_EVERY_MS}"
            )
        return Timing(None, every_ms, zone_name)
    assert cron is not None
    fields = cron.split()
    if len(fields) != 5:
        raise InvalidTiming(f"cron must have five fields (minute hour day month weekday): {cron!r}")
    try:
        # One firing computed, so that an expression that never fires is refused now.
        next(CronSim(cron, datetime.now(zone)))
    except (CronSimError, ValueError) as exc:
        raise InvalidTiming(f"invalid cron expression {cron!r}: {exc}") from None
    except StopIteration:
        raise InvalidTiming(f"cron expression {cron!r} never fires") from None
    return Timing(" ".join(fields), None, zone_name)


class Schedule(msgspec.Struct, frozen=True, gc=False):
    """One schedule's state at one moment: frozen, so it crosses actor boundaries as is.

    ``task`` is the template of every task a firing enqueues: its fields as the client gave
    them, its id the schedule's (each firing gives it its own, ``fire_id``). Times are seconds
    since the epoch; ``next_run_at`` is None while the schedule is paused.
    """

    id: str
    timing: Timing
    task: Task
    created_at: float
    next_run_at: float | None
    last_task_id: str | None = None
    """The task of the last firing that was let through: while it is queued or running, the
    firings that come due are skipped."""
    fired: int = 0
    """Firings whose task was accepted."""
    skipped: int = 0
    """Firings skipped because the last one's task was still queued or running."""

    @property
    def paused(self) -> bool:
        return self.next_run_at is None


def new_schedule(schedule_id: str, timing: Timing, task: Task, now: float) -> Schedule:
    """A schedule created at ``now``, its first firing to come."""
    return Schedule(schedule_id, timing, task, now, timing.first_run(now))


def paused_at(schedule: Schedule, paused: bool, now: float) -> Schedule:
    """The schedule paused, or resumed at ``now``: from then on, without the firings missed."""
    next_run_at = None if paused else schedule.timing.next_run(now, schedule.created_at)
    return msgspec.structs.replace(schedule, next_run_at=next_run_at)


def fire_id(schedule_id: str, fire_at: float) -> str:
    """The id of the task the firing at ``fire_at`` enqueues: the schedule's id, ``@``, and the
    time in RFC 3339 UTC to the second. Unique for each firing, so a firing runs at most once."""
    return f"{schedule_id}@{rfc3339(fire_at)}"


def rfc3339(at: float) -> str:
    """``at`` in RFC 3339 UTC to the second, as firings' ids and logs show it."""
    return datetime.fromtimestamp(math.floor(at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def firing_task(schedule: Schedule, fire_at: float, now: float) -> Task:
    """The new task the firing at ``fire_at`` enqueues, created at ``now``."""
    return msgspec.structs.replace(
        schedule.task, id=fire_id(schedule.id, fire_at), created_at=now, updated_at=now
    )
