"""An HTTP target: where a task's attempts are sent instead of TASK_HANDLER, checked on the way
in, held frozen, and shown with its secrets hidden.

One rule runs through this module: the URL that is checked is the URL that is sent. A target's
URL is canonicalized once, on intake (scheme and host lower-cased, the host IDNA-encoded, the
default port dropped, percent-escapes normalized, dot segments removed, the fragment dropped),
and that canonical text is what the allow list compares and what the HTTP client requests. So a
trick that makes two parsers disagree (``https://a.com@evil.com``, ``/hooks/%2e%2e/admin``)
is either refused or resolved before the comparison, never after it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Annotated, Final, Literal, NamedTuple, get_args
from urllib.parse import quote, urlsplit

import msgspec
from msgspec import Meta
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

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

DEFAULT_PORTS: Final = {"http": 80, "https": 443}

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


class InvalidAllowList(ValueError):
    """A TARGET_ALLOW value the service cannot run with; the message names the bad entry."""


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


class _Parts(NamedTuple):
    """A URL read and canonicalized: what the allow list compares."""

    scheme: str
    host: str
    port: int
    path: str
    query: str

    @property
    def url(self) -> str:
        port = "" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}"
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.host}{port}{self.path}{query}"


class _Unreadable(ValueError):
    """A URL ``_parse`` refuses; the message is a phrase that follows the URL's name."""


# Python's urlsplit silently drops tabs and newlines and strips leading controls and spaces,
# so such a URL would be checked as one text and mean another: refuse them all.
_UNSAFE_CHARS: Final = re.compile(r"[\x00-\x20\x7f-\x9f\s]")
_HOSTNAME: Final = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
_PERCENT: Final = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 3986 pchar minus the unreserved (which quote keeps anyway), plus "/" and "%" (escapes
# are normalized separately); everything else, and every non-ASCII character, is escaped.
_PATH_SAFE: Final = "/%:@!$&'()*+,;="
_QUERY_SAFE: Final = _PATH_SAFE + "?"
# An escaped slash or backslash in a path: many servers decode it to a separator, which would
# turn one segment under an allowed prefix into a way out of it.
_ESCAPED_SEPARATOR: Final = re.compile(r"%2F|%5C")


def _parse(url: str) -> _Parts:
    """Read an absolute http(s) URL into its canonical parts, or raise _Unreadable."""
    if _UNSAFE_CHARS.search(url):
        raise _Unreadable("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL", or a host that NFKC normalization changes
        raise _Unreadable("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise _Unreadable("must be an http or https URL")
    # Refuse user info outright rather than strip it: `https://a.com@evil.com` names evil.com,
    # and whoever wrote it may have meant a.com.
    if "@" in parts.netloc:
        raise _Unreadable("must not carry user info (user:pass@)")
    host = _host(parts.netloc, parts.hostname)
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        raise _Unreadable("has an invalid port") from None
    if port == 0:
        raise _Unreadable("has an invalid port")
    for text in (parts.path, parts.query):
        if _BAD_PERCENT.search(text):
            raise _Unreadable("has a malformed percent-escape")
    canonical = _Parts(
        scheme=scheme,
        host=host,
        port=DEFAULT_PORTS[scheme] if port is None else port,
        path=_remove_dot_segments(_normalize_escapes(quote(parts.path, safe=_PATH_SAFE))),
        query=_normalize_escapes(quote(parts.query, safe=_QUERY_SAFE)),
    )
    _check_client_agrees(canonical)
    return canonical


def _host(netloc: str, hostname: str | None) -> str:
    """The host, lower-cased: an IPv6 address compressed in brackets, a name IDNA-encoded."""
    if not hostname:
        raise _Unreadable("must name a host")
    if netloc.startswith("["):
        if "%" in hostname:  # a zone id names an interface of this machine, not a host
            raise _Unreadable("must not carry an IPv6 zone id")
        try:
            return f"[{ipaddress.IPv6Address(hostname).compressed}]"
        except ValueError:
            raise _Unreadable("has an invalid IPv6 address") from None
    if not hostname.isascii():
        try:
            hostname = hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise _Unreadable("has a host name that cannot be IDNA-encoded") from None
    if len(hostname) > 253 or not _HOSTNAME.fullmatch(hostname):
        raise _Unreadable("has an invalid host name")
    return hostname


def _normalize_escapes(text: str) -> str:
    """Escapes of unreserved characters decoded (``%2E`` is ``.``), the rest upper-cased, so
    one path has one spelling (RFC 3986 section 6.2.2.2)."""

    def normalize(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else f"%{match.group(1).upper()}"

    return _PERCENT.sub(normalize, text)


def _remove_dot_segments(path: str) -> str:
    """``path`` with ``.`` and ``..`` segments resolved (RFC 3986 section 5.2.4); never above
    the root, and always absolute."""
    segments = path.split("/")
    kept: list[str] = [""]
    for index, segment in enumerate(segments[1:], start=1):
        last = index == len(segments) - 1
        if segment in (".", ".."):
            if segment == ".." and len(kept) > 1:
                kept.pop()
            if last:  # "/a/." and "/a/b/.." both end in a directory: keep the slash
                kept.append("")
            continue
        kept.append(segment)
    return "/".join(kept) if len(kept) > 1 else "/"


def _check_client_agrees(parts: _Parts) -> None:
    """Refuse a URL the HTTP client would read differently from us: a second parser's
    disagreement is how allow lists are bypassed, so the one that sends must agree."""
    try:
        seen = parse_url(parts.url)
    except LocationParseError:
        raise _Unreadable("is not a valid URL") from None
    port = DEFAULT_PORTS[parts.scheme] if seen.port is None else seen.port
    if (seen.scheme, seen.host, port, seen.path or "/") != (
        parts.scheme,
        parts.host,
        parts.port,
        parts.path,
    ):
        raise _Unreadable("is not a valid URL")


def target_of(body: TargetBody) -> Target:
    """The Target kept for ``body``: its URL canonicalized, its headers checked.

    Raises InvalidTarget naming the field that is wrong (never a header's value).
    """
    try:
        canonical = _parse(body.url).url
    except _Unreadable as exc:
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


_body_decoder: Final = msgspec.json.Decoder(TargetBody)
_body_encoder: Final = msgspec.json.Encoder()


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
    return _body_encoder.encode(TargetBody(target.url, target.method, dict(target.headers)))


def decode_stored(data: bytes) -> Target:
    """A target read back from the store, as ``encode_stored`` wrote it.

    Not checked again: it was checked on intake, and rules tightened since must not make a
    stored task unreadable (the allow list is what delivery checks again).
    """
    body = msgspec.json.decode(data, type=TargetBody)
    return Target(url=body.url, method=body.method, headers=tuple(body.headers.items()))


def redacted(target: Target) -> TargetBody:
    """A target as answers show it: the URL and method, each header value replaced by
    REDACTED."""
    return TargetBody(
        url=target.url,
        method=target.method,
        headers={name: REDACTED for name, _ in target.headers},
    )


class AllowEntry(NamedTuple):
    """One TARGET_ALLOW entry, canonicalized: a target must match the first three and be under
    ``path``."""

    scheme: str
    host: str
    port: int
    path: str


class AllowList(msgspec.Struct, frozen=True):
    """The URL prefixes targets may point at (TARGET_ALLOW); empty allows nothing.

    A URL is allowed when its scheme, host and port equal an entry's (an absent port is the
    scheme's default) and its path is under the entry's path, both canonicalized as
    ``target_of`` does. "Under" follows segment boundaries: the entry ``/hooks`` allows
    ``/hooks``, ``/hooks/`` and ``/hooks/a`` but not ``/hooksmith``; an entry ending in ``/``
    (``/hooks/``) allows only what starts with it. Under an entry with a path, a URL whose
    path holds an escaped slash or backslash (``%2F``, ``%5C``) past the entry's path is
    refused: a receiver may decode it into a separator and a ``..`` beside it.
    """

    entries: tuple[AllowEntry, ...] = ()

    @classmethod
    def parse(cls, value: str) -> AllowList:
        """Read TARGET_ALLOW: comma-separated ``scheme://host[:port][/path]`` entries.

        Raises InvalidAllowList naming the first entry that is not one.
        """
        if not value.strip():
            return cls()
        entries: list[AllowEntry] = []
        for raw in value.split(","):
            entry = raw.strip()
            if not entry:
                raise InvalidAllowList(
                    f"invalid TARGET_ALLOW={value!r}: an empty entry (a comma too many?)"
                )
            try:
                parts = _parse(entry)
            except _Unreadable as exc:
                raise InvalidAllowList(f"invalid TARGET_ALLOW entry {entry!r}: {exc}") from None
            if "?" in entry or "#" in entry:
                raise InvalidAllowList(
                    f"invalid TARGET_ALLOW entry {entry!r}: an entry is a URL prefix "
                    "without a query or fragment"
                )
            entries.append(AllowEntry(parts.scheme, parts.host, parts.port, parts.path))
        return cls(tuple(entries))

    def allows(self, url: str) -> bool:
        """Whether ``url`` is under one of the entries; an unreadable URL never is."""
        try:
            parts = _parse(url)
        except _Unreadable:
            return False
        return any(_under(parts, entry) for entry in self.entries)


def _under(parts: _Parts, entry: AllowEntry) -> bool:
    if (parts.scheme, parts.host, parts.port) != (entry.scheme, entry.host, entry.port):
        return False
    if entry.path == "/":
        return True
    if parts.path == entry.path:
        return True
    prefix = entry.path if entry.path.endswith("/") else entry.path + "/"
    if not parts.path.startswith(prefix):
        return False
    # Only what follows the entry's path can climb out of it.
    return _ESCAPED_SEPARATOR.search(parts.path, len(prefix)) is None
