"""Handlers for the benchmarks: pure-Python CPU work (bench/cpu_bound.py) and an attempt that
never ends on its own (bench/timeout_precision.py).

Named as ``bench.handlers:<name>`` (the service runs from the project root).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.task import TaskView


def burn(task: TaskView) -> int:
    """Spend ``payload["cpu_ms"]`` ms of this thread's CPU time in a Python loop, holding the
    GIL as any pure-Python computation does; return how many rounds that took."""
    until = time.thread_time() + task.payload["cpu_ms"] / 1000
    rounds = 0
    total = 0
    while time.thread_time() < until:
        for n in range(1_000):
            total += n * n % 7
        rounds += 1
    return rounds


HANG_LIMIT_S = 60.0
"""How long ``hang`` waits at most: a benchmark that goes wrong must not leave it for ever."""


def hang(task: TaskView) -> None:
    """Sleep until the attempt is stopped from outside (or HANG_LIMIT_S)."""
    time.sleep(HANG_LIMIT_S)
