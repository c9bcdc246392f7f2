"""ThreadRunner: a worker's attempts on a thread of the service's own process (WORKER_MODE=thread).

The handler runs exactly as in a worker process (``actors.child.run_attempt``), so both modes
report the same behaviour the same way; only where it runs, and what a timeout can do, differ.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Final

from actors.attempt import AttemptReport
from actors.child import Attempt, run_attempt
from actors.task import log_fields

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.task import Task
    from actors.worker import Handler

logger = logging.getLogger(__name__)

_STOP: Final = None


class _Handoff:
    """One attempt handed to the handler thread, and its report once the handler is done."""

    __slots__ = ("_ended", "report", "task")

    def __init__(self, task: Task) -> None:
        self.task = task
        self.report: AttemptReport | None = None
        self._ended = threading.Lock()
        self._ended.acquire()

    def end(self, report: AttemptReport) -> None:
        self.report = report
        self._ended.release()

    def wait(self, timeout_s: float) -> AttemptReport | None:
        """The report, or None if ``timeout_s`` passed first."""
        if self._ended.acquire(timeout=max(0.0, timeout_s)):
            return self.report
        return None


class ThreadRunner:
    """Runs one worker's attempts, one at a time, on a handler thread of its own.

    The worker waits for each report until the attempt's deadline, never longer. A handler
    still running then cannot be stopped (Python cannot stop a thread): its thread is abandoned
    to finish or hang on its own (a daemon: it never holds the process open), the abandonment
    is logged and counted, and a fresh thread takes its place for the next attempt.
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
        self._name = name
        self._generation = 0
        self._inbox: queue.SimpleQueue[_Handoff | None] = queue.SimpleQueue()
        self._thread = self._start_thread()

    def run(self, task: Task, timeout_ms: int) -> AttemptReport:
        deadline = time.monotonic() + timeout_ms / 1000
        attempt = _Handoff(task)
        self._inbox.put(attempt)
        report = attempt.wait(deadline - time.monotonic())
        if report is None:
            report = attempt.wait(0)  # it may have ended just as the wait gave up
        if report is not None:
            return report
        self._abandon(task, timeout_ms)
        return AttemptReport("timed_out", error=f"timed out after {timeout_ms} ms")

    def close(self, timeout_s: float) -> None:
        """Let the handler thread end once it is idle; one still in a handler is left to it."""
        self._inbox.put(_STOP)
        self._thread.join(max(0.0, timeout_s))

    def _abandon(self, task: Task, timeout_ms: int) -> None:
        stuck = self._thread
        # If the handler ever returns, its thread finds this and ends: nobody waits on it now.
        self._inbox.put(_STOP)
        self._inbox = queue.SimpleQueue()
        self._thread = self._start_thread()
        logger.warning(
            "task %r attempt %d ran past its %d ms: thread %s abandoned, %s takes its place",
            task.id,
            task.attempts,
            timeout_ms,
            stuck.name,
            self._thread.name,
            extra=log_fields(task),
        )
        self._on_abandoned()

    def _start_thread(self) -> threading.Thread:
        self._generation += 1
        thread = threading.Thread(
            target=self._serve,
            args=(self._inbox,),
            name=f"{self._name}-{self._generation}",
            daemon=True,  # an abandoned handler must never keep the process alive
        )
        thread.start()
        return thread

    def _serve(self, inbox: queue.SimpleQueue[_Handoff | None]) -> None:
        while (attempt := inbox.get()) is not _STOP:
            task = attempt.task
            sent = Attempt(task.id, task.payload, task.max_retries, task.attempts)
            attempt.end(run_attempt(self._handler, sent, self._result_max_bytes))
