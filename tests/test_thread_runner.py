"""ThreadRunner: attempts on their caller's thread, and a hung one's thread taken over at its
deadline.
What a handler's behaviour becomes in a report is the same in both modes: tests/test_runners.py."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator

import msgspec
import pytest

from actors.attempt import AttemptReport, Overran
from actors.runners import RunnerCounts
from actors.task import Task, TaskView, new_task
from actors.thread_runner import ThreadRunner

TIMEOUT_MS = 5_000
PRECISION_S = 0.25
"""A hung attempt is reported within its timeout plus this."""


def a_task(task_id: str = "task-1", payload: bytes = b'{"n": 1}') -> Task:
    task = new_task(task_id, payload, max_retries=3, now=1_000.0)
    return msgspec.structs.replace(task, attempts=1)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """What a hung handler waits on; opened after the test so its thread ends."""
    opened = threading.Event()
    yield opened
    opened.set()


class Custom(BaseException):
    """Not an Exception: what a careless handler might raise."""


@pytest.mark.parametrize(
    "exc",
    [SystemExit(3), KeyboardInterrupt("interrupted"), GeneratorExit("closed"), Custom("custom")],
    ids=lambda exc: type(exc).__name__,
)
def test_any_base_exception_fails_the_attempt_not_the_runner(exc: BaseException) -> None:
    def handler(view: TaskView) -> None:
        if view.id == "raises":
            raise exc

    runner = ThreadRunner(handler, result_max_bytes=100)
    try:
        failed = runner.run(a_task("raises"), TIMEOUT_MS)
        after = runner.run(a_task("after"), TIMEOUT_MS)
    finally:
        runner.close(1.0)

    assert (failed.outcome, failed.error) == ("raised", f"{type(exc).__qualname__}: {exc}")
    assert after == AttemptReport("returned")


class Stuck:
    """An attempt run on a thread of its own, as on a worker's thread: what ``run`` ended with
    there (a report, or Overran once the handler returned after its thread was taken over)."""

    def __init__(self, runner: ThreadRunner, task: Task, timeout_ms: int) -> None:
        self.ended: list[object] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(runner, task, timeout_ms))
        self.thread.start()

    def _run(self, runner: ThreadRunner, task: Task, timeout_ms: int) -> None:
        try:
            self.ended.append(runner.run(task, timeout_ms))
        except Overran as exc:
            self.ended.append(exc)
        self.done.set()


def test_a_hung_attempt_is_reported_timed_out_within_its_timeout_and_counted(
    gate: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    counts = RunnerCounts()
    taken_over: queue.SimpleQueue[AttemptReport] = queue.SimpleQueue()

    def handler(view: TaskView) -> str:
        if view.id == "hangs":
            gate.wait()
        return view.id

    runner = ThreadRunner(handler, result_max_bytes=100, on_abandoned=counts.abandoned)
    runner.take_over_with(taken_over.put)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="actors.thread_runner"):
            Stuck(runner, a_task("hangs"), 200)
            report = taken_over.get(timeout=TIMEOUT_MS / 1000)
        took_s = time.monotonic() - started
        # The thread that takes over runs the next attempt.
        after = runner.run(a_task("after"), TIMEOUT_MS)
    finally:
        runner.close(1.0)

    assert report == AttemptReport("timed_out", error="timed out after 200 ms")
    assert 0.2 <= took_s < 0.2 + PRECISION_S
    assert after == AttemptReport("returned", result=b'"after"')
    assert counts.read().threads_abandoned == 1
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "abandoned" in record.getMessage()
    assert (record.task_id, record.attempt) == ("hangs", 1)  # type: ignore[attr-defined]


def test_an_abandoned_handler_that_returns_later_gets_overran_not_a_report(
    gate: threading.Event,
) -> None:
    taken_over: queue.SimpleQueue[AttemptReport] = queue.SimpleQueue()

    def handler(view: TaskView) -> str:
        if view.id == "late":
            gate.wait()
        return view.id

    runner = ThreadRunner(handler, result_max_bytes=100)
    runner.take_over_with(taken_over.put)
    try:
        stuck = Stuck(runner, a_task("late"), 100)
        assert taken_over.get(timeout=5).outcome == "timed_out"
        gate.set()
        assert stuck.done.wait(5)
        reports = [runner.run(a_task(f"next-{n}"), TIMEOUT_MS) for n in range(3)]
    finally:
        runner.close(1.0)

    [ended] = stuck.ended
    assert isinstance(ended, Overran)
    assert [report.result for report in reports] == [b'"next-0"', b'"next-1"', b'"next-2"']
    assert taken_over.empty()


def test_an_attempt_in_time_is_never_taken_over() -> None:
    taken_over: queue.SimpleQueue[AttemptReport] = queue.SimpleQueue()
    runner = ThreadRunner(lambda view: view.id, result_max_bytes=100)
    runner.take_over_with(taken_over.put)
    try:
        reports = [runner.run(a_task(f"quick-{n}"), 100) for n in range(3)]
        time.sleep(0.2)  # past every deadline: the watchdog rings and finds nothing running
    finally:
        runner.close(1.0)

    assert [report.outcome for report in reports] == ["returned"] * 3
    assert taken_over.empty()


def test_an_overrun_is_caught_at_its_own_deadline_after_an_earlier_one_passed(
    gate: threading.Event,
) -> None:
    taken_over: queue.SimpleQueue[AttemptReport] = queue.SimpleQueue()

    def handler(view: TaskView) -> str:
        if view.id == "hangs":
            gate.wait()
        return view.id

    runner = ThreadRunner(handler, result_max_bytes=100)
    runner.take_over_with(taken_over.put)
    try:
        runner.run(a_task("quick"), 100)  # the watchdog is set for its deadline
        started = time.monotonic()
        Stuck(runner, a_task("hangs"), 400)
        report = taken_over.get(timeout=5)
        took_s = time.monotonic() - started
    finally:
        runner.close(1.0)

    assert report == AttemptReport("timed_out", error="timed out after 400 ms")
    assert 0.4 <= took_s < 0.4 + PRECISION_S


def test_a_closed_runner_ends_its_watchdog_thread() -> None:
    before = set(threading.enumerate())
    runner = ThreadRunner(lambda view: None, result_max_bytes=100, name="closing")
    [thread] = set(threading.enumerate()) - before

    runner.close(1.0)

    assert not thread.is_alive()
