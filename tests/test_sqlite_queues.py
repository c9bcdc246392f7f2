"""SqliteStore and queues: schema 5's ``queue`` column and ``queue_states`` table."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from actors.sqlite_store import SqliteStore
from actors.store import MemoryStore, QueueStates
from actors.task import new_task
from tests.test_sqlite_migration import write_schema_3_file

if TYPE_CHECKING:
    from pathlib import Path


def write_schema_4_file(path: Path) -> None:
    """A store as schema 4 left it: targets, no queues."""
    write_schema_3_file(path)
    connection = sqlite3.connect(path)
    connection.execute("ALTER TABLE tasks ADD COLUMN target BLOB")
    connection.execute("ALTER TABLE quarantine ADD COLUMN target")
    connection.execute("PRAGMA user_version = 4")
    connection.commit()
    connection.close()


def test_a_schema_4_file_gains_queues_its_tasks_in_default_and_no_queue_paused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    write_schema_4_file(path)

    store = SqliteStore.open(path)
    try:
        (old,) = store.load()
        paused = store.paused_queues()
        store.commit([new_task("mail", b"null", 0, queue="emails")])
        reloaded = {task.id: task.queue for task in store.load()}
    finally:
        store.close()

    assert old.queue == "default"
    assert paused == frozenset()
    assert reloaded == {"old": "default", "mail": "emails"}
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 5
    columns = {row[1] for row in check.execute("PRAGMA table_info(quarantine)")}
    assert "queue" in columns


def test_the_paused_queues_are_kept_across_opens(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteStore.open(path)
    try:
        store.save_paused("emails", True)
        store.save_paused("reports", True)
        store.save_paused("reports", False)
    finally:
        store.close()
    store = SqliteStore.open(path)
    try:
        assert store.paused_queues() == frozenset({"emails"})
    finally:
        store.close()


def test_a_row_whose_queue_is_not_a_queue_name_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteStore.open(path)
    try:
        store.commit([new_task("good", b"null", 0), new_task("bad", b"null", 0)])
    finally:
        store.close()
    connection = sqlite3.connect(path)
    connection.execute("UPDATE tasks SET queue = 'Not A Queue' WHERE id = 'bad'")
    connection.commit()
    connection.close()

    store = SqliteStore.open(path)
    try:
        assert [task.id for task in store.load()] == ["good"]
    finally:
        store.close()
    check = sqlite3.connect(path)
    (reason,) = check.execute("SELECT reason FROM quarantine WHERE id = 'bad'").fetchone()
    assert reason.startswith("queue 'Not A Queue' is not a queue name")


@pytest.mark.parametrize("store", [MemoryStore(), None])
def test_both_stores_keep_queue_states(store: MemoryStore | None, tmp_path: Path) -> None:
    kept = store if store is not None else SqliteStore.open(tmp_path / "tasks.db")
    assert isinstance(kept, QueueStates)
    kept.save_paused("a", True)
    assert kept.paused_queues() == frozenset({"a"})
    kept.close()
