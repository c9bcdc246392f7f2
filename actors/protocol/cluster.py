"""The messages of cluster mode (DATABASE_URL): claiming work from the shared table, waking up
for it, and the counts only the database knows. Small, immutable, typed, like the rest of
actors/protocol/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pykka

    from actors.protocol.answers import Readiness
    from actors.queues import QueueInfo
    from actors.reply import Reply
    from actors.stats import LineCounts
    from actors.task import Task


class Want(NamedTuple):
    """Up to ``limit`` due tasks of ``queue`` for its idle workers, no faster than
    ``max_per_second`` (None: no limit) across the cluster."""

    queue: str
    limit: int
    max_per_second: float | None = None


class Claim(NamedTuple):
    """Dispatcher -> repository: claim what ``wants`` ask for, the queues without a rate in
    one statement; answer with a Claimed for each, to ``dispatcher``."""

    wants: tuple[Want, ...]
    dispatcher: pykka.ActorRef


class Claimed(NamedTuple):
    """Repository -> dispatcher: the tasks of ``queue`` claimed, each running here under a
    lease, given as they were before the claim (a worker's Run counts the attempt). ``limit``
    was asked; ``next_token_s``: the queue's rate held the claim back, and allows the next
    start that much later."""

    queue: str
    tasks: tuple[Task, ...]
    limit: int
    next_token_s: float | None = None


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
    """Dispatcher -> repository: whether a delayed task would fit now in one of ``queues``
    (this instance's) across the cluster; answer ``reply`` with the Readiness."""

    queues: tuple[str, ...]
    reply: Reply[Readiness]


class FillQueues(NamedTuple):
    """Dispatcher -> repository: answer ``reply`` with ``queues`` (this instance's workers)
    filled with the cluster's lines and pauses, from the database."""

    queues: tuple[QueueInfo, ...]
    reply: Reply[tuple[QueueInfo, ...]]


class Tick(NamedTuple):
    """Alarm thread -> repository: time to renew leases, rescue expired ones, write outcomes
    that could not be written, sweep retention, and try a database that was down."""
