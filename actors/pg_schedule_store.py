"""PgScheduleStore: a cluster's schedules in one PostgreSQL table, shared by every instance.

Where SqliteScheduleStore (actors/schedule_store.py) keeps one process's schedules, this keeps
the cluster's: every instance reads and changes the same rows, so the table, not an instance's
memory, decides. A firing is one transaction that locks its schedule's row and goes ahead only
if the row still exists, is not paused and still names the time being fired: of the instances
whose timers ring for one firing, exactly one enqueues its task; the others find the row moved
on and learn its next time. The firings that fall due together are fired together, in one
transaction of a few round trips (``fire_batch``). Changes made through the API count in
``task_queue_schedule_changes`` so that instances catch up on them by reading only what changed
(``changes``).

Its connection is its own, owned by the ClusterScheduleActor, as the SQLite schedule store's
file is: a firing must lock the schedule's row and insert its task in one transaction, and the
repository's connection is busy with the repository's own work (its intake commits, claims and
leases) on the repository's thread. The repository keeps the connections of the tasks.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import msgspec
import psycopg

from actors.pg_schema import SCHEDULES_TABLE, TABLE
from actors.pg_store import insert_firings
from actors.schedule import Schedule, Timing, firing_task, paused_at
from actors.task import QUEUED, RUNNING, Task

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from actors.pg_connect import DatabaseUrl

logger = logging.getLogger(__name__)

_COLUMNS: Final = "id, timing, task, created_at, next_run_at, last_task_id, fired, skipped"
FIRINGS_PER_TRANSACTION: Final = 500
"""The most firings one transaction takes (``fire_batch``): a burst of more is several
transactions, so that none holds its rows and the intake lock for long."""
_LOCK_FOR_FIRING: Final = (
    f"SELECT {', '.join(f's.{column}' for column in _COLUMNS.split(', '))}, t.status "
    f"FROM {SCHEDULES_TABLE} AS s LEFT JOIN {TABLE} AS t ON t.id = s.last_task_id "
    "WHERE s.id = ANY(%s) FOR UPDATE OF s SKIP LOCKED"
)
"""A batch's first statement: the schedules' rows, each locked unless another instance holds
it, with the status of its last task (anywhere in the cluster)."""
_FOUND: Final = f"SELECT id FROM {SCHEDULES_TABLE} WHERE id = ANY(%s)"
"""Sent with it: which of the rows exist, so that one not locked is told held from deleted."""
_MOVE_ON: Final = (
    f"UPDATE {SCHEDULES_TABLE} AS s SET next_run_at = f.next_run_at, "
    "last_task_id = f.last_task_id, fired = s.fired + f.fired, skipped = s.skipped + f.skipped "
    "FROM unnest(%s::text[], %s::float8[], %s::text[], %s::int8[], %s::int8[]) "
    "AS f(id, next_run_at, last_task_id, fired, skipped) WHERE s.id = f.id"
)
"""The rows' next times and counts after a batch, in one statement (their version stays: a
firing is no change the other instances must read, they learn of it when they try it)."""
_DURABLE: Final = "SET LOCAL synchronous_commit = on"
"""A change made through the API is promised to its client: its commit waits for the disk, as
an enqueue's does (actors/pg_store.py). Firings commit asynchronously, the connection's
default: one undone by a crash of the server is undone whole, schedule row and task alike."""
_BUMP: Final = "UPDATE task_queue_schedule_changes SET version = version + 1 RETURNING version"

_encoder: Final = msgspec.msgpack.Encoder()
_timing_decoder: Final = msgspec.msgpack.Decoder(Timing)
_task_decoder: Final = msgspec.msgpack.Decoder(Task)


class Firing(enum.Enum):
    """What one firing's transaction did."""

    FIRED = "fired"
    """Its task is enqueued."""
    DUPLICATE = "duplicate"
    """Its task's id was taken (a task of an earlier schedule of the same id): nothing new."""
    SKIPPED = "skipped"
    """The last firing's task is still queued or running: counted in ``skipped``."""
    STALE = "stale"
    """The row no longer names this time: another instance fired it, or it was paused or
    resumed. Nothing was done; ``schedule`` is the row as it is."""
    GONE = "gone"
    """The schedule was deleted."""
    BUSY = "busy"
    """Another instance holds the row (firing it, or pausing it) at this moment: nothing was
    done; trying again shortly learns how the row moved on."""


class Fired(NamedTuple):
    outcome: Firing
    schedule: Schedule | None
    """The row after the transaction (None: gone)."""
    task_id: str | None = None
    """FIRED, DUPLICATE: the firing's task; SKIPPED: the last task, still unfinished."""
    why: str = ""
    """SKIPPED: that task's status."""


class Changes(NamedTuple):
    """What the API changed since a version, read in one snapshot."""

    version: int
    changed: tuple[Schedule, ...]
    """The rows changed since, in creation order."""
    ids: frozenset[str]
    """Every schedule's id: those missing were deleted."""


class PgScheduleStore:
    """The cluster's schedules; every method a StoreError on failure. Used from the
    ClusterScheduleActor's thread alone."""

    def __init__(self, url: DatabaseUrl, instance_id: str) -> None:
        self._url = url
        self._instance_id = instance_id
        self._connection: psycopg.Connection | None = None

    @classmethod
    def open(cls, url: DatabaseUrl, instance_id: str) -> PgScheduleStore:
        """Connect; the schema is the repository's to prepare, and is prepared before."""
        store = cls(url, instance_id)
        with store._using("cannot be reached") as connection:
            connection.execute(f"SELECT 1 FROM {SCHEDULES_TABLE} LIMIT 1")
        return store

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    @contextlib.contextmanager
    def _using(self, doing: str) -> Iterator[psycopg.Connection]:
        """The connection, made again if it was lost; a failure is a StoreError."""
        if self._connection is None or self._connection.closed:
            self._connection = self._url.connect(f"task_queue {self._instance_id} schedules")
        connection = self._connection
        try:
            yield connection
        except psycopg.Error as exc:
            if connection.broken or connection.closed or isinstance(exc, psycopg.OperationalError):
                self.close()
            raise self._url.error(f"schedules {doing}", exc) from None

    # --- reads ----------------------------------------------------------------------------------

    def load(self) -> list[Schedule]:
        """Every schedule, in creation order."""
        with self._using("cannot be read") as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM {SCHEDULES_TABLE} ORDER BY seq"
            ).fetchall()
        return _schedules(rows)

    def get(self, schedule_id: str) -> Schedule | None:
        with self._using("cannot be read") as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM {SCHEDULES_TABLE} WHERE id = %s", (schedule_id,)
            ).fetchone()
        return None if row is None else _schedule(row)

    def changes(self, since: int | None) -> Changes | None:
        """What the API changed after version ``since`` (None: everything); None if nothing."""
        with self._using("cannot be read") as connection, connection.transaction():
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = connection.execute("SELECT version FROM task_queue_schedule_changes").fetchone()
            version = int(row[0]) if row is not None else 0
            if since is not None and version == since:
                return None
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM {SCHEDULES_TABLE} WHERE version > %s ORDER BY seq",
                (-1 if since is None else since,),
            ).fetchall()
            ids = connection.execute(f"SELECT id FROM {SCHEDULES_TABLE}").fetchall()
        return Changes(version, tuple(_schedules(rows)), frozenset(row[0] for row in ids))

    # --- the API's changes ----------------------------------------------------------------------

    def add(self, schedule: Schedule) -> bool:
        """Store a new schedule; False if its id is taken."""
        with self._using("cannot be written") as connection, connection.transaction():
            connection.execute(_DURABLE)
            version = _bump(connection)
            added = connection.execute(
                f"INSERT INTO {SCHEDULES_TABLE} (id, timing, task, created_at, next_run_at, "
                "version) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING id",
                (
                    schedule.id,
                    _encoder.encode(schedule.timing),
                    _encoder.encode(schedule.task),
                    schedule.created_at,
                    schedule.next_run_at,
                    version,
                ),
            ).fetchone()
            if added is None:
                raise psycopg.Rollback  # the version stays as it was
        return added is not None

    def pause(self, schedule_id: str, paused: bool, now: float) -> Schedule | None:
        """Pause the schedule, or resume it from ``now`` on; None if the id is unknown."""
        with self._using("cannot be written") as connection, connection.transaction():
            connection.execute(_DURABLE)
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM {SCHEDULES_TABLE} WHERE id = %s FOR UPDATE",
                (schedule_id,),
            ).fetchone()
            schedule = None if row is None else _schedule(row)
            if schedule is None or schedule.paused == paused:
                return schedule
            changed = paused_at(schedule, paused, now)
            connection.execute(
                f"UPDATE {SCHEDULES_TABLE} SET next_run_at = %s, version = %s WHERE id = %s",
                (changed.next_run_at, _bump(connection), schedule_id),
            )
        return changed

    def delete(self, schedule_id: str) -> bool:
        """Forget the schedule (its tasks stay); False if the id is unknown."""
        with self._using("cannot be written") as connection, connection.transaction():
            connection.execute(_DURABLE)
            _bump(connection)
            deleted = connection.execute(
                f"DELETE FROM {SCHEDULES_TABLE} WHERE id = %s RETURNING id", (schedule_id,)
            ).fetchone()
            if deleted is None:
                raise psycopg.Rollback
        return deleted is not None

    # --- firing ---------------------------------------------------------------------------------

    def fire(self, schedule_id: str, fire_at: float, now: float) -> Fired:
        """``fire_batch`` of one firing."""
        return self.fire_batch([(schedule_id, fire_at)], now)[0]

    def fire_batch(self, due: Sequence[tuple[str, float]], now: float) -> list[Fired]:
        """Fire each schedule of ``due`` (ids, each once, with the time the caller's copy says
        is due; at most FIRINGS_PER_TRANSACTION) at ``now``, if its row still names that time:
        enqueue its task (or skip, while the last one is queued or running anywhere), and move
        the row on to its first time after ``now``. One transaction for all; what each firing
        did, in the order of ``due``.

        A row another instance holds is skipped, not waited for (BUSY): instances whose timers
        ring together then fire different schedules at once instead of queueing on each one.
        The statements are pipelined: one round trip to lock and read the rows, one to insert
        the tasks (none if there are none), and one to move the rows on and commit.
        """
        if not due:
            return []
        ids = [schedule_id for schedule_id, _ in due]
        if len(set(ids)) != len(ids) or len(ids) > FIRINGS_PER_TRANSACTION:
            raise ValueError("a batch fires each schedule once, and so many at most")
        answers: dict[str, Fired] = {}
        moves: list[_Move] = []
        with (
            self._using("cannot fire") as connection,
            connection.pipeline(),
            connection.transaction(),
        ):
            locked_rows = connection.execute(_LOCK_FOR_FIRING, (ids,))
            found_rows = connection.execute(_FOUND, (ids,))
            locked = {row[0]: row for row in locked_rows.fetchall()}
            found = {row[0] for row in found_rows.fetchall()}
            firings: list[tuple[Schedule, Task, float]] = []
            for schedule_id, fire_at in due:
                row = locked.get(schedule_id)
                schedule = None if row is None else _schedule(row[:-1])
                if row is None or schedule is None:
                    held = row is None and schedule_id in found
                    answers[schedule_id] = Fired(Firing.BUSY if held else Firing.GONE, None)
                    continue
                if schedule.next_run_at != fire_at:
                    answers[schedule_id] = Fired(Firing.STALE, schedule)
                    continue
                next_run_at = schedule.timing.next_run(now, schedule.created_at)
                status = row[-1]
                if status in (QUEUED, RUNNING):
                    move = _Move(schedule_id, next_run_at, schedule.last_task_id, 0, 1)
                    moves.append(move)
                    answers[schedule_id] = Fired(
                        Firing.SKIPPED, move.applied_to(schedule), schedule.last_task_id, status
                    )
                    continue
                firings.append((schedule, firing_task(schedule, fire_at, now), next_run_at))
            taken = insert_firings(connection, [task for _, task, _ in firings], self._instance_id)
            for schedule, task, next_run_at in firings:
                inserted = task.id in taken
                move = _Move(schedule.id, next_run_at, task.id, int(inserted), 0)
                moves.append(move)
                answers[schedule.id] = Fired(
                    Firing.FIRED if inserted else Firing.DUPLICATE,
                    move.applied_to(schedule),
                    task.id,
                )
            if moves:
                connection.execute(_MOVE_ON, [list(column) for column in zip(*moves, strict=True)])
        return [answers[schedule_id] for schedule_id in ids]


def _bump(connection: psycopg.Connection) -> int:
    row = connection.execute(_BUMP).fetchone()
    assert row is not None
    return int(row[0])


class _Move(NamedTuple):
    """How a firing moves its schedule's row on: a row of ``_MOVE_ON``."""

    id: str
    next_run_at: float
    last_task_id: str | None
    fired: int
    skipped: int

    def applied_to(self, schedule: Schedule) -> Schedule:
        """The schedule as its row is once moved on."""
        return msgspec.structs.replace(
            schedule,
            next_run_at=self.next_run_at,
            last_task_id=self.last_task_id,
            fired=schedule.fired + self.fired,
            skipped=schedule.skipped + self.skipped,
        )


def _schedule(row: Sequence[Any]) -> Schedule | None:
    """The Schedule a row holds, or None (logged): one unreadable row must not keep the
    instance, and every other schedule, down."""
    schedule_id, timing, task, created_at, next_run_at, last_task_id, fired, skipped = row
    try:
        return Schedule(
            schedule_id,
            _timing_decoder.decode(timing),
            _task_decoder.decode(task),
            created_at,
            next_run_at,
            last_task_id,
            int(fired),
            int(skipped),
        )
    except (msgspec.DecodeError, TypeError) as exc:
        logger.error("schedule %r in the database cannot be read (%s): skipped", schedule_id, exc)
        return None


def _schedules(rows: Sequence[Sequence[Any]]) -> list[Schedule]:
    return [schedule for schedule in map(_schedule, rows) if schedule is not None]
