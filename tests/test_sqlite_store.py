"""SqliteStore on its own: fields round trip, order is kept, unusable files are refused."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import msgspec
import pytest

from actors import sqlite_store
from actors.sqlite_store import APPLICATION_ID, SCHEMA_VERSION, SqliteStore
from actors.store import StoreError
from actors.task import DONE, FAILED, QUEUED, RUNNING, Task, new_task

if TYPE_CHECKING:
    from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

replace = msgspec.structs.replace


def every_field_set() -> list[Task]:
    """Tasks that use every field, with values that are easy to get subtly wrong."""
    return [
        Task(
            id="task-ünïcode-✓",
            payload=b'{"nested": [1, 2.5, null, "\\u00e9"], "empty": {}}',
            max_retries=100,
            status=QUEUED,
            attempts=2,
            created_at=1_700_000_000.123456789,
            updated_at=1_700_000_001.000000001,
            last_error="it broke:\n\tline two, a NUL \x00 and é",
            next_attempt_at=1_700_000_030.987654321,
        ),
        Task(
            id="x" * 256,
            payload=b"null",
            max_retries=0,
            status=DONE,
            attempts=1,
            created_at=0.1,
            updated_at=0.2,
        ),
        Task(
            id="running",
            payload=b'"some data"',
            max_retries=3,
            status=RUNNING,
            attempts=1,
            created_at=1e9,
            updated_at=1e9 + 1e-6,
        ),
        Task(
            id="failed",
            payload=b"[]",
            max_retries=1,
            status=FAILED,
            attempts=2,
            created_at=2.0,
            updated_at=3.0,
            last_error="",
        ),
    ]


def reopened(path: Path) -> list[Task]:
    store = SqliteStore.open(path)
    try:
        return store.load()
    finally:
        store.close()


def pragma(path: Path, name: str) -> object:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        connection.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.db"


def test_every_field_of_every_task_round_trips_exactly(path: Path) -> None:
    tasks = every_field_set()
    store = SqliteStore.open(path)
    store.commit(tasks)
    store.close()

    loaded = reopened(path)

    assert loaded == tasks
    assert all(type(task.payload) is bytes for task in loaded)


def test_a_new_store_is_empty(path: Path) -> None:
    assert reopened(path) == []


def test_creation_order_is_kept_through_updates_and_later_commits(path: Path) -> None:
    a, b, c, d = (
        new_task(name, b"null", max_retries=1, now=float(n)) for n, name in enumerate("abcd")
    )
    store = SqliteStore.open(path)
    store.commit([a, b, c])
    store.commit([replace(c, status=DONE, attempts=1), replace(a, status=RUNNING, attempts=1)])
    store.commit([d, replace(b, status=FAILED, attempts=2, last_error="no")])
    store.close()

    loaded = reopened(path)

    assert [task.id for task in loaded] == ["a", "b", "c", "d"]
    assert [task.status for task in loaded] == [RUNNING, FAILED, DONE, QUEUED]
    assert loaded[1].last_error == "no"


def test_a_later_state_replaces_the_earlier_one_whole(path: Path) -> None:
    waiting = replace(
        new_task("t", b"1", max_retries=3, now=5.0),
        status=QUEUED,
        attempts=1,
        last_error="boom",
        next_attempt_at=9.0,
    )
    store = SqliteStore.open(path)
    store.commit([waiting])
    done = replace(waiting, status=DONE, attempts=2, updated_at=10.0, next_attempt_at=None)
    store.commit([done])
    store.close()

    assert reopened(path) == [done]


def test_a_commit_survives_the_process_being_killed_right_after(path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        from actors.sqlite_store import SqliteStore
        from actors.task import new_task
        store = SqliteStore.open({str(path)!r})
        store.commit([new_task("a", b"1", max_retries=0, now=1.0)])
        store.commit([new_task("b", b"2", max_retries=0, now=2.0)])
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=30, check=False)

    assert result.returncode == -9
    assert [task.id for task in reopened(path)] == ["a", "b"]


def test_a_failed_commit_stores_none_of_its_tasks_and_the_store_stays_usable(path: Path) -> None:
    store = SqliteStore.open(path)
    good = new_task("good", b"1", max_retries=0, now=1.0)
    unstorable = new_task("bad-\ud800", b"2", max_retries=0, now=2.0)

    with pytest.raises(StoreError, match="cannot be written"):
        store.commit([good, unstorable])
    store.commit([good])
    store.close()

    assert reopened(path) == [good]


def test_the_file_is_marked_with_the_schema_version_and_kept_in_wal_mode(path: Path) -> None:
    store = SqliteStore.open(path)
    synchronous = store._connection.execute("PRAGMA synchronous").fetchone()[0]
    store.close()

    assert synchronous == {"OFF": 0, "NORMAL": 1, "FULL": 2}[sqlite_store.SYNCHRONOUS]

    assert pragma(path, "user_version") == SCHEMA_VERSION
    assert pragma(path, "application_id") == APPLICATION_ID
    assert pragma(path, "journal_mode") == "wal"


def test_an_empty_file_becomes_a_new_store(path: Path) -> None:
    path.touch()

    assert reopened(path) == []
    assert pragma(path, "user_version") == SCHEMA_VERSION


def test_a_second_opening_of_a_file_in_use_is_refused(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "LOCK_TIMEOUT_S", 0.05)
    first = SqliteStore.open(path)
    try:
        with pytest.raises(StoreError, match="in use by another process"):
            SqliteStore.open(path)
    finally:
        first.close()
    SqliteStore.open(path).close()


# --- files that must be refused, and left as they were ----------------------------------------


def foreign_database(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE users (name TEXT)")
    connection.execute("INSERT INTO users VALUES ('ada')")
    connection.commit()
    connection.close()


def newer_store(path: Path) -> None:
    SqliteStore.open(path).close()
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()


def other_application(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA application_id = 42")
    connection.close()


REFUSED = {
    "a text file": (lambda path: path.write_text("id,payload\n1,hello\n" * 50), "not an SQLite"),
    "random bytes": (lambda path: path.write_bytes(os.urandom(8192)), "not an SQLite"),
    "a truncated SQLite header": (
        lambda path: path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 40),
        "not an SQLite",
    ),
    "another program's SQLite database": (foreign_database, "not a task_queue store"),
    "an empty SQLite database of another application": (other_application, "not a task_queue"),
    "a store of a newer schema": (newer_store, "newer than this code"),
}


@pytest.mark.parametrize(("make", "complaint"), REFUSED.values(), ids=REFUSED)
def test_an_unusable_file_is_refused_and_left_untouched(
    path: Path, make: object, complaint: str
) -> None:
    make(path)  # type: ignore[operator]
    before = path.read_bytes()

    with pytest.raises(StoreError, match=complaint):
        SqliteStore.open(path)

    assert path.read_bytes() == before
    assert sorted(entry.name for entry in path.parent.iterdir()) == [path.name]


def set_columns(path: Path, task_id: str, assignments: str) -> None:
    connection = sqlite3.connect(path)
    connection.execute(f"UPDATE tasks SET {assignments} WHERE id = ?", (task_id,))
    connection.commit()
    connection.close()


BROKEN = {
    "unknown status": ("status = 'paused'", "status 'paused' is not one of"),
    "payload not UTF-8": ("payload = x'22ff22'", "payload is not valid JSON"),
    "payload not JSON": ("payload = x'7b'", "payload is not valid JSON"),
    "payload a lone surrogate": ("payload = CAST('\"\\ud800\"' AS BLOB)", "payload is not valid"),
    "result not JSON": ("result = x'5b31'", "result is not valid JSON"),
    "negative attempts": ("attempts = -1", "attempts -1 is not a count"),
    "max_retries as text": ("max_retries = 'three'", "max_retries 'three' is not a count"),
    "priority out of range": ("priority = 10", "priority 10 is not an integer from 0 to 9"),
    "timeout_ms zero": ("timeout_ms = 0", "timeout_ms 0 is not a positive integer"),
    "created_at not a time": ("created_at = 'yesterday'", "created_at 'yesterday' is not a time"),
    "last_error not UTF-8": ("last_error = CAST(x'6f6bff' AS TEXT)", "last_error is not UTF-8"),
    "id not UTF-8": ("id = CAST(x'74ff' AS TEXT)", "id is not UTF-8"),
}


@pytest.mark.parametrize(("assignments", "complaint"), BROKEN.values(), ids=BROKEN)
def test_a_row_that_does_not_decode_is_set_aside_logged_and_the_others_load(
    path: Path, assignments: str, complaint: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = [new_task(f"good-{n}", b"[1]", max_retries=0, now=1.0) for n in range(2)]
    store = SqliteStore.open(path)
    store.commit([good[0], new_task("broken", b"1", max_retries=0, now=1.0), good[1]])
    store.close()
    set_columns(path, "broken", assignments)

    store = SqliteStore.open(path)
    try:
        assert store.load() == good
        assert store.load() == good  # set aside once, for good
    finally:
        store.close()

    [record] = [r for r in caplog.records if r.name == "actors.sqlite_store"]
    assert complaint in record.getMessage()
    assert str(path) in record.getMessage()
    assert "row 2" in record.getMessage()
    connection = sqlite3.connect(path)
    [(seq, reason)] = connection.execute("SELECT seq, reason FROM quarantine").fetchall()
    connection.close()
    assert seq == 2
    assert complaint in reason


def test_a_row_set_aside_is_named_by_its_id_when_the_id_is_text(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore.open(path)
    store.commit([new_task("broken-1", b"1", max_retries=0)])
    store.close()
    set_columns(path, "broken-1", "payload = x'ff'")

    store = SqliteStore.open(path)
    store.load()
    store.close()

    assert "task 'broken-1' (row 1) cannot be read" in caplog.text


def test_a_commit_after_the_file_was_removed_fails_naming_the_file(path: Path) -> None:
    store = SqliteStore.open(path)
    try:
        store.commit([new_task("before", b"1", max_retries=0)])
        for name in (path, path.with_name(path.name + "-wal")):
            name.unlink()

        with pytest.raises(StoreError, match="removed or replaced") as failure:
            store.commit([new_task("after", b"1", max_retries=0)])
        assert str(path) in str(failure.value)
    finally:
        store.close()


def test_a_removed_file_is_written_again_whole_from_the_open_one_at_the_next_check(
    path: Path,
) -> None:
    kept = [new_task(f"t{n}", b"[1]", max_retries=0, now=1.0) for n in range(3)]
    store = SqliteStore.open(path)
    try:
        store.commit(kept[:2])
        for name in (path, path.with_name(path.name + "-wal")):
            name.unlink()
        with pytest.raises(StoreError, match="removed"):
            store.commit(kept[2:])

        store.check()

        store.commit([msgspec.structs.replace(kept[0], status=DONE)])
    finally:
        store.close()
    reopened = SqliteStore.open(path)
    try:
        assert reopened.load() == [msgspec.structs.replace(kept[0], status=DONE), *kept[1:]]
    finally:
        reopened.close()
    assert sorted(entry.name for entry in path.parent.iterdir()) == [path.name]


def test_a_removed_write_ahead_log_is_written_into_the_file_and_a_new_one_begun(
    path: Path,
) -> None:
    kept = [new_task(f"t{n}", b"[1]", max_retries=0, now=1.0) for n in range(3)]
    store = SqliteStore.open(path)
    try:
        store.commit(kept[:1])
        path.with_name(path.name + "-wal").unlink()
        with pytest.raises(StoreError, match="removed"):
            store.commit(kept[1:2])

        store.check()

        store.commit(kept[2:])
        assert path.with_name(path.name + "-wal").exists()
    finally:
        store.close()
    reopened = SqliteStore.open(path)
    try:
        assert reopened.load() == kept
    finally:
        reopened.close()


@pytest.mark.parametrize("which", ["", "-wal"])
def test_a_commit_after_the_file_or_its_log_was_replaced_fails(path: Path, which: str) -> None:
    store = SqliteStore.open(path)
    try:
        target = path.with_name(path.name + which)
        replacement = path.with_name("replacement")
        contents = target.read_bytes()
        replacement.write_bytes(contents)
        replacement.replace(target)

        with pytest.raises(StoreError, match="removed or replaced"):
            store.commit([new_task("after", b"1", max_retries=0)])
        with pytest.raises(StoreError, match="removed or replaced"):
            store.check()  # never written over: the file there now is someone else's
        assert target.read_bytes() == contents
    finally:
        store.close()


def test_a_store_in_place_passes_its_check(path: Path) -> None:
    store = SqliteStore.open(path)
    try:
        store.check()
        store.commit([new_task("t", b"1", max_retries=0)])
        store.check()
    finally:
        store.close()


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        SqliteStore.open(tmp_path)


def test_a_file_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no directory"):
        SqliteStore.open(tmp_path / "missing" / "tasks.db")


def test_a_place_nobody_may_create_files_in_is_refused() -> None:
    # Even root cannot create a file in /proc.
    with pytest.raises(StoreError, match="cannot be"):
        SqliteStore.open("/proc/task_queue_test.db")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
@pytest.mark.parametrize("read_only", ["file", "directory"])
def test_a_file_or_directory_without_write_permission_is_refused(
    path: Path, read_only: str
) -> None:
    SqliteStore.open(path).close()
    target = path if read_only == "file" else path.parent
    mode = target.stat().st_mode
    target.chmod(0o555 if read_only == "directory" else 0o444)
    try:
        with pytest.raises(StoreError, match="permission denied"):
            SqliteStore.open(path)
    finally:
        target.chmod(mode)


def test_a_failed_commit_larger_than_one_statement_stores_none_of_it(path: Path) -> None:
    tasks = [new_task(f"task-{n}", b"null", max_retries=0, now=float(n)) for n in range(600)]
    store = SqliteStore.open(path)

    with pytest.raises(StoreError):
        store.commit([*tasks, new_task("bad-\udfff", b"1", max_retries=0)])
    store.close()

    assert reopened(path) == []


@pytest.mark.parametrize("count", [1, 3, 5, 511, 512, 513, 1300])
def test_a_commit_of_any_size_stores_every_task_once_in_order(path: Path, count: int) -> None:
    tasks = [new_task(f"task-{n}", b"null", max_retries=0, now=float(n)) for n in range(count)]
    store = SqliteStore.open(path)
    store.commit(tasks[:1])
    store.commit([replace(tasks[0], status=DONE, attempts=1), *tasks[1:]])
    store.close()

    loaded = reopened(path)

    assert [task.id for task in loaded] == [task.id for task in tasks]
    assert loaded[0].status == DONE
    # Rows repeated to round a statement up are updates: they take no place in the order.
    connection = sqlite3.connect(path)
    seqs = [row[0] for row in connection.execute("SELECT seq FROM tasks ORDER BY seq")]
    connection.close()
    assert seqs == list(range(1, count + 1))
