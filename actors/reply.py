"""Reply: the one-shot answer an actor gives whoever asked it from outside the actors."""

from __future__ import annotations

import threading
from typing import Final, Generic, TypeVar

import pykka

T = TypeVar("T")

_ANSWERING: Final = threading.Lock()
"""Makes "is it answered yet?" and "now it is" one step, whichever threads answer at once. One
lock for every Reply, held for two assignments: a lock of its own would double a Reply's cost."""


class SystemStopped(Exception):
    """The actor that was to answer has stopped (or crashed): the question is never answered."""


class Reply(Generic[T]):
    """Answered once by an actor, with ``set`` or ``fail``, read by whoever asked, with a timeout.

    Every question asked from outside the actors (the request threads', and the entry object's
    at start and shutdown) is a message carrying one, so every answer can be held back until a
    commit like any other, and every question still pending on an actor that stops or crashes
    is failed at once (actors/base.py) rather than left to time out.

    A bare lock held until the answer arrives: pykka's ThreadingFuture builds a condition
    variable (a lock, an RLock and a waiter list) for every future, which measured as a fifth of
    the engine's time on the in-process benchmark. A Lock, unlike an RLock, may be released by
    another thread than the one that acquired it, which is exactly the hand-off needed here.
    """

    __slots__ = ("_answered", "_error", "_ready", "_value")

    def __init__(self) -> None:
        self._ready = threading.Lock()
        self._ready.acquire()
        self._answered = False
        self._value: T | None = None
        self._error: BaseException | None = None

    def set(self, value: T) -> bool:
        """Give the answer; ignored (False) if the question was already answered or failed."""
        if not self._claim():
            return False
        self._value = value
        self._ready.release()
        return True

    def fail(self, error: BaseException) -> bool:
        """Answer with an error that ``get`` raises; ignored (False) if already answered."""
        if not self._claim():
            return False
        self._error = error
        self._ready.release()
        return True

    def get(self, *, timeout: float | None = None) -> T:
        """The answer, or the error it failed with; ``pykka.Timeout`` if neither comes within
        ``timeout`` seconds."""
        if not self._ready.acquire(timeout=-1 if timeout is None else timeout):
            raise pykka.Timeout(f"{timeout} seconds")
        # Leave it released, so a second get() answers at once as a future's would.
        self._ready.release()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def _claim(self) -> bool:
        """Whether this call is the first to answer: the first answer wins, whatever comes later
        (a failure after a crash for a question already answered, say)."""
        with _ANSWERING:
            if self._answered:
                return False
            self._answered = True
            return True
