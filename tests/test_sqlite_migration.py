"""The store's schemas 2 (priorities), 3 (timeouts, results) and 4 (targets) and deletions:
older files are brought up to date."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import msgspec

from actors import CANCELLED, DONE, QUEUED, SqliteStore, TaskSystem, new_task
from actors.sqlite_store import APPLICATION_ID, SCHEMA_VERSION
from actors.target import Target
from tests.support import ANSWER_S, wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from actors import TaskView

SCHEMA_1 = """
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL,
    max_retries INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT,
    next_attempt_at REAL
)
"""


def write_schema_1_file(path: Path) -> None:
    """A store as the code before priorities left it, with two tasks."""
    connection = sqlite3.connect(path)
    connection.execute(SCHEMA_1)
    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    connection.execute("PRAGMA user_version = 1")
    connection.executemany(
        "INSERT INTO tasks (id, payload, max_retries, status, attempts, created_at, updated_at)"
        " VALUES (?, ?, 3, ?, ?, 1.0, 2.0)",
        [("old-done", b'"x"', DONE, 1), ("old-queued", b"[1]", QUEUED, 0)],
    )
    connection.commit()
    connection.close()


def test_a_schema_1_file_is_migrated_and_its_tasks_get_priority_0(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    write_schema_1_file(path)

    store = SqliteStore.open(path)
    try:
        tasks = store.load()
        store.commit([new_task("new", b"null", 0, priority=7)])
        reloaded = {task.id: task for task in store.load()}
    finally:
        store.close()

    assert [(t.id, t.status, t.priority) for t in tasks] == [
        ("old-done", DONE, 0),
        ("old-queued", QUEUED, 0),
    ]
    assert reloaded["new"].priority == 7
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION == 5


def write_schema_2_file(path: Path) -> None:
    """A store as the code before timeouts and results left it, with one task."""
    connection = sqlite3.connect(path)
    connection.execute(SCHEMA_1)
    connection.execute("ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")
    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    connection.execute("PRAGMA user_version = 2")
    connection.execute(
        "INSERT INTO tasks (id, payload, max_retries, status, attempts, created_at, updated_at,"
        " priority) VALUES ('old', '1', 3, 'done', 1, 1.0, 2.0, 4)"
    )
    connection.commit()
    connection.close()


def test_a_schema_2_file_gains_timeouts_and_results(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    write_schema_2_file(path)

    store = SqliteStore.open(path)
    try:
        (old,) = store.load()
        kept = new_task("new", b"null", 0, timeout_ms=1500)
        store.commit([msgspec.structs.replace(kept, status=DONE, result=b'{"n":1}')])
        reloaded = {task.id: task for task in store.load()}
    finally:
        store.close()

    assert (old.id, old.priority, old.timeout_ms, old.result) == ("old", 4, None, None)
    assert reloaded["new"].timeout_ms == 1500
    assert reloaded["new"].result == b'{"n":1}'
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 5


def test_deleted_rows_are_gone_and_a_reused_id_goes_last(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "tasks.db")
    try:
        store.commit([new_task(task_id, b"null", 0) for task_id in ("a", "b", "c")])
        store.commit([], deleted=["a", "missing"])
        store.commit([new_task("a", b"1", 0)], deleted=["b"])
        ids = [task.id for task in store.load()]
    finally:
        store.close()

    assert ids == ["c", "a"]


def test_priority_cancel_and_delay_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    runs: list[str] = []

    def handler(task: TaskView) -> None:
        runs.append(task.id)

    first = TaskSystem.start(handler, workers=1, open_store=lambda: SqliteStore.open(path))
    first.submit_async(new_task("urgent-later", b"null", 0, priority=9, delay_s=0.3)).get(
        timeout=ANSWER_S
    )
    first.submit_async(new_task("cancelled", b"null", 0, delay_s=3600)).get(timeout=ANSWER_S)
    assert first.cancel_async("cancelled").get(timeout=ANSWER_S).task is not None
    first.stop()
    assert runs == []

    second = TaskSystem.start(handler, workers=1, open_store=lambda: SqliteStore.open(path))
    try:
        wait_until(
            lambda: (
                (t := second.get_async("urgent-later").get(timeout=ANSWER_S)) is not None
                and t.status == DONE
            )
        )
        urgent = second.get_async("urgent-later").get(timeout=ANSWER_S)
        cancelled = second.get_async("cancelled").get(timeout=ANSWER_S)
        assert urgent is not None and urgent.priority == 9
        assert cancelled is not None and cancelled.status == CANCELLED
        assert runs == ["urgent-later"]
    finally:
        second.stop()


def write_schema_3_file(path: Path) -> None:
    """A store as the code before targets left it, with one task and a quarantined row."""
    write_schema_2_file(path)
    connection = sqlite3.connect(path)
    connection.execute("ALTER TABLE tasks ADD COLUMN timeout_ms INTEGER")
    connection.execute("ALTER TABLE tasks ADD COLUMN result BLOB")
    connection.execute(
        "CREATE TABLE quarantine (seq INTEGER, id, payload, max_retries, status, attempts,"
        " created_at, updated_at, last_error, next_attempt_at, priority, timeout_ms, result,"
        " reason TEXT NOT NULL, quarantined_at REAL NOT NULL)"
    )
    connection.execute("PRAGMA user_version = 3")
    connection.commit()
    connection.close()


def test_a_schema_3_file_gains_targets_and_its_quarantine_the_column_too(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    write_schema_3_file(path)
    target = Target("https://hooks.example/in", "PUT", (("Authorization", "Bearer s3cret"),))

    store = SqliteStore.open(path)
    try:
        (old,) = store.load()
        store.commit([new_task("new", b"null", 0, target=target)])
        reloaded = {task.id: task for task in store.load()}
    finally:
        store.close()
    broken = sqlite3.connect(path)
    broken.execute("UPDATE tasks SET target = '{\"url\": 5}' WHERE id = 'new'")
    broken.commit()
    broken.close()
    store = SqliteStore.open(path)
    try:
        left = [task.id for task in store.load()]
    finally:
        store.close()

    assert (old.id, old.target) == ("old", None)
    assert reloaded["new"].target == target
    assert left == ["old"]
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 5
    (reason,) = check.execute("SELECT reason FROM quarantine WHERE id = 'new'").fetchone()
    assert reason.startswith("target is not a target")
