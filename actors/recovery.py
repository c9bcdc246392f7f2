"""Recovery: what becomes, at start, of each task a durable store still holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec

from actors.backoff import compute_backoff_ms, should_retry
from actors.task import FAILED, QUEUED, RUNNING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from actors.backoff import Uniform
    from actors.task import Task
    from actors.worker import RetryPolicy

INTERRUPTED: Final = "interrupted"
"""``last_error`` of an attempt that was still running when the process died."""

replace = msgspec.structs.replace


class RecoveryPlan(NamedTuple):
    """Where each unfinished task goes; done and failed tasks stay as they are, never run."""

    line: tuple[Task, ...]
    """Queued tasks: back in line, ahead of new work and past its bound, in creation order."""
    retries: tuple[tuple[Task, float], ...]
    """Tasks waiting for their next attempt, each with the seconds until it is due (0 if past)."""
    saves: tuple[Task, ...]
    """New states to store: each interrupted attempt counted as a failed one."""
    waiting: int
    """Tasks found waiting for their next attempt."""
    interrupted: int
    """Tasks found running: their attempt was cut off by the end of the process."""
    interrupted_failed: int
    """Of those, the ones that had no retry left and are failed now."""
    finished: int
    """Tasks already done or failed: left alone."""

    def describe(self) -> str:
        """The one log line a start with a store writes."""
        total = len(self.line) + self.waiting + self.interrupted + self.finished
        retried = self.interrupted - self.interrupted_failed
        return (
            f"recovered {total} task(s) from the store: {len(self.line)} queued, {self.waiting} "
            f"waiting for their time, {self.interrupted} interrupted ({retried} to retry, "
            f"{self.interrupted_failed} out of retries), {self.finished} finished"
        )


def plan_recovery(
    stored: Iterable[Task], *, now: float, policy: RetryPolicy, uniform: Uniform
) -> RecoveryPlan:
    """Apply the recovery rules to every stored task, in creation order.

    A task found running was cut off mid-attempt: that attempt counts as failed with
    ``last_error`` "interrupted", and it is retried with the usual backoff if it has retries
    left, else it is failed. Since its attempt may have done part of its work, a task runs at
    least once, and an attempt a crash interrupts runs again.
    """
    line: list[Task] = []
    retries: list[tuple[Task, float]] = []
    saves: list[Task] = []
    waiting = interrupted = interrupted_failed = finished = 0
    for task in stored:
        if task.is_final:
            finished += 1
        elif task.status == QUEUED and task.next_attempt_at is None:
            line.append(task)
        elif task.status == QUEUED and task.next_attempt_at is not None:
            waiting += 1
            retries.append((task, max(0.0, task.next_attempt_at - now)))
        elif task.status == RUNNING:
            interrupted += 1
            after = after_interruption(task, now, policy, uniform)
            saves.append(after)
            if after.status == FAILED:
                interrupted_failed += 1
            else:
                assert after.next_attempt_at is not None
                retries.append((after, after.next_attempt_at - now))
        else:  # the store checks statuses as it loads them
            raise ValueError(f"task {task.id!r} has an unknown status {task.status!r}")
    return RecoveryPlan(
        line=tuple(line),
        retries=tuple(retries),
        saves=tuple(saves),
        waiting=waiting,
        interrupted=interrupted,
        interrupted_failed=interrupted_failed,
        finished=finished,
    )


def after_interruption(task: Task, now: float, policy: RetryPolicy, uniform: Uniform) -> Task:
    """``task``, whose attempt was cut off, with that attempt counted as failed ("interrupted"):
    waiting for a retry with backoff, or failed if it has none left. Also the rule for an
    attempt whose lease expired in a cluster (actors/leases.py)."""
    if not should_retry(task.attempts, task.max_retries):
        return replace(task, status=FAILED, last_error=INTERRUPTED, updated_at=now)
    delay_ms = compute_backoff_ms(
        task.attempts, base_ms=policy.base_ms, max_ms=policy.max_ms, uniform=uniform
    )
    return replace(
        task,
        status=QUEUED,
        last_error=INTERRUPTED,
        updated_at=now,
        next_attempt_at=now + delay_ms / 1000,
    )
