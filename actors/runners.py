"""Where attempts run, as the TaskSystem sees it: one runner per worker, made by a factory, and
the count of the processes the runners replaced and the threads they abandoned."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol, get_args

from actors.attempt import ReplacementReason

if TYPE_CHECKING:
    from actors.attempt import AttemptRunner

REASONS: Final[tuple[ReplacementReason, ...]] = get_args(ReplacementReason)
"""Why a worker process is replaced: timeout, crash, max_tasks, max_memory."""


class RunnerFactory(Protocol):
    """Makes the runner of worker ``index``; it tells ``counts`` what it replaces or abandons.

    Called once per worker by ``TaskSystem.start``, on the thread that starts the system, which
    hands the runner over to its worker. What it raises stops the start (a handler that cannot
    be loaded, say)."""

    def __call__(self, index: int, counts: RunnerCounts) -> AttemptRunner: ...


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
        """A handler thread was abandoned past its timeout and a fresh one took its place."""
        with self._lock:
            self._abandoned += 1

    def read(self) -> Replacements:
        with self._lock:
            return Replacements(dict(self._replaced), self._abandoned)
