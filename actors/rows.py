"""What a row of the store's ``tasks`` table must hold to be served: checked once, at load.

Bad stored data is never served: a row whose text is not UTF-8, whose payload or result is not
JSON, or whose state the service could not have made (an unknown status, negative attempts...)
is set aside by the store (actors/sqlite_store.py) instead of being loaded.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec

from actors.queues import QUEUE_NAME
from actors.target import decode_stored, encode_stored
from actors.task import MAX_PRIORITY, STATUSES, Task

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from actors.target import Target

T = TypeVar("T")

_STATUS_SET: Final = frozenset(STATUSES)
_QUEUE_NAME: Final = QUEUE_NAME.fullmatch
_SYNTAX: Final = msgspec.json.Decoder(msgspec.Raw)
"""Checks JSON syntax without building the value (but not that strings are UTF-8)."""


def task_if_sound(row: Sequence[Any]) -> Task | None:
    """The Task a row read with text as str holds, if it is a task as the service writes them,
    else None: the fast, silent check of every row at start, each value read once. It never
    passes a row that decode_row, which says what is wrong with one, would refuse."""
    (
        task_id,
        payload,
        max_retries,
        status,
        attempts,
        created_at,
        updated_at,
        last_error,
        next_attempt_at,
        priority,
        timeout_ms,
        result,
        target,
        queue,
    ) = row
    try:
        payload.isascii() or payload.decode()  # UTF-8, or UnicodeDecodeError
        _SYNTAX.decode(payload)
        if result is not None:
            result.isascii() or result.decode()
            _SYNTAX.decode(result)
        stored_target = None if target is None else decode_stored(target)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, AttributeError, TypeError):
        return None
    sound = (
        type(task_id) is str
        and task_id != ""
        and type(payload) is bytes
        and type(max_retries) is int
        and max_retries >= 0
        and status in _STATUS_SET
        and type(attempts) is int
        and attempts >= 0
        and _is_time(created_at)
        and _is_time(updated_at)
        and (last_error is None or type(last_error) is str)
        and (next_attempt_at is None or _is_time(next_attempt_at))
        and type(priority) is int
        and 0 <= priority <= MAX_PRIORITY
        and (timeout_ms is None or (type(timeout_ms) is int and timeout_ms > 0))
        and (result is None or type(result) is bytes)
        and (target is None or type(target) is bytes)
        and type(queue) is str
        and _QUEUE_NAME(queue) is not None
    )
    if not sound:
        return None
    task = Task(*row)
    return task if stored_target is None else msgspec.structs.replace(task, target=stored_target)


def sound(row: Sequence[Any]) -> bool:
    """Whether ``task_if_sound`` takes the row."""
    return task_if_sound(row) is not None


def _is_time(value: object) -> bool:
    # The fast side of _time below: a float as the store writes it, else decode_row decides.
    return type(value) is float and math.isfinite(value) and value >= 0


_astuple: Final = msgspec.structs.astuple


def row_of(task: Task) -> tuple[Any, ...]:
    """The row that keeps ``task``: its fields in order, its target as JSON text."""
    row = _astuple(task)
    if task.target is None:
        return row
    return (*row[:-2], encode_stored(task.target), row[-1])


def decode_row(row: Sequence[object]) -> Task:
    """The Task a row of ``tasks`` holds (text as str or bytes), or ValueError saying what is
    wrong.

    Everything a row holds is checked before it is served: text is UTF-8, the payload and the
    result are JSON, and the state is one the service can have made.
    """
    (
        task_id,
        payload,
        max_retries,
        status,
        attempts,
        created_at,
        updated_at,
        last_error,
        next_attempt_at,
        priority,
        timeout_ms,
        result,
        target,
        queue,
    ) = row
    status_text = _text(status, "status")
    if status_text not in STATUSES:
        raise ValueError(f"status {status_text!r} is not one of {', '.join(STATUSES)}")
    return Task(
        id=_text(task_id, "id"),
        payload=_json(payload, "payload"),
        max_retries=_count(max_retries, "max_retries"),
        status=status_text,
        attempts=_count(attempts, "attempts"),
        created_at=_time(created_at, "created_at"),
        updated_at=_time(updated_at, "updated_at"),
        last_error=_optional(_text, last_error, "last_error"),
        next_attempt_at=_optional(_time, next_attempt_at, "next_attempt_at"),
        priority=_bounded(priority, "priority", MAX_PRIORITY),
        timeout_ms=_optional(_positive, timeout_ms, "timeout_ms"),
        result=_optional(_json, result, "result"),
        target=_optional(_target, target, "target"),
        queue=_queue(queue, "queue"),
    )


def _target(value: object, name: str) -> Target:
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise ValueError(f"{name} is not JSON text")
    try:
        return decode_stored(value)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{name} is not a target ({exc})") from None


def _queue(value: object, name: str) -> str:
    text = _text(value, name)
    if _QUEUE_NAME(text) is None:
        raise ValueError(f"{name} {text!r} is not a queue name (1-64 characters of a-z 0-9 _ -)")
    return text


def _optional(check: Callable[[object, str], T], value: object, name: str) -> T | None:
    return None if value is None else check(value, name)


def _text(value: object, name: str) -> str:
    if isinstance(value, str):
        text = value
    elif not isinstance(value, bytes):
        raise ValueError(f"{name} is not text")
    else:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{name} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text and name == "id":
        raise ValueError("id is empty")
    return text


def _json(value: object, name: str) -> bytes:
    if isinstance(value, str):  # JSON stored as text rather than as a blob: the same JSON
        value = value.encode()
    if not isinstance(value, bytes):
        raise ValueError(f"{name} is not JSON text")
    try:
        msgspec.json.decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name} is not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{name} is nested too deep") from None
    return value


def _count(value: object, name: str) -> int:
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} {value!r} is not a count (an integer, 0 or more)")
    return value


def _bounded(value: object, name: str, most: int) -> int:
    if not isinstance(value, int) or not 0 <= value <= most:
        raise ValueError(f"{name} {value!r} is not an integer from 0 to {most}")
    return value


def _positive(value: object, name: str) -> int:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} {value!r} is not a positive integer")
    return value


def _time(value: object, name: str) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} {value!r} is not a time")
    return float(value)


def shown_id(task_id: object) -> str:
    """The id as a log line can show it: quoted text, or the bytes that are not."""
    if isinstance(task_id, bytes):
        with contextlib.suppress(UnicodeDecodeError):
            return repr(task_id.decode("utf-8"))
    return repr(task_id)
