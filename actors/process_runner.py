"""ProcessRunner: a worker's attempts in a child process of its own (WORKER_MODE=process).

The child (``actors/child.py``) loads the handler once and runs one attempt per message. The
parent kills it past an attempt's deadline, notices at once when it dies, recycles it after a
number of attempts or above a memory limit, and in each case starts a fresh one in its place.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
import weakref
from multiprocessing import forkserver, resource_tracker
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from actors import child
from actors.attempt import AttemptReport
from actors.handlers import HandlerLoadError
from actors.task import log_fields

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from actors.attempt import ReplacementReason
    from actors.handlers import HandlerSpec
    from actors.task import Task

logger = logging.getLogger(__name__)

START_TIMEOUT_S: Final = 60.0
"""How long a child may take to load the handler (import its module) before it counts as
broken. Not part of any attempt's time limit: no handler runs until the child is ready."""

MAX_POLL_MS: Final = 3_600_000
"""The longest single wait in poll(2), which takes a C int: a 30-day limit is waited in turns."""

REAP_TIMEOUT_S: Final = 5.0
"""How long to wait for a dead (or killed) child's exit status."""

RETIRE_GRACE_S: Final = 5.0
"""How long a recycled child may take to exit before it is killed: one that a thread of its
handler keeps alive (Python waits for non-daemon threads at exit) must not linger."""

# forkserver, never fork: the service is threaded, and a forked copy of a threaded process can
# hang on a lock some other thread held at the fork. Of the two safe methods, forkserver starts
# a child by forking a small server that has already imported this package, where spawn starts
# a fresh interpreter that imports it all again, per child: bench/process_runner.py measures
# the difference. The forkserver is also the parent of every child, so PR_SET_PDEATHSIG follows
# a single-threaded process, not whichever worker thread started the child (with spawn, a
# child would be killed when that thread ended).
_context: Final = multiprocessing.get_context("forkserver")


def _main_module() -> list[str]:
    """The service's ``__main__`` by the name it can be imported under, if it has one.

    Every child runs the parent's main module again (as ``__mp_main__``), so its imports
    (main.py's: falcon, the API) are paid per child unless the forkserver has them already.
    Preloading ``"__main__"`` would do that, but is broken in Python 3.11: the forkserver looks
    for a ``main_path`` that ``spawn.get_preparation_data`` calls ``init_main_from_path``. So
    the script is preloaded as the module it also is (main.py as ``main``). The forkserver
    looks for it from its working directory (this package's directory: see _ensure_servers)
    and the installed packages: 3.11's ignores the sys.path it is given. Not found, it is
    skipped, and only costs time.
    """
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:  # run with -m; multiprocessing leaves a package's __main__ alone
        return [] if name.rpartition(".")[2] == "__main__" else [name]
    path = getattr(main, "__file__", None)
    if path is None:  # python -c, or interactive: nothing is run again
        return []
    directory, name = os.path.split(os.path.splitext(os.path.abspath(path))[0])
    on_path = any(os.path.abspath(entry or os.curdir) == directory for entry in sys.path)
    return [name] if on_path and name.isidentifier() else []


_context.set_forkserver_preload(["actors.child", *_main_module()])

_PACKAGE_ROOT: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The directory holding this package (and main.py): where the forkserver starts."""
_forkserver_started = False

_QUIET_SIGNALS: Final = frozenset(child.QUIET_SIGNALS)
_encode: Final = msgspec.msgpack.Encoder().encode
_decode_started: Final = msgspec.msgpack.Decoder(child.Started).decode
_decode_finished: Final = msgspec.msgpack.Decoder(child.Finished).decode

# Every runner not yet closed, so that an exit that forgot one still kills its child. It runs
# before multiprocessing's own exit hook (registered earlier, run later), which would otherwise
# wait forever for a child that waits for the pipe this process still holds open.
_open_runners: weakref.WeakSet[ProcessRunner] = weakref.WeakSet()


class _Child:
    """One child process and the parent's end of its pipe."""

    __slots__ = ("attempts", "conn", "fd", "pid", "poller", "process", "ready", "retired_at")

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.pid: int = process.pid or 0
        self.ready = False
        self.attempts = 0
        self.retired_at = 0.0
        # One poll object for the child's life: waiting costs one system call, and it wakes on
        # a message, on EOF, or on the child's death (the sentinel), whichever comes first. The
        # sentinel matters when the pipe stays open after the child died: a grandchild it forked
        # may hold its end.
        self.fd = conn.fileno()
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self.poller.register(process.sentinel, select.POLLIN)

    def wait(self, deadline: float) -> Literal["message", "died", "timeout"]:
        """Whether a message (or EOF) came first, the child's death, or ``deadline``."""
        while True:
            remaining_ms = math.ceil((deadline - time.monotonic()) * 1000)
            events = self.poller.poll(min(max(remaining_ms, 0), MAX_POLL_MS))
            if events:
                # Read what is there even if the child died since: it may be its report.
                return "message" if any(fd == self.fd for fd, _ in events) else "died"
            if remaining_ms <= 0:
                return "timeout"

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()

    def exit_text(self) -> str:
        """How the child ended, waiting for it to end (killing it if it will not)."""
        self.process.join(REAP_TIMEOUT_S)
        if self.process.exitcode is None:  # it closed its pipe but lives on: finish it
            self.kill()
            self.process.join(REAP_TIMEOUT_S)
        code = self.process.exitcode
        if code is None:
            return "worker process stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"worker process killed by {name}"
        return f"worker process exited with code {code}"

    def ended(self) -> bool:
        """Whether the child has ended and been reaped (without waiting)."""
        return self.process.exitcode is not None


class ProcessRunner:
    """Runs one worker's attempts, one at a time, in a child process it owns.

    The child is started when the runner is made, and loads the handler there;
    ``wait_ready`` says whether it could. ``run`` and ``close`` are for the worker's own
    thread, though ``close`` may also come from another thread while ``run`` waits (a shutdown
    whose deadline passed): the child is then killed and ``run`` reports it as crashed.
    """

    def __init__(
        self,
        spec: HandlerSpec,
        *,
        result_max_bytes: int,
        max_tasks: int = 0,
        max_memory_mb: int = 0,
        on_replaced: Callable[[ReplacementReason], None] | None = None,
        name: str = "worker",
        log_setup: Callable[[], object] | None = None,
    ) -> None:
        """``max_tasks``, ``max_memory_mb``: recycle the child after that many attempts, or
        after an attempt that leaves it above that much resident memory (0: never).
        ``log_setup``: called in each child before the handler loads, to send the handler's
        log records where the service's go, in its format; it is pickled, so a module-level
        function or a ``functools.partial`` of one (``partial(configure_logging, level,
        format)``)."""
        self._spec = spec
        self._result_max_bytes = result_max_bytes
        self._max_tasks = max_tasks
        self._max_memory_kb = max_memory_mb * 1024
        self._on_replaced = on_replaced
        self._name = name
        self._log_setup = log_setup
        self._generation = 0
        self._retiring: list[_Child] = []
        # _closed and the swap of _child, between run (the worker) and close (perhaps another).
        self._lock = threading.Lock()
        self._closed = False
        # Held by run for the whole attempt, and by close for good: close waits on it.
        self._busy = threading.Lock()
        self._child: _Child | None = self._start()
        _open_runners.add(self)

    @property
    def pid(self) -> int | None:
        """The current child's process id (None between a failed start and the next)."""
        current = self._child
        return current.pid if current is not None else None

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until the child has loaded the handler; raise HandlerLoadError if it cannot.

        To start many runners quickly, make them all first, then wait for each: the children
        load in parallel.
        """
        current = self._child
        if current is None:
            raise HandlerLoadError("worker process could not be started")
        error = self._await_start(current, time.monotonic() + timeout_s)
        if error is not None:
            self._child = None
            self._let_go(current)
            raise HandlerLoadError(error)

    def run(self, task: Task, timeout_ms: int) -> AttemptReport:
        """Run one attempt in the child; see ``AttemptRunner.run``."""
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(f"{self._name}: closed, or already running an attempt")
        try:
            if self._closed:
                raise RuntimeError(f"{self._name}: the process runner is closed")
            return self._run(task, timeout_ms)
        finally:
            self._busy.release()

    def close(self, timeout_s: float) -> None:
        """Stop the child (it exits once it sees the pipe closed), waiting at most ``timeout_s``
        before killing it; no child of this runner is left when this returns."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _open_runners.discard(self)
        if not self._busy.acquire(timeout=max(deadline - time.monotonic(), 0)):
            # An attempt still runs, on another thread: end it; run reports it and lets go.
            current = self._child
            if current is not None:
                current.kill()
            self._busy.acquire(timeout=REAP_TIMEOUT_S)
        current, self._child = self._child, None
        if current is not None:
            current.conn.close()  # EOF: an idle child exits by itself
            self._retiring.append(current)
        for retired in self._retiring:
            retired.process.join(max(deadline - time.monotonic(), 0))
            if not retired.ended():
                retired.kill()
                retired.process.join(REAP_TIMEOUT_S)
            self._let_go(retired)
        self._retiring.clear()

    # --- one attempt --------------------------------------------------------------------------

    def _run(self, task: Task, timeout_ms: int) -> AttemptReport:
        if self._retiring:
            self._reap_retired()
        current = self._child
        if current is not None and current.ready and current.poller.poll(0):
            # Idle, yet it sent something or died (killed from outside, or a thread of the
            # handler ended it): replace it before this attempt, which has no part in that.
            logger.warning("%s: worker process %d ended while idle", self._name, current.pid)
            current.exit_text()
            self._replace(current, "crash")
            current = self._child
        if current is None or not current.ready:
            current, error = self._ready_child()
            if current is None:
                return AttemptReport("crashed", error=error)
        deadline = time.monotonic() + timeout_ms / 1000
        try:
            current.conn.send_bytes(
                _encode(child.Attempt(task.id, task.payload, task.max_retries, task.attempts))
            )
            waited = current.wait(deadline)
            if waited == "timeout":
                return self._timed_out(current, task, timeout_ms)
            if waited == "died":
                return self._crashed(current, task)
            finished = _decode_finished(current.conn.recv_bytes())
        except (OSError, EOFError, msgspec.DecodeError):  # it died (or went mad) mid-attempt
            return self._crashed(current, task)
        current.attempts += 1
        if self._max_tasks and current.attempts >= self._max_tasks:
            self._recycle(current, "max_tasks")
        elif self._max_memory_kb and finished.rss_kb > self._max_memory_kb:
            self._recycle(current, "max_memory")
        return finished.report

    def _ready_child(self) -> tuple[_Child | None, str]:
        """The current child once it has loaded the handler, starting one if there is none."""
        current = self._child
        if current is None:
            try:
                current = self._child = self._start()
            except OSError as exc:
                logger.error("%s: cannot start a worker process: %s", self._name, exc)
                return None, f"worker process could not start: {exc}"
        error = self._await_start(current, time.monotonic() + START_TIMEOUT_S)
        if error is not None:
            logger.error("%s: worker process %d: %s", self._name, current.pid, error)
            self._child = None  # the next attempt tries a fresh one
            self._let_go(current)
            return None, error
        return current, ""

    def _timed_out(self, current: _Child, task: Task, timeout_ms: int) -> AttemptReport:
        current.kill()
        current.exit_text()  # reaped before its successor starts
        fresh = self._replace(current, "timeout")
        logger.warning(
            "task %r attempt %d ran past its %d ms: worker process %d killed, %s takes its place",
            task.id,
            task.attempts,
            timeout_ms,
            current.pid,
            fresh or "none yet",
            extra=log_fields(task),
        )
        return AttemptReport("timed_out", error=f"timed out after {timeout_ms} ms")

    def _crashed(self, current: _Child, task: Task) -> AttemptReport:
        error = current.exit_text()
        fresh = self._replace(current, "crash")
        logger.warning(
            "task %r attempt %d: %s (pid %d), %s takes its place",
            task.id,
            task.attempts,
            error,
            current.pid,
            fresh or "none yet",
            extra=log_fields(task),
        )
        return AttemptReport("crashed", error=error)

    def _recycle(self, current: _Child, reason: ReplacementReason) -> None:
        """Let the child go (it exits on EOF, reaped later) and start its successor now: no
        attempt waits for the old one to end."""
        fresh = self._replace(current, reason)
        logger.info(
            "%s: worker process %d recycled (%s), %s takes its place",
            self._name,
            current.pid,
            reason,
            fresh or "none yet",
        )

    # --- children -----------------------------------------------------------------------------

    def _replace(self, old: _Child, reason: ReplacementReason) -> int | None:
        """Let go of ``old`` and start its successor (unless closed); the successor's pid.

        ``old`` has ended (timeout, crash), or will end on EOF of its pipe (recycling) and is
        reaped later: no attempt waits for that.
        """
        old.conn.close()
        if old.ended():
            old.process.close()
        else:
            old.retired_at = time.monotonic()
            self._retiring.append(old)
        with self._lock:
            self._child = None
            if self._closed:  # a shutdown killed it: nothing to replace
                return None
            try:
                self._child = self._start()
            except OSError as exc:  # the next attempt tries again
                logger.error("%s: cannot start a worker process: %s", self._name, exc)
        if self._on_replaced is not None:
            try:
                self._on_replaced(reason)
            except Exception:  # counting must not cost the attempt its report
                logger.exception("%s: on_replaced failed", self._name)
        return self.pid

    def _start(self) -> _Child:
        self._generation += 1
        parent_end, child_end = _context.Pipe(duplex=True)
        process = _context.Process(
            target=child.main,
            args=(
                child_end,
                self._spec,
                os.getpid(),
                self._result_max_bytes,
                self._max_memory_kb > 0,
                self._log_setup,
            ),
            name=f"{self._name}-{self._generation}",
            # Not daemonic: a daemonic process may not start processes, and a handler may.
            daemon=False,
        )
        try:
            with _stop_signals_blocked():
                _ensure_servers()
                process.start()
        finally:
            child_end.close()  # the child's copy only: EOF reaches us when the child dies
        return _Child(process, parent_end)

    def _await_start(self, current: _Child, deadline: float) -> str | None:
        """None once ``current`` has loaded the handler; else why it could not."""
        if current.ready:
            return None
        try:
            waited = current.wait(deadline)
            if waited == "timeout":
                current.kill()
                current.exit_text()
                return "worker process did not load the handler in time"
            if waited == "died":
                return f"{current.exit_text()} while loading the handler"
            started = _decode_started(current.conn.recv_bytes())
        except (OSError, EOFError, msgspec.DecodeError):
            return f"{current.exit_text()} while loading the handler"
        if started.error is not None:
            current.exit_text()  # it exits right after saying so
            return started.error
        current.ready = True
        return None

    @staticmethod
    def _let_go(each: _Child) -> None:
        each.conn.close()
        if each.ended():
            each.process.close()

    def _reap_retired(self) -> None:
        """Release the recycled children that have exited by now, without waiting; kill those
        past their grace (reaped on a later call)."""
        still: list[_Child] = []
        now = time.monotonic()
        for retired in self._retiring:
            if retired.ended():
                retired.process.close()
                continue
            if now - retired.retired_at > RETIRE_GRACE_S:
                logger.warning(
                    "%s: recycled worker process %d still there after %.0f s: killed",
                    self._name,
                    retired.pid,
                    RETIRE_GRACE_S,
                )
                retired.kill()
                retired.retired_at = math.inf  # warned and killed once
            still.append(retired)
        self._retiring = still

    def _kill_all(self) -> None:
        """At interpreter exit: no child may outlive it, nor hold up its exit. Closed first,
        under the lock, so that a worker thread seeing its child die starts no successor."""
        with self._lock:
            self._closed = True
            for each in (self._child, *self._retiring):
                if each is not None:
                    each.kill()


def _ensure_servers() -> None:
    """Start multiprocessing's resource tracker, then the forkserver, if not running yet.

    The forkserver inherits this thread's signal mask through exec: with SIGINT and SIGTERM
    blocked, a Ctrl-C or systemd's SIGTERM to every process of the service leaves it alone (it
    exits when the service does, on EOF of its "alive" pipe), so it cannot take the children
    with it mid-attempt (they die with their parent). The resource tracker's start unblocks
    both on its way out, so it goes first, and they are blocked again after it.
    """
    global _forkserver_started
    resource_tracker.ensure_running()
    signal.pthread_sigmask(signal.SIG_BLOCK, _QUIET_SIGNALS)
    if _forkserver_started:
        forkserver.ensure_running()
        return
    # Python 3.11's forkserver imports what it preloads from its working directory first (it
    # runs with ``-c`` and ignores the sys.path it is given), and every child inherits those
    # modules. Started from the service's directory, a project's own actors/ or main.py there
    # would be the ones its children run. So it starts from the directory this package lives
    # in; each child still works in the service's directory (multiprocessing moves it there).
    previous = os.getcwd()
    os.chdir(_PACKAGE_ROOT)
    try:
        forkserver.ensure_running()
    finally:
        os.chdir(previous)
    _forkserver_started = True


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM blocked on this thread meanwhile, and its signal mask as it was
    afterwards: main.py takes both with sigwait, which needs them to stay blocked, and
    multiprocessing's resource tracker unblocks them as it starts."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _QUIET_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@atexit.register
def _kill_children_left() -> None:
    for runner in list(_open_runners):
        runner._kill_all()
