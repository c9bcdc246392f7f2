"""WorkerActor: one attempt at a time, run by its AttemptRunner, and what its end means."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

import msgspec
import pykka

from actors.attempt import MAX_RETRY_AFTER_S, AttemptReport, Overran, TakesOver
from actors.backoff import compute_backoff_ms, should_retry
from actors.base import Actor, tell_or_fail
from actors.protocol.running import AttemptFinished, Run, Save, SaveRunning
from actors.relay import Relay
from actors.reply import Reply
from actors.task import DONE, FAILED, QUEUED, RUNNING, Task, log_fields

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.attempt import AttemptRunner
    from actors.backoff import Uniform
    from actors.observer import AttemptObserver, AttemptOutcome
    from actors.task import TaskView

    Handler = Callable[[TaskView], object]

logger = logging.getLogger(__name__)

DEFAULT_TASK_TIMEOUT_MS: Final = 600_000
"""An attempt's time limit when neither the task nor the service sets one (TASK_TIMEOUT_MS)."""


replace = msgspec.structs.replace


class RetryPolicy(msgspec.Struct, frozen=True):
    """The backoff settings every worker applies to a failed attempt."""

    base_ms: float
    max_ms: float


class AttemptPolicy(msgspec.Struct, frozen=True):
    """What every worker applies to every attempt."""

    retry: RetryPolicy
    task_timeout_ms: int = DEFAULT_TASK_TIMEOUT_MS
    """The time limit of a task that sets no ``timeout_ms`` of its own."""
    durable: bool = False
    """Tasks are kept in a store: an attempt runs only once its start is committed, so that a
    crash of the whole service during the attempt still costs the task that attempt."""


class WorkerActor(Actor):
    """Marks the task running, has its runner run the attempt, then reports done, retry or failed.

    The dispatcher sends a worker a task only when it is idle, and the worker's single report
    (``AttemptFinished``) carries both the outcome and the news that it is free again. Where the
    handler runs (a thread, a child process) is the runner's business; what its report means
    for the task is decided here, the same for every runner.
    """

    # A worker waiting on an attempt past the shutdown deadline must not keep the process alive.
    use_daemon_thread = True

    def __init__(
        self,
        index: int,
        runner: AttemptRunner,
        dispatcher: pykka.ActorRef,
        repository: pykka.ActorRef,
        policy: AttemptPolicy,
        uniform: Uniform,
        observer: AttemptObserver | None = None,
    ) -> None:
        super().__init__()
        self._index = index
        self._runner = runner
        self._dispatcher = dispatcher
        self._repository = repository
        self._policy = policy
        self._uniform = uniform
        self._observer = observer
        # The attempt running now and when it started: what a takeover reports.
        self._current: tuple[Task, float] | None = None
        self._relay: Relay | None = None

    def on_start(self) -> None:
        if isinstance(self._runner, TakesOver):
            # Attempts run on this actor's own thread: one stuck past its time is replaced.
            self._relay = Relay(self, name=f"worker-{self._index}")
            if not self._runner.take_over_with(self._take_over):
                self._relay = None

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
        started = 0.0
        try:
            self._record_start(running)
            if logger.isEnabledFor(logging.DEBUG):  # the fields cost a dict per attempt otherwise
                logger.debug(
                    "task %r attempt %d running",
                    running.id,
                    running.attempts,
                    extra=log_fields(running),
                )
            started = time.monotonic()
            self._current = (running, started)
            report = self._runner.run(running, running.timeout_ms or self._policy.task_timeout_ms)
        except Overran:
            # Reported timed out by the thread that took this worker over; this one, whose
            # handler returned at last, waits to serve again if another attempt overruns.
            assert self._relay is not None
            self._relay.park()
            return None
        except Exception:
            self._report_error(running, started)
            return None
        self._finish(running, report, started)
        return None

    def on_stop(self) -> None:
        if self._relay is not None:
            self._relay.stop()
        self._runner.close(1.0)

    def _take_over(self, report: AttemptReport) -> None:
        """On the runner's watchdog thread: this actor's thread is stuck in an attempt past its
        time. Another thread reports the attempt with ``report`` and serves the inbox."""
        assert self._relay is not None and self._current is not None
        running, started = self._current
        self._relay.take_over(lambda: self._finish(running, report, started))

    def _finish(self, running: Task, report: AttemptReport, started: float) -> None:
        duration_s = time.monotonic() - started
        try:
            finished, retry_delay_s = self._conclude(running, report)
        except Exception:
            self._report_error(running, started)
            return
        self._report(finished, retry_delay_s, duration_s)

    def _report_error(self, running: Task, started: float) -> None:
        # A fault of ours, not the handler's (say, an injected random source that raised): the
        # task still reaches a final state and the worker still reports itself free.
        logger.exception(
            "task %r attempt %d: worker error",
            running.id,
            running.attempts,
            extra=log_fields(running),
        )
        error = "worker error, see the service log"
        finished = replace(running, status=FAILED, last_error=error, updated_at=time.time())
        self._report(finished, None, time.monotonic() - started if started else 0.0)

    def _report(self, finished: Task, retry_delay_s: float | None, duration_s: float) -> None:
        if self._observer is not None:
            self._observe(finished, retry_delay_s, duration_s)
        try:
            self._dispatcher.tell(AttemptFinished(self._index, finished, retry_delay_s))
        except pykka.ActorDeadError:
            # Only after the shutdown deadline cut this attempt off: nobody is left to tell.
            logger.warning(
                "task %r attempt %d ended after shutdown",
                finished.id,
                finished.attempts,
                extra=log_fields(finished),
            )

    def _record_start(self, running: Task) -> None:
        """Store the attempt as started; with a store, wait until that is committed."""
        if not self._policy.durable:
            # Without a store nothing can outlive a crash: the saved state is enough, and it
            # is in the repository's inbox before the handler can ask about it.
            self._repository.tell(Save(running))
            return
        committed: Reply[None] = Reply()
        tell_or_fail(self._repository, SaveRunning(running, committed))
        # A slow disk is waited for; a repository that stops fails the question (actors/base.py),
        # and the attempt ends as a worker error without running.
        committed.get()

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

    def _conclude(self, running: Task, report: AttemptReport) -> tuple[Task, float | None]:
        """The task after the attempt ``report`` tells of, and its retry delay if it waits."""
        if report.outcome == "returned":
            return self._after_success(running, report), None
        return self._after_failure(running, report)

    def _after_success(self, running: Task, report: AttemptReport) -> Task:
        about = log_fields(running)
        if report.error is not None:
            # The attempt succeeded; only what it returned is lost. It is never run again.
            logger.warning(
                "task %r attempt %d done, its result dropped: %s",
                running.id,
                running.attempts,
                report.error,
                extra=about,
            )
            return replace(
                running, status=DONE, result=None, last_error=report.error, updated_at=time.time()
            )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("task %r attempt %d done", running.id, running.attempts, extra=about)
        return replace(running, status=DONE, result=report.result, updated_at=time.time())

    def _after_failure(self, running: Task, report: AttemptReport) -> tuple[Task, float | None]:
        error = report.error or report.outcome  # a runner always says; never store None here
        now = time.time()
        about = log_fields(running)
        if report.traceback is not None:
            # The log formatters write it after the line, or as the JSON line's "exception".
            about["traceback"] = report.traceback
        permanent = report.outcome == "permanent"
        if permanent or not should_retry(running.attempts, running.max_retries):
            logger.error(
                "task %r failed for good after attempt %d%s: %s",
                running.id,
                running.attempts,
                " (permanent error)" if permanent else "",
                error,
                extra=about,
            )
            return replace(running, status=FAILED, last_error=error, updated_at=now), None
        delay_ms = compute_backoff_ms(
            running.attempts,
            base_ms=self._policy.retry.base_ms,
            max_ms=self._policy.retry.max_ms,
            uniform=self._uniform,
        )
        if report.retry_after_s is not None:
            # The target said when to come back: never sooner, never later than a day.
            wait_s = min(report.retry_after_s, MAX_RETRY_AFTER_S)
            delay_ms = max(delay_ms, wait_s * 1000)
        logger.warning(
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
