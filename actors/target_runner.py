"""Attempts of tasks with a target: sent as one HTTP request from the worker's own thread,
whatever runs the other tasks' handler.

A delivery needs no child process: it runs no user code, and urllib3 lets go of the GIL while it
waits on the network, so a worker in either WORKER_MODE sends it itself and hands every other
task to its runner (a child process, or the worker's own thread).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from actors.allow_list import AllowList
from actors.attempt import TakesOver
from actors.delivery import attempt_report, deliver, new_pool
from actors.runners import StartsWarm

if TYPE_CHECKING:
    from collections.abc import Sequence

    import urllib3

    from actors.attempt import AttemptReport, AttemptRunner, Takeover
    from actors.runners import RunnerCounts, RunnerFactory
    from actors.task import Task

logger = logging.getLogger(__name__)


class Deliveries:
    """What every delivery shares: one connection pool for all workers, the allow list checked
    again before each request, the signing keys, and the largest result kept."""

    __slots__ = ("allow", "pool", "result_max_bytes", "signing_keys")

    def __init__(
        self,
        allow: AllowList,
        *,
        workers: int,
        result_max_bytes: int,
        signing_keys: Sequence[bytes] = (),
    ) -> None:
        self.allow = allow
        self.signing_keys = tuple(signing_keys)
        self.result_max_bytes = result_max_bytes
        # Connections kept per target host: one per worker, the most that can be in use.
        self.pool: urllib3.PoolManager = new_pool(workers)


class TargetRunner:
    """An AttemptRunner that delivers a task with a target itself and gives every other task to
    ``inner``."""

    __slots__ = ("_deliveries", "_inner")

    def __init__(self, inner: AttemptRunner, deliveries: Deliveries) -> None:
        self._inner = inner
        self._deliveries = deliveries

    def run(self, task: Task, timeout_ms: int) -> AttemptReport:
        if task.target is None:
            return self._inner.run(task, timeout_ms)
        settings = self._deliveries
        outcome = deliver(
            settings.pool,
            task.target,
            task.id,
            task.attempts,
            task.payload,
            timeout_ms=timeout_ms,
            result_max_bytes=settings.result_max_bytes,
            signing_keys=settings.signing_keys,
            allow=settings.allow,
        )
        return attempt_report(outcome)

    def close(self, timeout_s: float) -> None:
        self._inner.close(timeout_s)

    def take_over_with(self, takeover: Takeover) -> bool:
        """Hand ``takeover`` to the inner runner, if it runs attempts on its caller's thread."""
        return isinstance(self._inner, TakesOver) and self._inner.take_over_with(takeover)

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Wait for the inner runner to be ready (a child process loading the handler), if it
        starts warm; raise what its ``wait_ready`` raises."""
        if isinstance(self._inner, StartsWarm):
            if timeout_s is None:
                self._inner.wait_ready()
            else:
                self._inner.wait_ready(timeout_s)


def with_targets(runners: RunnerFactory, deliveries: Deliveries) -> RunnerFactory:
    """``runners``, each wrapped so that a task with a target is delivered instead."""

    def make(index: int, counts: RunnerCounts) -> AttemptRunner:
        return TargetRunner(runners(index, counts), deliveries)

    return make
