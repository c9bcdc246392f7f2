"""The task: an immutable snapshot that travels between actors, and the view handlers get."""

from __future__ import annotations

import time
from typing import Any, Final

import msgspec

from actors.target import Target

QUEUED: Final = "queued"
"""Waiting in line, or (with ``next_attempt_at`` set) waiting for its next attempt."""
RUNNING: Final = "running"
"""A worker is running an attempt."""
DONE: Final = "done"
"""An attempt succeeded. Final."""
FAILED: Final = "failed"
"""The last allowed attempt failed. Final."""
CANCELLED: Final = "cancelled"
"""Cancelled through the API while queued: it never runs again (unless retried by hand). Final."""

STATUSES: Final = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
FINAL_STATUSES: Final = frozenset({DONE, FAILED, CANCELLED})

MAX_PRIORITY: Final = 9
"""Priorities run from 0 (the default) to 9; a higher one runs first."""

NULL_PAYLOAD: Final = b"null"

DEFAULT_QUEUE: Final = "default"
"""The queue of a task that names none, and the only queue without QUEUES (actors/queues.py)."""


class Task(msgspec.Struct, frozen=True, gc=False):
    """One task's state at one moment.

    Frozen, so a snapshot can cross actor boundaries without copying: every change makes a new
    one with ``msgspec.structs.replace``. ``gc=False`` because a task never holds a reference
    cycle, and skipping the collector's header saves 16 bytes on each of a million stored tasks.
    The payload is kept as the JSON text the client sent (validated on the way in), so it can
    never be mutated through a shared reference and is written back out verbatim. Times are
    seconds since the epoch; the API renders them as RFC 3339.
    """

    id: str
    payload: bytes
    max_retries: int
    status: str
    attempts: int
    created_at: float
    updated_at: float
    last_error: str | None = None
    next_attempt_at: float | None = None
    # Last, so a store written before priorities existed (schema 1) gains it as a new column.
    priority: int = 0
    # Schema 3: this task's own attempt time limit (None: the service's TASK_TIMEOUT_MS), and
    # what its handler returned, as JSON text (None until an attempt returns something).
    timeout_ms: int | None = None
    result: bytes | None = None
    # Schema 4: where attempts are sent instead of the handler (None: the handler runs them).
    target: Target | None = None
    # Schema 5: the queue whose line and workers run it.
    queue: str = DEFAULT_QUEUE

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


def new_task(
    task_id: str,
    payload: bytes,
    max_retries: int,
    now: float | None = None,
    *,
    priority: int = 0,
    delay_s: float = 0.0,
    timeout_ms: int | None = None,
    target: Target | None = None,
    queue: str = DEFAULT_QUEUE,
) -> Task:
    """A freshly accepted task: queued, no attempts yet; with ``delay_s``, due that much later."""
    created = time.time() if now is None else now
    return Task(
        id=task_id,
        payload=payload,
        max_retries=max_retries,
        status=QUEUED,
        attempts=0,
        created_at=created,
        updated_at=created,
        next_attempt_at=created + delay_s if delay_s > 0 else None,
        priority=priority,
        timeout_ms=timeout_ms,
        target=target,
        queue=queue,
    )


class TaskView(msgspec.Struct, frozen=True):
    """What a handler sees of the task it runs: read-only attributes.

    ``payload`` is decoded afresh for each attempt, so a handler that mutates it changes nothing
    stored. ``attempts`` is the number of this attempt: 1 on the first run.
    """

    id: str
    payload: Any
    max_retries: int
    attempts: int


def view_of(task: Task) -> TaskView:
    return TaskView(
        id=task.id,
        payload=msgspec.json.decode(task.payload),
        max_retries=task.max_retries,
        attempts=task.attempts,
    )


def log_fields(task: Task) -> dict[str, object]:
    """The ``extra`` of a log line about ``task``: its id and attempt, as fields of their own
    (the JSON log format writes them out; api/logs.py)."""
    return {"task_id": task.id, "attempt": task.attempts}
