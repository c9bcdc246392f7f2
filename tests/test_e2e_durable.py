"""End to end with DB_PATH: ``python main.py`` killed, stopped and started again on one file.

The services run exactly as in tests/test_e2e.py (a child process on a free port, its output in
a file); the handler records every run as it starts, with the process id, so a test can tell
what ran before a restart and what ran after it.
"""

from __future__ import annotations

import datetime
import signal
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Final, cast

import pytest

from actors.sqlite_store import SCHEMA_VERSION, SqliteStore
from tests.handlers import read_runs
from tests.support import wait_until
from tests.test_e2e import Service, launch, run_main

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

HANDLER: Final = "record_then_sleep"
STARTUP_ERROR_S: Final = 5.0
"""A refused DB_PATH must end the process this fast (it is mostly Python's own start)."""


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start services for one test; every one of them is killed at the end, whatever happened."""
    started: list[Service] = []

    def start(**settings: str | int) -> Service:
        service = launch(tmp_path, HANDLER, **settings)
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


def list_tasks(service: Service) -> list[dict[str, Any]]:
    reply = service.request("GET", "/tasks")
    assert reply.status == 200, reply
    tasks: list[dict[str, Any]] = reply.json()
    return tasks


def all_final(service: Service, count: int) -> list[dict[str, Any]]:
    """Wait until the service holds ``count`` tasks, all done or failed; return them."""

    def finished() -> list[dict[str, Any]] | None:
        tasks = list_tasks(service)
        final = len(tasks) == count and all(task["status"] in ("done", "failed") for task in tasks)
        return tasks if final else None

    tasks = wait_until(finished)
    assert tasks is not None
    return tasks


def timestamp(rfc3339: str) -> float:
    return datetime.datetime.fromisoformat(rfc3339).timestamp()


def test_after_a_kill_every_accepted_task_ends_done_in_order_and_done_ones_never_rerun(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    db, runs, release = tmp_path / "tasks.db", tmp_path / "runs.jsonl", tmp_path / "release"
    settings = {"DB_PATH": str(db), "WORKERS": 4, "QUEUE_SIZE": 1000, "RETRY_BASE_MS": 5}
    first = start_service(**settings)
    ids = [f"task-{n:02d}" for n in range(40)]
    for task_id in ids:
        payload: dict[str, Any] = {"log": str(runs), "sleep_s": 0.05}
        if task_id == "task-01":  # certain to be mid-attempt when the process dies
            payload["release"] = str(release)
        first.accept({"id": task_id, "payload": payload})
    first.wait_for_task("task-01", lambda task: task["status"] == "running")

    def some_done() -> list[dict[str, Any]] | None:
        tasks = list_tasks(first)
        return tasks if sum(task["status"] == "done" for task in tasks) >= 8 else None

    seen = wait_until(some_done)
    assert seen is not None
    first.process.send_signal(signal.SIGKILL)
    assert first.wait_exit() == -signal.SIGKILL
    killed_at = time.time()
    done_before_kill = {task["id"] for task in seen if task["status"] == "done"}
    assert {task["status"] for task in seen} >= {"queued", "running", "done"}, seen
    release.touch()

    second = start_service(**settings)
    final = all_final(second, len(ids))

    assert [task["id"] for task in final] == ids
    assert {task["status"] for task in final} == {"done"}
    by_id = {task["id"]: task for task in final}
    assert (by_id["task-01"]["attempts"], by_id["task-01"]["last_error"]) == (2, "interrupted")
    # By time, not pid: in process mode a worker process runs the handler, not the service.
    after_restart = [run for run in read_runs(runs) if cast("float", run["at"]) > killed_at]
    rerun = {run["id"] for run in after_restart}
    assert not rerun & done_before_kill
    assert len(after_restart) == len(rerun), "a task ran twice after the restart"
    assert "task-01" in rerun
    assert {run["id"] for run in read_runs(runs)} == set(ids)
    assert second.enqueue({"id": "task-00"}).status == 409
    assert "recovered 40 task(s) from the store" in second.log()


def test_after_a_stop_queued_tasks_and_a_waiting_retry_resume_on_the_next_start(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    db, runs, release = tmp_path / "tasks.db", tmp_path / "runs.jsonl", tmp_path / "release"
    # The retry is due a second or so after its failure: after the restart, not before the stop.
    settings = {"DB_PATH": str(db), "WORKERS": 1, "RETRY_BASE_MS": 1000, "RETRY_MAX_MS": 1000}
    first = start_service(**settings)
    first.accept({"id": "retry", "payload": {"log": str(runs), "failures": 1}})
    waiting = first.wait_for_task("retry", lambda task: task["next_attempt_at"] is not None)
    first.accept({"id": "running", "payload": {"log": str(runs), "release": str(release)}})
    first.wait_for_task("running", lambda task: task["status"] == "running")
    line = [f"line-{n}" for n in range(3)]
    for task_id in line:
        first.accept({"id": task_id, "payload": {"log": str(runs)}})

    first.send(signal.SIGTERM)
    wait_until(lambda: first.intake_closed("running"), timeout_s=2.0)
    release.touch()
    assert first.wait_exit() == 0
    first_exited_at = time.time()
    [summary] = [row for row in first.log().splitlines() if "shutdown complete" in row]
    assert "kept for the next start: 3 queued and 1 waiting for their time" in summary, summary
    assert "abandoned" not in summary

    second = start_service(**settings)
    final = all_final(second, 5)

    assert [task["id"] for task in final] == ["retry", "running", *line]
    assert {task["status"] for task in final} == {"done"}
    retried = final[0]
    assert (retried["attempts"], retried["last_error"]) == (2, "HandlerFailure: failure 1 of 1")
    # Which service ran each attempt, by time: a worker process, not the service, records it.
    by_run = [
        (run["id"], run["attempt"], 1 if cast("float", run["at"]) < first_exited_at else 2)
        for run in read_runs(runs)
    ]
    one, two = 1, 2
    assert sorted(by_run) == sorted(
        [("retry", 1, one), ("running", 1, one), ("retry", 2, two)]
        + [(task_id, 1, two) for task_id in line]
    )
    [second_attempt] = [run for run in read_runs(runs) if run["attempt"] == 2]
    assert cast("float", second_attempt["at"]) >= timestamp(waiting["next_attempt_at"])
    assert "recovered 5 task(s) from the store: 3 queued, 1 waiting for their time" in second.log()


# --- a DB_PATH that is not a usable store -------------------------------------------------------


def text_file(path: Path) -> None:
    path.write_text("these are not the tasks you are looking for\n" * 20)


def foreign_database(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    connection.commit()
    connection.close()


def newer_store(path: Path) -> None:
    SqliteStore.open(path).close()
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()


UNUSABLE = {
    "a text file": (text_file, "not an SQLite database"),
    "another program's SQLite database": (foreign_database, "not a task_queue store"),
    "a store of a newer schema": (newer_store, "newer than this code"),
    "a directory": (lambda path: path.mkdir(), "is a directory"),
}


@pytest.mark.parametrize(("make", "complaint"), UNUSABLE.values(), ids=UNUSABLE)
def test_an_unusable_db_path_exits_2_at_once_naming_db_path_and_leaves_the_file_alone(
    tmp_path: Path, make: Callable[[Path], None], complaint: str
) -> None:
    db = tmp_path / "tasks.db"
    make(db)
    before = sorted((entry.name, entry.stat().st_mtime_ns) for entry in tmp_path.iterdir())
    contents = db.read_bytes() if db.is_file() else None

    started = time.monotonic()
    result = run_main(DB_PATH=str(db), TASK_HANDLER=f"tests.handlers:{HANDLER}")

    assert time.monotonic() - started < STARTUP_ERROR_S
    assert result.returncode == 2, result
    assert f"DB_PATH={db}" in result.stderr
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted((entry.name, entry.stat().st_mtime_ns) for entry in tmp_path.iterdir()) == before
    assert (db.read_bytes() if db.is_file() else None) == contents


def test_a_db_path_where_no_file_can_be_created_exits_2() -> None:
    result = run_main(DB_PATH="/proc/task_queue/tasks.db")

    assert result.returncode == 2, result
    assert "DB_PATH=/proc/task_queue/tasks.db" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_service_on_a_file_in_use_exits_2(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    db = tmp_path / "tasks.db"
    first = start_service(DB_PATH=str(db))

    result = run_main(DB_PATH=str(db))

    assert result.returncode == 2, result
    assert "in use by another process" in result.stderr
    assert first.request("GET", "/healthz").status == 200


def test_without_db_path_no_file_is_written(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    before = set(tmp_path.iterdir())
    service = start_service()
    service.accept({"id": "memory", "payload": {"log": str(tmp_path / "runs.jsonl")}})
    service.wait_for_task("memory", lambda task: task["status"] == "done")
    service.send(signal.SIGTERM)
    assert service.wait_exit() == 0

    written = {path.name for path in set(tmp_path.iterdir()) - before}
    assert written == {"runs.jsonl", service.log_path.name}
    assert "abandoned 0 queued and 0 waiting for their time" in service.log()
    assert "store=memory only" in service.log()
