"""ThreadRunner: a worker's attempts on the worker's own thread (WORKER_MODE=thread), watched.

The handler runs exactly as in a worker process (``actors.child.run_attempt``), so both modes
report the same behaviour the same way; only where it runs, and what a timeout can do, differ.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from actors.alarm import Alarm
from actors.attempt import AttemptReport, Overran
from actors.child import Attempt, run_attempt
from actors.task import log_fields

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.attempt import Takeover
    from actors.task import Task
    from actors.worker import Handler

logger = logging.getLogger(__name__)


class _Running:
    """The attempt a runner's thread is in now."""

    __slots__ = ("deadline", "task", "thread", "timeout_ms")

    def __init__(self, task: Task, timeout_ms: int) -> None:
        self.task = task
        self.timeout_ms = timeout_ms
        self.deadline = time.monotonic() + timeout_ms / 1000
        self.thread = threading.current_thread()


class ThreadRunner:
    """Runs one worker's attempts, one at a time, inline on the thread that calls ``run``.

    No hand-off to another thread and back per attempt: a watchdog (one alarm thread) watches
    the deadline instead. It is set only when an attempt's deadline comes before the one it
    already waits for, so an attempt that ends in time costs it nothing; when it rings early
    it looks at the attempt running now and waits for that one's deadline.

    A handler still running at its deadline cannot be stopped (Python cannot stop a thread):
    its thread is abandoned to finish or hang on its own, the abandonment is logged and
    counted, and the worker's ``takeover`` (``take_over_with``) gets the attempt's timed-out
    report on the watchdog's thread, to give the worker another thread. If the handler ever
    returns, ``run`` raises Overran on the abandoned thread instead of reporting.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        result_max_bytes: int,
        on_abandoned: Callable[[], None] = lambda: None,
        name: str = "handler",
    ) -> None:
        self._handler = handler
        self._result_max_bytes = result_max_bytes
        self._on_abandoned = on_abandoned
        # Guards the three fields below, shared by the running thread and the watchdog.
        self._lock = threading.Lock()
        self._running: _Running | None = None
        self._watched_until: float | None = None
        self._takeover: Takeover | None = None
        self._watchdog = Alarm(self._ring, name=f"{name}-watchdog")

    def take_over_with(self, takeover: Takeover) -> bool:
        """What to do with the report of an attempt whose thread is abandoned."""
        with self._lock:
            self._takeover = takeover
        return True

    def run(self, task: Task, timeout_ms: int) -> AttemptReport:
        running = _Running(task, timeout_ms)
        with self._lock:
            self._running = running
            if self._watched_until is None or running.deadline < self._watched_until:
                self._watched_until = running.deadline
                self._watchdog.set(running.deadline)
        sent = Attempt(task.id, task.payload, task.max_retries, task.attempts)
        report = run_attempt(self._handler, sent, self._result_max_bytes)
        with self._lock:
            if self._running is running:
                self._running = None
                return report
        raise Overran(task.id)

    def close(self, timeout_s: float) -> None:
        """Stop the watchdog; a handler still running is left to its thread."""
        self._watchdog.close(timeout_s)

    def _ring(self) -> None:
        # On the watchdog's thread.
        with self._lock:
            self._watched_until = None
            running = self._running
            if running is None:
                return
            if time.monotonic() < running.deadline:
                self._watched_until = running.deadline
                self._watchdog.set(running.deadline)
                return
            self._running = None
            takeover = self._takeover
        task = running.task
        logger.warning(
            "task %r attempt %d ran past its %d ms: thread %s abandoned, another takes its place",
            task.id,
            task.attempts,
            running.timeout_ms,
            running.thread.name,
            extra=log_fields(task),
        )
        self._on_abandoned()
        report = AttemptReport("timed_out", error=f"timed out after {running.timeout_ms} ms")
        if takeover is None:
            logger.error("task %r: nobody takes over from the abandoned thread", task.id)
            return
        takeover(report)
