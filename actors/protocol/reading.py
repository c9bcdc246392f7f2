"""Reading: a task, a page of tasks, readiness and statistics, asked by a request thread.

Statistics are asked of each actor in parallel, each answering for what it alone holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from actors.paging import Page
    from actors.protocol.answers import Readiness
    from actors.reply import Reply
    from actors.stats import LineCounts, TaskCounts
    from actors.task import Task


class GetTask(NamedTuple):
    """-> repository: reply with the Task, or None."""

    task_id: str
    reply: Reply[Task | None]


class ListPage(NamedTuple):
    """-> repository: reply with the Page of tasks after ``after`` (None: from the first) with
    ``status`` (None: any), at most ``limit`` (None: all); or with None if ``after`` is unknown.
    """

    reply: Reply[Page | None]
    status: str | None = None
    limit: int | None = None
    after: str | None = None
    newest_first: bool = False
    queue: str | None = None
    """Only the tasks of this queue (None: of any)."""


class GetReadiness(NamedTuple):
    """Request thread -> dispatcher: reply with the Readiness an AdmitTask would meet now."""

    reply: Reply[Readiness]


class GetDispatcherStats(NamedTuple):
    """Request thread -> dispatcher: reply with its LineCounts; and, if ``retry_reply`` is
    given, pass GetRetryStats on to the retry actor. Asked through the dispatcher, the retry
    actor answers after every task the dispatcher sent it before: a delayed task whose 201 the
    client has seen is already counted as scheduled."""

    reply: Reply[LineCounts]
    retry_reply: Reply[int] | None = None


class GetRepositoryStats(NamedTuple):
    """Request thread -> repository: reply with its TaskCounts."""

    reply: Reply[TaskCounts]


class GetRetryStats(NamedTuple):
    """Dispatcher -> retry actor: reply with how many tasks wait for their next attempt (a
    retry, or the time a delayed task is due)."""

    reply: Reply[int]
