"""End to end with DB_PATH: the store fails under a running ``python main.py``.

A full disk (a small tmpfs filled for real), a store file removed while in use, and rows that
no longer decode. The store's failures are an outage of the store, not of the process: new work
is refused at once with 503 "store unavailable", reads answer, and a full disk heals by itself.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from typing import TYPE_CHECKING, Any, Final

import pytest

from actors.sqlite_store import SqliteStore
from actors.task import DONE, QUEUED, Task, new_task
from tests.support import wait_until
from tests.test_e2e import Service, launch, task_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

HANDLER: Final = "record_then_sleep"
REFUSED_WITHIN_S: Final = 1.0
"""A refusal while the store is down must come this fast: never after a request timeout."""
SHUTDOWN_TIMEOUT_S: Final = 3
EXIT_WITHIN_S: Final = SHUTDOWN_TIMEOUT_S + 5.0
UNAVAILABLE: Final = {"error": "store unavailable"}


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


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs that a test can fill for real; unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        # Lazy: a service the test left running (killed after this) may still hold its file.
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(path: Path) -> None:
    """Write ``path`` until the disk it is on has no byte left."""
    block = b"\0" * 65536
    with path.open("wb", buffering=0) as filler:
        with contextlib.suppress(OSError):
            while True:
                filler.write(block)
        # The last block may have been cut short: take what is left, byte-sized.
        for size in (4096, 512, 1):
            try:
                while True:
                    filler.write(block[:size])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc


def timed_enqueue(service: Service, body: Any) -> tuple[float, Any]:
    started = time.monotonic()
    reply = service.enqueue(body)
    return time.monotonic() - started, reply


def assert_refused_at_once(service: Service, task_id: str) -> None:
    elapsed, reply = timed_enqueue(service, {"id": task_id})
    assert reply.status == 503, reply
    assert reply.json() == UNAVAILABLE
    assert "retry-after" in reply.headers
    assert elapsed < REFUSED_WITHIN_S, elapsed


def task_ids(service: Service) -> list[str]:
    reply = service.request("GET", "/tasks")
    assert reply.status == 200, reply
    return [task["id"] for task in reply.json()]


def all_done(service: Service, ids: list[str]) -> bool:
    reply = service.request("GET", "/tasks")
    assert reply.status == 200, reply
    statuses = {task["id"]: task["status"] for task in reply.json()}
    return all(statuses.get(task_id) == DONE for task_id in ids)


def critical_lines(service: Service) -> list[str]:
    return [line for line in service.log().splitlines() if " CRITICAL " in line]


# --- a full disk ----------------------------------------------------------------------------------


def test_a_full_disk_refuses_new_work_at_once_and_the_service_comes_back_when_space_returns(
    start_service: Callable[..., Service], small_disk: Path, tmp_path: Path
) -> None:
    db, runs, release = small_disk / "tasks.db", tmp_path / "runs.jsonl", tmp_path / "release"
    settings = {"DB_PATH": str(db), "WORKERS": 2, "QUEUE_SIZE": 100}
    service = start_service(**settings, SHUTDOWN_TIMEOUT_S=SHUTDOWN_TIMEOUT_S)
    held = {"log": str(runs), "release": str(release)}
    accepted = [f"before-{n}" for n in range(6)]
    for task_id in accepted:
        service.accept({"id": task_id, "payload": held})
    service.wait_for_task("before-0", lambda task: task["status"] == "running")

    filler = small_disk / "filler"
    fill(filler)
    assert_refused_at_once(service, "refused-0")
    assert_refused_at_once(service, "refused-1")
    batch = service.request("POST", "/enqueue/batch", json.dumps([{"id": "refused-2"}]).encode())
    assert (batch.status, batch.json()) == (503, UNAVAILABLE)

    ready = service.request("GET", "/readyz")
    assert (ready.status, ready.json()) == (503, {"status": "store unavailable"})
    assert service.request("GET", "/healthz").status == 200
    assert service.task("before-1")["status"] in (QUEUED, "running")
    assert service.request("GET", task_path("refused-0")).status == 404
    assert task_ids(service) == accepted
    # Work already accepted goes on, in memory, while the store is down.
    release.touch()
    wait_until(lambda: all_done(service, accepted))
    assert_refused_at_once(service, "refused-3")
    assert len(critical_lines(service)) == 1, critical_lines(service)
    [critical] = critical_lines(service)
    assert str(db) in critical

    filler.unlink()
    after = {"id": "after-0", "payload": {"log": str(runs)}}
    came_back = wait_until(lambda: service.enqueue(after).status == 201)
    assert came_back
    assert service.request("GET", "/readyz").status == 200
    assert "store is available again" in service.log()

    service.send(signal.SIGTERM)
    assert service.wait_exit() == 0
    again = start_service(**settings)
    final = wait_until(lambda: all_done(again, [*accepted, "after-0"]) and task_ids(again))
    assert final == [*accepted, "after-0"]
    assert {run["id"] for run in map(json.loads, runs.read_text().splitlines())} == {
        *accepted,
        "after-0",
    }


def test_sigterm_while_the_disk_is_full_exits_0_within_the_shutdown_timeout(
    start_service: Callable[..., Service], small_disk: Path, tmp_path: Path
) -> None:
    db, runs = small_disk / "tasks.db", tmp_path / "runs.jsonl"
    service = start_service(DB_PATH=str(db), SHUTDOWN_TIMEOUT_S=SHUTDOWN_TIMEOUT_S)
    service.accept({"id": "before", "payload": {"log": str(runs)}})
    fill(small_disk / "filler")
    assert_refused_at_once(service, "refused")
    # A change nobody can write now: the attempt of a task accepted before the disk filled.
    service.wait_for_task("before", lambda task: task["status"] == DONE)

    started = time.monotonic()
    service.send(signal.SIGTERM)
    assert service.wait_exit(timeout_s=EXIT_WITHIN_S) == 0
    assert time.monotonic() - started < EXIT_WITHIN_S
    assert "shutdown complete" in service.log()


# --- actors that died ---------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["DispatcherActor", "RepositoryActor", "RetryActor"])
def test_sigterm_exits_0_within_the_shutdown_timeout_whatever_actor_has_died(
    tmp_path: Path, actor: str
) -> None:
    service = launch(
        tmp_path, "stop_actor", WORKER_MODE="thread", SHUTDOWN_TIMEOUT_S=1, LOG_LEVEL="DEBUG"
    )
    try:
        service.accept({"id": "killer", "payload": {"actor": actor}})
        wait_until(lambda: f"Stopped {actor}" in service.log())

        started = time.monotonic()
        service.send(signal.SIGTERM)
        assert service.wait_exit(timeout_s=1 + 8.0) == 0, service.log()
        assert time.monotonic() - started < 1 + 8.0
        assert "shutdown complete" in service.log()
    finally:
        service.kill()


# --- a removed file -------------------------------------------------------------------------------


def test_a_removed_store_file_is_a_store_failure_naming_db_path_then_written_again_whole(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    db, runs = tmp_path / "tasks.db", tmp_path / "runs.jsonl"
    settings = {"DB_PATH": str(db), "SHUTDOWN_TIMEOUT_S": SHUTDOWN_TIMEOUT_S}
    service = start_service(**settings)
    service.accept({"id": "before", "payload": {"log": str(runs)}})
    service.wait_for_task("before", lambda task: task["status"] == DONE)

    for path in tmp_path.glob("tasks.db*"):
        path.unlink()
    elapsed, first = timed_enqueue(service, {"id": "refused", "payload": {"log": str(runs)}})

    assert (first.status, first.json()) == (503, UNAVAILABLE)
    assert elapsed < REFUSED_WITHIN_S, elapsed
    assert service.request("GET", "/healthz").status == 200
    [critical] = critical_lines(service)
    assert str(db) in critical
    assert "removed" in critical
    after = {"id": "after", "payload": {"log": str(runs)}}
    wait_until(lambda: service.enqueue(after).status == 201)
    assert db.exists()
    assert "it is written again, whole, from the files still open" in service.log()
    service.wait_for_task("after", lambda task: task["status"] == DONE)
    service.send(signal.SIGTERM)
    assert service.wait_exit(timeout_s=EXIT_WITHIN_S) == 0

    again = start_service(**settings)
    assert wait_until(lambda: all_done(again, ["before", "after"]))
    assert task_ids(again) == ["before", "after"]


# --- rows that do not decode ----------------------------------------------------------------------


def stored(task_id: str, runs: Path) -> Task:
    return new_task(task_id, json.dumps({"log": str(runs)}).encode(), 0)


def corrupt(db: Path, task_id: str, **columns: object) -> None:
    connection = sqlite3.connect(db)
    assignments = ", ".join(f"{name} = ?" for name in columns)
    connection.execute(
        f"UPDATE tasks SET {assignments} WHERE id = ?",
        (*columns.values(), task_id),
    )
    connection.commit()
    connection.close()


BROKEN_ROWS: Final[dict[str, dict[str, object]]] = {
    "bad-utf8": {"payload": b'{"log": "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8"}'},
    "bad-json": {"payload": b'{"log": '},
    "bad-result": {"status": DONE, "result": b"\x80not json"},
    "bad-status": {"status": "exploded"},
    "bad-attempts": {"attempts": -1},
    "bad-error": {},  # its last_error is made text that is not UTF-8, below
}


def test_rows_that_do_not_decode_are_set_aside_and_every_answer_is_valid_json(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    db, runs = tmp_path / "tasks.db", tmp_path / "runs.jsonl"
    good = ["good-0", "good-1"]
    store = SqliteStore.open(db)
    store.commit([stored(task_id, runs) for task_id in ["good-0", *BROKEN_ROWS, "good-1"]])
    store.close()
    for task_id, columns in BROKEN_ROWS.items():
        if columns:
            corrupt(db, task_id, **columns)
    # Text that is not UTF-8, as a bad sector or a stray write leaves it.
    connection = sqlite3.connect(db)
    connection.execute(
        "UPDATE tasks SET last_error = CAST(x'6f6bff' AS TEXT) WHERE id = 'bad-error'"
    )
    connection.commit()
    connection.close()

    service = start_service(DB_PATH=str(db))

    for path in ["/tasks", "/tasks?order=desc", "/stats", *map(task_path, BROKEN_ROWS)]:
        reply = service.request("GET", path)
        json.loads(reply.body.decode("utf-8"))  # strict: any invalid byte fails the test
    wait_until(lambda: all_done(service, good))
    assert task_ids(service) == good
    for task_id in BROKEN_ROWS:
        assert service.request("GET", task_path(task_id)).status == 404
        assert repr(task_id) in service.log(), task_id
    assert {run["id"] for run in map(json.loads, runs.read_text().splitlines())} == set(good)
    service.send(signal.SIGTERM)
    assert service.wait_exit() == 0

    connection = sqlite3.connect(db)
    connection.text_factory = bytes
    kept_aside = {row[0] for row in connection.execute("SELECT id FROM quarantine")}
    connection.close()
    assert kept_aside == {task_id.encode() for task_id in BROKEN_ROWS}


def test_eight_bytes_overwritten_inside_a_payload_on_disk_set_that_task_aside_alone(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    db, runs = tmp_path / "tasks.db", tmp_path / "runs.jsonl"
    marker = "X" * 64
    store = SqliteStore.open(db)
    store.commit(
        [
            stored("good-0", runs),
            new_task("damaged", json.dumps({"log": str(runs), "data": marker}).encode(), 0),
            stored("good-1", runs),
        ]
    )
    store.close()  # the log is written into the file: the payload is in it, once
    data = bytearray(db.read_bytes())
    at = data.index(marker.encode())
    assert data.count(marker.encode()) == 1
    data[at + 20 : at + 28] = b"\xff" * 8
    db.write_bytes(bytes(data))

    service = start_service(DB_PATH=str(db))

    listed = service.request("GET", "/tasks")
    assert [task["id"] for task in json.loads(listed.body.decode("utf-8"))] == ["good-0", "good-1"]
    assert service.request("GET", task_path("damaged")).status == 404
    assert "task 'damaged' (row 2) cannot be read: payload is not valid JSON" in service.log()
    wait_until(lambda: all_done(service, ["good-0", "good-1"]))
