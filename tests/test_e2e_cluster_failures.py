"""End to end with DATABASE_URL: the database goes away under a running instance, and settings
that cannot work stop the service at start.

While PostgreSQL is stopped an instance stays alive (``/healthz`` 200), refuses new work at once
with 503 "store unavailable" and never answers 201 for a task it could not commit, says it is
not ready, and comes back by itself when the server does. A bad ``DATABASE_URL`` exits 2 within
15 s, naming the host and the database and never the password.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Final

import pytest

from tests.handlers import read_runs
from tests.support import wait_until
from tests.test_e2e import HOST, ROOT, Service, free_port, launch, service_environment

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.pg_server import PgServer

HANDLER: Final = "record_then_sleep"
REFUSED_WITHIN_S: Final = 1.0
"""A refusal while the database is down must come this fast: never after a request timeout."""
RECOVERED_WITHIN_S: Final = 15.0
"""How long an instance may take to find the database again once it is back."""
STARTUP_ERROR_S: Final = 15.0
"""A DATABASE_URL that cannot work ends the process within this (issue 14)."""
PASSWORD: Final = "s3cret-Pa55word"
"""Put in every bad URL: it must never appear in what the service prints."""
UNAVAILABLE: Final = {"error": "store unavailable"}


@pytest.fixture
def start_instance(tmp_path: Path, pg_database: str) -> Iterator[Callable[..., Service]]:
    """Start instances on the test's database; every one of them is killed at the end."""
    started: list[Service] = []

    def start(**settings: str | int) -> Service:
        options: dict[str, str | int] = {
            "DATABASE_URL": pg_database,
            "WORKER_MODE": "thread",
            "WORKERS": 1,
            **settings,
        }
        service = launch(tmp_path, HANDLER, **options)
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


def timed_enqueue(service: Service, body: Any) -> tuple[float, Any]:
    started = time.monotonic()
    reply = service.enqueue(body)
    return time.monotonic() - started, reply


def test_with_the_database_stopped_new_work_is_refused_at_once_and_the_instance_recovers_alone(
    start_instance: Callable[..., Service], pg_server: PgServer, pg_database: str, tmp_path: Path
) -> None:
    runs, release = tmp_path / "runs.jsonl", tmp_path / "release"
    # A lease longer than the outage: the attempt that outlives it is still this instance's.
    # The server trusts any password: this one is there to be kept out of every log line.
    with_password = pg_database.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    service = start_instance(LEASE_MS=30_000, DATABASE_URL=with_password)
    service.accept({"id": "before", "payload": {"log": str(runs)}})
    service.wait_for_task("before", lambda task: task["status"] == "done")
    service.accept({"id": "running", "payload": {"log": str(runs), "release": str(release)}})
    service.wait_for_task("running", lambda task: task["status"] == "running")

    pg_server.stop()
    refused = []
    for n in range(5):
        elapsed, reply = timed_enqueue(service, {"id": f"during-{n}"})
        assert reply.status == 503, reply  # never a 201 for a task no database holds
        assert reply.json() == UNAVAILABLE
        assert "retry-after" in reply.headers
        assert elapsed < REFUSED_WITHIN_S, elapsed
        refused.append(f"during-{n}")
    wait_until(lambda: service.request("GET", "/readyz").status == 503, timeout_s=5.0)
    assert service.request("GET", "/readyz").json() == {"status": "store unavailable"}
    assert service.request("GET", "/healthz").status == 200
    release.touch()  # the attempt ends during the outage: its outcome waits for the database

    pg_server.start()

    def accepted_again() -> bool:
        reply = service.enqueue({"id": "after", "payload": {"log": str(runs)}})
        assert reply.status in (201, 503), reply
        return reply.status == 201

    wait_until(accepted_again, timeout_s=RECOVERED_WITHIN_S, interval_s=0.1)
    service.wait_for_task("after", lambda task: task["status"] == "done")
    ended = service.wait_for_task("running", lambda task: task["status"] == "done")
    assert (ended["attempts"], ended["last_error"]) == (1, None)
    wait_until(lambda: service.request("GET", "/readyz").status == 200, timeout_s=5.0)
    for task_id in refused:
        assert service.request("GET", f"/task?id={task_id}").status == 404
    assert [run["id"] for run in read_runs(runs)] == ["before", "running", "after"]
    assert PASSWORD not in service.log()


# --- settings that cannot work -----------------------------------------------------------------


def run_to_exit(**settings: str | int) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``python main.py`` until it exits (it is expected to refuse to start); how long it
    took, and what it did."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "main.py"],
        cwd=ROOT,
        env=service_environment(**{"HOST": HOST, "PORT": free_port(), **settings}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STARTUP_ERROR_S + 10,
        check=False,
    )
    return time.monotonic() - started, result


def assert_refused(elapsed_s: float, result: subprocess.CompletedProcess[str]) -> str:
    """The start was refused as a bad setting must be; what the service printed."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert elapsed_s < STARTUP_ERROR_S, elapsed_s
    assert "Traceback" not in output, output
    assert PASSWORD not in output, output
    return output


BAD_URLS = {
    "a scheme other than postgresql": (f"mysql://app:{PASSWORD}@db.example/tasks", ()),
    "a port that is not a number": (f"postgresql://app:{PASSWORD}@127.0.0.1:port/tasks", ()),
    "a host that does not resolve": (
        f"postgresql://app:{PASSWORD}@no-such-host.invalid:5432/tasks",
        ("no-such-host.invalid", "tasks"),
    ),
    "a port where nothing listens": (
        f"postgresql://app:{PASSWORD}@127.0.0.1:1/tasks",
        ("127.0.0.1", "tasks"),
    ),
    # TEST-NET-1 (RFC 5737): routed nowhere, so a connection hangs until its own timeout.
    "a host that never answers": (
        f"postgresql://app:{PASSWORD}@192.0.2.1:5432/tasks",
        ("192.0.2.1", "tasks"),
    ),
}


@pytest.mark.parametrize(("url", "named"), BAD_URLS.values(), ids=BAD_URLS)
def test_a_database_url_that_cannot_work_exits_2_naming_host_and_database_never_the_password(
    url: str, named: tuple[str, ...]
) -> None:
    elapsed, result = run_to_exit(DATABASE_URL=url)

    output = assert_refused(elapsed, result)
    if not named:  # no connection was tried: the setting itself is wrong
        assert "DATABASE_URL" in output, output
    for name in named:
        assert name in output, output


def test_a_database_that_does_not_exist_exits_2_naming_it(pg_server: PgServer) -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{pg_server.port}/no_such_database"

    elapsed, result = run_to_exit(DATABASE_URL=url)

    output = assert_refused(elapsed, result)
    assert "no_such_database" in output
    assert "127.0.0.1" in output


def test_database_url_and_db_path_together_exit_2(tmp_path: Path) -> None:
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:5432/tasks"

    elapsed, result = run_to_exit(DATABASE_URL=url, DB_PATH=str(tmp_path / "tasks.db"))

    output = assert_refused(elapsed, result)
    assert "DATABASE_URL" in output
    assert "DB_PATH" in output
    assert list(tmp_path.iterdir()) == []


def test_a_schema_newer_than_the_code_exits_2_and_is_left_alone(
    start_instance: Callable[..., Service], pg_server: PgServer, pg_database: str
) -> None:
    first = start_instance()
    first.kill()
    name = pg_database.rsplit("/", 1)[1]
    pg_server.sql("UPDATE task_queue_schema SET version = version + 1", name)
    version = pg_server.sql("SELECT version FROM task_queue_schema", name)

    elapsed, result = run_to_exit(DATABASE_URL=pg_database)

    output = assert_refused(elapsed, result)
    assert "newer" in output, output
    assert pg_server.sql("SELECT version FROM task_queue_schema", name) == version
