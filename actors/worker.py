"""WorkerActor: runs one attempt at a time on its own thread and reports how it went."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec
import pykka

from actors.backoff import compute_backoff_ms, should_retry
from actors.base import Actor
from actors.messages import AttemptFinished, Run, Save
from actors.task import DONE, FAILED, QUEUED, RUNNING, Task, log_fields, view_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.backoff import Uniform
    from actors.observer import AttemptObserver, AttemptOutcome
    from actors.task import TaskView

    Handler = Callable[[TaskView], object]

logger = logging.getLogger(__name__)

replace = msgspec.structs.replace


class RetryPolicy(msgspec.Struct, frozen=True):
    """The backoff settings every worker applies to a failed attempt."""

    base_ms: float
    max_ms: float


class WorkerActor(Actor):
    """Marks the task running, calls the handler, then reports done, retry or failed.

    The dispatcher sends a worker a task only when it is idle, and the worker's single report
    (``AttemptFinished``) carries both the outcome and the news that it is free again.
    """

    # A handler stuck past the shutdown deadline must not keep the process alive.
    use_daemon_thread = True

    def __init__(
        self,
        index: int,
        handler: Handler,
        dispatcher: pykka.ActorRef,
        repository: pykka.ActorRef,
        retry_policy: RetryPolicy,
        uniform: Uniform,
        observer: AttemptObserver | None = None,
    ) -> None:
        super().__init__()
        self._index = index
        self._handler = handler
        self._dispatcher = dispatcher
        self._repository = repository
        self._retry_policy = retry_policy
        self._uniform = uniform
        self._observer = observer

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, Run):
            return super().on_receive(message)
        running = replace(
            message.task,
            status=RUNNING,
            attempts=message.task.attempts + 1,
            updated_at=time.time(),
            next_attempt_at=None,
        )
        self._repository.tell(Save(running))
        if logger.isEnabledFor(logging.DEBUG):  # the fields cost a dict per attempt otherwise
            logger.debug(
                "task %r attempt %d running",
                running.id,
                running.attempts,
                extra=log_fields(running),
            )
        started = time.monotonic() if self._observer is not None else 0.0
        try:
            finished, retry_delay_s = self._attempt(running)
        except Exception:
            # A fault of ours, not the handler's (say, an injected random source that raised):
            # the task still reaches a final state and the worker still reports itself free.
            logger.exception(
                "task %r attempt %d: worker error",
                running.id,
                running.attempts,
                extra=log_fields(running),
            )
            error = "worker error, see the service log"
            finished = replace(running, status=FAILED, last_error=error, updated_at=time.time())
            retry_delay_s = None
        if self._observer is not None:
            self._observe(finished, retry_delay_s, time.monotonic() - started)
        try:
            self._dispatcher.tell(AttemptFinished(self._index, finished, retry_delay_s))
        except pykka.ActorDeadError:
            # Only after the shutdown deadline cut this attempt off: nobody is left to tell.
            logger.warning(
                "task %r attempt %d ended after shutdown",
                running.id,
                running.attempts,
                extra=log_fields(running),
            )
        return None

    def _observe(self, finished: Task, retry_delay_s: float | None, duration_s: float) -> None:
        assert self._observer is not None
        outcome: AttemptOutcome
        if retry_delay_s is not None:
            outcome = "retry"
        else:
            outcome = "done" if finished.status == DONE else "failed"
        try:
            self._observer.attempt_ended(finished, outcome, duration_s)
        except Exception:
            # Measuring must never cost a task its report to the dispatcher.
            logger.exception("attempt observer failed", extra=log_fields(finished))

    def _attempt(self, running: Task) -> tuple[Task, float | None]:
        try:
            self._handler(view_of(running))
        except BaseException as exc:
            return self._after_failure(running, exc)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "task %r attempt %d done", running.id, running.attempts, extra=log_fields(running)
            )
        return replace(running, status=DONE, updated_at=time.time()), None

    def _after_failure(self, running: Task, exc: BaseException) -> tuple[Task, float | None]:
        error = describe(exc)
        now = time.time()
        about = log_fields(running)
        if not should_retry(running.attempts, running.max_retries):
            logger.warning(
                "task %r failed for good after attempt %d: %s",
                running.id,
                running.attempts,
                error,
                extra=about,
            )
            return replace(running, status=FAILED, last_error=error, updated_at=now), None
        delay_ms = compute_backoff_ms(
            running.attempts,
            base_ms=self._retry_policy.base_ms,
            max_ms=self._retry_policy.max_ms,
            uniform=self._uniform,
        )
        logger.info(
            "task %r attempt %d failed, retrying in %.0f ms: %s",
            running.id,
            running.attempts,
            delay_ms,
            error,
            extra=about,
        )
        waiting = replace(
            running,
            status=QUEUED,
            last_error=error,
            updated_at=now,
            next_attempt_at=now + delay_ms / 1000,
        )
        return waiting, delay_ms / 1000


def describe(exc: BaseException) -> str:
    """``str(exc)``, made safe to store and to encode as JSON."""
    try:
        text = str(exc)
    except BaseException:  # even a __str__ that raises SystemExit must not take the worker down
        text = f"{type(exc).__name__} (its message could not be read)"
    # Lone surrogates cannot be written as UTF-8 JSON; everything else is kept as raised.
    return text.encode("utf-8", "replace").decode("utf-8")
