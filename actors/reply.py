"""Reply: the one-shot answer an actor gives a waiting request thread."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

import pykka

T = TypeVar("T")


class Reply(Generic[T]):
    """Set once by an actor, read by the thread that asked, with a timeout.

    A bare lock held until the value arrives: pykka's ThreadingFuture builds a condition
    variable (a lock, an RLock and a waiter list) for every future, which measured as a fifth of
    the engine's time on the in-process benchmark. A Lock, unlike an RLock, may be released by
    another thread than the one that acquired it, which is exactly the hand-off needed here.
    """

    __slots__ = ("_ready", "_value")

    def __init__(self) -> None:
        self._ready = threading.Lock()
        self._ready.acquire()
        self._value: T | None = None

    def set(self, value: T) -> None:
        """Give the answer. Called once, by the actor that owns the question."""
        self._value = value
        self._ready.release()

    def get(self, *, timeout: float | None = None) -> T:
        """The answer; raises ``pykka.Timeout`` if it is not there within ``timeout`` seconds."""
        if not self._ready.acquire(timeout=-1 if timeout is None else timeout):
            raise pykka.Timeout(f"{timeout} seconds")
        # Leave it released, so a second get() answers at once as a future's would.
        self._ready.release()
        return self._value  # type: ignore[return-value]
