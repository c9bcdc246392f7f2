"""Named queues: what QUEUES declares, and each queue's own line, workers and pace."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec

from actors.line import WaitingLine
from actors.task import DEFAULT_QUEUE
from actors.token_bucket import TokenBucket

if TYPE_CHECKING:
    from collections.abc import Sequence

QUEUE_NAME: Final = re.compile(r"[a-z0-9_-]{1,64}")
"""What a queue's name may be: 1 to 64 characters of a-z, 0-9, _ and -."""

QUEUES_SYNTAX: Final = (
    "name:workers[:max_per_second], comma-separated (e.g. default:4,emails:2:5), each name "
    "1-64 characters of a-z 0-9 _ -, used once, with at least 1 worker and a rate above 0"
)


class InvalidQueues(ValueError):
    """A QUEUES value that does not declare queues; the message says what is wrong."""


class QueueSpec(NamedTuple):
    """One queue as QUEUES declares it."""

    name: str
    workers: int
    max_per_second: float | None = None
    """Most attempts started per second (a token bucket, one second's burst); None: no limit."""


class QueueInfo(msgspec.Struct, frozen=True):
    """A queue as ``GET /queues`` shows it."""

    name: str
    workers: int
    busy: int
    """Workers running an attempt of this queue now."""
    waiting: int
    """Tasks in this queue's line, due and waiting for a worker."""
    scheduled: int
    """Tasks of this queue waiting for their time (delayed, or a retry's)."""
    paused: bool
    max_per_second: float | None


def default_queues(workers: int) -> tuple[QueueSpec, ...]:
    """The queues without QUEUES: ``default``, with ``workers`` workers."""
    return (QueueSpec(DEFAULT_QUEUE, workers),)


def parse_queues(text: str, max_workers: int = 1024) -> tuple[QueueSpec, ...]:
    """The queues ``text`` declares (``name:workers[:max_per_second]``, comma-separated), or
    InvalidQueues naming the first entry that is wrong."""
    specs: list[QueueSpec] = []
    seen: set[str] = set()
    for entry in text.split(","):
        entry = entry.strip()
        parts = entry.split(":")
        if not entry or len(parts) not in (2, 3):
            raise InvalidQueues(f"{entry!r} is not name:workers[:max_per_second]")
        name, workers_text = parts[0].strip(), parts[1].strip()
        if not QUEUE_NAME.fullmatch(name):
            raise InvalidQueues(f"queue name {name!r} is not 1-64 characters of a-z 0-9 _ -")
        if name in seen:
            raise InvalidQueues(f"queue {name!r} is declared twice")
        seen.add(name)
        if not workers_text.isdigit() or not 1 <= int(workers_text) <= max_workers:
            raise InvalidQueues(
                f"queue {name!r}: workers {workers_text!r} is not a whole number from 1 to "
                f"{max_workers}"
            )
        rate = _rate(name, parts[2].strip()) if len(parts) == 3 else None
        specs.append(QueueSpec(name, int(workers_text), rate))
    if sum(spec.workers for spec in specs) > max_workers:
        raise InvalidQueues(f"the queues' workers add up to more than {max_workers}")
    return tuple(specs)


def _rate(name: str, text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    # Below one a second is allowed (0.5: one every two seconds); NaN and inf are not.
    if not 0 < rate <= 1_000_000 or text.lower() in ("nan", "inf", "infinity"):
        raise InvalidQueues(
            f"queue {name!r}: max_per_second {text!r} is not a number above 0 (up to 1000000)"
        )
    return rate


class QueueState:
    """One queue inside the dispatcher: its line, its workers, its pace and whether it is paused.

    Used only on the dispatcher's thread. Worker numbers are the dispatcher's, across all queues.
    """

    __slots__ = (
        "bucket",
        "idle",
        "line",
        "paused",
        "reserved",
        "scheduled",
        "spec",
        "workers",
    )

    def __init__(
        self, spec: QueueSpec, workers: Sequence[int], *, paused: bool = False, now: float = 0.0
    ) -> None:
        self.spec = spec
        self.workers = tuple(workers)
        self.line = WaitingLine()
        self.idle = list(reversed(self.workers))  # popped from the end: the first worker first
        # Places held for tasks of this queue the repository is storing right now.
        self.reserved = 0
        # Tasks of this queue waiting with the retry actor for their time.
        self.scheduled = 0
        self.paused = paused
        rate = spec.max_per_second
        self.bucket = None if rate is None else TokenBucket(rate, now=now)

    def occupied(self) -> int:
        # Reserved tasks go straight to idle workers when stored, so they only count as waiting
        # beyond the idle workers. (A non-empty line means no worker is idle, unless paused or
        # out of tokens: then the idle ones are no room.)
        idle = 0 if self.paused or self.bucket is not None else len(self.idle)
        return len(self.line) + self.reserved - idle

    def info(self) -> QueueInfo:
        spec = self.spec
        return QueueInfo(
            name=spec.name,
            workers=spec.workers,
            busy=spec.workers - len(self.idle),
            waiting=len(self.line),
            scheduled=self.scheduled,
            paused=self.paused,
            max_per_second=spec.max_per_second,
        )
