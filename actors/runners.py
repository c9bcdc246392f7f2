"""Where attempts run, as the TaskSystem sees it: one runner per worker, made by a factory (one
for each WORKER_MODE), and the count of the processes replaced and the threads abandoned."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol, get_args, runtime_checkable

from actors.attempt import ReplacementReason

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.attempt import AttemptRunner
    from actors.handlers import HandlerSpec
    from actors.worker import Handler

REASONS: Final[tuple[ReplacementReason, ...]] = get_args(ReplacementReason)
"""Why a worker process is replaced: timeout, crash, max_tasks, max_memory."""


class RunnerFactory(Protocol):
    """Makes the runner of worker ``index``; it tells ``counts`` what it replaces or abandons.

    Called once per worker by ``TaskSystem.start``, on the thread that starts the system, which
    hands the runner over to its worker. What it raises stops the start (a handler that cannot
    be loaded, say)."""

    def __call__(self, index: int, counts: RunnerCounts) -> AttemptRunner: ...


@runtime_checkable
class StartsWarm(Protocol):
    """A runner that gets ready in the background once made (a child process loading the
    handler): ``TaskSystem.start`` makes every runner first, then waits for each, so they get
    ready in parallel, and what ``wait_ready`` raises (HandlerLoadError) stops the start."""

    def wait_ready(self, timeout_s: float = ...) -> None: ...


def thread_runners(handler: Handler, result_max_bytes: int) -> RunnerFactory:
    """WORKER_MODE=thread: each worker's attempts on its own thread, watched for their deadline."""
    from actors.thread_runner import ThreadRunner

    def make(index: int, counts: RunnerCounts) -> AttemptRunner:
        return ThreadRunner(
            handler,
            result_max_bytes=result_max_bytes,
            on_abandoned=counts.abandoned,
            name=f"worker-{index}-handler",
        )

    return make


def process_runners(
    spec: HandlerSpec,
    *,
    result_max_bytes: int,
    max_tasks: int = 0,
    max_memory_mb: int = 0,
    log_setup: Callable[[], object] | None = None,
) -> RunnerFactory:
    """WORKER_MODE=process: each worker's attempts in a child process of its own, which loads
    the handler ``spec`` names; recycled after ``max_tasks`` attempts or above ``max_memory_mb``
    (0: never). ``log_setup`` runs in each child first (see ProcessRunner)."""
    # Imported here: it sets up the forkserver when imported, which thread mode never needs.
    from actors.process_runner import ProcessRunner

    def make(index: int, counts: RunnerCounts) -> AttemptRunner:
        return ProcessRunner(
            spec,
            result_max_bytes=result_max_bytes,
            max_tasks=max_tasks,
            max_memory_mb=max_memory_mb,
            on_replaced=counts.replaced,
            name=f"worker-{index}",
            log_setup=log_setup,
        )

    return make


class Replacements(NamedTuple):
    """What the runners replaced and abandoned since start, for ``GET /stats``."""

    processes: dict[str, int]
    """Worker processes replaced, by reason (every reason of ``REASONS``, 0 included)."""
    threads_abandoned: int
    """Handler threads left running past their timeout (thread mode)."""


class RunnerCounts:
    """Counts what every runner replaced or abandoned, told from any thread.

    A lock rather than an actor message: these are rare events, told from inside a runner
    (on its worker's thread, or its own), and read only by ``GET /stats``.
    """

    __slots__ = ("_abandoned", "_lock", "_replaced")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replaced: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._abandoned = 0

    def replaced(self, reason: ReplacementReason) -> None:
        """A worker process was replaced (its ``on_replaced`` callback)."""
        with self._lock:
            self._replaced[reason] += 1

    def abandoned(self) -> None:
        """A worker's thread was abandoned past an attempt's timeout and another took its place."""
        with self._lock:
            self._abandoned += 1

    def read(self) -> Replacements:
        with self._lock:
            return Replacements(dict(self._replaced), self._abandoned)
