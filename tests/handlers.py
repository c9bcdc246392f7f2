"""Task handlers for the tests, steered by each task's payload.

The end-to-end tests name them in ``TASK_HANDLER=tests.handlers:<name>`` (the service runs with
the project root as its working directory, so ``tests`` is importable); the API tests call them
in-process. Each one is deterministic: what it does depends only on the payload and the attempt
number, and a test controls when a blocked attempt ends by creating a file or opening a gate.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from actors.attempt import PermanentError

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
    doing anything else, so an attempt that a crash cuts off is on record too; ``pid`` is the
    process that ran it (a worker process, unless WORKER_MODE=thread), ``at`` tells which run
    of the service made it. Then waits for ``payload["release"]`` to exist if given
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


def stop_actor(task: TaskView) -> None:
    """Stop the actor named by class in ``payload["actor"]`` (without waiting), as a bug that
    killed it would: for the tests of a shutdown that must end whatever the actors' state."""
    import pykka

    for ref in pykka.ActorRegistry.get_by_class_name(task.payload["actor"]):
        ref.stop(block=False)


def echo(task: TaskView) -> object:
    """Return the payload: it becomes the task's ``result``."""
    return task.payload


_KEPT: list[bytes] = []
"""Memory ``steered`` keeps allocated ("grow"), so that its process stays big."""


def steered(task: TaskView) -> object:
    """Do what ``payload["do"]`` says: one action, or a list of them by attempt (the last one
    repeats). With ``payload["log"]``, first record the run as ``record_then_sleep`` does (id,
    attempt, pid), so an attempt that takes its process down is on record too.

    - ``"return"``: return ``payload["value"]`` (default None); ``"pid"``: return the pid
    - ``"raise"``: raise HandlerFailure(``payload["message"]``, default "asked to fail", repeated
      ``payload["repeat"]`` times)
    - ``"permanent"``: raise PermanentError(``payload["message"]``, default "asked to stop")
    - ``"hang"``: block until the file ``payload["release"]`` exists (or BLOCK_LIMIT_S)
    - ``"exit"``: ``os._exit(payload["code"])`` (default 3); ``"kill"``: SIGKILL itself
    - ``"grow"``: keep ``payload["mb"]`` more MiB allocated, then return the pid
    - ``"object"``: return something JSON cannot hold

    With ``payload["gate"]``, wait for that file to exist (or BLOCK_LIMIT_S) before anything.
    """
    payload = task.payload
    if "gate" in payload:
        gate, deadline = Path(payload["gate"]), time.monotonic() + BLOCK_LIMIT_S
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(POLL_S)
    if "log" in payload:
        line = json.dumps({"id": task.id, "attempt": task.attempts, "pid": os.getpid()})
        with Path(payload["log"]).open("a", encoding="utf-8") as log:
            log.write(line + "\n")
    actions = payload["do"] if isinstance(payload["do"], list) else [payload["do"]]
    action = actions[min(task.attempts, len(actions)) - 1]
    match action:
        case "return":
            return payload.get("value")
        case "pid":
            return os.getpid()
        case "raise":
            # ``repeat`` builds a message far larger than a request body may be.
            raise HandlerFailure(payload.get("message", "asked to fail") * payload.get("repeat", 1))
        case "permanent":
            raise PermanentError(payload.get("message", "asked to stop"))
        case "hang":
            release = Path(payload.get("release", "/nonexistent/never"))
            deadline = time.monotonic() + BLOCK_LIMIT_S
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(POLL_S)
            return "released"
        case "exit":
            os._exit(payload.get("code", 3))
        case "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        case "grow":
            _KEPT.append(b"\x01" * (payload["mb"] * 1024 * 1024))  # written, so resident
            return os.getpid()
        case "object":
            return object()
    raise ValueError(f"unknown action {action!r}")


# --- for the process runner (tests/test_process_runner.py): each runs in a child process ------

_hoard: list[bytes] = []
"""What ``hoard_memory`` keeps, so that the child's resident memory stays grown."""


def return_value(task: TaskView) -> object:
    """Return ``payload["value"]``: a result, or something that cannot be one."""
    value = task.payload["value"]
    if value == "an object":  # something JSON cannot say
        return object()
    return value


def raise_as_told(task: TaskView) -> None:
    """Raise what ``payload["raise"]`` names (``HandlerFailure``, ``PermanentError``,
    ``SystemExit``, ``KeyboardInterrupt``) with the message ``payload["message"]``, the first
    wrapped around a ValueError so that the traceback has a chain."""
    kind, message = task.payload["raise"], task.payload.get("message", "")
    if kind == "PermanentError":
        raise PermanentError(message)
    if kind == "SystemExit":
        raise SystemExit(message)
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt(message)
    try:
        raise ValueError("the cause")
    except ValueError as cause:
        raise HandlerFailure(message) from cause


def pid(task: TaskView) -> int:
    """Return the process id the attempt ran in."""
    return os.getpid()


def sleep_for(task: TaskView) -> int:
    """Sleep ``payload["sleep_s"]`` (at most BLOCK_LIMIT_S), then return the process id."""
    time.sleep(min(task.payload["sleep_s"], BLOCK_LIMIT_S))
    return os.getpid()


def end_process(task: TaskView) -> None:
    """Take the process down: ``os._exit(payload["exit"])``, or the signal ``payload["kill"]``."""
    if "exit" in task.payload:
        os._exit(task.payload["exit"])
    os.kill(os.getpid(), signal.Signals[task.payload["kill"]])
    time.sleep(BLOCK_LIMIT_S)  # a signal the process survives must not look like a return


def fork_then_exit(task: TaskView) -> None:
    """Fork a grandchild that inherits every descriptor (the pipe to the parent too) and writes
    its pid to the file ``payload["log"]``, then exit with code 4. The grandchild waits
    BLOCK_LIMIT_S unless the test kills it first."""
    grandchild = os.fork()
    if grandchild == 0:
        time.sleep(BLOCK_LIMIT_S)
        os._exit(0)
    Path(task.payload["log"]).write_text(str(grandchild))
    os._exit(4)


def leave_a_thread(task: TaskView) -> int:
    """Start a non-daemon thread that outlives the attempt (BLOCK_LIMIT_S), as some libraries
    do, so the process cannot end by itself; return the pid."""
    threading.Thread(target=threading.Event().wait, args=(BLOCK_LIMIT_S,)).start()
    return os.getpid()


def stop_signals_to_self(task: TaskView) -> int:
    """Send SIGINT and SIGTERM to the own process, as a Ctrl-C or systemd's stop would; then
    return the process id (if it is still there to do so)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        os.kill(os.getpid(), signum)  # a signal sent to oneself is delivered before this returns
    return os.getpid()


def hoard_memory(task: TaskView) -> int:
    """Keep ``payload["mb"]`` MiB more, touched, so they count as resident; return the pid."""
    _hoard.append(b"\x01" * (task.payload["mb"] << 20))
    return os.getpid()


def speak(task: TaskView) -> None:
    """Write ``payload["text"]`` to stdout and to stderr with print, and log it as a warning."""
    text = task.payload["text"]
    print(f"stdout: {text}")
    print(f"stderr: {text}", file=sys.stderr)
    logging.getLogger("tests.handlers").warning("logged: %s", text)


def hold(task: TaskView) -> None:
    """Keep the worker busy until the service stops (at most BLOCK_LIMIT_S), then succeed: the
    README's "slow handler", behind whose first task the line fills up (tests/test_readme.py)."""
    time.sleep(BLOCK_LIMIT_S)


def record_start(task: TaskView) -> None:
    """Append one JSON line ``{"id", "attempt", "at"}`` to the file ``payload["log"]`` as the
    attempt starts, ``at`` being ``time.time()``; then succeed."""
    line = json.dumps({"id": task.id, "attempt": task.attempts, "at": time.time()})
    with Path(task.payload["log"]).open("a", encoding="utf-8") as log:
        log.write(line + "\n")
