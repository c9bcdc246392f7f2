"""ThreadRunner and run_handler: a handler's behaviour as an AttemptReport, on a thread of its own,
and a hung handler abandoned at its deadline."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import msgspec
import pytest

from actors.attempt import CUT_MARK, MAX_ERROR_CHARS, AttemptReport, PermanentError
from actors.runners import RunnerCounts
from actors.task import Task, TaskView, new_task
from actors.thread_runner import ThreadRunner, format_traceback, run_handler

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


def test_what_the_handler_returns_is_the_result_as_json() -> None:
    report = run_handler(lambda view: {"id": view.id, "n": view.payload["n"]}, a_task(), 100)

    assert report == AttemptReport("returned", result=b'{"id":"task-1","n":1}')


def test_none_is_a_success_without_a_result() -> None:
    assert run_handler(lambda view: None, a_task(), 100) == AttemptReport("returned")


@pytest.mark.parametrize(
    ("value", "max_bytes", "why"),
    [
        (object(), 100, "result dropped: not JSON-encodable (object)"),
        ("x" * 200, 100, "result dropped: 202 bytes encoded, over 100"),
    ],
)
def test_a_result_that_cannot_be_kept_is_dropped_and_the_attempt_still_succeeds(
    value: object, max_bytes: int, why: str
) -> None:
    report = run_handler(lambda view: value, a_task(), max_bytes)

    assert report == AttemptReport("returned", result=None, error=why)


def failing_handler(view: TaskView) -> None:
    raise ValueError("bad value")


def test_a_raised_exception_is_its_type_and_message_with_its_traceback() -> None:
    report = run_handler(failing_handler, a_task(), 100)

    assert (report.outcome, report.error, report.result) == (
        "raised",
        "ValueError: bad value",
        None,
    )
    assert report.traceback is not None
    assert report.traceback.startswith("Traceback (most recent call last):\n")
    assert "in failing_handler" in report.traceback
    assert report.traceback.endswith("ValueError: bad value")


def test_a_permanent_error_says_its_message_alone() -> None:
    def refuse(view: TaskView) -> None:
        raise PermanentError("the payload names no customer")

    report = run_handler(refuse, a_task(), 100)

    assert (report.outcome, report.error) == ("permanent", "the payload names no customer")
    assert report.traceback is not None and "in refuse" in report.traceback


class Refused(PermanentError):
    """A handler's own kind of permanent error."""


def test_a_permanent_error_without_a_message_says_its_type() -> None:
    def refuse(view: TaskView) -> None:
        raise Refused

    assert run_handler(refuse, a_task(), 100).error == "Refused"


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


def test_a_payload_that_cannot_be_decoded_fails_the_attempt() -> None:
    report = run_handler(lambda view: None, a_task(payload=b"{not json"), 100)

    assert report.outcome == "raised"
    assert report.error is not None and report.error.startswith("DecodeError: ")


def test_a_huge_message_is_capped_in_the_error_and_in_the_traceback() -> None:
    def shout(view: TaskView) -> None:
        raise RuntimeError("x" * 5_000_000)

    report = run_handler(shout, a_task(), 100)

    assert report.error is not None and len(report.error) == MAX_ERROR_CHARS
    assert report.error.endswith(CUT_MARK)
    assert report.traceback is not None
    assert report.traceback.endswith(report.error)
    assert len(report.traceback) < 2 * MAX_ERROR_CHARS


def test_a_traceback_shows_the_cause_first_and_each_message_capped() -> None:
    try:
        try:
            raise KeyError("k" * 10_000)
        except KeyError as cause:
            raise RuntimeError("lookup failed") from cause
    except RuntimeError as exc:
        text = format_traceback(exc)

    first, _, second = text.partition("direct cause of the following exception")
    assert first.count(CUT_MARK) == 1 and "KeyError: 'kkk" in first
    assert second.rstrip().endswith("RuntimeError: lookup failed")


def test_an_error_with_lone_surrogates_is_made_safe_to_encode() -> None:
    def handler(view: TaskView) -> None:
        raise RuntimeError("bad \ud800 input")

    report = run_handler(handler, a_task(), 100)

    msgspec.json.encode(report)  # raises if a surrogate were left
    assert report.error == "RuntimeError: bad ? input"


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
