"""ThreadRunner: attempts on a thread of their own, and a hung handler abandoned at its deadline.
What a handler's behaviour becomes in a report is the same in both modes: tests/test_runners.py."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import msgspec
import pytest

from actors.attempt import AttemptReport
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


def test_a_hung_attempt_is_reported_timed_out_within_its_timeout_and_counted(
    gate: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    counts = RunnerCounts()

    def handler(view: TaskView) -> str:
        if view.id == "hangs":
            gate.wait()
        return view.id

    runner = ThreadRunner(handler, result_max_bytes=100, on_abandoned=counts.abandoned)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="actors.thread_runner"):
            report = runner.run(a_task("hangs"), 200)
        took_s = time.monotonic() - started
        after = runner.run(a_task("after"), TIMEOUT_MS)
    finally:
        runner.close(1.0)

    assert report == AttemptReport("timed_out", error="timed out after 200 ms")
    assert 0.2 <= took_s < 0.2 + PRECISION_S
    # A fresh thread took the stuck one's place.
    assert after == AttemptReport("returned", result=b'"after"')
    assert counts.read().threads_abandoned == 1
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "abandoned" in record.getMessage()
    assert (record.task_id, record.attempt) == ("hangs", 1)  # type: ignore[attr-defined]


def test_an_abandoned_handler_that_returns_later_changes_nothing(gate: threading.Event) -> None:
    returned = threading.Event()

    def handler(view: TaskView) -> str:
        if view.id == "late":
            gate.wait()
            returned.set()
        return view.id

    runner = ThreadRunner(handler, result_max_bytes=100)
    try:
        assert runner.run(a_task("late"), 100).outcome == "timed_out"
        gate.set()
        assert returned.wait(5)
        reports = [runner.run(a_task(f"next-{n}"), TIMEOUT_MS) for n in range(3)]
    finally:
        runner.close(1.0)

    assert [report.result for report in reports] == [b'"next-0"', b'"next-1"', b'"next-2"']


def test_a_closed_runner_ends_its_idle_thread() -> None:
    before = set(threading.enumerate())
    runner = ThreadRunner(lambda view: None, result_max_bytes=100, name="closing")
    [thread] = set(threading.enumerate()) - before

    runner.close(1.0)

    assert not thread.is_alive()
