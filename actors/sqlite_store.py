"""SqliteStore: the durable store, one SQLite file in WAL mode, used from one thread."""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Final, cast

import msgspec

from actors.rows import decode_row, row_of, shown_id, task_if_sound
from actors.store import StoreError
from actors.task import Task

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 5
"""Kept in ``PRAGMA user_version``. A file with a higher one was written by newer code: refused;
one with a lower one is brought up to date at open (``_MIGRATIONS``)."""

APPLICATION_ID: Final = 0x74517565
"""Kept in ``PRAGMA application_id`` ("tQue"): marks a file as a task_queue store, so another
program's SQLite database is never mistaken for one (or written to)."""

SYNCHRONOUS: Final = "NORMAL"
"""In WAL mode NORMAL writes each commit to the log before the answer goes out but leaves the
fsync to checkpoints: a commit survives any end of the process (a crash, SIGKILL, the OOM
killer), which is the promise a 201 makes, while a power cut or a kernel crash may take back the
last commits (never corrupting the file). FULL would cover those too, at the price of an fsync
per commit; BENCHMARKS.md ("Durability") measures both."""

LOCK_TIMEOUT_S: Final = 0.5
"""How long opening waits for another process to let go of the file before giving up."""

_SCHEMA: Final = """
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY,    -- creation order: a new row goes after every row left
    id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL,      -- the JSON text the client sent, verbatim
    max_retries INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at REAL NOT NULL,   -- seconds since the epoch, as the Task holds them
    updated_at REAL NOT NULL,
    last_error TEXT,
    next_attempt_at REAL,
    priority INTEGER NOT NULL DEFAULT 0,
    timeout_ms INTEGER,         -- the task's own attempt time limit; NULL: the service's
    result BLOB,                -- what the handler returned, as JSON text; NULL: nothing yet
    target BLOB,                -- where attempts are sent, as JSON text; NULL: the handler
    queue TEXT NOT NULL DEFAULT 'default'  -- the queue whose workers run it
)
"""

_QUEUE_STATES: Final = """
CREATE TABLE queue_states (
    name TEXT PRIMARY KEY,      -- a queue's name, as QUEUES declares it
    paused INTEGER NOT NULL     -- 1 while POST /queues/pause holds it
)
"""

_QUARANTINE: Final = """
CREATE TABLE IF NOT EXISTS quarantine (
    -- rows of tasks that did not decode at a start, as they were, and why; never read back.
    -- A migration that adds a column to tasks adds it here too.
    seq INTEGER, id, payload, max_retries, status, attempts, created_at, updated_at,
    last_error, next_attempt_at, priority, timeout_ms, result, target, queue,
    reason TEXT NOT NULL,
    quarantined_at REAL NOT NULL   -- seconds since the epoch
)
"""

_MIGRATIONS: Final = {
    # version -> the statements that bring a file of that version to the next one
    1: ("ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",),
    2: (
        "ALTER TABLE tasks ADD COLUMN timeout_ms INTEGER",
        "ALTER TABLE tasks ADD COLUMN result BLOB",
    ),
    3: ("ALTER TABLE tasks ADD COLUMN target BLOB",),
    4: ("ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default'", _QUEUE_STATES),
}

MAX_ROWS_PER_STATEMENT: Final = 512
"""Most task states one INSERT carries (a power of two, as every statement's row count is)."""

# The columns in the order of Task's fields, so a row is a Task's positional arguments (its
# target as JSON text: actors/rows.py's row_of and task_if_sound).
_FIELDS: Final = tuple(field.name for field in msgspec.structs.fields(Task))
_COLUMNS: Final = ", ".join(_FIELDS)
_LOAD: Final = f"SELECT {_COLUMNS} FROM tasks ORDER BY seq"
_SEQS: Final = "SELECT seq FROM tasks ORDER BY seq"
_SET_ASIDE: Final = (
    # Columns named: a quarantine table made by older code gains new columns at its end.
    f"INSERT INTO quarantine (seq, {_COLUMNS}, reason, quarantined_at) "
    f"SELECT seq, {_COLUMNS}, ?, ? FROM tasks WHERE seq = ?",
    "DELETE FROM tasks WHERE seq = ?",
)


@functools.cache
def _upsert(rows: int) -> str:
    """One INSERT of ``rows`` task states; a known id takes the new state and keeps its place."""
    values = ", ".join(["(" + ", ".join("?" * len(_FIELDS)) + ")"] * rows)
    updates = ", ".join(f"{name} = excluded.{name}" for name in _FIELDS if name != "id")
    conflict = f"ON CONFLICT (id) DO UPDATE SET {updates}"
    return f"INSERT INTO tasks ({_COLUMNS}) VALUES {values} {conflict}"


class SqliteStore:
    """Tasks in one SQLite file: WAL journal, exclusive lock, a versioned schema.

    Open it with ``SqliteStore.open(path)`` on the thread that will use it (sqlite3 refuses a
    connection from any other thread). The file stays locked until ``close``: a second service
    on the same file fails at start instead of running the same tasks twice.
    """

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._connection = connection
        self._path = path
        # The file and its write-ahead log as opened: a path that no longer leads to them means
        # someone removed or replaced them, and commits would go where nobody will find them.
        self._identity = _identity(path)
        # True from closing a removed file, written again at its path, until the copy is open.
        self._reopening = False
        # Builds of SQLite may allow fewer bound values than the 32766 of recent ones.
        variables = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        fit = 1 << ((variables // len(_FIELDS)).bit_length() - 1)
        self._max_rows = min(MAX_ROWS_PER_STATEMENT, fit)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SqliteStore:
        """Open (or create) the store at ``path``; StoreError if it is not a usable one.

        A file that is not an SQLite database, another program's database, a schema newer than
        this code, or a place that cannot be written are errors, never a fresh start over them.
        """
        name = os.fspath(path)
        _check_place(name)
        try:
            # isolation_level=None: no implicit transactions; commit() says where each begins.
            connection = sqlite3.connect(name, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot be opened: {exc}") from None
        try:
            _prepare(connection)
        except BaseException:
            connection.close()
            raise
        logger.debug("store %s open (schema %d, synchronous=%s)", name, SCHEMA_VERSION, SYNCHRONOUS)
        return cls(connection, name)

    def load(self) -> list[Task]:
        """Every task whose row decodes; a row that does not is moved to the quarantine table
        (in the same transaction as its removal from ``tasks``) and logged with its id."""
        try:
            rows = self._fetch(str)
        except UnicodeDecodeError:
            # Text that is not UTF-8 somewhere: read it all again as bytes, decoded row by row,
            # so that one such row does not fail the rest.
            rows = self._fetch(bytes)
        # The usual case: every row sound, checked in one pass.
        sound = [task_if_sound(row) for row in rows]
        if None not in sound:
            return cast("list[Task]", sound)  # no None in it
        tasks: list[Task] = []
        broken: list[tuple[int, object, str]] = []
        for index, (row, task) in enumerate(zip(rows, sound, strict=True)):
            if task is not None:
                tasks.append(task)
                continue
            try:
                tasks.append(decode_row(row))
            except ValueError as exc:
                broken.append((index, row[0], str(exc)))
        if broken:
            seqs = [seq for (seq,) in self._connection.execute(_SEQS)]
            self._set_aside([(seqs[index], task_id, why) for index, task_id, why in broken])
        return tasks

    def _fetch(self, text: type[str | bytes]) -> list[tuple[Any, ...]]:
        connection = self._connection
        connection.text_factory = text
        try:
            return connection.execute(_LOAD).fetchall()
        except sqlite3.OperationalError as exc:
            # sqlite3's own words for text that is not UTF-8 ("Could not decode to UTF-8").
            if text is str and "decode" in str(exc):
                raise UnicodeDecodeError("utf-8", b"", 0, 0, str(exc)) from None
            raise StoreError(f"cannot be read: {exc}") from None
        except sqlite3.Error as exc:
            raise StoreError(f"cannot be read: {exc}") from None
        finally:
            connection.text_factory = str

    def check(self) -> None:
        """A real write (the schema version, again) to the file at the path.

        A file (or its log) removed while in use is first written again from the open one,
        which holds every commit, so nothing is lost; one replaced by another file (or another
        log) is never touched: StoreError, until a restart.
        """
        if self._reopening or _identity(self._path) != self._identity:
            self._restore()
        try:
            self._connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"the store at {self._path} cannot be written: {exc}") from None

    def commit(self, tasks: Sequence[Task], deleted: Collection[str] = ()) -> None:
        if not tasks and not deleted:
            return
        connection = self._connection
        try:
            if not deleted and len(tasks) <= self._max_rows:
                # The usual case: one statement, in autocommit mode its own transaction.
                self._upsert(tasks)
            else:
                connection.execute("BEGIN")
                # Deletions first: an id deleted and then enqueued again takes a new row, at
                # the end of creation order, as it is in the repository's map.
                connection.executemany("DELETE FROM tasks WHERE id = ?", ((i,) for i in deleted))
                for start in range(0, len(tasks), self._max_rows):
                    self._upsert(tasks[start : start + self._max_rows])
                connection.execute("COMMIT")
        except Exception as exc:  # sqlite3.Error, or a value sqlite3 cannot bind
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise StoreError(f"the store at {self._path} cannot be written: {exc}") from exc
        # After the commit: a file removed before it (or during it) took the commit with it.
        self._check_identity()

    def paused_queues(self) -> frozenset[str]:
        """The names of the queues paused when the store was last written."""
        try:
            rows = self._connection.execute("SELECT name FROM queue_states WHERE paused").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot be read: {exc}") from None
        return frozenset(name for (name,) in rows)

    def save_paused(self, name: str, paused: bool) -> None:
        """Keep whether queue ``name`` is paused (its own transaction)."""
        try:
            self._connection.execute(
                "INSERT INTO queue_states (name, paused) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
                (name, int(paused)),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"the store at {self._path} cannot be written: {exc}") from None

    def close(self) -> None:
        # The last connection to close checkpoints the WAL into the file and removes it.
        self._connection.close()

    def _upsert(self, tasks: Sequence[Task]) -> None:
        """Store up to ``_max_rows`` states with one statement: one trip into SQLite for all.

        Not ``executemany``: it enters SQLite once per row, and each entry lets go of the GIL,
        which under load takes far longer to get back than the row takes to write. The row
        count is rounded up
        to a power of two by repeating the last state, which writes it again to no effect, so
        a handful of prepared statements serve every batch size.
        """
        rows = 1 << (len(tasks) - 1).bit_length()
        values = list(itertools.chain.from_iterable(map(row_of, tasks)))
        values.extend(row_of(tasks[-1]) * (rows - len(tasks)))
        self._connection.execute(_upsert(rows), values)

    def _restore(self) -> None:
        path = self._path
        if not self._reopening:
            file_now, log_now = _identity(path)
            if file_now is None:
                self._copy_open_file()
            elif file_now != self._identity[0] or log_now is not None:
                self._check_identity()  # another file (or log) is there: left alone
            # Closed before the file at the path is opened: closing writes the open log into
            # the file it belongs to, then deletes the log by its name, which would otherwise
            # be the new one's.
            self._connection.close()
            self._reopening = True
            logger.warning(
                "the store at %s was removed while in use (%s): it is written again, whole, "
                "from the files still open",
                path,
                "the file" if file_now is None else "its write-ahead log",
            )
        try:
            reopened = SqliteStore.open(path)
        except StoreError as exc:
            raise StoreError(
                f"the store at {path} was written again after its removal, but cannot be "
                f"opened: {exc}"
            ) from None
        self._connection, self._identity = reopened._connection, reopened._identity
        self._reopening = False

    def _copy_open_file(self) -> None:
        """Write what the open (removed) file holds to the path: SQLite's backup, every commit."""
        path = self._path
        copy = path + ".restoring"
        try:
            target = sqlite3.connect(copy, isolation_level=None)
            try:
                self._connection.backup(target)
            finally:
                target.close()
            os.replace(copy, path)
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(OSError):
                os.unlink(copy)
            raise StoreError(
                f"the store at {path} was removed while in use, and cannot be written again "
                f"from the open file: {exc}"
            ) from None

    def _check_identity(self) -> None:
        if _identity(self._path) != self._identity:
            raise StoreError(
                f"the store at {self._path} was removed or replaced while in use: what is "
                "written now would be lost with the file nobody can open any more (a removed "
                "file or log is written again from the open one; a replaced one is left alone)"
            )

    def _set_aside(self, broken: Sequence[tuple[int, object, str]]) -> None:
        connection = self._connection
        now = time.time()
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(_QUARANTINE)
            for seq, _, reason in broken:
                connection.execute(_SET_ASIDE[0], (reason, now, seq))
                connection.execute(_SET_ASIDE[1], (seq,))
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise StoreError(f"cannot set aside rows that do not decode: {exc}") from None
        for seq, task_id, reason in broken:
            logger.error(
                "store %s: task %s (row %d) cannot be read: %s; it was moved to the table "
                "quarantine and is neither served nor run",
                self._path,
                shown_id(task_id),
                seq,
                reason,
            )


def _identity(path: str) -> tuple[tuple[int, int] | None, ...]:
    """The (device, inode) of the file at ``path`` and of its write-ahead log (None: none)."""
    found: list[tuple[int, int] | None] = []
    for name in (path, path + "-wal"):
        try:
            status = os.stat(name)
        except FileNotFoundError:
            found.append(None)
        else:
            found.append((status.st_dev, status.st_ino))
    return tuple(found)


def _check_place(name: str) -> None:
    # SQLite's own words for these are "unable to open database file" or "disk I/O error".
    if os.path.isdir(name):
        raise StoreError("is a directory, not a database file")
    directory = os.path.dirname(os.path.abspath(name))
    if not os.path.isdir(directory):
        raise StoreError(f"cannot be created: there is no directory {directory}")
    if os.path.exists(name) and not os.access(name, os.R_OK | os.W_OK):
        raise StoreError("cannot be written: permission denied")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreError(
            f"cannot be written: permission denied on {directory}, where SQLite keeps the "
            "write-ahead log beside the file"
        )


def _prepare(connection: sqlite3.Connection) -> None:
    # Before the first read: the lock taken then is kept, so no other process can use the file
    # alongside us, and WAL needs no shared-memory file.
    connection.execute("PRAGMA locking_mode = EXCLUSIVE")
    try:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_schema")]
    except sqlite3.Error as exc:
        raise _open_error(exc) from None
    fresh = application_id == 0 and version == 0 and not tables
    if not fresh:
        _check_ours(application_id, version, tables)
    try:
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"cannot use a write-ahead log (journal mode stays {mode!r})")
        connection.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
        connection.execute("BEGIN IMMEDIATE")
        if fresh:
            connection.execute(_SCHEMA)
            connection.execute(_QUEUE_STATES)
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        else:
            for from_version in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[from_version]:
                    connection.execute(statement)
            if "quarantine" in tables:
                _complete_quarantine(connection)
        # A real write at start, so a file or directory we cannot write to fails now and not at
        # the first commit, after tasks were already offered to clients.
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except sqlite3.Error as exc:
        raise _open_error(exc) from None


def _complete_quarantine(connection: sqlite3.Connection) -> None:
    """Give a quarantine table made by older code the columns ``tasks`` has gained since."""
    present = {row[1] for row in connection.execute("PRAGMA table_info(quarantine)")}
    for name in _FIELDS:
        if name not in present:
            connection.execute(f"ALTER TABLE quarantine ADD COLUMN {name}")


def _check_ours(application_id: int, version: int, tables: list[str]) -> None:
    if application_id != APPLICATION_ID:
        listed = ", ".join(sorted(tables)) or "none"
        raise StoreError(
            "is an SQLite database that is not a task_queue store "
            f"(application_id {application_id}, tables: {listed}); it is left untouched"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"has schema version {version}, newer than this code's {SCHEMA_VERSION}: "
            "it was written by a newer task_queue, which is what must open it"
        )
    if version < 1:
        raise StoreError(f"is marked as a task_queue store but has no schema (version {version})")


def _open_error(exc: sqlite3.Error) -> StoreError:
    # The primary code is the low byte of an extended one (SQLITE_READONLY_DBMOVED, say).
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreError(f"is in use by another process ({exc})")
    if code == sqlite3.SQLITE_NOTADB:
        return StoreError(f"is not an SQLite database ({exc}); it is left untouched")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return StoreError(f"cannot be written: {exc}")
    return StoreError(f"cannot be used: {exc}")
