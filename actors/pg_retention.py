"""Retention in a cluster: finished tasks deleted from the table in bounded batches.

The same rules as in memory (actors/retention.py), applied by whichever instance sweeps: a
batch of at most SWEEP_BATCH rows per statement, oldest finish first (the index
``task_queue_finished``), so no statement ever deletes table-wide or holds locks for long.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from actors.pg_schema import TABLE

if TYPE_CHECKING:
    from actors.pg_store import PgStore
    from actors.retention import Retention

SWEEP_BATCH: Final = 1000
"""Most rows one retention statement deletes."""

SWEEP_BATCHES: Final = 4
"""Most batches one sweep runs: the rest waits for the next sweep, a second later."""

_FINAL: Final = "status IN ('done', 'failed', 'cancelled')"
# Each batch's seqs are gathered into an array first, so that the delete finds its rows by the
# primary key: as "seq IN (subquery)" the planner may hash-join the whole table instead.
_EXPIRED: Final = (
    f"DELETE FROM {TABLE} WHERE seq = ANY(ARRAY(SELECT seq FROM {TABLE} WHERE {_FINAL} "
    "AND updated_at <= %s ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED))"
)
_COUNT: Final = f"SELECT count(*) FROM {TABLE} WHERE {_FINAL}"
_OLDEST: Final = (
    f"DELETE FROM {TABLE} WHERE seq = ANY(ARRAY(SELECT seq FROM {TABLE} WHERE {_FINAL} "
    "ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED))"
)


def sweep(store: PgStore, rules: Retention, now: float) -> int:
    """Delete what ``rules`` no longer keep, up to SWEEP_BATCHES batches; how many rows."""
    deleted = 0
    for _ in range(SWEEP_BATCHES):
        removed = 0
        if rules.ttl_s > 0:
            removed += _rowcount(store, _EXPIRED, (now - rules.ttl_s, SWEEP_BATCH))
        if rules.max_finished > 0:
            rows = store.execute("cannot count finished tasks", _COUNT)
            over = int(rows[0][0]) - rules.max_finished
            if over > 0:
                removed += _rowcount(store, _OLDEST, (min(over, SWEEP_BATCH),))
        deleted += removed
        if removed < SWEEP_BATCH:
            break
    return deleted


def _rowcount(store: PgStore, query: str, params: tuple[object, ...]) -> int:
    with store.transaction("cannot delete finished tasks") as connection:
        return connection.execute(query, params).rowcount  # type: ignore[arg-type]
