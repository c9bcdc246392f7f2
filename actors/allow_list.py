"""TARGET_ALLOW: the URL prefixes targets may point at, compared as canonical URLs."""

from __future__ import annotations

import logging
import re
from typing import Final, NamedTuple

import msgspec

from actors.target_url import CanonicalUrl, UnreadableUrl, canonicalize

logger = logging.getLogger(__name__)

# An escaped slash or backslash in a path: many servers decode it to a separator, which would
# turn one segment under an allowed prefix into a way out of it.
_ESCAPED_SEPARATOR: Final = re.compile(r"%2F|%5C")


class InvalidAllowList(ValueError):
    """A TARGET_ALLOW value the service cannot run with; the message names the bad entry."""


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
    scheme's default) and its path is under the entry's path, both canonicalized
    (actors/target_url.py). "Under" follows segment boundaries: the entry ``/hooks`` allows
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
                parts = canonicalize(entry)
            except UnreadableUrl as exc:
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
            parts = canonicalize(url)
        except UnreadableUrl:
            return False
        return any(_under(parts, entry) for entry in self.entries)


def _under(parts: CanonicalUrl, entry: AllowEntry) -> bool:
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
