"""Schedules: request thread -> schedule actor, and each firing's way into the line.

A firing asks the repository whether the schedule's last task is still queued or running
(``GetTask``, answered to the schedule actor as PreviousTaskSeen); if not, the task goes to the
dispatcher as AdmitFiring and on to the repository like any new task, and the answer comes
back to the schedule actor as FiringAnswered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from actors.protocol.answers import Admission
    from actors.reply import Reply
    from actors.schedule import Schedule, Timing
    from actors.store import StoreError
    from actors.task import Task


class OpenSchedules(NamedTuple):
    """Entry object -> schedule actor, first of all: open the store, load the schedules, let
    those that fell due while the service was down fire once, and start the timer. Replied with
    how many schedules it holds, or with the StoreError that made the store unusable."""

    reply: Reply[int | StoreError]


class AddSchedule(NamedTuple):
    """Request thread -> schedule actor: create this schedule, its first firing counted from
    now; reply with it, or None if its id is taken."""

    schedule_id: str
    timing: Timing
    task: Task
    """The template of the tasks its firings enqueue."""
    reply: Reply[Schedule | None]


class GetSchedule(NamedTuple):
    """Request thread -> schedule actor: reply with the schedule, or None."""

    schedule_id: str
    reply: Reply[Schedule | None]


class ListSchedules(NamedTuple):
    """Request thread -> schedule actor: reply with every schedule, in creation order."""

    reply: Reply[tuple[Schedule, ...]]


class PauseSchedule(NamedTuple):
    """Request thread -> schedule actor: pause the schedule (``paused``) or resume it from now
    on; reply with it as it is then, or None if the id is unknown."""

    schedule_id: str
    paused: bool
    reply: Reply[Schedule | None]


class DeleteSchedule(NamedTuple):
    """Request thread -> schedule actor: forget the schedule (its tasks stay); reply whether it
    was known."""

    schedule_id: str
    reply: Reply[bool]


class ScheduleAlarmRang(NamedTuple):
    """Timer thread -> schedule actor: the earliest firing is due."""


class StopSchedules(NamedTuple):
    """Entry object -> schedule actor, first at shutdown: stop the timer and fire nothing more;
    reply with how many schedules it holds (they stay in the store)."""

    reply: Reply[int]


class PreviousTaskSeen(NamedTuple):
    """Repository -> schedule actor (the answer to its GetTask): the schedule's last task as it
    is now, for the firing at ``fire_at`` to go ahead or be skipped."""

    schedule_id: str
    fire_at: float
    previous: Task | None


class AdmitFiring(NamedTuple):
    """Schedule actor -> dispatcher: admit this task of a firing like a due retry, past the
    line's bound (but not while shutting down or while the store is down); then on to the
    repository as StoreAdmittedTask."""

    task: Task
    reply: Reply[Admission]


class FiringAnswered(NamedTuple):
    """Repository (the answer to AdmitFiring) -> schedule actor: how the firing's task fared."""

    schedule_id: str
    task_id: str
    admission: Admission
