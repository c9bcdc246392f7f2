"""One attempt of a task with a target: one HTTP request, and what its answer means for the task.

The request is the task's payload as a JSON body (none for GET), ``Content-Type:
application/json``, the target's own headers, ``Task-Id``, ``Task-Attempt`` and, with signing
keys, ``Task-Signature`` (actors/signing.py). Redirects are not followed and nothing is retried
here: retries are the worker's, with its backoff. The whole exchange, connecting through reading
the answer, is held to the attempt's time limit.

How an answer maps onto the task, as Google Cloud Tasks and QStash do it: 2xx is done; 408, 429,
5xx, a timeout or a connection failure is worth another attempt; anything else (3xx, the other
4xx) would only fail again, so the task fails at once.

Header values are secrets: they are sent and never logged or put into an error text.
"""

from __future__ import annotations

import email.utils
import logging
import time
from datetime import UTC
from typing import TYPE_CHECKING, Final, Literal

import msgspec
import urllib3
from urllib3.exceptions import HTTPError, NameResolutionError, NewConnectionError
from urllib3.exceptions import TimeoutError as ClientTimeout
from urllib3.util import parse_url

from actors.attempt import MAX_RETRY_AFTER_S, AttemptReport, cap, encode_result
from actors.signing import SIGNATURE_HEADER, sign

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from actors.allow_list import AllowList
    from actors.target import Target

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES: Final = frozenset({408, 429})
"""Besides every 5xx: the answers that say "not now" rather than "never"."""
DRAIN_LIMIT_BYTES: Final = 65_536
"""An error answer's body is read up to this much, only so its connection can be used again."""
READ_CHUNK_BYTES: Final = 65_536

DeliveryKind = Literal["done", "retry", "fail"]
"""What the attempt means for the task: done, failed but worth another attempt, failed for
good."""


class DeliveryOutcome(msgspec.Struct, frozen=True):
    """How one delivery went. Small and immutable, like the AttemptReport it becomes."""

    kind: DeliveryKind
    status: int | None = None
    """The answer's HTTP status; None when no answer came (timeout, connection failure)."""
    result: bytes | None = None
    """``done``: ``{"status": <code>, "body": <answer>}`` as JSON text, or None when it was
    dropped (``error`` then says why)."""
    error: str | None = None
    """The text for ``last_error``: ``"HTTP 503 from target"``, ``"target timed out after 500
    ms"``...; with ``done``, set only when the result was dropped."""
    retry_after_s: float | None = None
    """``retry``: the least wait the target asked for with ``Retry-After``, at most
    MAX_RETRY_AFTER_S; None when it asked for none (or said it unreadably)."""


def new_pool(max_connections: int) -> urllib3.PoolManager:
    """The HTTP client deliveries share: ``max_connections`` kept per target host (one per
    worker is enough), no retries and no redirects of its own.

    Certificates are verified against the system's trust store. Unlike some clients, a
    PoolManager ignores HTTP_PROXY and the like: a target is reached directly, as the allow
    list checked it.
    """
    return urllib3.PoolManager(
        # Hosts whose connections are kept; past that, the least recently used are closed.
        num_pools=64,
        maxsize=max_connections,
        block=False,
        retries=False,
    )


def deliver(
    pool: urllib3.PoolManager,
    target: Target,
    task_id: str,
    attempt: int,
    payload_json: bytes,
    *,
    timeout_ms: int,
    result_max_bytes: int,
    signing_keys: Sequence[bytes] = (),
    allow: AllowList | None = None,
    clock: Callable[[], float] = time.time,
) -> DeliveryOutcome:
    """Send attempt number ``attempt`` (1 on the first) of task ``task_id`` to ``target`` and
    say what the answer means, within ``timeout_ms`` (plus at most one name lookup, which no
    socket timeout bounds).

    ``allow``, when given, is checked again first, so a target enqueued before TARGET_ALLOW
    was narrowed is not sent to. ``clock`` gives the signature's time and reads a
    ``Retry-After`` date. Never raises for anything the target or the network does.
    """
    if allow is not None and not allow.allows(target.url):
        return DeliveryOutcome("fail", error="target not allowed")
    timeout_s = timeout_ms / 1000
    deadline = time.monotonic() + timeout_s
    body = b"" if target.method == "GET" else payload_json
    headers = _request_headers(target, task_id, attempt, body, signing_keys, clock)
    try:
        response = pool.request(
            target.method,
            target.url,
            body=body or None,
            headers=headers,
            # total: connecting and waiting for the answer's head share one limit; reading
            # the body is held to the same deadline below.
            timeout=urllib3.Timeout(total=timeout_s),
            retries=False,
            redirect=False,
            preload_content=False,
        )
    except NameResolutionError as exc:
        host = parse_url(target.url).host
        return _no_answer(task_id, f"target unreachable: cannot resolve {host} ({_reason(exc)})")
    except NewConnectionError as exc:  # before ClientTimeout: urllib3 makes it a subclass
        return _no_answer(task_id, f"target unreachable: {_reason(exc)}")
    except ClientTimeout:
        return _no_answer(task_id, f"target timed out after {timeout_ms} ms")
    except HTTPError as exc:  # reset, closed without an answer, TLS refused...
        return _no_answer(task_id, f"target unreachable: {_reason(exc)}")
    try:
        outcome = _outcome(response, deadline, timeout_ms, result_max_bytes, clock)
    finally:
        response.release_conn()
    logger.debug(
        "task %r attempt %d: %s %s answered %d (%s)",
        task_id,
        attempt,
        target.method,
        target.url,
        response.status,
        outcome.kind,
        extra={"task_id": task_id, "attempt": attempt},
    )
    return outcome


def _request_headers(
    target: Target,
    task_id: str,
    attempt: int,
    body: bytes,
    signing_keys: Sequence[bytes],
    clock: Callable[[], float],
) -> dict[str, str]:
    headers: dict[str, str] = {"Content-Type": "application/json"} if body else {}
    # The target's names were checked on intake never to clash with the ones set below.
    headers.update(target.headers)
    # An id is any text without control characters: sent as its UTF-8 bytes (http.client
    # writes a header as Latin-1, which passes each of those bytes through unchanged), so a
    # receiver reads back exactly the id that was signed.
    headers["Task-Id"] = task_id.encode("utf-8").decode("latin-1")
    headers["Task-Attempt"] = str(attempt)
    if signing_keys:
        headers[SIGNATURE_HEADER] = sign(signing_keys, int(clock()), task_id, body)
    return headers


def _no_answer(task_id: str, error: str) -> DeliveryOutcome:
    logger.debug("task %r: %s", task_id, error, extra={"task_id": task_id})
    return DeliveryOutcome("retry", error=cap(error))


def _reason(exc: BaseException) -> str:
    """The operating system's words for a connection failure ("Connection refused"), found
    under urllib3's wrappers, which add object addresses and repeat themselves."""
    found: BaseException = exc
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and not isinstance(current, HTTPError):
            found = current
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    if isinstance(found, OSError) and found.strerror:
        return str(found.strerror)
    return str(found) or type(found).__name__


class _Late(Exception):
    """The deadline passed while the answer's body was being read."""


def _outcome(
    response: urllib3.BaseHTTPResponse,
    deadline: float,
    timeout_ms: int,
    result_max_bytes: int,
    clock: Callable[[], float],
) -> DeliveryOutcome:
    status = response.status
    if 200 <= status < 300:
        return _done(response, deadline, timeout_ms, result_max_bytes)
    _drain(response, deadline)
    if status in RETRYABLE_STATUSES or 500 <= status < 600:
        return DeliveryOutcome(
            "retry",
            status=status,
            error=f"HTTP {status} from target",
            retry_after_s=retry_after_s(response.headers.get("Retry-After"), clock()),
        )
    return DeliveryOutcome("fail", status=status, error=f"HTTP {status} from target (not retried)")


def _done(
    response: urllib3.BaseHTTPResponse, deadline: float, timeout_ms: int, result_max_bytes: int
) -> DeliveryOutcome:
    """A 2xx: the target did the work, so the task is done even when its answer cannot be
    kept; sending again to get a better answer would do the work twice."""
    status = response.status
    # Parsed JSON can be smaller than its text (whitespace), so read past the result's limit
    # before calling an answer too big; past twice the limit, stop reading and call it so.
    limit = 2 * result_max_bytes + 1024
    try:
        data = _read(response, limit, deadline)
    except _Late:
        response.close()
        return DeliveryOutcome(
            "done",
            status=status,
            error=f"result dropped: answer body not read within {timeout_ms} ms",
        )
    except HTTPError as exc:
        response.close()
        return DeliveryOutcome(
            "done", status=status, error=cap(f"result dropped: answer body lost: {_reason(exc)}")
        )
    if data is None:
        response.close()
        return DeliveryOutcome(
            "done", status=status, error=f"result dropped: answer body over {limit} bytes"
        )
    answer = answer_body(data, response.headers.get("Content-Type"))
    result, dropped = encode_result({"status": status, "body": answer}, result_max_bytes)
    return DeliveryOutcome("done", status=status, result=result, error=dropped)


def _drain(response: urllib3.BaseHTTPResponse, deadline: float) -> None:
    """Read a small error body to its end so the connection can be reused; close a big, slow
    or broken one instead. The status has already said what there is to say."""
    try:
        if _read(response, DRAIN_LIMIT_BYTES, deadline) is not None:
            return
    except (_Late, HTTPError):
        pass
    response.close()


def _read(response: urllib3.BaseHTTPResponse, limit: int, deadline: float) -> bytes | None:
    """The whole body, or None once it is over ``limit`` bytes; raises _Late past
    ``deadline``.

    A read timeout bounds each wait for bytes, not the whole: a target dripping one byte a
    second would never trip it. So the deadline is checked between reads, and each read may
    wait only for the time left.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Late
        _wait_at_most(response, remaining)
        try:
            chunk = response.read1(READ_CHUNK_BYTES)
        except ClientTimeout:
            raise _Late from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def _wait_at_most(response: urllib3.BaseHTTPResponse, seconds: float) -> None:
    """Shorten the socket's timeout to ``seconds`` for the next read.

    urllib3 sets a read timeout once, when the answer's head is awaited, and has no public way
    to shorten it afterwards; its connection's socket is the standard ``sock`` of
    ``http.client``. If that ever goes away, reads keep urllib3's timeout (the deadline check
    between reads still holds) and the body-stall test in tests/test_delivery.py fails.
    """
    sock = getattr(response.connection, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def answer_body(data: bytes, content_type: str | None) -> object:
    """The answer as a result holds it: parsed JSON when it is JSON (said so, or unlabelled),
    else text in its declared charset (UTF-8 when none), None when empty."""
    if not data:
        return None
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    if not media or media == "application/json" or media.endswith("+json"):
        try:
            return msgspec.json.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            pass  # labelled JSON but is not: kept as the text it is
    charset = "utf-8"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        return data.decode(charset, "replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", "replace")


def retry_after_s(value: str | None, now: float) -> float | None:
    """The wait a ``Retry-After`` value asks for, in seconds from ``now``: delay-seconds or an
    HTTP date, at least 0 and at most MAX_RETRY_AFTER_S; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        # Compare digit counts first: int() of thousands of digits is refused (and slow).
        return MAX_RETRY_AFTER_S if len(text) > 6 else min(float(int(text)), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return min(max(when.timestamp() - now, 0.0), MAX_RETRY_AFTER_S)


def attempt_report(outcome: DeliveryOutcome) -> AttemptReport:
    """The AttemptReport a worker takes for this delivery: ``done`` returned, ``retry`` raised
    (with the target's ``Retry-After``), ``fail`` permanent.

    A timeout is ``raised`` rather than ``timed_out``: no handler ran past its limit, so there
    is no process to replace.
    """
    if outcome.kind == "done":
        return AttemptReport("returned", result=outcome.result, error=outcome.error)
    if outcome.kind == "retry":
        return AttemptReport("raised", error=outcome.error, retry_after_s=outcome.retry_after_s)
    return AttemptReport("permanent", error=outcome.error)
