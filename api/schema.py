"""The JSON the API reads and writes, as msgspec structs with prebuilt decoders and encoders."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Final

import msgspec
from msgspec import UNSET, Meta, Raw, UnsetType

from actors.target import TargetBody, describe_target_error, redacted
from actors.task import DEFAULT_QUEUE, MAX_PRIORITY, NULL_PAYLOAD

if TYPE_CHECKING:
    from actors.task import Task

MAX_ID_LENGTH: Final = 256
MAX_RETRIES_LIMIT: Final = 100
DEFAULT_MAX_RETRIES: Final = 3
MAX_DELAY_MS: Final = 30 * 86_400_000
"""Thirty days: the longest a task may be delayed."""
MAX_BATCH: Final = 1000
"""The most tasks one ``POST /enqueue/batch`` may carry."""
MIN_TIMEOUT_MS: Final = 100
MAX_TIMEOUT_MS: Final = 86_400_000
"""One day: the longest time limit a task may set for each of its attempts."""
UNKNOWN_QUEUE: Final = "unknown queue"
"""The 400 for a task naming a queue QUEUES does not declare."""

TaskId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="1 to 256 characters, no control characters (U+0000-U+001F, U+007F).",
    ),
]
MaxRetries = Annotated[
    int,
    Meta(ge=0, le=MAX_RETRIES_LIMIT, description="Retries after the first attempt."),
]
Priority = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_PRIORITY,
        description="0 to 9; a higher priority runs first, first in first out within one.",
    ),
]
DelayMs = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_DELAY_MS,
        description="Milliseconds before the task may run, up to 30 days; 0 runs it at once.",
    ),
]
TimeoutMs = Annotated[
    int,
    Meta(
        ge=MIN_TIMEOUT_MS,
        le=MAX_TIMEOUT_MS,
        description=(
            "Each attempt's time limit in milliseconds, 100 to 86400000 (one day); without it,"
            " the service's TASK_TIMEOUT_MS."
        ),
    ),
]


QueueName = Annotated[
    str,
    Meta(
        pattern=r"^[a-z0-9_-]{1,64}$",
        description="The queue that runs the task, one QUEUES declares; default: default.",
    ),
]


class TaskFields(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What a new task is made of, but its id and its delay: the enqueue body without them
    (``EnqueueRequest``), and what a schedule's ``task`` holds. Any field not named here is
    refused."""

    # Kept as the client's JSON text: validated, never turned into Python objects on intake.
    payload: Raw = Raw(NULL_PAYLOAD)
    max_retries: MaxRetries = DEFAULT_MAX_RETRIES
    priority: Priority = 0
    # Checked against the declared queues by enqueue's task_of (400 unknown queue).
    queue: QueueName = DEFAULT_QUEUE
    # UNSET rather than None: `null` is refused like any other value that is not an integer.
    timeout_ms: TimeoutMs | UnsetType = UNSET
    # Where attempts are sent instead of TASK_HANDLER; checked further by enqueue's task_of.
    # UNSET, as timeout_ms: `null` is refused rather than read as "no target".
    target: TargetBody | UnsetType = UNSET


class EnqueueRequest(TaskFields, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """The body of ``POST /enqueue``, and each item of a batch: a task's fields, its id and
    its delay. Any field not named here is refused."""

    id: TaskId
    delay_ms: DelayMs = 0


BatchRequest = Annotated[
    list[EnqueueRequest],
    Meta(min_length=1, max_length=MAX_BATCH, description="1 to 1000 tasks, accepted together."),
]


class TaskBody(msgspec.Struct, frozen=True):
    """A task as the API shows it."""

    id: str
    payload: Raw
    max_retries: int
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    priority: int
    timeout_ms: Annotated[
        int | None,
        Meta(
            description=(
                "The task's own time limit for each attempt, in milliseconds; null when the"
                " service's TASK_TIMEOUT_MS applies."
            )
        ),
    ]
    result: Annotated[
        Raw | None,
        Meta(
            description=(
                "What the handler returned, as JSON; null until an attempt returns something"
                " other than None, or when the result was dropped (last_error says why)."
            )
        ),
    ]
    target: Annotated[
        TargetBody | None,
        Meta(
            description=(
                "Where each attempt is sent instead of the handler: the URL, the method and"
                ' the header names, every header value shown as "***"; null when none.'
            )
        ),
    ]
    # Always sent (the encoder writes defaults too).
    queue: Annotated[str, Meta(description="The queue whose workers run the task.")] = DEFAULT_QUEUE


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error response: ``{"error": "<human-readable message>"}``."""

    error: str


class ItemErrorBody(msgspec.Struct, frozen=True):
    """A batch refused for one of its tasks: the message, and that task's position (from 0)."""

    error: str
    index: int


def task_body(task: Task) -> TaskBody:
    """The wire form of a stored task: RFC 3339 UTC times, the payload as sent, the result as
    stored."""
    created_at = datetime.fromtimestamp(task.created_at, UTC)
    return TaskBody(
        id=task.id,
        payload=Raw(task.payload),
        max_retries=task.max_retries,
        status=task.status,
        attempts=task.attempts,
        last_error=task.last_error,
        created_at=created_at,
        # A new task's two times are the same: convert once (every 201 takes this path).
        updated_at=(
            created_at
            if task.updated_at == task.created_at
            else datetime.fromtimestamp(task.updated_at, UTC)
        ),
        next_attempt_at=(
            None
            if task.next_attempt_at is None
            else datetime.fromtimestamp(task.next_attempt_at, UTC)
        ),
        priority=task.priority,
        timeout_ms=task.timeout_ms,
        result=None if task.result is None else Raw(task.result),
        target=None if task.target is None else redacted(task.target),
        queue=task.queue,
    )


enqueue_decoder: Final = msgspec.json.Decoder(EnqueueRequest)
batch_decoder: Final = msgspec.json.Decoder(BatchRequest)
encoder: Final = msgspec.json.Encoder()


class InvalidBody(ValueError):
    """The body is not something ``POST /enqueue`` accepts; the message says why, and for a
    batch ``index`` says which task (None when the body as a whole is wrong)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


# msgspec's messages end with where in the document the problem is; these fields get a
# sentence of their own, the rest (unknown or missing fields) are clear as msgspec says them.
_FIELD_RULES: Final = {
    "id": f"id must be a string of 1 to {MAX_ID_LENGTH} characters without control characters",
    "max_retries": f"max_retries must be an integer from 0 to {MAX_RETRIES_LIMIT}",
    "priority": f"priority must be an integer from 0 to {MAX_PRIORITY}",
    "delay_ms": f"delay_ms must be an integer from 0 to {MAX_DELAY_MS} (30 days)",
    "timeout_ms": f"timeout_ms must be an integer from {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS}",
    "queue": UNKNOWN_QUEUE,
}
_AT_FIELD: Final = re.compile(r" - at `\$\.(\w+)`$")
_AT_ITEM: Final = re.compile(r" - at `\$\[(\d+)\](?:\.(\w+))?`$")
_ITEM: Final = re.compile(r" - at `\$\[(\d+)\]")
_BATCH_SHAPE: Final = f"the body must be a JSON array of 1 to {MAX_BATCH} task objects"


def decode_enqueue(body: bytes) -> EnqueueRequest:
    """Decode and validate an enqueue body, or raise InvalidBody with a message for the client."""
    try:
        return enqueue_decoder.decode(body)
    except msgspec.ValidationError as exc:
        # The typed decoder stops at the first value of the wrong type, before it has read the
        # rest: a body like `[1, 2` is wrong in shape *and* not JSON, and the second matters more.
        _check_syntax(body)
        raise InvalidBody(_describe(str(exc))) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidBody("invalid JSON") from None
    except RecursionError:
        raise InvalidBody("nesting too deep") from None


def decode_batch(body: bytes) -> list[EnqueueRequest]:
    """Decode and validate a batch body; InvalidBody names the first invalid task by index."""
    try:
        return batch_decoder.decode(body)
    except msgspec.ValidationError as exc:
        _check_syntax(body)
        message = str(exc)
        about_target = describe_target_error(message)
        item = _ITEM.search(message)
        if about_target is not None and item is not None:
            raise InvalidBody(about_target, int(item.group(1))) from None
        match = _AT_ITEM.search(message)
        if match is None:  # the body itself: not an array, empty, or too long
            raise InvalidBody(_BATCH_SHAPE) from None
        index, field = int(match.group(1)), match.group(2)
        if field in _FIELD_RULES:
            reason = _FIELD_RULES[field]
        elif field is None and message.startswith("Expected `object`"):
            reason = "each task must be a JSON object"
        else:
            reason = message[: match.start()]
        raise InvalidBody(reason, index) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidBody("invalid JSON") from None
    except RecursionError:
        raise InvalidBody("nesting too deep") from None


def _check_syntax(body: bytes) -> None:
    """Raise InvalidBody if ``body`` is not JSON at all, or nested too deep to read."""
    try:
        msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        # Malformed JSON, invalid UTF-8, an empty or truncated body, lone surrogate escapes.
        raise InvalidBody("invalid JSON") from None
    except RecursionError:
        # msgspec refuses nesting deeper than the interpreter's recursion limit (about 1000).
        raise InvalidBody("nesting too deep") from None


def _describe(message: str) -> str:
    about_target = describe_target_error(message)
    if about_target is not None:
        return about_target
    match = _AT_FIELD.search(message)
    if match is not None and match.group(1) in _FIELD_RULES:
        return _FIELD_RULES[match.group(1)]
    if message.startswith("Expected `object`"):
        return "the body must be a JSON object"
    return message
