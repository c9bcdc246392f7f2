"""Task handlers for the tests, steered by each task's payload.

The end-to-end tests name them in ``TASK_HANDLER=tests.handlers:<name>`` (the service runs with
the project root as its working directory, so ``tests`` is importable); the API tests call them
in-process. Each one is deterministic: what it does depends only on the payload and the attempt
number, and a test controls when a blocked attempt ends by creating a file or opening a gate.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from actors.task import TaskView

BLOCK_LIMIT_S: Final = 30.0
"""How long a blocked attempt waits before failing, so a test that forgets to release it cannot
hang a worker (and the process) forever."""

POLL_S: Final = 0.005
"""How often ``wait_for_file`` looks for its file."""

ALWAYS_FAILS_MESSAGE: Final = "this handler always fails"
"""The message of every failure ``always_fail`` raises: what ``last_error`` must say."""


class HandlerFailure(Exception):
    """The failure the test handlers raise on purpose."""


def wait_for_file(task: TaskView) -> None:
    """Block until the file ``payload["release"]`` exists; then fail if ``payload["fail"]``.

    ``{"release": path}`` keeps the attempt running until the test creates ``path``.
    ``{"release": path, "fail": true}`` with ``path`` already there fails at once: a quick way to
    put a task into the wait for its next attempt.
    """
    release = Path(task.payload["release"])
    deadline = time.monotonic() + BLOCK_LIMIT_S
    while not release.exists():
        if time.monotonic() >= deadline:
            raise HandlerFailure(f"{release} did not appear within {BLOCK_LIMIT_S} s")
        time.sleep(POLL_S)
    if task.payload.get("fail"):
        raise HandlerFailure(f"released and told to fail on attempt {task.attempts}")


def fail_times(task: TaskView) -> None:
    """Fail the first ``payload["failures"]`` attempts, then succeed."""
    failures = task.payload["failures"]
    if task.attempts <= failures:
        raise HandlerFailure(f"failure {task.attempts} of {failures}")


def always_fail(task: TaskView) -> None:
    """Fail every attempt with ``ALWAYS_FAILS_MESSAGE``."""
    raise HandlerFailure(ALWAYS_FAILS_MESSAGE)


def record_run(task: TaskView) -> None:
    """Append one JSON line ``{"id", "attempt", "payload"}`` to the file ``payload["log"]``."""
    line = json.dumps({"id": task.id, "attempt": task.attempts, "payload": task.payload})
    with Path(task.payload["log"]).open("a", encoding="utf-8") as log:
        log.write(line + "\n")


def read_runs(log: Path) -> list[dict[str, object]]:
    """The runs ``record_run`` wrote to ``log``, oldest first (none if it never ran)."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


class Gate:
    """An in-process handler whose attempts all block until ``open()`` (or ``BLOCK_LIMIT_S``).

    For the API tests: with one worker behind a closed gate, tasks stay running or queued for as
    long as a test needs, and ``entered`` says how many attempts have started.
    """

    def __init__(self) -> None:
        self._opened = threading.Event()
        self._lock = threading.Lock()
        self._entered = 0

    def __call__(self, task: TaskView) -> None:
        with self._lock:
            self._entered += 1
        if not self._opened.wait(BLOCK_LIMIT_S):
            raise HandlerFailure(f"the gate stayed closed for {BLOCK_LIMIT_S} s")

    @property
    def entered(self) -> int:
        with self._lock:
            return self._entered

    def open(self) -> None:
        self._opened.set()


def record_then_sleep(task: TaskView) -> None:
    """Record the run as it starts, then take a while, and fail as the payload says.

    Appends one JSON line ``{"id", "attempt", "pid", "at"}`` to the file ``payload["log"]`` before
    doing anything else, so an attempt that a crash cuts off is on record too, and ``pid`` tells
    which run of the service made it. Then waits for ``payload["release"]`` to exist if given
    (as ``wait_for_file``), sleeps ``payload["sleep_s"]`` (default 0), and fails the first
    ``payload["failures"]`` attempts (default 0).
    """
    payload = task.payload
    line = json.dumps(
        {"id": task.id, "attempt": task.attempts, "pid": os.getpid(), "at": time.time()}
    )
    with Path(payload["log"]).open("a", encoding="utf-8") as log:
        log.write(line + "\n")
    if "release" in payload:
        release = Path(payload["release"])
        deadline = time.monotonic() + BLOCK_LIMIT_S
        while not release.exists():
            if time.monotonic() >= deadline:
                raise HandlerFailure(f"{release} did not appear within {BLOCK_LIMIT_S} s")
            time.sleep(POLL_S)
    time.sleep(payload.get("sleep_s", 0))
    failures = payload.get("failures", 0)
    if task.attempts <= failures:
        raise HandlerFailure(f"failure {task.attempts} of {failures}")


def fail_unless_file(task: TaskView) -> None:
    """Record the run in the file ``payload["log"]`` (as ``record_run``), then fail unless the
    file ``payload["ok"]`` exists: a task fails for good until the test creates the file, and a
    retry after that succeeds, whatever its attempt number."""
    record_run(task)
    ok = Path(task.payload["ok"])
    if not ok.exists():
        raise HandlerFailure(f"{ok} does not exist")


def echo(task: TaskView) -> object:
    """Return the payload: it becomes the task's ``result``."""
    return task.payload
