"""Tasks waiting for their time, a retry's or a delayed task's: dispatcher <-> retry actor."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from actors.task import DEFAULT_QUEUE

if TYPE_CHECKING:
    from actors.reply import Reply
    from actors.task import Task


class HoldUntilDue(NamedTuple):
    """Dispatcher -> retry actor: send this task back to the line after ``delay_s``: a failed
    attempt's retry, or a new task with a delay."""

    task: Task
    delay_s: float


class TasksDue(NamedTuple):
    """Retry actor -> dispatcher: these retries and delayed tasks are due; they enter the line
    even when it is full."""

    tasks: tuple[Task, ...]


class WaitingCancelled(NamedTuple):
    """Retry actor -> dispatcher: this many of the tasks it held were cancelled, and will
    never come due (the dispatcher counts the tasks waiting there)."""

    cancelled: int
    queue: str = DEFAULT_QUEUE


class AlarmRang(NamedTuple):
    """Timer thread -> retry actor: the earliest task it holds is due."""


class StopRetryTimer(NamedTuple):
    """-> retry actor, at shutdown: stop the timer and release nothing more; reply with how
    many tasks wait (they stay queued, for the next start to recover)."""

    reply: Reply[int]
