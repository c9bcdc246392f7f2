"""Alarm: one timer thread that rings at the deadline it was last given."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)

_CLOSE: Final = object()


class Alarm:
    """A single long-lived thread that calls ``ring()`` when the current deadline passes.

    ``set(deadline)`` replaces the deadline (a ``time.monotonic()`` value). Commands travel to
    the thread through a queue, so the owner and the thread share no state. However many retries
    wait, there is exactly this one thread: the owner keeps them in order and only ever sets
    the earliest deadline.
    """

    def __init__(self, ring: Callable[[], None], name: str = "alarm") -> None:
        self._ring = ring
        self._commands: queue.SimpleQueue[object] = queue.SimpleQueue()
        # A daemon, so a forgotten alarm can never hold the process open.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def set(self, deadline: float) -> None:
        self._commands.put(deadline)

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop the thread; a pending deadline never rings."""
        self._commands.put(_CLOSE)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                command = self._commands.get(timeout=timeout)
            except queue.Empty:
                deadline = None
                try:
                    self._ring()
                except Exception:
                    logger.exception("alarm callback failed")
                continue
            if command is _CLOSE:
                return
            deadline = float(command)  # type: ignore[arg-type]
