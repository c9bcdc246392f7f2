"""SqliteScheduleStore: schedules kept in a file of their own, locked like the tasks' store."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import msgspec
import pytest

from actors.schedule import new_schedule, timing_of
from actors.schedule_store import SqliteScheduleStore, schedules_path
from actors.store import StoreError
from actors.target import Target
from actors.task import new_task

if TYPE_CHECKING:
    from pathlib import Path


def test_schedules_are_written_and_read_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db-schedules"
    target = Target(url="https://example.com/hook", method="POST", headers=(("X-Key", "k"),))
    template = new_task("a", b'{"x": [1]}', 5, 0.0, priority=3, timeout_ms=500, target=target)
    a = new_schedule("a", timing_of("0 3 * * *", None, "Europe/Berlin"), template, 10.0)
    b = new_schedule("b", timing_of(None, 1000, None), new_task("b", b"null", 0, 0.0), 20.0)
    store = SqliteScheduleStore.open(path)
    store.commit([a, b])
    store.commit([msgspec.structs.replace(a, fired=4, last_task_id="a@x")], deleted=["b"])
    store.close()
    again = SqliteScheduleStore.open(path)
    try:
        assert again.load() == [msgspec.structs.replace(a, fired=4, last_task_id="a@x")]
    finally:
        again.close()


def test_a_second_service_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteScheduleStore.open(path)
    try:
        with pytest.raises(StoreError, match="in use"):
            SqliteScheduleStore.open(path)
    finally:
        store.close()


def test_another_program_s_database_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE notes (text)")
    connection.commit()
    connection.close()
    with pytest.raises(StoreError, match="not a task_queue schedule store"):
        SqliteScheduleStore.open(path)


def test_the_schedules_file_sits_beside_the_tasks_file() -> None:
    assert schedules_path("/var/lib/tq/tasks.db") == "/var/lib/tq/tasks.db-schedules"
