"""PgStore: the tasks of a cluster in one PostgreSQL table, used from the repository's thread.

Every instance with the same DATABASE_URL reads and writes the same table, so the table, not
any instance's memory, is the queue: reads go to it, work is claimed from it
(``FOR UPDATE SKIP LOCKED``), and an attempt's outcome is written only by the instance whose
lease it holds (actors/leases.py). One connection, in autocommit mode, owned by the repository:
a connection lost is dropped and made again at the next use (``check`` tries it).

As a Store (actors/store.py) under GroupCommit it takes only intake: ``commit`` inserts new
tasks, under the intake lock that makes each queue's QUEUE_SIZE, and SCHEDULED_MAX, hold
across instances, and says in ``refused`` which of them it could not take (a taken id, a full
queue).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import msgspec
import psycopg

from actors.paging import Page
from actors.pg_queues import PAUSE, next_token_s, refill, refusal, take
from actors.pg_schema import CHANNEL, INTAKE_LOCK, TABLE, prepare
from actors.protocol.answers import Admission, BatchAdmission, Outcome
from actors.protocol.cluster import Want
from actors.rows import decode_row, row_of, task_if_sound
from actors.stats import StatusCounts
from actors.store import StoreError
from actors.task import CANCELLED, FAILED, QUEUED, RUNNING, STATUSES, Task

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence

    from actors.pg_connect import DatabaseUrl

logger = logging.getLogger(__name__)

_FIELDS: Final = tuple(field.name for field in msgspec.structs.fields(Task))
COLUMNS: Final = ", ".join(_FIELDS)
"""The task columns in the order of Task's fields: a row is a Task's positional arguments."""
_TYPES: Final = [
    "text[]",
    "bytea[]",
    "int4[]",
    "text[]",
    "int4[]",
    "float8[]",
    "float8[]",
    "text[]",
    "float8[]",
    "int2[]",
    "int8[]",
    "bytea[]",
    "bytea[]",
    "text[]",
]
_UNNEST: Final = ", ".join(f"%s::{kind}" for kind in _TYPES)
_NOW: Final = "extract(epoch FROM clock_timestamp())"
"""Due times are compared with the database's clock, the one every instance shares."""
_DUE: Final = f"(next_attempt_at IS NULL OR next_attempt_at <= {_NOW})"
_FINAL: Final = "status IN ('done', 'failed', 'cancelled')"

_INSERT: Final = (
    f"INSERT INTO {TABLE} ({COLUMNS}, enqueued_by) SELECT *, %s FROM unnest({_UNNEST}) "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)
_LINES: Final = (
    f"SELECT queue, count(*) FILTER (WHERE {_DUE}), count(*) FILTER (WHERE NOT {_DUE}) "
    f"FROM {TABLE} WHERE status = 'queued' GROUP BY queue"
)
_DURABLE: Final = "SET LOCAL synchronous_commit = on"
"""For the transactions whose commit is promised to a client (an enqueue's 201, a cancel, a
retry by hand, a delete): they wait for the WAL to reach the disk. The rest (claims, outcomes,
lease renewals, rescues, retention) commit asynchronously, the connection's default
(actors/pg_connect.py): see there why."""
_COUNT: Final = (
    f"SELECT queue, count(*) FILTER (WHERE status = 'queued' AND {_DUE}), "
    f"count(*) FILTER (WHERE status = 'queued' AND NOT {_DUE}), "
    f"count(*) FILTER (WHERE status = 'running') FROM {TABLE} "
    "WHERE status IN ('queued', 'running') GROUP BY queue"
)
_BOUNDS: Final = (
    "INSERT INTO task_queue_intake (queue, bound) SELECT * FROM unnest(%s::text[], %s::int8[]) "
    "ON CONFLICT (queue) DO UPDATE SET bound = excluded.bound"
)
_RAISE_BOUNDS: Final = (
    "UPDATE task_queue_intake AS intake SET bound = intake.bound + added.count "
    "FROM unnest(%s::text[], %s::int8[]) AS added(queue, count) WHERE intake.queue = added.queue"
)
_CLAIM: Final = (
    f"UPDATE {TABLE} SET status = 'running', attempts = attempts + 1, owner = %s, "
    "lease_until = clock_timestamp() + %s * interval '1 millisecond', "
    f"updated_at = {_NOW} "
    # For each queue wanted, its own limit: several queues in one statement. The seqs are
    # gathered into an array first, so that the update finds its rows by the primary key:
    # as "seq IN (subquery)" the planner may hash-join the whole table, finished tasks and
    # all, on every claim.
    "WHERE seq = ANY(ARRAY(SELECT claimable.seq "
    "FROM unnest(%s::text[], %s::int4[]) AS wanted(queue, n) "
    f"CROSS JOIN LATERAL (SELECT seq FROM {TABLE} WHERE status = 'queued' "
    f"AND {TABLE}.queue = wanted.queue AND {_DUE} "
    # A paused queue starts nothing, whichever instance paused it.
    "AND NOT EXISTS (SELECT 1 FROM task_queue_queues q WHERE q.name = wanted.queue AND q.paused) "
    "ORDER BY priority DESC, seq LIMIT wanted.n FOR UPDATE SKIP LOCKED) AS claimable)) "
    f"RETURNING {COLUMNS}, seq"
)
_FINISH: Final = (
    f"UPDATE {TABLE} AS t SET status = f.status, attempts = f.attempts, "
    "updated_at = f.updated_at, last_error = f.last_error, next_attempt_at = f.next_attempt_at, "
    "result = f.result, owner = NULL, lease_until = NULL "
    "FROM unnest(%s::text[], %s::text[], %s::int4[], %s::float8[], %s::text[], %s::float8[], "
    "%s::bytea[]) AS f(id, status, attempts, updated_at, last_error, next_attempt_at, result) "
    # The same attempt, too: one rescued and claimed again here must not take the outcome of
    # the attempt before it.
    "WHERE t.id = f.id AND t.owner = %s AND t.status = 'running' AND t.attempts = f.attempts "
    "RETURNING t.id"
)


def _task(row: Sequence[Any]) -> Task | None:
    """The Task a row holds, or None (logged) if it is not one the service could have made:
    bad stored data is never served nor run."""
    task = task_if_sound(row)
    if task is not None:
        return task
    try:
        return decode_row(row)
    except ValueError as exc:
        logger.error("task %r in the database cannot be read: %s; it is skipped", row[0], exc)
        return None


def tasks_of(rows: Iterable[Sequence[Any]]) -> list[Task]:
    return [task for task in map(_task, rows) if task is not None]


class Claims(NamedTuple):
    """What one ``claim_many`` did."""

    tasks: dict[str, list[Task]]
    """The tasks claimed per queue, as they were before the claim."""
    written: set[str]
    """The ids of the outcomes written, as ``finish`` returns them."""
    next_token_s: dict[str, float]
    """For each queue whose rate held the claim back: how soon it has its next token."""


class PgStore:
    """One instance's access to the cluster's table; every method a StoreError on failure."""

    def __init__(
        self,
        url: DatabaseUrl,
        instance_id: str,
        *,
        lease_ms: int,
        queue_size: int,
        scheduled_max: int,
    ) -> None:
        self.url = url
        self.instance_id = instance_id
        self.lease_ms = lease_ms
        self.queue_size = queue_size
        """QUEUE_SIZE: the tasks that may wait in the whole cluster."""
        self.scheduled_max = scheduled_max
        self._connection: psycopg.Connection | None = None
        self.refused: dict[str, Admission] = {}
        """The tasks the last ``commit`` did not take, and why."""

    @classmethod
    def open(
        cls,
        url: DatabaseUrl,
        instance_id: str,
        *,
        lease_ms: int,
        queue_size: int,
        scheduled_max: int,
    ) -> PgStore:
        """Connect and create (or check) the schema; StoreError if either cannot be done."""
        store = cls(
            url,
            instance_id,
            lease_ms=lease_ms,
            queue_size=queue_size,
            scheduled_max=scheduled_max,
        )
        connection = store._connect()
        try:
            prepare(connection)
        except psycopg.Error as exc:
            connection.close()
            raise url.error("cannot prepare the schema", exc) from None
        except StoreError as exc:
            connection.close()
            raise StoreError(f"PostgreSQL ({url.describe()}) {exc}") from None
        return store

    # --- connection -----------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            self._connection = self.url.connect(f"task_queue {self.instance_id}")
        return self._connection

    @contextlib.contextmanager
    def _using(self, doing: str) -> Any:
        """The connection, made again if it was lost; a failure is a StoreError, and a
        connection that broke is dropped so that the next use makes a new one."""
        connection = self._connect()
        try:
            yield connection
        except psycopg.Error as exc:
            if connection.broken or connection.closed or isinstance(exc, psycopg.OperationalError):
                with contextlib.suppress(Exception):
                    connection.close()
                self._connection = None
            raise self.url.error(doing, exc) from None

    def check(self) -> None:
        """A round trip to the database, connecting first if need be."""
        with self._using("cannot be reached") as connection:
            connection.execute("SELECT 1")

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    # --- intake (Store, under GroupCommit) ------------------------------------------------------

    def load(self) -> list[Task]:
        """Nothing: in a cluster the table is read where it is needed, never loaded whole."""
        return []

    def commit(self, tasks: Sequence[Task], deleted: Collection[str] = ()) -> None:
        """Delete what this instance accepted and then withdrew, and insert ``tasks`` that fit
        the cluster's bounds, in one transaction; ``refused`` says which were not taken."""
        self.refused = {}
        with (
            self._using("cannot be written") as connection,
            connection.pipeline(),
            connection.transaction(),
        ):
            connection.execute(_DURABLE)
            if deleted:
                # Only rows this instance inserted and nobody has touched since: a withdrawn
                # task whose commit reached the database after all.
                connection.execute(
                    f"DELETE FROM {TABLE} WHERE id = ANY(%s) AND enqueued_by = %s "
                    "AND status = 'queued' AND attempts = 0",
                    (list(deleted), self.instance_id),
                )
            if tasks:
                taken = self._insert_within_bounds(connection, tasks)
                if taken:
                    # Delivered at commit, to every instance listening: a task enqueued here
                    # starts at once on an idle other. One per commit: the group commit is
                    # the debounce.
                    connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.instance_id))

    def _insert_within_bounds(
        self, connection: psycopg.Connection, tasks: Sequence[Task]
    ) -> list[str]:
        """Insert what fits the cluster's bounds; in two round trips, pipelined.

        Counting the waiting tasks at every commit would cost as much as the queues are long,
        so intake keeps a bound per queue in ``task_queue_intake``, never less than the queue's
        queued and running tasks (a claim or a retry moves a task between the two, and the rest
        only lowers them): while the bounds leave room, nothing is counted. Only near a bound
        (or for a queue without one) does a commit count exactly, and set every bound to what
        it found. SCHEDULED_MAX is the cluster's, as in a single process: checked against the
        sum of the bounds.
        """
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (INTAKE_LOCK,))
        rows = connection.execute("SELECT queue, bound FROM task_queue_intake").fetchall()
        bounds: dict[str, int] = {queue: int(bound) for queue, bound in rows}
        demand = Counter(task.queue for task in tasks)
        delayed = sum(1 for task in tasks if task.next_attempt_at is not None)
        if all(
            queue in bounds and bounds[queue] + count <= self.queue_size
            for queue, count in demand.items()
        ) and (not delayed or sum(bounds.values()) + delayed <= self.scheduled_max):
            fit = list(tasks)
            exact = False
        else:
            exact = True
            counted = self._exact(connection)
            bounds = dict.fromkeys(bounds, 0) | {
                queue: sum(counts) for queue, counts in counted.items()
            }
            fit = self._fitting(tasks, counted)
        for task in fit:
            bounds[task.queue] = bounds.get(task.queue, 0) + 1
        # Every bound after a count, else only those this commit raised.
        written = bounds if exact else {queue: bounds[queue] for queue in demand}
        if not fit:
            connection.execute(_BOUNDS, (list(written), list(written.values())))
            return []
        columns = list(zip(*map(row_of, fit), strict=True))
        inserted = connection.execute(_INSERT, (self.instance_id, *map(list, columns)))
        connection.execute(_BOUNDS, (list(written), list(written.values())))
        taken = {row[0] for row in inserted.fetchall()}
        for task in fit:
            if task.id not in taken:
                self.refused[task.id] = Admission.DUPLICATE
        return list(taken)

    def _fitting(
        self, tasks: Sequence[Task], counted: dict[str, tuple[int, int, int]]
    ) -> list[Task]:
        waiting = {queue: counts[0] for queue, counts in counted.items()}
        scheduled = sum(counts[1] for counts in counted.values())
        fit: list[Task] = []
        for task in tasks:
            delayed = task.next_attempt_at is not None
            why = refusal(
                waiting.get(task.queue, 0), scheduled, self.queue_size, self.scheduled_max, delayed
            )
            if why is not None:
                self.refused[task.id] = why
                continue
            fit.append(task)
            if delayed:
                scheduled += 1
            else:
                waiting[task.queue] = waiting.get(task.queue, 0) + 1
        return fit

    @staticmethod
    def _exact(connection: psycopg.Connection) -> dict[str, tuple[int, int, int]]:
        """Per queue: queued tasks due now, queued tasks waiting for their time, running
        tasks."""
        return {
            queue: (int(due), int(later), int(running))
            for queue, due, later, running in connection.execute(_COUNT).fetchall()
        }

    def insert_batch(self, tasks: Sequence[Task]) -> BatchAdmission:
        """All of ``tasks`` in one transaction, or none (a taken id, a full queue)."""
        self.refused = {}
        seen: set[str] = set()
        for position, task in enumerate(tasks):
            if task.id in seen:  # the insert would take the first and skip it silently
                return BatchAdmission(Admission.DUPLICATE, position)
            seen.add(task.id)
        with (
            self._using("cannot be written") as connection,
            connection.pipeline(),
            connection.transaction(),
        ):
            connection.execute(_DURABLE)
            taken = self._insert_within_bounds(connection, tasks)
            if self.refused:
                raise psycopg.Rollback  # leaves the block, the transaction rolled back
            connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.instance_id))
        for position, task in enumerate(tasks):
            if self.refused.get(task.id) is Admission.DUPLICATE:
                return BatchAdmission(Admission.DUPLICATE, position)
        if self.refused:
            return BatchAdmission(next(iter(self.refused.values())))
        assert len(taken) == len(tasks)
        return BatchAdmission(Admission.ACCEPTED)

    def exists(self, task_id: str) -> bool:
        with self._using("cannot be read") as connection:
            row = connection.execute(f"SELECT 1 FROM {TABLE} WHERE id = %s", (task_id,))
            return row.fetchone() is not None

    # --- reads ----------------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        with self._using("cannot be read") as connection:
            row = connection.execute(
                f"SELECT {COLUMNS} FROM {TABLE} WHERE id = %s", (task_id,)
            ).fetchone()
        return None if row is None else _task(row)

    def page(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        after: str | None = None,
        newest_first: bool = False,
        queue: str | None = None,
    ) -> Page | None:
        """As CreationOrder.page (actors/paging.py), read from the table by ``seq``."""
        where: list[str] = []
        params: list[object] = []
        with self._using("cannot be read") as connection:
            if after is not None:
                found = connection.execute(
                    f"SELECT seq FROM {TABLE} WHERE id = %s", (after,)
                ).fetchone()
                if found is None:
                    return None
                where.append("seq < %s" if newest_first else "seq > %s")
                params.append(found[0])
            if status is not None:
                where.append("status = %s")
                params.append(status)
            if queue is not None:
                where.append("queue = %s")
                params.append(queue)
            query = f"SELECT {COLUMNS} FROM {TABLE}"
            if where:
                query += " WHERE " + " AND ".join(where)
            query += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
            if limit is not None:
                query += " LIMIT %s"
                params.append(limit + 1)
            rows = connection.execute(query, params).fetchall()  # type: ignore[arg-type]
        more = limit is not None and len(rows) > limit
        return Page(tasks_of(rows[:limit] if more else rows), more)

    def counts(self) -> StatusCounts:
        """Tasks per status in the whole cluster."""
        with self._using("cannot be read") as connection:
            rows = connection.execute(
                f"SELECT status, count(*) FROM {TABLE} GROUP BY status"
            ).fetchall()
        found = dict.fromkeys(STATUSES, 0)
        found.update((status, int(count)) for status, count in rows if status in found)
        return StatusCounts(**found)

    def lines(self) -> dict[str, tuple[int, int]]:
        """Queued tasks in the cluster per queue: due now (waiting), and waiting for their
        time."""
        with self._using("cannot be read") as connection:
            rows = connection.execute(_LINES).fetchall()
        return {queue: (int(due), int(later)) for queue, due, later in rows}

    # --- work -----------------------------------------------------------------------------------

    def claim_many(self, wants: Sequence[Want], finished: Sequence[Task] = ()) -> Claims:
        """For each of ``wants``, up to its limit of due queued tasks of its queue, highest
        priority first, then oldest, each now running here under a lease of ``lease_ms``;
        returned as they were before the claim (queued, attempts not yet counted), which is
        what a worker's Run starts from. Nothing of a paused queue; of one with a rate, no more
        than its token bucket (actors/pg_queues.py) holds.

        The outcomes ``finished`` are written first, and the queues without a rate are claimed
        in one statement, in the same round trip (pipelined): a worker that ends an attempt
        asks for the next task at once. Each queue with a rate is a transaction of its own.
        """
        plain = [want for want in wants if want.max_per_second is None]
        rows: list[Any] = []
        waits: dict[str, float] = {}
        ids: set[str] = set()
        with self._using("cannot claim") as connection:
            with connection.pipeline():
                written = claimed = None
                if finished:
                    written = connection.execute(_FINISH, self._finish_params(finished))
                if plain:
                    queues = [want.queue for want in plain]
                    limits = [want.limit for want in plain]
                    params = (self.instance_id, self.lease_ms, queues, limits)
                    claimed = connection.execute(_CLAIM, params)
                if written is not None:
                    ids = {row[0] for row in written.fetchall()}
                if claimed is not None:
                    rows = claimed.fetchall()
            for want in wants:
                if want.max_per_second is not None:
                    rated, wait_s = self._claim_rated(connection, want, want.max_per_second)
                    rows += rated
                    if wait_s is not None:
                        waits[want.queue] = wait_s
        rows.sort(key=lambda row: (-row[9], row[-1]))
        tasks: dict[str, list[Task]] = {}
        for task in tasks_of(row[:-1] for row in rows):
            before = msgspec.structs.replace(task, status=QUEUED, attempts=task.attempts - 1)
            tasks.setdefault(task.queue, []).append(before)
        return Claims(tasks, ids, waits)

    def _claim_rated(
        self, connection: psycopg.Connection, want: Want, rate: float
    ) -> tuple[list[Any], float | None]:
        """One transaction: the bucket's row stays locked from its refill to the take."""
        rows: list[Any] = []
        with connection.transaction():
            tokens = refill(connection, want.queue, rate, want.limit)
            if tokens.allowed:
                params = (self.instance_id, self.lease_ms, [want.queue], [tokens.allowed])
                rows = connection.execute(_CLAIM, params).fetchall()
            take(connection, want.queue, len(rows))
        return rows, next_token_s(tokens, want.limit, len(rows), rate)

    def finish(self, tasks: Sequence[Task]) -> set[str]:
        """Write the outcome of attempts this instance holds the lease of; the ids written.
        An id missing from the answer lost its lease (rescued elsewhere): its outcome is
        dropped, as the rescuer counted that attempt as interrupted."""
        with self._using("cannot be written") as connection:
            rows = connection.execute(_FINISH, self._finish_params(tasks)).fetchall()
        return {row[0] for row in rows}

    def _finish_params(self, tasks: Sequence[Task]) -> tuple[object, ...]:
        return (
            [task.id for task in tasks],
            [task.status for task in tasks],
            [task.attempts for task in tasks],
            [task.updated_at for task in tasks],
            [task.last_error for task in tasks],
            [task.next_attempt_at for task in tasks],
            [task.result for task in tasks],
            self.instance_id,
        )

    def cancel(self, task_id: str, now: float) -> Outcome:
        """Cancel a queued task, whichever instance took it in."""
        with self._using("cannot be written") as connection, connection.transaction():
            connection.execute(_DURABLE)  # a cancel promises the task never runs
            row = connection.execute(
                f"UPDATE {TABLE} SET status = 'cancelled', updated_at = %s, "
                "next_attempt_at = NULL WHERE id = %s AND status = 'queued' "
                f"RETURNING {COLUMNS}",
                (now, task_id),
            ).fetchone()
            if row is not None:
                return Outcome(_task(row))
            found = connection.execute(
                f"SELECT status FROM {TABLE} WHERE id = %s", (task_id,)
            ).fetchone()
        if found is None:
            return Outcome(None)
        return Outcome(None, conflict=f"task is {found[0]}")

    def requeue(self, task_id: str, now: float) -> Outcome:
        """Queue a failed or cancelled task again, attempts from 0, if the queue has room."""
        with self._using("cannot be written") as connection, connection.transaction():
            connection.execute(_DURABLE)
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (INTAKE_LOCK,))
            found = connection.execute(
                f"SELECT status, queue FROM {TABLE} WHERE id = %s FOR UPDATE", (task_id,)
            ).fetchone()
            if found is None:
                return Outcome(None)
            status, queue = found
            if status not in (FAILED, CANCELLED):
                return Outcome(
                    None,
                    conflict=f"task is {status}; only a failed or cancelled task can be retried",
                )
            waiting = connection.execute(
                f"SELECT count(*) FROM {TABLE} WHERE status = 'queued' AND queue = %s AND {_DUE}",
                (queue,),
            ).fetchone()
            assert waiting is not None
            if waiting[0] + 1 > self.queue_size:
                return Outcome(None, refused=Admission.QUEUE_FULL)
            row = connection.execute(
                f"UPDATE {TABLE} SET status = 'queued', attempts = 0, updated_at = %s, "
                f"next_attempt_at = NULL WHERE id = %s RETURNING {COLUMNS}",
                (now, task_id),
            ).fetchone()
            # A queue without a bound is counted at its next intake.
            connection.execute(
                "UPDATE task_queue_intake SET bound = bound + 1 WHERE queue = %s", (queue,)
            )
            connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.instance_id))
        assert row is not None
        return Outcome(_task(row))

    def pause(self, queue: str, *, paused: bool) -> None:
        """Pause (or resume) ``queue`` for the whole cluster, durably; the other instances are
        woken (NOTIFY) to claim again at once after a resume."""
        with self._using("cannot be written") as connection, connection.transaction():
            connection.execute(_DURABLE)  # answered as kept
            connection.execute(PAUSE, (queue, paused))
            connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.instance_id))

    def delete(self, task_id: str) -> Outcome:
        """Forget a finished task."""
        with self._using("cannot be written") as connection, connection.transaction():
            connection.execute(_DURABLE)
            row = connection.execute(
                f"DELETE FROM {TABLE} WHERE id = %s AND {_FINAL} RETURNING {COLUMNS}",
                (task_id,),
            ).fetchone()
            if row is not None:
                return Outcome(_task(row))
            found = connection.execute(
                f"SELECT status FROM {TABLE} WHERE id = %s", (task_id,)
            ).fetchone()
        if found is None:
            return Outcome(None)
        why = "running" if found[0] == RUNNING else "queued"
        return Outcome(None, conflict=f"task is {why}; only a finished task can be deleted")

    def execute(self, doing: str, query: str, params: Sequence[object] = ()) -> list[Any]:
        """One statement of actors/leases.py or actors/pg_retention.py: its rows (none: [])."""
        with self._using(doing) as connection:
            cursor = connection.execute(query, params)  # type: ignore[arg-type]  # our own text
            return cursor.fetchall() if cursor.description is not None else []

    def transaction(self, doing: str) -> Any:
        """A context of one transaction, yielding the connection (actors/leases.py)."""
        return _Transaction(self, doing)


class _Transaction:
    def __init__(self, store: PgStore, doing: str) -> None:
        self._store = store
        self._doing = doing
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> psycopg.Connection:
        connection = self._stack.enter_context(self._store._using(self._doing))
        try:
            self._stack.enter_context(connection.transaction())
        except BaseException as exc:
            # Its BEGIN failing (the server ended the connection while it was idle) is a
            # StoreError like any other statement's: _using makes it one.
            if not self._stack.__exit__(type(exc), exc, exc.__traceback__):
                raise
        return connection

    def __exit__(self, *exc_info: Any) -> bool | None:
        return self._stack.__exit__(*exc_info)


def insert_firings(
    connection: psycopg.Connection, tasks: Sequence[Task], instance_id: str
) -> set[str]:
    """Insert the tasks of schedules' firings in one statement, in the caller's transaction
    (actors/pg_schedule_store.py); the ids inserted (a taken id is not).

    Firings get in like due retries, past QUEUE_SIZE, so nothing is counted; but they go in
    under the intake lock, and raise their queues' intake bounds, as every intake does, so that
    each bound stays above its queue's queued and running tasks. The instances are woken at
    commit by one notification, as after an intake.
    """
    if not tasks:
        return set()
    connection.execute("SELECT pg_advisory_xact_lock(%s)", (INTAKE_LOCK,))
    columns = list(zip(*map(row_of, tasks), strict=True))
    inserted = connection.execute(_INSERT, (instance_id, *map(list, columns)))
    taken = {row[0] for row in inserted.fetchall()}
    if taken:
        raise_intake_bound(connection, [task for task in tasks if task.id in taken])
        connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, instance_id))
    return taken


def raise_intake_bound(connection: psycopg.Connection, tasks: Sequence[Task]) -> None:
    """Raise the intake bound of each queue by its ``tasks``, just inserted past it by a
    transaction that holds the intake lock (``insert_firings``): the one place firings move the
    bounds. A queue without a bound row is counted exactly at its next intake, these with it."""
    added = Counter(task.queue for task in tasks)
    connection.execute(_RAISE_BOUNDS, (list(added), list(added.values())))
