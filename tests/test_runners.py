"""Both runners against the AttemptRunner contract: the same handler behaviour gives the same
AttemptReport on a thread and in a worker process; and what only a process can do (a crash costs
one attempt, a hung attempt is killed, recycling), counted where GET /stats reads it."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.attempt import (
    CUT_MARK,
    MAX_ERROR_CHARS,
    AttemptReport,
    AttemptRunner,
    Overran,
    TakesOver,
)
from actors.handlers import HandlerSpec
from actors.process_runner import ProcessRunner
from actors.runners import RunnerCounts, process_runners, thread_runners
from actors.task import Task, new_task
from tests.handlers import steered
from tests.support import wait_until

TIMEOUT_MS = 10_000
PRECISION_S = 0.25
"""A hung attempt is reported within its timeout plus this."""
SPEC = HandlerSpec("tests.handlers:steered")
MAX_BYTES = 100

Kind = str
MakeRunner = Callable[..., tuple[AttemptRunner, RunnerCounts]]


def a_task(payload: Any, *, task_id: str = "task-1", attempts: int = 1) -> Task:
    task = new_task(task_id, msgspec.json.encode(payload), max_retries=3, now=1_000.0)
    return msgspec.structs.replace(task, attempts=attempts)


@pytest.fixture
def make_runner() -> Iterator[MakeRunner]:
    """Runners of either kind, each closed after the test."""
    made: list[AttemptRunner] = []

    def make(kind: Kind, **options: Any) -> tuple[AttemptRunner, RunnerCounts]:
        counts = RunnerCounts()
        if kind == "thread":
            factory = thread_runners(steered, options.pop("result_max_bytes", MAX_BYTES))
        else:
            factory = process_runners(
                SPEC, result_max_bytes=options.pop("result_max_bytes", MAX_BYTES), **options
            )
        runner = factory(0, counts)
        made.append(runner)
        return runner, counts

    yield make
    for runner in made:
        runner.close(5.0)


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Path]:
    """The file a hanging attempt waits for; created after the test, so its thread ends."""
    path = tmp_path / "release"
    yield path
    path.touch()


BOTH = pytest.mark.parametrize("kind", ["thread", "process"])


@BOTH
@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"do": "return", "value": {"n": [1, 2]}}, AttemptReport("returned", b'{"n":[1,2]}')),
        ({"do": "return"}, AttemptReport("returned")),
        (
            {"do": "object"},
            AttemptReport("returned", error="result dropped: not JSON-encodable (object)"),
        ),
        (
            {"do": "return", "value": "x" * 200},
            AttemptReport("returned", error="result dropped: 202 bytes encoded, over 100"),
        ),
    ],
    ids=["value", "none", "unencodable", "too-big"],
)
def test_what_a_handler_returns_is_reported_the_same_way(
    make_runner: MakeRunner, kind: Kind, payload: Any, expected: AttemptReport
) -> None:
    runner, _ = make_runner(kind)

    assert runner.run(a_task(payload), TIMEOUT_MS) == expected


@BOTH
@pytest.mark.parametrize(
    ("payload", "outcome", "error"),
    [
        ({"do": "raise", "message": "no stock"}, "raised", "HandlerFailure: no stock"),
        ({"do": "permanent", "message": "no such customer"}, "permanent", "no such customer"),
    ],
    ids=["raised", "permanent"],
)
def test_a_handler_that_raises_is_reported_with_its_traceback(
    make_runner: MakeRunner, kind: Kind, payload: Any, outcome: str, error: str
) -> None:
    runner, _ = make_runner(kind)

    report = runner.run(a_task(payload), TIMEOUT_MS)

    assert (report.outcome, report.error, report.result) == (outcome, error, None)
    assert report.traceback is not None
    assert report.traceback.startswith("Traceback (most recent call last):")
    assert "in steered" in report.traceback
    assert report.traceback.endswith(payload["message"])


@BOTH
def test_a_huge_message_is_capped_in_the_error_and_in_the_traceback(
    make_runner: MakeRunner, kind: Kind
) -> None:
    runner, _ = make_runner(kind)

    report = runner.run(a_task({"do": "raise", "message": "x" * 1_000_000}), TIMEOUT_MS)

    assert report.error is not None and len(report.error) == MAX_ERROR_CHARS
    assert report.error.startswith("HandlerFailure: xxx") and report.error.endswith(CUT_MARK)
    assert report.traceback is not None and report.traceback.endswith(CUT_MARK)
    assert len(report.traceback) < 3 * MAX_ERROR_CHARS


@BOTH
def test_a_payload_that_cannot_be_decoded_fails_the_attempt(
    make_runner: MakeRunner, kind: Kind
) -> None:
    runner, _ = make_runner(kind)
    broken = msgspec.structs.replace(a_task({}), payload=b"{not json")

    report = runner.run(broken, TIMEOUT_MS)

    assert report.outcome == "raised"
    assert report.error is not None and report.error.startswith("DecodeError: ")


@BOTH
def test_a_hung_attempt_is_reported_within_its_timeout_and_the_next_one_runs(
    make_runner: MakeRunner, kind: Kind, release: Path
) -> None:
    runner, counts = make_runner(kind)
    runner.run(a_task({"do": "return"}), TIMEOUT_MS)  # warm: the timeout is the handler's

    started = time.monotonic()
    report = run_as_a_worker(runner, a_task({"do": "hang", "release": str(release)}), 300)
    took_s = time.monotonic() - started
    after = runner.run(a_task({"do": "return", "value": 1}), TIMEOUT_MS)

    assert report == AttemptReport("timed_out", error="timed out after 300 ms")
    assert 0.3 <= took_s < 0.3 + PRECISION_S
    assert after == AttemptReport("returned", b"1")
    replaced = counts.read()
    if kind == "thread":
        assert (replaced.threads_abandoned, replaced.processes["timeout"]) == (1, 0)
    else:
        assert (replaced.threads_abandoned, replaced.processes["timeout"]) == (0, 1)


def run_as_a_worker(runner: AttemptRunner, task: Task, timeout_ms: int) -> AttemptReport:
    """The attempt's report as its worker gets it: from ``run``, or, from a runner that runs it
    on the worker's own thread, from the takeover when that thread is abandoned (the thread
    that takes over, here this one, runs the next attempt)."""
    if not isinstance(runner, TakesOver):
        return runner.run(task, timeout_ms)
    reports: queue.SimpleQueue[AttemptReport] = queue.SimpleQueue()
    runner.take_over_with(reports.put)

    def on_the_workers_thread() -> None:
        with contextlib.suppress(Overran):
            reports.put(runner.run(task, timeout_ms))

    threading.Thread(target=on_the_workers_thread, daemon=True).start()
    return reports.get(timeout=timeout_ms / 1000 + 5)


def pid_of(runner: AttemptRunner) -> int:
    report = runner.run(a_task({"do": "pid"}), TIMEOUT_MS)
    assert report.outcome == "returned" and report.result is not None, report
    return int(report.result)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"do": "exit", "code": 3}, "worker process exited with code 3"),
        ({"do": "kill"}, "worker process killed by SIGKILL"),
    ],
    ids=["exit", "kill"],
)
def test_a_handler_that_ends_its_process_costs_one_attempt_and_a_fresh_one_serves(
    make_runner: MakeRunner, payload: Any, error: str
) -> None:
    runner, counts = make_runner("process")
    before = pid_of(runner)

    report = runner.run(a_task(payload), TIMEOUT_MS)
    after = pid_of(runner)

    assert report == AttemptReport("crashed", error=error)
    assert after != before
    assert counts.read().processes == {"timeout": 0, "crash": 1, "max_tasks": 0, "max_memory": 0}


def test_a_worker_process_is_recycled_after_max_tasks_attempts(make_runner: MakeRunner) -> None:
    runner, counts = make_runner("process", max_tasks=2)

    pids = [pid_of(runner) for _ in range(5)]

    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert counts.read().processes["max_tasks"] == 2


def test_a_worker_process_is_recycled_after_an_attempt_that_left_it_too_big(
    make_runner: MakeRunner,
) -> None:
    runner, counts = make_runner("process", max_memory_mb=200)

    small = pid_of(runner)
    grown = runner.run(a_task({"do": "grow", "mb": 250}), TIMEOUT_MS)
    fresh = pid_of(runner)

    assert grown == AttemptReport("returned", str(small).encode())
    assert fresh != small
    assert counts.read().processes["max_memory"] == 1


def test_closing_from_another_thread_kills_a_hung_attempts_process(
    make_runner: MakeRunner, release: Path, tmp_path: Path
) -> None:
    runner, _ = make_runner("process")
    assert isinstance(runner, ProcessRunner)
    pid = pid_of(runner)
    log = tmp_path / "runs.log"
    hang = a_task({"do": "hang", "release": str(release), "log": str(log)})
    reports: list[AttemptReport] = []
    attempt = threading.Thread(target=lambda: reports.append(runner.run(hang, TIMEOUT_MS)))
    attempt.start()
    wait_until(log.exists)  # the handler has started, and hangs until the close

    runner.close(0.0)
    attempt.join(5)

    assert [report.outcome for report in reports] == ["crashed"]
    assert not alive(pid)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    with contextlib.suppress(FileNotFoundError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    return False
