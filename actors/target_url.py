"""A target's URL in one canonical spelling: the URL that is checked is the URL that is sent.

A URL is canonicalized once, on intake: scheme and host lower-cased, the host IDNA-encoded (an
IPv6 address compressed), the default port dropped, percent-escapes normalized, dot segments
removed, the fragment dropped. That text is what the allow list compares and what the HTTP
client requests, so a trick that makes two parsers disagree (``https://a.com@evil.com``,
``/hooks/%2e%2e/admin``) is refused or resolved before the comparison, never after it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Final, NamedTuple
from urllib.parse import quote, urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

logger = logging.getLogger(__name__)

DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class CanonicalUrl(NamedTuple):
    """An http(s) URL read and canonicalized: what the allow list compares, and (as ``text``)
    what is sent."""

    scheme: str
    host: str
    port: int
    path: str
    query: str

    @property
    def text(self) -> str:
        port = "" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}"
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.host}{port}{self.path}{query}"


class UnreadableUrl(ValueError):
    """A URL ``canonicalize`` refuses; the message is a phrase to follow the URL's name
    ("must be an http or https URL")."""


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


def canonicalize(url: str) -> CanonicalUrl:
    """Read an absolute http(s) URL into its canonical parts, or raise UnreadableUrl."""
    if _UNSAFE_CHARS.search(url):
        raise UnreadableUrl("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL", or a host that NFKC normalization changes
        raise UnreadableUrl("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UnreadableUrl("must be an http or https URL")
    # Refuse user info outright rather than strip it: `https://a.com@evil.com` names evil.com,
    # and whoever wrote it may have meant a.com.
    if "@" in parts.netloc:
        raise UnreadableUrl("must not carry user info (user:pass@)")
    host = _host(parts.netloc, parts.hostname)
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        raise UnreadableUrl("has an invalid port") from None
    if port == 0:
        raise UnreadableUrl("has an invalid port")
    for text in (parts.path, parts.query):
        if _BAD_PERCENT.search(text):
            raise UnreadableUrl("has a malformed percent-escape")
    canonical = CanonicalUrl(
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
        raise UnreadableUrl("must name a host")
    if netloc.startswith("["):
        if "%" in hostname:  # a zone id names an interface of this machine, not a host
            raise UnreadableUrl("must not carry an IPv6 zone id")
        try:
            return f"[{ipaddress.IPv6Address(hostname).compressed}]"
        except ValueError:
            raise UnreadableUrl("has an invalid IPv6 address") from None
    if not hostname.isascii():
        try:
            hostname = hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise UnreadableUrl("has a host name that cannot be IDNA-encoded") from None
    if len(hostname) > 253 or not _HOSTNAME.fullmatch(hostname):
        raise UnreadableUrl("has an invalid host name")
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


def _check_client_agrees(parts: CanonicalUrl) -> None:
    """Refuse a URL the HTTP client would read differently from us: a second parser's
    disagreement is how allow lists are bypassed, so the one that sends must agree."""
    try:
        seen = parse_url(parts.text)
    except LocationParseError:
        raise UnreadableUrl("is not a valid URL") from None
    port = DEFAULT_PORTS[parts.scheme] if seen.port is None else seen.port
    if (seen.scheme, seen.host, port, seen.path or "/") != (
        parts.scheme,
        parts.host,
        parts.port,
        parts.path,
    ):
        raise UnreadableUrl("is not a valid URL")
