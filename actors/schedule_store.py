"""Where the ScheduleActor keeps its schedules: in memory, or in an SQLite file of their own."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

import msgspec

from actors.schedule import Schedule
from actors.store import StoreError

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
"""Kept in ``PRAGMA user_version``; a file with a higher one was written by newer code: refused."""

APPLICATION_ID: Final = 0x74517363
"""Kept in ``PRAGMA application_id`` ("tQsc"): marks a file as a task_queue schedule store."""

LOCK_TIMEOUT_S: Final = 0.5
"""How long opening waits for another process to let go of the file before giving up."""

_SCHEMA: Final = """
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    state BLOB NOT NULL   -- the Schedule, as msgpack: its timing, task template, times, counts
)
"""

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(Schedule)


def schedules_path(db_path: str) -> str:
    """The schedules' file beside the tasks' file at ``db_path``.

    A file of its own rather than a table in the tasks' file: the repository holds that file
    under SQLite's exclusive lock (so that a second service fails at start), which no other
    connection, even in this process, may share; and the ScheduleActor alone owns its
    connection, as the repository owns its.
    """
    return db_path + "-schedules"


class ScheduleStore(Protocol):
    """What the ScheduleActor keeps its schedules in; used from its thread alone."""

    def load(self) -> list[Schedule]:
        """Every stored schedule, in creation order."""
        ...

    def commit(self, schedules: Sequence[Schedule], deleted: Collection[str] = ()) -> None:
        """Delete the ``deleted`` ids and store these states, in one transaction (else
        StoreError)."""
        ...

    def close(self) -> None: ...


OpenScheduleStore = Callable[[], ScheduleStore]
"""Opens a schedule store; called on the ScheduleActor's thread, the only one that uses it."""


class MemoryScheduleStore:
    """Schedules that last as long as this object: hand the same one to two systems in a row
    and the second finds what the first left, as it would in a file."""

    def __init__(self) -> None:
        self._schedules: dict[str, Schedule] = {}

    def load(self) -> list[Schedule]:
        return sorted(self._schedules.values(), key=lambda schedule: schedule.created_at)

    def commit(self, schedules: Sequence[Schedule], deleted: Collection[str] = ()) -> None:
        for schedule_id in deleted:
            self._schedules.pop(schedule_id, None)
        for schedule in schedules:
            self._schedules[schedule.id] = schedule

    def close(self) -> None:
        """Nothing to release."""


class SqliteScheduleStore:
    """Schedules in one SQLite file, WAL journal and exclusive lock like the tasks' store, a row
    per schedule. Open it with ``open`` on the thread that uses it."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._connection = connection
        self._path = path

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SqliteScheduleStore:
        """Open (or create) the schedule store at ``path``; StoreError if it is not usable."""
        name = os.fspath(path)
        try:
            connection = sqlite3.connect(name, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{name} cannot be opened: {exc}") from None
        try:
            _prepare(connection, name)
        except BaseException:
            connection.close()
            raise
        return cls(connection, name)

    def load(self) -> list[Schedule]:
        try:
            rows = self._connection.execute(
                "SELECT id, state FROM schedules ORDER BY rowid"
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self._path} cannot be read: {exc}") from None
        schedules = []
        for schedule_id, state in rows:
            try:
                schedules.append(_decoder.decode(state))
            except (msgspec.DecodeError, TypeError) as exc:
                # One unreadable row must not keep the service (and every other schedule) down.
                logger.error(
                    "schedule %r in %s cannot be read (%s): skipped", schedule_id, self._path, exc
                )
        schedules.sort(key=lambda schedule: schedule.created_at)
        return schedules

    def commit(self, schedules: Sequence[Schedule], deleted: Collection[str] = ()) -> None:
        if not schedules and not deleted:
            return
        connection = self._connection
        try:
            connection.execute("BEGIN")
            connection.executemany("DELETE FROM schedules WHERE id = ?", ((i,) for i in deleted))
            connection.executemany(
                "INSERT INTO schedules (id, state) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                ((schedule.id, _encoder.encode(schedule)) for schedule in schedules),
            )
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise StoreError(f"{self._path} cannot be written: {exc}") from None

    def close(self) -> None:
        self._connection.close()


def _prepare(connection: sqlite3.Connection, name: str) -> None:
    try:
        # Held until close: a second service on the same DB_PATH fails at start.
        connection.execute("PRAGMA locking_mode = EXCLUSIVE")
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_schema")]
        fresh = application_id == 0 and version == 0 and not tables
        if not fresh and application_id != APPLICATION_ID:
            raise StoreError(f"{name} is not a task_queue schedule store; it is left untouched")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{name} has schema version {version}, newer than this code's")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("BEGIN IMMEDIATE")
        if fresh:
            connection.execute(_SCHEMA)
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise StoreError(f"{name} is in use by another process ({exc})") from None
        raise StoreError(f"{name} cannot be used: {exc}") from None
