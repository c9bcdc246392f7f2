"""AttemptObserver: what a worker tells an optional listener (metrics) when an attempt ends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, Protocol

if TYPE_CHECKING:
    from actors.task import Task

AttemptOutcome = Literal["done", "retry", "failed"]

OUTCOMES: Final[tuple[AttemptOutcome, ...]] = ("done", "retry", "failed")
"""How an attempt can end: the task is done, waits for a retry, or has failed for good."""


class AttemptObserver(Protocol):
    """Called on the worker's thread after every attempt, before the worker reports it.

    It must be quick and thread-safe (every worker calls it), and it should not raise: the
    worker logs what it raises and carries on.
    """

    def attempt_ended(self, task: Task, outcome: AttemptOutcome, duration_s: float) -> None:
        """``task`` as the attempt left it; ``duration_s`` the attempt's time on the worker."""
