"""One attempt as a runner reports it to its worker, and the rules for the text and the result
it carries.

This is the contract between the WorkerActor, which decides what an attempt's end means for the
task (done, retry, failed), and a runner, which decides where the handler runs: on a thread of
the service (thread mode) or in a child process the worker owns (process mode). Both runners
give the same ``AttemptReport`` for the same handler behaviour.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeAlias, runtime_checkable

import msgspec

if TYPE_CHECKING:
    from actors.task import Task

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS: Final = 2000
"""The longest error text kept for a task or written to a log line; longer text is cut."""

MAX_RETRY_AFTER_S: Final = 86_400.0
"""The longest an attempt may ask its task to wait before the next one (``retry_after_s``, a
target's ``Retry-After``): one day, whatever it asks."""

CUT_MARK: Final = "… [cut]"
"""Ends an error text that was cut to MAX_ERROR_CHARS, so nobody mistakes it for the whole."""

Outcome = Literal["returned", "raised", "permanent", "timed_out", "crashed"]
"""How an attempt ended: the handler returned, raised, raised PermanentError, ran past its time
limit, or took its process down with it."""

ReplacementReason = Literal["timeout", "crash", "max_tasks", "max_memory"]
"""Why a runner replaced the process (or, in thread mode, abandoned the thread) it runs on."""


class PermanentError(Exception):
    """Raised by a handler to fail its task at once, whatever retries are left."""


class AttemptReport(msgspec.Struct, frozen=True):
    """What one attempt came to. Small and immutable: it crosses a process boundary."""

    outcome: Outcome
    result: bytes | None = None
    """``returned``: what the handler returned, as JSON text; None for ``None`` or a result
    that was dropped (``error`` then says why)."""
    error: str | None = None
    """Every other outcome: the text for ``last_error``, already capped (``describe_error``,
    ``"timed out after <N> ms"``, ``"worker process exited with code <N>"``...). With
    ``returned``, set only when the result was dropped."""
    traceback: str | None = None
    """``raised`` and ``permanent``: the handler's traceback, its message capped, for the log."""
    retry_after_s: float | None = None
    """``raised``: the least wait before the next attempt that the attempt asked for (a
    target's ``Retry-After``), at most MAX_RETRY_AFTER_S; None: the backoff alone decides."""


class AttemptRunner(Protocol):
    """Runs one attempt at a time for one worker, wherever the handler lives."""

    def run(self, task: Task, timeout_ms: int) -> AttemptReport:
        """Run ``task``'s handler once (``task`` is already marked running, ``attempts``
        counted) and report how it went within ``timeout_ms`` plus the runner's overhead."""
        ...

    def close(self, timeout_s: float) -> None:
        """Let go of the process or thread; a child process is gone when this returns."""
        ...


class Overran(Exception):
    """Raised by ``run`` on a thread whose attempt ran past its time and was reported timed out
    meanwhile, through the takeover (see TakesOver): the caller's thread has been replaced."""


Takeover: TypeAlias = Callable[[AttemptReport], None]
"""What a worker gives a runner that takes over (TakesOver): called, on another thread, with
the report of an attempt whose thread is abandoned."""


@runtime_checkable
class TakesOver(Protocol):
    """A runner that runs attempts on its caller's own thread (thread mode): when one runs past
    its time, that thread cannot be stopped, so the runner reports the attempt through the
    worker's ``takeover``, which gives the worker another thread, and ``run`` raises Overran on
    the abandoned one if its handler ever returns."""

    def take_over_with(self, takeover: Takeover) -> bool:
        """Report an attempt whose thread is abandoned to ``takeover``; False if this runner
        runs none on its caller's thread after all (a wrapper around one that does not)."""
        ...


def cap(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` at most ``limit`` characters, ending with CUT_MARK when it was longer."""
    if len(text) <= limit:
        return text
    return text[: limit - len(CUT_MARK)] + CUT_MARK


def describe_error(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"`` (just the type when the message is empty), capped,
    safe to store and to encode as JSON."""
    kind = type(exc).__qualname__
    try:
        message = str(exc)
    except BaseException:  # even a __str__ that raises SystemExit must not take the worker down
        message = "(its message could not be read)"
    # Cap before anything else touches a message that may be megabytes long.
    text = cap(f"{kind}: {message[: MAX_ERROR_CHARS + 1]}" if message else kind)
    # Lone surrogates cannot be written as UTF-8 JSON; everything else is kept as raised.
    return text.encode("utf-8", "replace").decode("utf-8")


_result_encoder: Final = msgspec.json.Encoder()
_UNSUPPORTED: Final = re.compile(r"Encoding objects of type (\S+) is unsupported")


def encode_result(value: object, max_bytes: int) -> tuple[bytes | None, str | None]:
    """A handler's return value as ``(JSON text, None)``, or ``(None, why it was dropped)``.

    ``None`` is no result at all: ``(None, None)``.
    """
    if value is None:
        return None, None
    try:
        encoded = _result_encoder.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        # Name the type that could not be encoded, wherever it sits inside the value.
        found = _UNSUPPORTED.search(str(exc))
        kind = found.group(1) if found else type(value).__qualname__
        return None, f"result dropped: not JSON-encodable ({kind})"
    if len(encoded) > max_bytes:
        return None, f"result dropped: {len(encoded)} bytes encoded, over {max_bytes}"
    return encoded, None
