"""What runs inside a worker process (WORKER_MODE=process): load the handler once, then run one
attempt per message from the parent until the parent closes the pipe.

Also the messages of the pipe between the two, which ``actors/process_runner.py`` (the parent
side) shares. Each is msgspec MessagePack in one ``send_bytes``: cheaper than pickling, and it
says exactly what may cross.

    parent                              child
      start (Process args) ──────────►  load the handler
                          ◄──────────── Started(error=None | "<load error>")
      Attempt ────────────────────────► run the handler
                          ◄──────────── Finished(report, rss_kb)
      ... (one attempt at a time)
      close the pipe ─────────────────► EOF: exit 0

The child imports nothing of falcon or the HTTP side: it is started once per worker, and again
after every replacement.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import signal
import sys
import traceback
from typing import TYPE_CHECKING, Final

import msgspec

from actors.attempt import AttemptReport, PermanentError, cap, describe_error, encode_result
from actors.handlers import HandlerLoadError
from actors.task import TaskView

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection

    from actors.handlers import HandlerSpec
    from actors.worker import Handler

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG: Final = 1
"""prctl(2) option: the signal this process gets when the thread that forked it ends."""

EXIT_ORPHANED: Final = 3
"""The child's exit code when the service was already gone as it started."""

QUIET_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
"""Signals a child lets pass: the service stops its children itself (``ProcessRunner.close``)."""


class Started(msgspec.Struct, frozen=True, array_like=True):
    """child → parent, first message: the handler is loaded (``error`` None) or it is not."""

    error: str | None = None
    """HandlerLoadError's message, as ``load_handler`` words it."""


class Attempt(msgspec.Struct, frozen=True, array_like=True):
    """parent → child: run the handler once on this task. The fields of ``TaskView``, with the
    payload as the JSON text the task stores: the child decodes it, so a handler gets a fresh
    copy, and the Task itself never crosses."""

    id: str
    payload: bytes
    max_retries: int
    attempts: int


class Finished(msgspec.Struct, frozen=True, array_like=True):
    """child → parent: how the attempt went, and the child's resident memory after it (KiB;
    0 unless the parent asked for it, to recycle a child that grew too big)."""

    report: AttemptReport
    rss_kb: int = 0


def main(
    conn: Connection,
    spec: HandlerSpec,
    service_pid: int,
    result_max_bytes: int,
    report_memory: bool,
    log_setup: Callable[[], object] | None,
) -> None:
    """The child's whole life (``multiprocessing.Process`` target)."""
    _die_with_service(service_pid)
    _let_the_forkserver_go()
    _let_stop_signals_pass()
    # A handler's output is part of the service's log, which is its stderr: print() too.
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Line by line, so a handler's print() reaches the log before the child might be killed,
    # and in order with what the service writes itself.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)
    if log_setup is not None:
        log_setup()
    encoder = msgspec.msgpack.Encoder()
    try:
        handler = spec.load()
    except HandlerLoadError as exc:
        started = Started(error=str(exc))
    else:
        started = Started()
    try:
        conn.send_bytes(encoder.encode(started))
    except OSError:  # the parent closed the pipe before we were ready (it is stopping)
        return
    if started.error is not None:
        return
    decoder = msgspec.msgpack.Decoder(Attempt)
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):  # the parent closed the pipe, or is gone: nothing to run
            return
        report = run_attempt(handler, decoder.decode(message), result_max_bytes)
        try:
            conn.send_bytes(encoder.encode(Finished(report, _rss_kb() if report_memory else 0)))
        except OSError:  # the parent is gone: nobody to report to
            return


def run_attempt(handler: Handler, attempt: Attempt, result_max_bytes: int) -> AttemptReport:
    """Run ``handler`` once and say how it went. The result is encoded (or dropped) here, so
    only bytes go back to the parent, whatever the handler returned."""
    try:
        view = TaskView(
            id=attempt.id,
            payload=msgspec.json.decode(attempt.payload),
            max_retries=attempt.max_retries,
            attempts=attempt.attempts,
        )
        value = handler(view)
    except PermanentError as exc:
        return AttemptReport("permanent", error=describe_permanent(exc), traceback=tb_text(exc))
    except BaseException as exc:  # SystemExit, KeyboardInterrupt too: a failed attempt, no exit
        return AttemptReport("raised", error=describe_error(exc), traceback=tb_text(exc))
    try:
        result, dropped = encode_result(value, result_max_bytes)
    except BaseException:  # an encoding that fails in a way encode_result does not foresee
        result, dropped = None, f"result dropped: not JSON-encodable ({type(value).__qualname__})"
    return AttemptReport("returned", result=result, error=dropped)


def describe_permanent(exc: PermanentError) -> str:
    """A PermanentError's ``last_error``: its message alone (capped), or its type if empty."""
    text = describe_error(exc)
    prefix = f"{type(exc).__qualname__}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def tb_text(exc: BaseException) -> str:
    """``exc``'s traceback as Python prints it, each part capped: a message of megabytes
    (this exception's or one in its chain) cannot swell the report or the log line."""
    try:
        parts = traceback.TracebackException.from_exception(exc).format()
        text = "".join(cap(part) for part in parts).rstrip("\n")
    except BaseException:  # formatting runs the exception's own code (__str__, notes)
        text = describe_error(exc)
    return text.encode("utf-8", "replace").decode("utf-8")


def _die_with_service(service_pid: int) -> None:
    """Make sure this child never outlives the service, even SIGKILLed.

    The kernel sends SIGKILL when the parent dies. The parent is the service (spawn) or its
    forkserver, which exits as soon as the service is gone (EOF on its "alive" pipe), so either
    way the child follows. If that parent died before prctl took effect, nothing would ever be
    sent: hence the check after it, that the service is our parent or our parent's parent.
    Idle, the child also exits on EOF from the pipe; this covers a handler that never returns.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    parent = os.getppid()
    if parent != service_pid and _parent_of(parent) != service_pid:
        os._exit(EXIT_ORPHANED)


def _let_the_forkserver_go() -> None:
    """Close this child's copy of the pipe whose end tells the forkserver the service is gone.

    multiprocessing hands every child of the forkserver the write end of that pipe (so that the
    child could start processes through the same forkserver). While any child holds it, the
    forkserver outlives a SIGKILLed service, and so does a child stuck in a handler, since its
    PDEATHSIG waits for the forkserver's death. Closed, the forkserver exits with the service
    and the kernel kills every child. (tests/test_e2e_isolation.py kills a service to check.)
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if server is not None and alive_fd is not None:
        with contextlib.suppress(OSError):
            os.close(alive_fd)
        server._forkserver_alive_fd = None


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after it.
            return int(stat.read().rpartition(b")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _let_stop_signals_pass() -> None:
    """SIGINT and SIGTERM do nothing to a child.

    A Ctrl-C reaches the whole process group, and systemd's stop sends SIGTERM to every process
    of the service: a child must not die mid-attempt then, but finish while the service shuts
    down gracefully, and go when the service closes it (or dies: see _die_with_service). A
    do-nothing Python handler rather than SIG_IGN, because an ignored signal stays ignored in
    programs a handler starts, and they should stop as usual; unblocked, because the service
    blocks them in all its threads (main.py) and the mask is inherited as well.
    """
    for signum in QUIET_SIGNALS:
        signal.signal(signum, _ignore)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, QUIET_SIGNALS)


def _ignore(signum: int, frame: object) -> None:
    """Let the signal pass (see _let_stop_signals_pass)."""


_PAGE_KB: Final = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


def _rss_kb() -> int:
    """This process's resident memory now (KiB); its peak where /proc is not there."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_KB
    except (OSError, ValueError, IndexError):
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
