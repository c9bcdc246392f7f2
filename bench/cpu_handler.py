"""The handler bench/cpu_bound.py runs: pure-Python CPU work for a fixed amount of CPU time.

Named ``TASK_HANDLER=bench.cpu_handler:burn`` (the service runs from the project root).
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
