"""ThreadRunner: a worker's attempts on a thread of the service's own process (WORKER_MODE=thread).

Also ``run_handler``, the one place that turns a handler's behaviour into an AttemptReport,
wherever the handler runs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from typing import TYPE_CHECKING, Final

from actors.attempt import AttemptReport, PermanentError, describe_error, encode_result
from actors.task import log_fields, view_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.task import Task
    from actors.worker import Handler

logger = logging.getLogger(__name__)

MAX_FRAMES: Final = 200
"""The innermost frames kept of each exception in a traceback: a deep recursion stays readable."""

_CAUSE: Final = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT: Final = "\nDuring handling of the above exception, another exception occurred:\n\n"
_HEADER: Final = "Traceback (most recent call last):\n"
_STOP: Final = None


def run_handler(handler: Handler, task: Task, result_max_bytes: int) -> AttemptReport:
    """Run ``handler`` once on ``task`` and say how it went, as both runners report it."""
    try:
        value = handler(view_of(task))
    except PermanentError as exc:
        return AttemptReport(
            "permanent", error=describe_permanent(exc), traceback=format_traceback(exc)
        )
    except BaseException as exc:  # SystemExit and the like fail the attempt, not the runner
        return AttemptReport("raised", error=describe_error(exc), traceback=format_traceback(exc))
    try:
        result, dropped = encode_result(value, result_max_bytes)
    except Exception:  # a value whose encoding raises something unforeseen
        result, dropped = None, f"result dropped: not JSON-encodable ({type(value).__qualname__})"
    return AttemptReport("returned", result=result, error=dropped)


def describe_permanent(exc: PermanentError) -> str:
    """A PermanentError's ``last_error``: its message alone (capped), or its type if empty."""
    text = describe_error(exc)
    prefix = f"{type(exc).__qualname__}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def format_traceback(exc: BaseException) -> str:
    """``exc``'s traceback as Python prints it, causes and contexts first, with each exception's
    line as ``describe_error`` gives it: capped, whatever the message's size."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""  # how the exception found next relates to the one before it
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    parts: list[str] = []
    for exception, leads_on in reversed(chain):
        if exception.__traceback__ is not None:
            parts.append(_HEADER)
            parts.extend(traceback.format_tb(exception.__traceback__, limit=-MAX_FRAMES))
        parts.append(describe_error(exception) + "\n")
        parts.append(leads_on)
    return "".join(parts).rstrip("\n").encode("utf-8", "replace").decode("utf-8")


class _Attempt:
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
        self._inbox: queue.SimpleQueue[_Attempt | None] = queue.SimpleQueue()
        self._thread = self._start_thread()

    def run(self, task: Task, timeout_ms: int) -> AttemptReport:
        deadline = time.monotonic() + timeout_ms / 1000
        attempt = _Attempt(task)
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

    def _serve(self, inbox: queue.SimpleQueue[_Attempt | None]) -> None:
        while (attempt := inbox.get()) is not _STOP:
            attempt.end(run_handler(self._handler, attempt.task, self._result_max_bytes))
