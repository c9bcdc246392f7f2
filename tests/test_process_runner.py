"""ProcessRunner: attempts in a real child process, its deaths, replacements and its end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from actors import process_runner
from actors.attempt import CUT_MARK, MAX_ERROR_CHARS, AttemptReport
from actors.handlers import HandlerLoadError, HandlerSpec, load_handler
from actors.process_runner import ProcessRunner
from actors.task import new_task
from tests.support import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from actors.attempt import ReplacementReason
    from actors.task import Task

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: /proc")

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_MS = 10_000
"""An attempt's time limit where the test does not mean to reach it."""
PRECISION_S = 0.25
"""How late past its time limit a timed-out attempt may be reported."""


def task(payload: Any = None, attempts: int = 1) -> Task:
    made = new_task("task-1", msgspec.json.encode(payload), max_retries=3)
    return msgspec.structs.replace(made, attempts=attempts)


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie has ended: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rpartition(b")")[2].split()[0] not in (b"Z", b"X")


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture
def start() -> Iterator[Callable[..., tuple[ProcessRunner, list[ReplacementReason]]]]:
    """Start runners of a ``tests.handlers`` function, ready; close them all afterwards."""
    made: list[ProcessRunner] = []

    def start_runner(handler: str, **options: Any) -> tuple[ProcessRunner, list[ReplacementReason]]:
        replaced: list[ReplacementReason] = []
        options = {"result_max_bytes": 1000, "on_replaced": replaced.append, **options}
        runner = ProcessRunner(HandlerSpec(f"tests.handlers:{handler}"), **options)
        made.append(runner)
        runner.wait_ready(30)
        return runner, replaced

    yield start_runner
    for runner in made:
        runner.close(5)


# --- what an attempt comes to ----------------------------------------------------------------


def test_a_returned_value_comes_back_as_json(start: Any) -> None:
    runner, _ = start("return_value")

    report = runner.run(task({"value": {"n": [1, 2.5, "x"]}}), TIMEOUT_MS)

    assert report == AttemptReport("returned", result=b'{"n":[1,2.5,"x"]}')


def test_returning_none_is_no_result(start: Any) -> None:
    runner, _ = start("return_value")

    assert runner.run(task({"value": None}), TIMEOUT_MS) == AttemptReport("returned")


def test_a_time_limit_of_30_days_is_waited_like_any_other(start: Any) -> None:
    runner, _ = start("return_value")

    report = runner.run(task({"value": 1}), 30 * 86_400_000)

    assert report == AttemptReport("returned", result=b"1")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("an object", "result dropped: not JSON-encodable (object)"),
        ("x" * 100, "result dropped: 102 bytes encoded, over 50"),
    ],
)
def test_a_result_that_cannot_be_kept_is_dropped_and_the_attempt_still_returned(
    start: Any, value: str, error: str
) -> None:
    runner, _ = start("return_value", result_max_bytes=50)

    report = runner.run(task({"value": value}), TIMEOUT_MS)

    assert report == AttemptReport("returned", result=None, error=error)


def test_a_raising_handler_reports_its_error_and_its_traceback(start: Any) -> None:
    runner, _ = start("raise_as_told")

    report = runner.run(task({"raise": "HandlerFailure", "message": "boom"}), TIMEOUT_MS)

    assert report.outcome == "raised"
    assert report.error == "HandlerFailure: boom"
    assert report.traceback is not None
    assert report.traceback.startswith("Traceback (most recent call last):")
    assert "ValueError: the cause" in report.traceback
    assert "raise HandlerFailure(message) from cause" in report.traceback
    assert report.traceback.endswith("HandlerFailure: boom")


def test_a_huge_message_is_capped_in_the_error_and_in_the_traceback(start: Any) -> None:
    runner, _ = start("raise_as_told")

    report = runner.run(task({"raise": "HandlerFailure", "message": "m" * 100_000}), TIMEOUT_MS)

    assert report.error is not None and report.traceback is not None
    assert len(report.error) == MAX_ERROR_CHARS
    assert report.error.endswith(CUT_MARK)
    assert len(report.traceback) < 2 * MAX_ERROR_CHARS + 2000
    assert report.traceback.endswith(CUT_MARK)


def test_a_permanent_error_reports_its_message_alone(start: Any) -> None:
    runner, _ = start("raise_as_told")

    report = runner.run(task({"raise": "PermanentError", "message": "no such user"}), TIMEOUT_MS)

    assert report.outcome == "permanent"
    assert report.error == "no such user"
    assert report.traceback is not None and "PermanentError: no such user" in report.traceback


@pytest.mark.parametrize(
    ("kind", "error"),
    [("SystemExit", "SystemExit: bye"), ("KeyboardInterrupt", "KeyboardInterrupt: stop")],
)
def test_system_exit_from_a_handler_fails_the_attempt_and_the_child_lives_on(
    start: Any, kind: str, error: str
) -> None:
    runner, replaced = start("raise_as_told")
    before = runner.pid

    report = runner.run(task({"raise": kind, "message": error.partition(": ")[2]}), TIMEOUT_MS)

    assert (report.outcome, report.error) == ("raised", error)
    assert runner.run(task({"raise": "PermanentError"}), TIMEOUT_MS).outcome == "permanent"
    assert runner.pid == before
    assert replaced == []


def test_the_handler_sees_the_task_view_with_a_fresh_payload(start: Any) -> None:
    runner, _ = start("return_value")

    report = runner.run(task({"value": [1, {"a": None}]}, attempts=4), TIMEOUT_MS)

    assert report.result == b'[1,{"a":null}]'


# --- past the deadline, and deaths ----------------------------------------------------------


def test_an_attempt_past_its_deadline_is_killed_and_a_fresh_child_runs_the_next(
    start: Any,
) -> None:
    runner, replaced = start("sleep_for")
    before = runner.pid

    began = time.monotonic()
    report = runner.run(task({"sleep_s": 60}), 300)
    took_s = time.monotonic() - began

    assert report == AttemptReport("timed_out", error="timed out after 300 ms")
    assert 0.3 <= took_s <= 0.3 + PRECISION_S
    assert replaced == ["timeout"]
    assert not running(before)
    after = runner.run(task({"sleep_s": 0}), TIMEOUT_MS)
    assert after.outcome == "returned"
    assert after.result is not None and int(after.result) not in (before, 0)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"exit": 3}, "worker process exited with code 3"),
        ({"kill": "SIGKILL"}, "worker process killed by SIGKILL"),
        ({"kill": "SIGSEGV"}, "worker process killed by SIGSEGV"),
    ],
)
def test_a_child_that_dies_mid_attempt_is_a_crash_noticed_at_once_and_replaced(
    start: Any, payload: dict[str, Any], error: str
) -> None:
    runner, replaced = start("end_process")
    before = runner.pid

    began = time.monotonic()
    report = runner.run(task(payload), TIMEOUT_MS)

    assert report == AttemptReport("crashed", error=error)
    assert time.monotonic() - began < TIMEOUT_MS / 1000 / 2  # not by waiting out the limit
    assert replaced == ["crash"]
    assert runner.pid not in (before, None)
    assert runner.run(task({"exit": 0}), TIMEOUT_MS).error == "worker process exited with code 0"


def test_a_child_that_dies_is_noticed_though_a_grandchild_holds_its_pipe_open(
    start: Any, tmp_path: Path
) -> None:
    runner, replaced = start("fork_then_exit")
    log = tmp_path / "grandchild"
    try:
        began = time.monotonic()
        report = runner.run(task({"log": str(log)}), TIMEOUT_MS)

        assert report == AttemptReport("crashed", error="worker process exited with code 4")
        assert time.monotonic() - began < TIMEOUT_MS / 1000 / 2
        assert replaced == ["crash"]
    finally:
        if log.exists():
            os.kill(int(log.read_text()), signal.SIGKILL)


def test_a_child_killed_while_idle_is_replaced_before_the_next_attempt_which_runs(
    start: Any,
) -> None:
    runner, replaced = start("pid")
    before = runner.pid
    assert before is not None
    os.kill(before, signal.SIGKILL)
    wait_until(lambda: not running(before))

    report = runner.run(task(), TIMEOUT_MS)

    assert report.outcome == "returned"
    assert report.result is not None and int(report.result) != before
    assert replaced == ["crash"]


def test_stop_signals_do_not_end_a_child_mid_attempt(start: Any) -> None:
    runner, replaced = start("stop_signals_to_self")

    report = runner.run(task(), TIMEOUT_MS)

    assert report == AttemptReport("returned", result=str(runner.pid).encode())
    assert replaced == []


def test_the_forkserver_blocks_stop_signals_so_a_group_signal_leaves_it_alone(
    start: Any,
) -> None:
    runner, _ = start("pid")
    forkserver = parent_of(runner.pid)
    status = Path(f"/proc/{forkserver}/status").read_text()
    blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:"))[7:], 16)

    assert blocked & (1 << (signal.SIGTERM - 1))
    assert blocked & (1 << (signal.SIGINT - 1))


# --- recycling --------------------------------------------------------------------------------


def test_a_child_is_recycled_after_max_tasks_attempts_and_the_outcome_stands(
    start: Any,
) -> None:
    runner, replaced = start("pid", max_tasks=2)
    first = runner.pid

    reports = [runner.run(task(), TIMEOUT_MS) for _ in range(3)]

    pids = [int(report.result or b"0") for report in reports]
    assert pids[0] == pids[1] == first
    assert pids[2] not in (first, 0)
    assert replaced == ["max_tasks"]
    wait_until(lambda: not running(first))


def test_a_recycled_child_that_will_not_exit_is_killed_after_its_grace(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_runner, "RETIRE_GRACE_S", 0.1)
    runner, replaced = start("leave_a_thread", max_tasks=1)
    first = runner.pid
    assert first is not None
    runner.run(task(), TIMEOUT_MS)
    assert replaced == ["max_tasks"]
    assert running(first)  # its handler's thread holds it

    # Each attempt looks at the recycled children (and leaves one more behind).
    wait_until(lambda: runner.run(task(), TIMEOUT_MS) and not running(first))
    last = runner.pid
    runner.close(0.2)  # kills those still held by their threads, once its timeout is up
    assert last is not None and not running(last)


def test_a_child_over_max_memory_after_an_attempt_is_recycled_and_the_outcome_stands(
    start: Any,
) -> None:
    probe, _ = start("pid")
    limit_mb = int(rss_mb(probe.pid)) + 40  # a fresh child stays well below it
    runner, replaced = start("hoard_memory", max_memory_mb=limit_mb)
    first = runner.pid

    small = runner.run(task({"mb": 1}), TIMEOUT_MS)
    assert (small.outcome, runner.pid, replaced) == ("returned", first, [])
    big = runner.run(task({"mb": 80}), TIMEOUT_MS)

    assert big == AttemptReport("returned", result=str(first).encode())
    assert replaced == ["max_memory"]
    assert runner.pid not in (first, None)
    wait_until(lambda: not running(first))


# --- loading the handler -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "tests.handlers",
        "no_such_package_for_tq.jobs:run",
        "tests.handlers:no_such_function",
        "tests.handlers:BLOCK_LIMIT_S",
    ],
)
def test_a_handler_that_cannot_be_loaded_is_a_load_error_worded_as_load_handler_words_it(
    spec: str,
) -> None:
    with pytest.raises(HandlerLoadError) as expected:
        load_handler(spec)
    runner = ProcessRunner(HandlerSpec(spec), result_max_bytes=1000)
    try:
        with pytest.raises(HandlerLoadError) as raised:
            runner.wait_ready(30)
    finally:
        runner.close(5)

    assert str(raised.value) == str(expected.value)


def test_without_a_handler_name_the_child_runs_the_simulation() -> None:
    spec = HandlerSpec(sim_min_ms=0, sim_max_ms=0, sim_failure_rate=1)
    runner = ProcessRunner(spec, result_max_bytes=1000)
    try:
        runner.wait_ready(30)
        report = runner.run(task(attempts=2), TIMEOUT_MS)
    finally:
        runner.close(5)

    assert report.error == "SimulatedFailure: simulated failure on attempt 2"


# --- the end of a child -----------------------------------------------------------------------


def test_close_leaves_no_child(start: Any) -> None:
    runner, _ = start("pid")
    child = runner.pid
    assert child is not None and running(child)

    runner.close(5)

    assert not running(child)
    with pytest.raises(RuntimeError, match="closed"):
        runner.run(task(), TIMEOUT_MS)


def test_close_from_another_thread_ends_a_running_attempt(start: Any, tmp_path: Path) -> None:
    runner, replaced = start("record_then_sleep")
    child = runner.pid
    assert child is not None
    log = tmp_path / "runs.log"
    reports: list[AttemptReport] = []
    worker = threading.Thread(
        target=lambda: reports.append(runner.run(task({"log": str(log), "sleep_s": 60}), 60_000))
    )
    worker.start()
    wait_until(log.exists)  # the attempt is under way

    runner.close(0.2)
    worker.join(10)

    assert not running(child)
    assert reports == [AttemptReport("crashed", error="worker process killed by SIGKILL")]
    assert replaced == []
    assert runner.pid is None


# --- in a service process of its own -----------------------------------------------------------

SERVICE = """\
import functools, json, signal, sys, threading
from actors.handlers import HandlerSpec
from actors import process_runner
from actors.process_runner import ProcessRunner
from actors.task import new_task
from api.logs import configure_logging

STOP = {signal.SIGINT, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, STOP)  # as main.py does, to take them with sigwait
log_setup = functools.partial(configure_logging, "INFO", "text")
runners = [
    ProcessRunner(HandlerSpec(f"tests.handlers:{name}"), result_max_bytes=1000, log_setup=log_setup)
    for name in ("speak", "record_then_sleep")
]
for runner in runners:
    runner.wait_ready(30)
if STOP <= signal.pthread_sigmask(signal.SIG_BLOCK, []):
    print("stop signals still blocked", file=sys.stderr)
"""


def children_of(pid: int) -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and running(int(entry.name)) and _ppid(entry) == pid
    ]


def _ppid(entry: Path) -> int | None:
    try:
        return int((entry / "stat").read_bytes().rpartition(b")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def service(script: str, *args: str, **options: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SERVICE + textwrap.dedent(script), *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **options,
    )


def test_handler_output_and_log_records_all_reach_the_service_stderr() -> None:
    script = """
        runners[0].run(new_task("t-1", b'{"text": "hello from the child"}', 0), 10_000)
        for runner in runners:
            runner.close(5)
    """
    out, err = service(script).communicate(timeout=60)

    assert "stop signals still blocked" in err
    assert "stdout: hello from the child" in err
    assert "stdout: hello from the child" not in out
    assert "stderr: hello from the child" in err
    logged = [line for line in err.splitlines() if "logged: hello from the child" in line]
    assert len(logged) == 1
    assert " WARNING tests.handlers: logged: hello from the child" in logged[0]


def test_children_do_not_outlive_a_service_killed_with_sigkill(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    script = """
        payload = json.dumps({"log": sys.argv[1], "sleep_s": 60}).encode()
        busy = threading.Thread(
            target=runners[1].run, args=(new_task("t-1", payload, 0), 60_000), daemon=True
        )
        busy.start()
        print(runners[0].pid, runners[1].pid, flush=True)
        busy.join()
    """
    parent = service(script, str(log))
    try:
        assert parent.stdout is not None
        idle, busy = (int(pid) for pid in parent.stdout.readline().split())
        wait_until(log.exists)  # the busy child is in its handler
        started = [idle, busy, *children_of(parent.pid)]  # with the forkserver
        assert parent_of(idle) in started

        parent.kill()
        parent.wait(10)

        wait_until(lambda: not any(running(pid) for pid in started), timeout_s=5)
    finally:
        parent.kill()
        parent.communicate(timeout=10)


def test_a_service_that_exits_without_closing_its_runners_leaves_no_child(
    tmp_path: Path,
) -> None:
    log = tmp_path / "runs.log"
    script = """
        payload = json.dumps({"log": sys.argv[1], "sleep_s": 60}).encode()
        threading.Thread(
            target=runners[1].run, args=(new_task("t-1", payload, 0), 60_000), daemon=True
        ).start()
        print(runners[0].pid, runners[1].pid, flush=True)
        while not __import__("os").path.exists(sys.argv[1]):
            threading.Event().wait(0.01)
    """
    parent = service(script, str(log))
    out, _ = parent.communicate(timeout=30)  # it exits, though one attempt never ends

    assert parent.returncode == 0
    assert not any(running(int(pid)) for pid in out.split())


def test_a_runner_closed_before_its_child_is_ready_ends_the_child_quietly() -> None:
    # The service stopping at once after start (or a child started just as it stops): the
    # child finds the pipe closed when it says it is ready, which is an ordinary end.
    script = """
        for _ in range(5):
            early = ProcessRunner(HandlerSpec("tests.handlers:speak"), result_max_bytes=1000)
            early.close(5)
        for runner in runners:
            runner.close(5)
    """
    _, err = service(script).communicate(timeout=60)

    assert "Traceback" not in err, err
