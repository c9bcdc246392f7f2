"""Leases: how long a claimed attempt is one instance's, and the rescue of those that ran out.

An instance claims a task with a lease of LEASE_MS (actors/pg_store.py ``claim``) and renews the
leases of all its running attempts in one statement every ``renew_interval_s``, well before they
end. Any live instance looks for running tasks whose lease ended (their instance died, or lost
the database for longer than a lease) every ``rescue_interval_s`` and counts each as an
interrupted attempt, retried with backoff or failed (actors/recovery.py ``after_interruption``):
a killed instance's attempts are rescued within one lease and one rescue interval, under
2 x LEASE_MS. The lease is on the database's clock, so instances' clocks never matter.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from actors.pg_schema import TABLE
from actors.pg_store import COLUMNS, tasks_of
from actors.recovery import after_interruption
from actors.task import log_fields

if TYPE_CHECKING:
    from actors.backoff import Uniform
    from actors.pg_store import PgStore
    from actors.task import Task
    from actors.worker import RetryPolicy

logger = logging.getLogger(__name__)

RESCUE_BATCH: Final = 500
"""Expired leases turned into interrupted attempts per statement: a bounded transaction."""

_RENEW: Final = (
    f"UPDATE {TABLE} SET lease_until = clock_timestamp() + %s * interval '1 millisecond' "
    "WHERE owner = %s AND status = 'running'"
)
_EXPIRED: Final = (
    f"SELECT {COLUMNS}, owner, extract(epoch FROM clock_timestamp()) FROM {TABLE} "
    "WHERE status = 'running' AND lease_until < clock_timestamp() "
    "ORDER BY lease_until LIMIT %s FOR UPDATE SKIP LOCKED"
)
_OWN: Final = (
    f"SELECT {COLUMNS}, owner, extract(epoch FROM clock_timestamp()) FROM {TABLE} "
    "WHERE status = 'running' AND owner = %s LIMIT %s FOR UPDATE SKIP LOCKED"
)
_INTERRUPT: Final = (
    f"UPDATE {TABLE} AS t SET status = f.status, last_error = f.last_error, "
    "updated_at = f.updated_at, next_attempt_at = f.next_attempt_at, owner = NULL, "
    "lease_until = NULL FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[], "
    "%s::float8[]) AS f(id, status, last_error, updated_at, next_attempt_at) "
    "WHERE t.id = f.id AND t.status = 'running'"
)


def renew_interval_s(lease_ms: int) -> float:
    """A third of the lease: two renewals may fail (a slow database) before it ends."""
    return lease_ms / 3000


def rescue_interval_s(lease_ms: int) -> float:
    """Half a lease: an expired one is found within 1.5 leases of its instance's death."""
    return lease_ms / 2000


def renew(store: PgStore) -> int:
    """Extend the lease of every attempt this instance runs; how many there were."""
    with store.transaction("cannot renew leases") as connection:
        return connection.execute(_RENEW, (store.lease_ms, store.instance_id)).rowcount


def rescue(
    store: PgStore, policy: RetryPolicy, uniform: Uniform, *, own: bool = False
) -> list[Task]:
    """Count the attempts whose lease ended (``own``: this instance's, at shutdown) as
    interrupted; the tasks as they are now, each waiting for a retry or failed."""
    with store.transaction("cannot rescue expired leases") as connection:
        if own:
            rows = connection.execute(_OWN, (store.instance_id, RESCUE_BATCH)).fetchall()
        else:
            rows = connection.execute(_EXPIRED, (RESCUE_BATCH,)).fetchall()
        if not rows:
            return []
        now = float(rows[0][-1])
        owners = {row[0]: row[-2] for row in rows}
        after = [
            after_interruption(task, now, policy, uniform)
            for task in tasks_of(row[:-2] for row in rows)
        ]
        connection.execute(
            _INTERRUPT,
            (
                [task.id for task in after],
                [task.status for task in after],
                [task.last_error for task in after],
                [task.updated_at for task in after],
                [task.next_attempt_at for task in after],
            ),
        )
    for task in after:
        logger.warning(
            "task %r attempt %d of instance %s interrupted (%s): %s",
            task.id,
            task.attempts,
            owners.get(task.id),
            "released at shutdown" if own else "its lease ran out",
            "retried" if task.next_attempt_at is not None else "failed, no retry left",
            extra=log_fields(task),
        )
    return after
