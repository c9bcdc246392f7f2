"""The actor base class every actor here uses: pykka's threading actor with a faster inbox."""

from __future__ import annotations

import queue
from typing import Any

import pykka


class Actor(pykka.ThreadingActor):
    """A ``pykka.ThreadingActor`` whose inbox is a ``queue.SimpleQueue``.

    pykka's default inbox is ``queue.Queue``, written in Python with a condition variable, on
    the path of every message; ``put``, ``get`` and ``empty`` are all pykka needs of it, and
    ``SimpleQueue`` does those in C. pykka only ever calls
    ``get()`` without a timeout, the one use of it that cannot wait past a deadline
    (actors/alarm.py says why a timed one can).
    """

    @staticmethod
    def _create_actor_inbox() -> Any:
        return queue.SimpleQueue()
