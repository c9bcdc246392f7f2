"""api/logs.py: text and JSON lines, with the request, task and attempt they are about."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from api.logs import configure_logging, rfc3339
from api.request_id import current_request_id

if TYPE_CHECKING:
    from collections.abc import Iterator

    from api.logs import LogFormat


@pytest.fixture
def capture() -> Iterator[Any]:
    """Configure logging into a buffer for one test; the root logger is restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def configure(log_format: LogFormat, level: str = "DEBUG") -> io.StringIO:
        stream = io.StringIO()
        configure_logging(level, log_format, stream)
        return stream

    yield configure
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_time_level_logger_message_and_the_task_fields(capture: Any) -> None:
    stream = capture("json")

    logging.getLogger("actors.worker").info(
        "task %r attempt %d failed", "t-1", 2, extra={"task_id": "t-1", "attempt": 2}
    )

    [line] = json_lines(stream)
    assert datetime.fromisoformat(line.pop("time")).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert line == {
        "level": "INFO",
        "logger": "actors.worker",
        "message": "task 't-1' attempt 2 failed",
        "task_id": "t-1",
        "attempt": 2,
    }


def test_the_request_id_in_context_is_on_every_line_logged_meanwhile(capture: Any) -> None:
    stream = capture("json")
    token = current_request_id.set("req-42")
    try:
        logging.getLogger("api.enqueue").debug("inside")
    finally:
        current_request_id.reset(token)
    logging.getLogger("api.enqueue").debug("outside")

    inside, outside = json_lines(stream)
    assert inside["request_id"] == "req-42"
    assert "request_id" not in outside


def test_an_exception_is_one_string_field_and_the_line_stays_one_line(capture: Any) -> None:
    stream = capture("json")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logging.getLogger("x").exception("it broke")

    [line] = json_lines(stream)
    assert line["message"] == "it broke"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].endswith("ValueError: bad\nthing")


def test_other_extra_fields_are_fields_of_their_own_and_odd_values_are_said_as_text(
    capture: Any,
) -> None:
    stream = capture("json")

    logging.getLogger("task_queue").info(
        "summary", extra={"summary": {"counts": {"done": 3}}, "odd": object, "none": None}
    )

    [line] = json_lines(stream)
    assert line["summary"] == {"counts": {"done": 3}}
    assert line["odd"] == str(object)
    assert "none" not in line


def test_undecodable_text_is_escaped_rather_than_losing_the_line(capture: Any) -> None:
    stream = capture("json")

    logging.getLogger("x").info("path %s", "/\udcff", extra={"task_id": "t\udcff"})

    [line] = json_lines(stream)
    assert line["message"] == "path /\\udcff"
    assert line["task_id"] == "t\\udcff"


def test_a_text_line_ends_with_the_context_and_escapes_line_breaks(capture: Any) -> None:
    stream = capture("text")
    token = current_request_id.set("req-7")
    try:
        logging.getLogger("actors.worker").warning(
            "task %r failed: %s", "a b", "line 1\nline 2", extra={"task_id": "a b", "attempt": 3}
        )
    finally:
        current_request_id.reset(token)

    [line] = stream.getvalue().splitlines()
    time, level, rest = line.split(" ", 2)
    assert datetime.fromisoformat(time)
    assert level == "WARNING"
    assert rest == (
        "actors.worker: task 'a b' failed: line 1\\nline 2"
        " [request_id=req-7 task_id='a b' attempt=3]"
    )


def test_a_text_line_without_context_is_just_the_message(capture: Any) -> None:
    stream = capture("text")

    logging.getLogger("task_queue").info("intake closed")

    assert stream.getvalue().split(" ", 2)[2] == "task_queue: intake closed\n"


def test_lines_below_the_level_are_not_written(capture: Any) -> None:
    stream = capture("json", "INFO")

    logging.getLogger("x").debug("hidden")
    logging.getLogger("x").info("shown")

    assert [line["message"] for line in json_lines(stream)] == ["shown"]


def test_times_are_rfc3339_in_utc_to_the_millisecond() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_795_000_000.1234) == "2026-11-18T11:06:40.123Z"  # date -u -d @1795000000


TRACEBACK = 'Traceback (most recent call last):\n  File "h.py", line 3, in run\nValueError: boom'
"""A traceback already formatted, as a worker process sends it with its report."""


def test_a_traceback_given_as_text_follows_the_text_line_on_lines_of_its_own(
    capture: Any,
) -> None:
    stream = capture("text")

    logging.getLogger("actors.worker").warning(
        "task %r attempt %d failed", "t-1", 1, extra={"task_id": "t-1", "traceback": TRACEBACK}
    )

    first, *rest = stream.getvalue().splitlines()
    assert first.endswith("task 't-1' attempt 1 failed [task_id='t-1']")
    assert "\n".join(rest) == TRACEBACK


def test_a_traceback_given_as_text_is_the_json_lines_exception(capture: Any) -> None:
    stream = capture("json")

    logging.getLogger("actors.worker").error(
        "task failed", extra={"task_id": "t-1", "traceback": TRACEBACK}
    )

    [line] = json_lines(stream)
    assert line["exception"] == TRACEBACK
    assert "traceback" not in line
