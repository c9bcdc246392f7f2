"""Named queues in a cluster: their state shared by every instance, in PostgreSQL.

A queue's row in ``task_queue_queues`` (actors/pg_schema.py) says whether it is paused, for
the whole cluster and across restarts, and holds the token bucket of its ``max_per_second``:
taken in the claim transaction (actors/pg_store.py ``claim_many``), under the row's lock and on the
database's clock, so that instances together start no more than the rate. Each instance
refills the bucket at the rate its own QUEUES declares: instances should declare the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec

from actors.protocol.answers import Admission, Readiness

if TYPE_CHECKING:
    from collections.abc import Iterable

    import psycopg

    from actors.pg_store import PgStore
    from actors.queues import QueueInfo

_PAUSED: Final = "SELECT name FROM task_queue_queues WHERE paused"
PAUSE: Final = (
    "INSERT INTO task_queue_queues (name, paused, tokens) VALUES (%s, %s, 0) "
    "ON CONFLICT (name) DO UPDATE SET paused = excluded.paused"
)
"""Pause (or resume: False) a queue for the cluster (actors/pg_store.py ``pause``), making its
row if it has none."""
# A bucket made here starts full: a fresh queue may start its first second's worth at once.
_REFILL: Final = (
    "INSERT INTO task_queue_queues AS q (name, tokens) VALUES (%(name)s, %(capacity)s) "
    "ON CONFLICT (name) DO UPDATE SET tokens = least(%(capacity)s, q.tokens + %(rate)s * "
    "greatest(0, extract(epoch FROM clock_timestamp() - q.refilled_at))), "
    "refilled_at = clock_timestamp() RETURNING paused, tokens"
)
_TAKE: Final = "UPDATE task_queue_queues SET tokens = tokens - %s WHERE name = %s"


class QueueLines(NamedTuple):
    """The cluster's queues as the database has them now."""

    lines: dict[str, tuple[int, int]]
    """Queued tasks per queue: due now (waiting), and waiting for their time (scheduled)."""
    paused: frozenset[str]

    def totals(self) -> tuple[int, int]:
        """Queued tasks of all queues: due now, and waiting for their time."""
        return (
            sum(waiting for waiting, _ in self.lines.values()),
            sum(scheduled for _, scheduled in self.lines.values()),
        )

    def fill(self, info: QueueInfo) -> QueueInfo:
        """``info`` (this instance's workers) with the cluster's line and pause."""
        waiting, scheduled = self.lines.get(info.name, (0, 0))
        paused = info.name in self.paused
        return msgspec.structs.replace(info, waiting=waiting, scheduled=scheduled, paused=paused)

    def readiness(self, names: Iterable[str], queue_size: int, scheduled_max: int) -> Readiness:
        """Whether a delayed task would be admitted now into one of ``names``, by the intake's
        rules (``refusal``): not ready only when none would take it; then the first one's
        reason, as the single-process dispatcher answers."""
        _, scheduled = self.totals()
        reasons = [
            refusal(self.lines.get(name, (0, 0))[0], scheduled, queue_size, scheduled_max, True)
            for name in names
        ]
        if not reasons or None in reasons:
            return Readiness.READY
        if reasons[0] is Admission.QUEUE_FULL:
            return Readiness.FULL
        return Readiness.TOO_MANY_SCHEDULED


def refusal(
    waiting: int, scheduled: int, queue_size: int, scheduled_max: int, delayed: bool
) -> Admission | None:
    """The dispatcher's rules (actors/dispatcher.py ``_refusal``) over the whole cluster:
    ``waiting`` in the task's queue, ``scheduled`` in all of them."""
    if not delayed:
        return Admission.QUEUE_FULL if waiting + 1 > queue_size else None
    if waiting >= queue_size:
        return Admission.QUEUE_FULL
    if scheduled + 1 > scheduled_max:
        return Admission.TOO_MANY_SCHEDULED
    return None


def queue_lines(store: PgStore) -> QueueLines:
    """Every queue's line and whether it is paused, from the database."""
    lines = store.lines()
    paused = store.execute("cannot be read", _PAUSED)
    return QueueLines(lines, frozenset(name for (name,) in paused))


class Tokens(NamedTuple):
    """What the bucket of a queue allows one claim."""

    allowed: int
    """Tasks the claim may start now (0 if the queue is paused)."""
    left: float
    """Tokens in the bucket before the claim takes any."""
    paused: bool


def refill(connection: psycopg.Connection, name: str, rate: float, wanted: int) -> Tokens:
    """Refill queue ``name``'s bucket up to now at ``rate`` a second and lock its row until
    the transaction ends: no other instance takes a token meanwhile."""
    capacity = max(rate, 1.0)
    row = connection.execute(_REFILL, {"name": name, "capacity": capacity, "rate": rate}).fetchone()
    assert row is not None
    paused, tokens = bool(row[0]), float(row[1])
    allowed = 0 if paused else min(wanted, int(tokens))
    return Tokens(allowed, tokens, paused)


def take(connection: psycopg.Connection, name: str, count: int) -> None:
    """Take ``count`` tokens from queue ``name``'s bucket (locked by ``refill``)."""
    if count:
        connection.execute(_TAKE, (count, name))


def next_token_s(tokens: Tokens, wanted: int, claimed: int, rate: float) -> float | None:
    """How long until the bucket has a token for a claim that the bucket held back, or None:
    the claim got what it wanted, the queue ran dry, or the queue is paused (a resume wakes)."""
    if tokens.paused or claimed < tokens.allowed or tokens.allowed >= wanted:
        return None
    left = tokens.left - claimed
    return max(0.0, (1.0 - left) / rate)
