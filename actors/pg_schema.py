"""The PostgreSQL schema: created by the first instance that starts, versioned, checked by all.

Every instance runs ``prepare`` at start under one advisory lock, so two starting together never
both create (or migrate) the tables. A database whose schema is newer than this code is refused:
an older instance must not write rows a newer one reads differently.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from actors.store import StoreError

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 2
"""Kept in ``task_queue_schema``. A newer one than this is refused at start (exit 2)."""

SCHEMA_LOCK: Final = 0x74517565_0001
"""The advisory lock that serializes schema creation and migration across instances."""

INTAKE_LOCK: Final = 0x74517565_0002
"""The advisory lock each intake transaction holds while it counts the cluster's waiting tasks
and inserts: what makes each queue's QUEUE_SIZE, and SCHEDULED_MAX, hold across instances."""

TABLE: Final = "task_queue_tasks"
CHANNEL: Final = "task_queue_wake"
"""The LISTEN/NOTIFY channel: its payload is the id of the instance that enqueued (or paused or
resumed a queue)."""

_VERSION_1: Final = (
    """
    CREATE TABLE IF NOT EXISTS task_queue_schema (
        version integer NOT NULL
    )
    """,
    f"""
    CREATE TABLE {TABLE} (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- creation order
        id text NOT NULL UNIQUE,
        payload bytea NOT NULL,        -- the JSON text the client sent, verbatim
        max_retries integer NOT NULL,
        status text NOT NULL,
        attempts integer NOT NULL,
        created_at double precision NOT NULL,   -- seconds since the epoch, as Task holds them
        updated_at double precision NOT NULL,
        last_error text,
        next_attempt_at double precision,
        priority smallint NOT NULL DEFAULT 0,
        timeout_ms bigint,
        result bytea,
        target bytea,
        queue text NOT NULL DEFAULT 'default',  -- claimed only by instances that declare it
        owner text,                    -- the instance running its attempt (status running)
        lease_until timestamptz,       -- the database's clock: instances' clocks may differ
        enqueued_by text NOT NULL      -- the instance that accepted it
    )
    """,
    # The claim: queued tasks, highest priority first, then creation order.
    f"CREATE INDEX task_queue_claim ON {TABLE} (priority DESC, seq) WHERE status = 'queued'",
    # The rescue: running tasks by lease end; and each instance renewing its own.
    f"CREATE INDEX task_queue_leases ON {TABLE} (lease_until) WHERE status = 'running'",
    f"CREATE INDEX task_queue_owner ON {TABLE} (owner) WHERE status = 'running'",
    # Retention: finished tasks, oldest finish first.
    f"""CREATE INDEX task_queue_finished ON {TABLE} (updated_at)
        WHERE status IN ('done', 'failed', 'cancelled')""",
    # GET /tasks?status=: one status in creation order.
    f"CREATE INDEX task_queue_status ON {TABLE} (status, seq)",
    # The cluster's one intake bound: replaced by one per queue in version 2.
    """
    CREATE TABLE task_queue_intake (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        bound bigint NOT NULL
    )
    """,
    "INSERT INTO task_queue_intake (bound) VALUES (0)",
)
"""Version 1 as it was made (only its comments kept current): each later version's block
changes what it must, so a fresh database is built the way a migrated one is."""

# --- queues (version 2) ------------------------------------------------------------------------
_QUEUES: Final = (
    # The claim: one queue's queued tasks, highest priority first, then creation order.
    "DROP INDEX IF EXISTS task_queue_claim",
    f"""CREATE INDEX task_queue_claim ON {TABLE} (queue, priority DESC, seq)
        WHERE status = 'queued'""",
    # What lets intake skip counting a queue (actors/pg_store.py): written only under
    # INTAKE_LOCK, so it adds no contention of its own. A queue without a row is counted.
    "DROP TABLE task_queue_intake",
    """
    CREATE TABLE task_queue_intake (
        queue text PRIMARY KEY,
        -- never less than the queue's queued and running tasks: raised by every intake, set
        -- exactly whenever intake has to count
        bound bigint NOT NULL
    )
    """,
    f"""INSERT INTO task_queue_intake (queue, bound)
        SELECT queue, count(*) FROM {TABLE} WHERE status IN ('queued', 'running') GROUP BY queue""",
    # Each queue's state shared by the cluster: paused (POST /queues/pause), and the token
    # bucket of its max_per_second, taken in the claim transaction on the database's clock.
    """
    CREATE TABLE task_queue_queues (
        name text PRIMARY KEY,
        paused boolean NOT NULL DEFAULT false,
        tokens double precision NOT NULL,
        refilled_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )
    """,
)
# --- end of queues -----------------------------------------------------------------------------


# --- schedules (version 2) ---------------------------------------------------------------------
# actors/pg_schedule_store.py reads and writes them; a firing locks its schedule's row.
SCHEDULES_TABLE: Final = "task_queue_schedules"
_SCHEDULES: Final = (
    f"""
    CREATE TABLE {SCHEDULES_TABLE} (
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- creation order
        id text PRIMARY KEY,
        timing bytea NOT NULL,         -- actors/schedule.py's Timing, as msgpack
        task bytea NOT NULL,           -- the template of each firing's Task, as msgpack
        created_at double precision NOT NULL,
        next_run_at double precision,  -- NULL while paused
        last_task_id text,
        fired bigint NOT NULL DEFAULT 0,
        skipped bigint NOT NULL DEFAULT 0,
        version bigint NOT NULL        -- task_queue_schedule_changes.version of its last change
    )
    """,
    f"CREATE INDEX task_queue_schedules_version ON {SCHEDULES_TABLE} (version)",
    # One row, counting the changes made through the API (not firings): an instance that has
    # seen version n reads the rows changed since. Updated in each change's transaction, so
    # the row lock hands out versions in commit order and no change is ever read past.
    """
    CREATE TABLE task_queue_schedule_changes (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        version bigint NOT NULL
    )
    """,
    "INSERT INTO task_queue_schedule_changes (version) VALUES (0)",
)
# --- end of schedules ---------------------------------------------------------------------------

_CREATE: Final = _VERSION_1 + _QUEUES + _SCHEDULES
"""A fresh database: version 1's tables, then each later version's block, as a migration
would build them, so that a fresh and a migrated database are the same."""

_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    # version -> the statements that bring a database of that version to the next one
    1: _QUEUES + _SCHEDULES,
}


def prepare(connection: psycopg.Connection) -> None:
    """Create the schema, or bring it up to date; StoreError if it is newer than this code.

    ``connection`` is in autocommit mode; this runs one transaction under SCHEMA_LOCK.
    """
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        exists = connection.execute(
            "SELECT to_regclass('task_queue_schema') IS NOT NULL"
        ).fetchone()
        version = 0
        if exists is not None and exists[0]:
            row = connection.execute("SELECT max(version) FROM task_queue_schema").fetchone()
            version = row[0] if row is not None and row[0] is not None else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"has schema version {version}, newer than this code's {SCHEMA_VERSION}: it was "
                "made by a newer task_queue, which is what must use it"
            )
        if version == 0:
            for statement in _CREATE:
                connection.execute(statement)  # type: ignore[arg-type]  # our own text
            logger.info("schema version %d created", SCHEMA_VERSION)
        else:
            for from_version in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[from_version]:
                    connection.execute(statement)  # type: ignore[arg-type]  # our own text
        if version != SCHEMA_VERSION:
            connection.execute("DELETE FROM task_queue_schema")
            connection.execute(
                "INSERT INTO task_queue_schema (version) VALUES (%s)", (SCHEMA_VERSION,)
            )
