"""Alarm: one timer thread that rings at the deadline it was last given."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING

import pykka

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)


def posting(actor: pykka.ActorRef, message: object) -> Callable[[], None]:
    """A ring that only tells ``actor`` ``message``: it runs on the alarm's thread, where the
    actor's own state must not be touched, and an actor that has stopped needs no ring."""

    def ring() -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            actor.tell(message)

    return ring


class Alarm:
    """A single long-lived thread that calls ``ring()`` when the current deadline passes.

    ``set(deadline)`` replaces the deadline (a ``time.monotonic()`` value). However many retries
    wait, there is exactly this one thread: the owner keeps them in order and only ever sets
    the earliest deadline.

    The thread waits on a condition variable with the time left computed here, in Python, and
    rings as soon as that is zero or less. It must not wait with ``SimpleQueue.get(timeout=)``:
    CPython's C code recomputes the time left after a first quick try at its lock, and when the
    thread was paused past the deadline in between, the negative remainder means "wait for
    ever". The deadline is then missed for good, and every retry behind it with it.
    """

    def __init__(self, ring: Callable[[], None], name: str = "alarm") -> None:
        self._ring = ring
        # Guards the two fields below, shared by the owner (set, close) and the thread.
        self._changed = threading.Condition(threading.Lock())
        self._deadline: float | None = None
        self._closed = False
        # A daemon, so a forgotten alarm can never hold the process open.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def set(self, deadline: float) -> None:
        with self._changed:
            self._deadline = float(deadline)
            self._changed.notify()

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop the thread; a pending deadline never rings."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while self._wait_for_deadline():
            try:
                self._ring()
            except Exception:
                logger.exception("alarm callback failed")

    def _wait_for_deadline(self) -> bool:
        """Block until the deadline has passed (True, deadline cleared) or close (False)."""
        with self._changed:
            while not self._closed:
                if self._deadline is None:
                    self._changed.wait()
                    continue
                left_s = self._deadline - time.monotonic()
                if left_s <= 0:
                    self._deadline = None
                    return True
                # A wake-up (a new deadline, close, or none at all) goes round the loop again.
                self._changed.wait(left_s)
            return False
