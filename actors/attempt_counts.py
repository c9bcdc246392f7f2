"""AttemptCounts: the attempts a dispatcher handed to its workers, and how they ended."""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.stats import LineCounts, Workers
from actors.task import DONE, FAILED

if TYPE_CHECKING:
    from actors.task import Task


class AttemptCounts:
    """Since start: attempts handed to a worker, and those that ended in a retry, done or
    failed. Kept alike by the dispatcher of one process and that of a cluster, on their own
    thread only (no lock), and read into their LineCounts."""

    __slots__ = ("attempts", "done", "failed", "retries")

    def __init__(self) -> None:
        self.attempts = 0
        self.retries = 0
        self.done = 0
        self.failed = 0

    def ended(self, task: Task, retry_delay_s: float | None) -> None:
        """An attempt ended with ``task`` in this state, and a retry due if ``retry_delay_s``."""
        if retry_delay_s is not None:
            self.retries += 1
        elif task.status == DONE:
            self.done += 1
        elif task.status == FAILED:
            self.failed += 1

    def line_counts(
        self, *, waiting: int, workers: int, busy: int, queue_size: int, scheduled_max: int
    ) -> LineCounts:
        """The dispatcher's LineCounts: its line and workers now, with these counts."""
        return LineCounts(
            waiting=waiting,
            workers=Workers(total=workers, busy=busy),
            queue_size=queue_size,
            scheduled_max=scheduled_max,
            attempts=self.attempts,
            retries=self.retries,
            done=self.done,
            failed=self.failed,
        )
