"""The messages of cluster mode (DATABASE_URL): claiming work from the shared table, waking up
for it, and the counts only the database knows. Small, immutable, typed, like the rest of
actors/protocol/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pykka

    from actors.protocol.answers import Readiness
    from actors.reply import Reply
    from actors.stats import LineCounts
    from actors.task import Task


class Claim(NamedTuple):
    """Dispatcher -> repository: claim up to ``limit`` due tasks for idle workers; answer
    with Claimed, to ``dispatcher``."""

    limit: int
    dispatcher: pykka.ActorRef


class Claimed(NamedTuple):
    """Repository -> dispatcher: the tasks claimed, each running here under a lease, given as
    they were before the claim (a worker's Run counts the attempt). ``limit`` was asked."""

    tasks: tuple[Task, ...]
    limit: int


class Wake(NamedTuple):
    """Listener, poll alarm, retry actor or repository -> dispatcher: there may be due work
    in the table; claim it if a worker is idle."""


class LineStats(NamedTuple):
    """Dispatcher -> repository: fill ``line`` (this instance's workers and totals) with the
    cluster's waiting count and answer ``reply``; answer ``scheduled`` with the cluster's
    count of tasks waiting for their time."""

    line: LineCounts
    reply: Reply[LineCounts]
    scheduled: Reply[int] | None


class AskReadiness(NamedTuple):
    """Dispatcher -> repository: whether a delayed task would fit in the cluster's queue now;
    answer ``reply`` with the Readiness."""

    reply: Reply[Readiness]


class Tick(NamedTuple):
    """Alarm thread -> repository: time to renew leases, rescue expired ones, write outcomes
    that could not be written, sweep retention, and try a database that was down."""
