"""actors/rows.py: the fast check and the one that says why agree on every kind of row."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from actors.rows import decode_row, shown_id, sound
from actors.task import DONE, Task, new_task

GOOD = msgspec.structs.astuple(
    msgspec.structs.replace(
        new_task("t-1", b'{"a": [1, "\\u00e9"]}', 3, now=1.0, timeout_ms=500),
        status=DONE,
        attempts=1,
        last_error="boom",
        result=b'"ok"',
    )
)

BAD: dict[str, tuple[dict[str, Any], str]] = {
    "empty id": ({"id": ""}, "id is empty"),
    "payload not UTF-8": ({"payload": b'"\xff"'}, "payload is not valid JSON"),
    "payload truncated": ({"payload": b'{"a": '}, "payload is not valid JSON"),
    "payload too deep": ({"payload": b"[" * 5000 + b"]" * 5000}, "payload is nested too deep"),
    "result not JSON": ({"result": b"nope"}, "result is not valid JSON"),
    "unknown status": ({"status": "paused"}, "status 'paused' is not one of"),
    "negative attempts": ({"attempts": -1}, "attempts -1 is not a count"),
    "negative max_retries": ({"max_retries": -3}, "max_retries -3 is not a count"),
    "priority too high": ({"priority": 10}, "priority 10 is not an integer from 0 to 9"),
    "timeout_ms zero": ({"timeout_ms": 0}, "timeout_ms 0 is not a positive integer"),
    "created_at not a number": ({"created_at": "soon"}, "created_at 'soon' is not a time"),
    "updated_at infinite": ({"updated_at": float("inf")}, "updated_at inf is not a time"),
    "created_at negative": ({"created_at": -1.0}, "created_at -1.0 is not a time"),
    "next_attempt_at infinite": (
        {"next_attempt_at": float("inf")},
        "next_attempt_at inf is not a time",
    ),
    "last_error not text": ({"last_error": 12}, "last_error is not text"),
}

FIELDS = [field.name for field in msgspec.structs.fields(Task)]


def with_fields(**changes: Any) -> tuple[Any, ...]:
    row = list(GOOD)
    for name, value in changes.items():
        row[FIELDS.index(name)] = value
    return tuple(row)


def test_a_row_as_the_service_writes_it_is_sound_and_decodes_to_its_task() -> None:
    assert sound(GOOD)
    assert decode_row(GOOD) == Task(*GOOD)


def test_text_read_as_bytes_decodes_to_the_same_task() -> None:
    as_bytes = tuple(value.encode() if isinstance(value, str) else value for value in GOOD)

    assert decode_row(as_bytes) == Task(*GOOD)


def test_json_stored_as_text_is_the_same_json() -> None:
    assert decode_row(with_fields(payload="[1]")).payload == b"[1]"


@pytest.mark.parametrize(("changes", "complaint"), BAD.values(), ids=BAD)
def test_a_row_that_is_not_sound_is_refused_saying_why(
    changes: dict[str, Any], complaint: str
) -> None:
    row = with_fields(**changes)

    assert not sound(row)
    with pytest.raises(ValueError, match="^" + complaint.replace("(", r"\(")):
        decode_row(row)


def test_an_id_is_shown_quoted_or_as_the_bytes_it_is() -> None:
    assert shown_id(b"t-1") == "'t-1'"
    assert shown_id(b"t\xff") == r"b't\xff'"
