"""What the actors answer to questions asked from outside them."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from actors.task import Task


class Admission(enum.Enum):
    """How an enqueue ended."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    QUEUE_FULL = "queue_full"
    SHUTTING_DOWN = "shutting_down"
    TOO_MANY_SCHEDULED = "too_many_scheduled"
    """A delayed task, refused: ``scheduled_max`` tasks already wait for their time."""
    STORE_UNAVAILABLE = "store_unavailable"
    """The durable store cannot be written: nothing new can be promised until it can."""


class BatchAdmission(NamedTuple):
    """How a batch enqueue ended: every task accepted, or none, and which one was refused."""

    admission: Admission
    position: int | None = None
    """With DUPLICATE: the position of the first task whose id is taken (or repeated)."""


class Outcome(NamedTuple):
    """How an action on one task (cancel, retry by hand, delete) ended.

    ``task`` is the task's state after the action, or None if the id is unknown; ``conflict``
    says why a known task was left as it is (409); ``refused`` is the line's refusal (503).
    """

    task: Task | None
    conflict: str | None = None
    refused: Admission | None = None


class Readiness(enum.Enum):
    """Whether a new task would be admitted now, as ``GET /readyz`` reports it."""

    READY = "ready"
    FULL = "full"
    SHUTTING_DOWN = "shutting down"
    TOO_MANY_SCHEDULED = "too many scheduled tasks"
    STORE_UNAVAILABLE = "store unavailable"


class Stock(NamedTuple):
    """What the repository holds as the system stops: the shutdown summary's numbers, all
    read from one place, so a task moving between actors at that moment is still counted."""

    counts: dict[str, int]
    """Tasks per status."""
    in_line: int
    """Queued tasks due now: waiting in line, or on their way into it."""
    awaiting: int
    """Queued tasks waiting for their next attempt's time: a retry's, or a delayed task's."""
