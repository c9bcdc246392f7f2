"""The two HTTP servers the load benchmarks compare: the service and the bare app."""

from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final, Literal, NamedTuple

from common import (
    BIG_QUEUE,
    NOOP_HANDLER,
    free_port,
    http_request,
    start_bare,
    start_service,
    stop,
    wait_ready,
)

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator

Kind = Literal["service", "bare"]
KINDS: Final[tuple[Kind, Kind]] = ("service", "bare")

DONE_TIMEOUT_S: Final = 60.0
"""How long accepted tasks may take to all reach done after a load run."""


class Server(NamedTuple):
    kind: Kind
    port: int
    process: subprocess.Popen[bytes]


@contextmanager
def serving(kind: Kind, threads: int, name: str) -> Iterator[Server]:
    """Start one server on a free port, wait until it answers, stop it (SIGTERM) afterwards."""
    port = free_port()
    if kind == "service":
        process = start_service(
            port,
            name,
            TASK_HANDLER=NOOP_HANDLER,
            QUEUE_SIZE=str(BIG_QUEUE),
            HTTP_THREADS=str(threads),
        )
    else:
        process = start_bare(port, threads, name)
    try:
        wait_ready(port, process)
        yield Server(kind, port, process)
    finally:
        code = stop(process)
        if code != 0:
            print(f"  warning: {kind} exited with code {code} (see bench/out/logs/{name}.log)")


class DoneCheck(NamedTuple):
    stored: int
    statuses: dict[str, int]
    seconds: float
    """From the start of the check until every stored task was final."""

    @property
    def all_done(self) -> bool:
        return self.statuses == {"done": self.stored}


def wait_all_done(port: int, accepted_at_least: int) -> DoneCheck:
    """Poll GET /tasks until every stored task is done; the caller compares counts.

    ``accepted_at_least`` is how many 201s the load generator saw: the service may hold a few
    more, accepted just as wrk stopped reading.
    """
    started = time.monotonic()
    deadline = started + DONE_TIMEOUT_S
    while True:
        status, body = http_request(port, "GET", "/tasks", timeout_s=30.0)
        if status != 200:
            raise RuntimeError(f"GET /tasks answered {status}")
        tasks = json.loads(body)
        statuses = dict(Counter(task["status"] for task in tasks))
        check = DoneCheck(len(tasks), statuses, time.monotonic() - started)
        finished = statuses.get("done", 0) + statuses.get("failed", 0) == len(tasks)
        if (finished and len(tasks) >= accepted_at_least) or time.monotonic() > deadline:
            return check
        time.sleep(0.2)
