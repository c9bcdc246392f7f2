"""An HTTP target: where a task's attempts are sent instead of TASK_HANDLER, checked on the way
in, held frozen, kept in the store, and shown with its secrets hidden.

Its URL is kept in canonical form (actors/target_url.py), so the URL the allow list checked is
the URL that is sent.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Final, Literal, get_args

import msgspec
from msgspec import Meta

from actors.target_url import UnreadableUrl, canonicalize

logger = logging.getLogger(__name__)

MAX_URL_CHARS: Final = 2048
"""The longest target URL, as given and as canonicalized."""
MAX_HEADERS: Final = 50
"""The most headers one target may carry."""
MAX_HEADER_NAME_CHARS: Final = 256
MAX_HEADER_VALUE_CHARS: Final = 8192
"""Longer than any token a receiver needs, and about where servers start refusing headers."""
REDACTED: Final = "***"
"""What every header value becomes in an answer."""

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
METHODS: Final = get_args(Method)

RESERVED_HEADERS: Final = frozenset(
    {
        # The service sets these on every delivery; a task setting them could forge a signature
        # or an attempt number.
        "content-type",
        "task-id",
        "task-attempt",
        "task-signature",
        # These frame the request; the HTTP client sets them from the URL and the body.
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
    }
)
"""Header names (lower-cased) a task may not set."""


class InvalidTarget(ValueError):
    """A target the API refuses; the message is the 400's text, and never holds a header
    value."""


class TargetBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A target as the API reads and shows it: ``{"url", "method", "headers"}``.

    For ``EnqueueRequest.target``; ``target_of`` checks what the types cannot and makes the
    Target that is kept.
    """

    url: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_URL_CHARS,
            description="An http or https URL, at most 2048 characters, without user info.",
        ),
    ]
    method: Method = "POST"
    headers: Annotated[
        dict[str, str],
        Meta(max_length=MAX_HEADERS, description="Sent with every attempt; at most 50."),
    ] = {}


class Target(msgspec.Struct, frozen=True, gc=False):
    """Where and how a task's attempts are sent: checked, canonical, immutable.

    ``headers`` are (name, value) pairs in the order given: a tuple, so nothing mutable crosses
    an actor boundary. ``repr`` hides the values, so a Target (or a Task holding one) written to
    a log by accident does not leak a token.
    """

    url: str
    method: Method = "POST"
    headers: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        names = ", ".join(f"{name}: {REDACTED}" for name, _ in self.headers)
        return f"Target({self.method} {self.url} {{{names}}})"


def target_of(body: TargetBody) -> Target:
    """The Target kept for ``body``: its URL canonicalized, its headers checked.

    Raises InvalidTarget naming the field that is wrong (never a header's value).
    """
    try:
        canonical = canonicalize(body.url).text
    except UnreadableUrl as exc:
        raise InvalidTarget(f"target.url {exc}") from None
    if len(canonical) > MAX_URL_CHARS:
        raise InvalidTarget(
            f"target.url must be at most {MAX_URL_CHARS} characters once percent-encoded"
        )
    return Target(url=canonical, method=body.method, headers=_checked_headers(body.headers))


_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE: Final = re.compile(r"[\t\x20-\x7e]*")


def _checked_headers(headers: dict[str, str]) -> tuple[tuple[str, str], ...]:
    seen: set[str] = set()
    for name, value in headers.items():
        if len(name) > MAX_HEADER_NAME_CHARS or not _HEADER_NAME.fullmatch(name):
            # repr, capped: the name may hold anything, and the client reads it back.
            raise InvalidTarget(f"target.headers: {name[:64]!r} is not a valid header name")
        folded = name.lower()
        if folded in RESERVED_HEADERS:
            raise InvalidTarget(f"target.headers: {name} is set by the service")
        if folded in seen:
            raise InvalidTarget(f"target.headers: {name} is given twice")
        seen.add(folded)
        # CR or LF would let a value start a header of its own; non-ASCII has no one encoding.
        if len(value) > MAX_HEADER_VALUE_CHARS or not _HEADER_VALUE.fullmatch(value):
            raise InvalidTarget(
                f"target.headers: the value of {name} must be printable ASCII of at most "
                f"{MAX_HEADER_VALUE_CHARS} characters"
            )
    return tuple(headers.items())


# What a msgspec error about a target's field says, as a sentence the client can act on.
_FIELD_RULES: Final = {
    "url": f"target.url must be a string of 1 to {MAX_URL_CHARS} characters",
    "method": f"target.method must be one of {', '.join(METHODS)}",
    "headers": f"target.headers must be an object of at most {MAX_HEADERS} string values",
}
# Where msgspec says the error is: the target itself (alone, or inside a task, or inside a
# batch's task), or one of its fields.
_AT_TARGET: Final = re.compile(
    r"(?: - at `\$(?:\[\d+\])?(\.target)?(?:\.(\w+))?(?:\[\.\.\.\])?`)?$"
)


def describe_target_error(message: str, *, nested: bool = True) -> str | None:
    """The 400 text for msgspec's ``message`` when it is about a target, else None.

    ``nested``: the target is a field of the decoded document (``$.target``, ``$[3].target``);
    otherwise it is the document itself (``decode_target``).
    """
    match = _AT_TARGET.search(message)
    if match is None or (nested and match.group(1) is None):
        return None
    field = match.group(2)
    reason = message[: match.start()]
    if field in _FIELD_RULES:
        return _FIELD_RULES[field]
    if field is not None:
        return None
    if reason.startswith("Object missing required field `url`"):
        return "target.url is required"
    unknown = re.match(r"Object contains unknown field `(.*)`$", reason)
    if unknown is not None:
        return f"target has no field {unknown.group(1)!r}"
    if reason.startswith("Expected `object"):
        return "target must be a JSON object"
    return None


class _Stored(msgspec.Struct, frozen=True):
    """A target as the store keeps it: TargetBody's shape without its limits, so limits
    tightened later never make a stored task unreadable."""

    url: str
    method: Method
    headers: dict[str, str] = {}


_body_decoder: Final = msgspec.json.Decoder(TargetBody)
_stored_decoder: Final = msgspec.json.Decoder(_Stored)
_encoder: Final = msgspec.json.Encoder()


def decode_target(data: bytes) -> Target:
    """Decode and check a target given as JSON text; InvalidTarget says what is wrong."""
    try:
        body = _body_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidTarget(
            describe_target_error(str(exc), nested=False) or f"target: {exc}"
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidTarget("target must be a JSON object") from None
    return target_of(body)


def encode_stored(target: Target) -> bytes:
    """The JSON text kept in the store: the API's shape, header values and all."""
    return _encoder.encode(_Stored(target.url, target.method, dict(target.headers)))


def decode_stored(data: bytes) -> Target:
    """A target read back from the store, as ``encode_stored`` wrote it.

    Not checked again: it was checked on intake (the allow list is what delivery checks
    again).
    """
    stored = _stored_decoder.decode(data)
    return Target(url=stored.url, method=stored.method, headers=tuple(stored.headers.items()))


def redacted(target: Target) -> TargetBody:
    """A target as answers show it: the URL and method, each header value replaced by
    REDACTED."""
    return TargetBody(
        url=target.url,
        method=target.method,
        headers={name: REDACTED for name, _ in target.headers},
    )
