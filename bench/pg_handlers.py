"""The handler of bench/pg_rescue.py, named ``bench.pg_handlers:record_and_hold`` (the service
runs from the project root). It imports nothing from bench/, so a worker process can load it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from actors.task import TaskView

HOLD_LIMIT_S: Final = 120.0
"""How long an attempt waits for its release at most: a benchmark gone wrong ends anyway."""


def record_and_hold(task: TaskView) -> None:
    """Append ``{"id", "attempt", "pid", "at"}`` to the file ``payload["log"]`` as the attempt
    starts (``at``: this machine's clock), then wait until the file ``payload["release"]``
    exists."""
    payload = task.payload
    line = json.dumps(
        {"id": task.id, "attempt": task.attempts, "pid": os.getpid(), "at": time.time()}
    )
    with Path(payload["log"]).open("a", encoding="utf-8") as log:
        log.write(line + "\n")
    release, deadline = Path(payload["release"]), time.monotonic() + HOLD_LIMIT_S
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
