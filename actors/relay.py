"""Relay: a fresh thread for an actor whose own thread is stuck in a call that cannot be stopped.

What it needs of pykka beyond the public API is two steps of the actor's loop, named in
``LOOP_STEPS`` and checked by tests/test_relay.py: the loop that serves the inbox, and the
teardown after it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

    import pykka

logger = logging.getLogger(__name__)

LOOP_STEPS: Final = ("_actor_loop_running", "_actor_loop_teardown")
"""pykka's steps of ``Actor._actor_loop`` after ``on_start``, which a relay thread runs."""


class _Spare:
    """A thread whose stuck call returned after another took its place: parked until needed."""

    __slots__ = ("_woken", "first")

    def __init__(self) -> None:
        self._woken = threading.Lock()
        self._woken.acquire()
        self.first: Callable[[], None] | None = None

    def wake(self, first: Callable[[], None] | None) -> None:
        self.first = first
        self._woken.release()

    def wait(self) -> Callable[[], None] | None:
        self._woken.acquire()
        return self.first


class Relay:
    """Keeps ``actor``'s inbox served while the thread serving it is stuck.

    ``take_over(first)`` (from any thread) has another thread run ``first`` and then serve the
    inbox in the stuck one's place: a parked spare if there is one, else a fresh daemon thread.
    The stuck thread, once its call returns, must call ``park`` before it returns into the
    actor's loop: it waits there as a spare, so that exactly one thread ever serves the inbox,
    and threads are made only while earlier ones are still stuck. ``stop`` (from ``on_stop``)
    lets every spare go: back in the loop, each finds the actor stopped and ends.
    """

    def __init__(self, actor: pykka.Actor, name: str) -> None:
        self._actor = actor
        self._name = name
        self._lock = threading.Lock()
        self._spares: list[_Spare] = []
        self._stopped = False
        self._made = 0

    @property
    def spares(self) -> int:
        """Threads parked, waiting to take over."""
        with self._lock:
            return len(self._spares)

    def take_over(self, first: Callable[[], None]) -> None:
        with self._lock:
            spare = self._spares.pop() if self._spares else None
            self._made += spare is None
            made = self._made
        if spare is not None:
            spare.wake(first)
            return
        threading.Thread(
            target=self._serve,
            args=(first,),
            name=f"{self._name}-relay-{made}",
            daemon=True,  # like the actor's own: a stuck one never holds the process open
        ).start()

    def park(self) -> None:
        """On a thread that was taken over, once its call has returned: wait until this thread
        serves the inbox again (after ``first``), or the actor stops."""
        spare = _Spare()
        with self._lock:
            if self._stopped:
                return
            self._spares.append(spare)
        first = spare.wait()
        if first is not None:
            try:
                first()
            except Exception:
                logger.exception("%s: taking over failed", self._name)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            spares, self._spares = self._spares, []
        for spare in spares:
            spare.wake(None)

    def _serve(self, first: Callable[[], None]) -> None:
        try:
            first()
        except Exception:
            # The inbox must be served whatever ``first`` did.
            logger.exception("%s: taking over failed", self._name)
        running, teardown = (getattr(self._actor, step) for step in LOOP_STEPS)
        running()
        teardown()
