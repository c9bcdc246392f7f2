"""End to end, handler isolation: ``python main.py`` with handlers that hang, crash, grow or end
their process, in process mode (the default) and in thread mode.

The services run as in tests/test_e2e.py. The handler is ``tests.handlers:steered``: each
task's payload says what its attempts do. A worker process is found as a descendant of the
service in /proc, so a test can tell that none is left once the service is gone.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from actors.attempt import CUT_MARK, MAX_ERROR_CHARS
from tests.handlers import read_runs
from tests.support import wait_until
from tests.test_e2e import (
    EXIT_TIMEOUT_S,
    HOST,
    ROOT,
    STARTUP_TIMEOUT_S,
    Service,
    free_port,
    healthy,
    launch,
    service_environment,
)
from tests.test_runners import alive

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HANDLER: Final = "steered"
GONE_S: Final = 5.0
"""How soon after the service ends its worker processes must be gone."""


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
def release(tmp_path: Path) -> Iterator[Path]:
    """The file a hanging attempt waits for; created after the test, so nothing hangs on."""
    path = tmp_path / "release"
    yield path
    path.touch()


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (its worker processes, their forkserver...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it ended meanwhile
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def none_alive(pids: set[int]) -> bool:
    return not any(alive(pid) for pid in pids)


def final(service: Service, task_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
    return service.wait_for_task(
        task_id, lambda task: task["status"] in ("done", "failed"), timeout_s
    )


def stats(service: Service) -> dict[str, Any]:
    reply = service.request("GET", "/stats")
    assert reply.status == 200, reply
    body: dict[str, Any] = reply.json()
    return body


# --- time limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_hung_attempt_times_out_is_retried_and_the_next_task_runs(
    start_service: Callable[..., Service], release: Path, mode: str
) -> None:
    service = start_service(WORKERS=1, WORKER_MODE=mode, RETRY_BASE_MS=1)
    hang = {"do": ["hang", "return"], "release": str(release), "value": "second"}

    service.accept({"id": "hung", "payload": hang, "timeout_ms": 300})
    service.accept({"id": "next", "payload": {"do": "return", "value": "ok"}})
    started = time.monotonic()
    after = final(service, "next")
    hung = final(service, "hung")

    assert (after["status"], after["result"]) == ("done", "ok")
    assert time.monotonic() - started < 5.0
    assert (hung["status"], hung["attempts"], hung["last_error"], hung["result"]) == (
        "done",
        2,
        "timed out after 300 ms",
        "second",
    )
    totals = stats(service)["totals"]
    if mode == "process":
        assert totals["processes_replaced"]["timeout"] == 1
    else:
        assert totals["threads_abandoned"] == 1
        assert "abandoned" in service.log()


def test_task_timeout_ms_is_the_limit_of_a_task_without_its_own(
    start_service: Callable[..., Service], release: Path
) -> None:
    service = start_service(WORKERS=1, TASK_TIMEOUT_MS=200)

    service.accept(
        {"id": "hung", "payload": {"do": "hang", "release": str(release)}, "max_retries": 0}
    )

    hung = final(service, "hung")
    assert (hung["status"], hung["attempts"], hung["last_error"]) == (
        "failed",
        1,
        "timed out after 200 ms",
    )


# --- crashes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "error"),
    [("exit", "worker process exited with code 3"), ("kill", "worker process killed by SIGKILL")],
)
def test_a_handler_that_ends_its_process_costs_one_attempt_and_the_service_serves_on(
    start_service: Callable[..., Service], action: str, error: str
) -> None:
    service = start_service(WORKERS=1, RETRY_BASE_MS=1)

    service.accept({"id": "crash", "payload": {"do": [action, "pid"]}})
    crashed = final(service, "crash")
    service.accept({"id": "after", "payload": {"do": "pid"}})
    after = final(service, "after")

    assert (crashed["status"], crashed["attempts"], crashed["last_error"]) == ("done", 2, error)
    assert after["status"] == "done"
    assert service.process.poll() is None
    assert healthy(service)
    assert stats(service)["totals"]["processes_replaced"]["crash"] == 1


def test_a_permanent_error_fails_the_task_at_once(start_service: Callable[..., Service]) -> None:
    service = start_service(WORKERS=1)

    service.accept(
        {
            "id": "no",
            "payload": {"do": "permanent", "message": "no such customer"},
            "max_retries": 5,
        }
    )

    failed = final(service, "no")
    assert (failed["status"], failed["attempts"], failed["last_error"]) == (
        "failed",
        1,
        "no such customer",
    )


# --- recycling ------------------------------------------------------------------------------


def test_a_worker_process_is_replaced_after_worker_max_tasks_attempts(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(WORKERS=1, WORKER_MAX_TASKS=2)

    pids = []
    for n in range(4):
        service.accept({"id": f"t{n}", "payload": {"do": "pid"}})
        pids.append(final(service, f"t{n}")["result"])

    assert pids[0] == pids[1] != pids[2] == pids[3]
    assert service.process.pid not in pids
    assert stats(service)["totals"]["processes_replaced"]["max_tasks"] == 2


def test_a_worker_process_is_replaced_after_an_attempt_leaves_it_above_worker_max_memory_mb(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(WORKERS=1, WORKER_MAX_MEMORY_MB=200)

    service.accept({"id": "grow", "payload": {"do": "grow", "mb": 250}})
    grown = final(service, "grow")
    service.accept({"id": "after", "payload": {"do": "pid"}})
    after = final(service, "after")

    assert grown["status"] == after["status"] == "done"
    assert after["result"] != grown["result"]
    assert stats(service)["totals"]["processes_replaced"]["max_memory"] == 1


# --- no worker process outlives the service ---------------------------------------------------


def test_no_worker_process_is_left_after_sigterm(start_service: Callable[..., Service]) -> None:
    service = start_service(WORKERS=3)
    service.accept({"id": "one", "payload": {"do": "pid"}})
    final(service, "one")
    workers = descendants(service.process.pid)
    assert len(workers) >= 3

    service.send(signal.SIGTERM)

    assert service.wait_exit() == 0
    wait_until(lambda: none_alive(workers), timeout_s=GONE_S)


def test_no_worker_process_is_left_after_sigterm_with_an_attempt_hung_past_the_deadline(
    start_service: Callable[..., Service], release: Path
) -> None:
    service = start_service(WORKERS=2, SHUTDOWN_TIMEOUT_S=1)
    service.accept({"id": "hung", "payload": {"do": "hang", "release": str(release)}})
    service.wait_for_task("hung", lambda task: task["status"] == "running")
    workers = descendants(service.process.pid)

    started = time.monotonic()
    service.send(signal.SIGTERM)

    assert service.wait_exit() == 0
    assert time.monotonic() - started < 1.0 + 3.0
    wait_until(lambda: none_alive(workers), timeout_s=GONE_S)
    assert "1 running attempt(s) cut off at the deadline" in service.log()


def test_no_worker_process_is_left_after_the_service_is_killed(
    start_service: Callable[..., Service], release: Path
) -> None:
    service = start_service(WORKERS=2)
    service.accept({"id": "hung", "payload": {"do": "hang", "release": str(release)}})
    service.wait_for_task("hung", lambda task: task["status"] == "running")
    workers = descendants(service.process.pid)
    assert len(workers) >= 2

    service.send(signal.SIGKILL)

    assert service.wait_exit() == -signal.SIGKILL
    wait_until(lambda: none_alive(workers), timeout_s=GONE_S)


# --- durability ---------------------------------------------------------------------------------


def start_until_ended_or_healthy(log_dir: Path, **settings: str | int) -> Service:
    """Start ``python main.py``; return once it is healthy or has already exited by itself."""
    port = free_port()
    environ = service_environment(
        **{"HOST": HOST, "PORT": port, "TASK_HANDLER": f"tests.handlers:{HANDLER}", **settings}
    )
    log_path = log_dir / f"service-{port}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "main.py"],
            cwd=ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    service = Service(process, port, log_path)

    def settled() -> bool:
        if process.poll() is not None:
            return True
        try:
            return service.request("GET", "/healthz").status == 200
        except OSError:
            return False

    wait_until(settled, timeout_s=STARTUP_TIMEOUT_S, interval_s=0.02)
    return service


def test_in_thread_mode_a_handler_that_ends_the_service_every_time_fails_its_task_in_the_end(
    tmp_path: Path,
) -> None:
    # Each attempt ends the whole service. Its start is committed before it runs, so each
    # restart counts the attempt that took the service down ("interrupted"): after
    # max_retries + 1 of them the task is failed, instead of running again on every start.
    db, runs = tmp_path / "tasks.db", tmp_path / "runs.jsonl"
    settings = {"DB_PATH": str(db), "WORKER_MODE": "thread", "WORKERS": 1, "RETRY_BASE_MS": 1}
    gate = tmp_path / "gate"
    payload = {"do": "exit", "code": 7, "log": str(runs), "gate": str(gate)}
    services: list[Service] = []
    try:
        first = start_until_ended_or_healthy(tmp_path, **settings)
        services.append(first)
        # The first attempt waits for the gate, so that the 201 is out before the service goes.
        first.accept({"id": "doom", "payload": payload, "max_retries": 2})
        gate.touch()
        for _ in range(5):
            assert services[-1].wait_exit() == 7, services[-1].log()
            service = start_until_ended_or_healthy(tmp_path, **settings)
            services.append(service)
            if service.process.poll() is None:
                break
        last = services[-1]
        doom = last.task("doom")
    finally:
        for service in services:
            service.kill()

    assert (doom["status"], doom["attempts"], doom["last_error"]) == ("failed", 3, "interrupted")
    assert [run["attempt"] for run in read_runs(runs)] == [1, 2, 3]
    assert len(services) == 4  # three ended by the handler, the fourth serves


def test_a_result_is_kept_across_a_restart(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    settings = {"DB_PATH": str(tmp_path / "tasks.db")}
    first = start_service(**settings)
    value = {"answer": 42, "list": [1, "two", None]}
    first.accept({"id": "kept", "payload": {"do": "return", "value": value}})
    assert final(first, "kept")["result"] == value
    first.send(signal.SIGTERM)
    assert first.wait_exit() == 0

    second = start_service(**settings)

    assert second.task("kept")["result"] == value


def test_a_result_that_cannot_be_kept_is_dropped_and_the_task_is_done(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(WORKERS=1, RESULT_MAX_BYTES=10)

    service.accept({"id": "big", "payload": {"do": "return", "value": "x" * 20}})
    service.accept({"id": "odd", "payload": {"do": "object"}})

    big, odd = final(service, "big"), final(service, "odd")
    assert (big["status"], big["attempts"], big["result"], big["last_error"]) == (
        "done",
        1,
        None,
        "result dropped: 22 bytes encoded, over 10",
    )
    assert (odd["status"], odd["result"], odd["last_error"]) == (
        "done",
        None,
        "result dropped: not JSON-encodable (object)",
    )


# --- logs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_each_failed_attempt_logs_its_traceback_at_warning_then_error(
    start_service: Callable[..., Service], mode: str
) -> None:
    service = start_service(WORKERS=1, WORKER_MODE=mode, RETRY_BASE_MS=1)

    service.accept(
        {"id": "bad", "payload": {"do": "raise", "message": "no stock"}, "max_retries": 1}
    )
    final(service, "bad")

    lines = service.log().splitlines()
    failures = [n for n, line in enumerate(lines) if "task 'bad' " in line and "fail" in line]
    assert [lines[n].split()[1] for n in failures] == ["WARNING", "ERROR"]
    for n in failures:
        assert lines[n].split(" [")[0].endswith(": HandlerFailure: no stock")
        assert lines[n + 1] == "Traceback (most recent call last):"
        following = lines[n + 2 : n + 40]
        assert any("in steered" in line for line in following)
        assert any(line.endswith("HandlerFailure: no stock") for line in following)


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_megabyte_exception_message_is_capped_in_the_task_and_in_every_log_line(
    start_service: Callable[..., Service], mode: str
) -> None:
    service = start_service(WORKERS=1, WORKER_MODE=mode, RETRY_BASE_MS=1)
    message = {"do": "raise", "message": "x", "repeat": 1_000_000}

    service.accept({"id": "loud", "payload": message, "max_retries": 1})
    task = final(service, "loud")

    assert task["status"] == "failed"
    error = task["last_error"]
    assert error.startswith("HandlerFailure: xxx")
    assert error.endswith(CUT_MARK)
    assert len(error) == MAX_ERROR_CHARS
    log = service.log()
    assert max(len(line) for line in log.splitlines()) < 3 * MAX_ERROR_CHARS
    assert len(log) < 100_000  # two failed attempts, each with its traceback


def test_in_json_a_failed_attempts_traceback_is_its_lines_exception(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(WORKERS=1, LOG_FORMAT="json")

    service.accept(
        {"id": "bad", "payload": {"do": "raise", "message": "x" * 5000}, "max_retries": 0}
    )
    final(service, "bad")

    entries = [json.loads(line) for line in service.log().splitlines()]
    [failed] = [
        entry for entry in entries if entry.get("task_id") == "bad" and "exception" in entry
    ]
    assert failed["level"] == "ERROR"
    assert "in steered" in failed["exception"]
    # The message is capped, in the line and in the traceback alike.
    assert failed["message"].endswith("… [cut]")
    assert failed["exception"].endswith("… [cut]")
    assert len(failed["exception"]) < 10_000


def test_a_handler_its_worker_processes_cannot_load_exits_2_before_listening(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "main.py"],
        cwd=ROOT,
        env=service_environment(
            HOST=HOST, PORT=free_port(), TASK_HANDLER="tests.handlers:no_such_handler"
        ),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert (
        "task_queue: TASK_HANDLER: module 'tests.handlers' has no attribute 'no_such_handler'"
        in result.stderr
    )
    assert "listening" not in result.stderr
