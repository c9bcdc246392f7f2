"""The ``Task-Signature`` header: how a receiver knows a delivery came from this service and was
not altered or replayed late.

Modelled on Stripe's scheme, which receivers already know: ``t=<unix seconds>,v1=<hex>`` where
each ``v1`` is the HMAC-SHA256, with one key, of ``"<t>.<task id>."`` followed by the exact body
bytes. One ``v1`` per key in TARGET_SIGNING_KEYS, so keys can be rotated without a moment where
a receiver refuses good deliveries: add the new key, move receivers over, drop the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "Task-Signature"
VERSION: Final = "v1"
"""The only signature scheme so far; a verifier ignores the ones it does not know."""
MIN_KEY_CHARS: Final = 16
"""A shorter key is refused at start: it could be guessed from one captured delivery."""
DEFAULT_TOLERANCE_S: Final = 300.0
"""How far a signature's time may be from the receiver's clock: five minutes, as Stripe's."""


class InvalidSigningKeys(ValueError):
    """A TARGET_SIGNING_KEYS value the service cannot sign with; the message never holds a
    key."""


def parse_signing_keys(value: str) -> tuple[bytes, ...]:
    """Read TARGET_SIGNING_KEYS: comma-separated keys, each used as its UTF-8 bytes.

    Empty: no keys, and deliveries go unsigned. Raises InvalidSigningKeys naming the position
    (from 1) of a key that is empty or too short, never the key itself.
    """
    if not value.strip():
        return ()
    keys: list[bytes] = []
    for position, raw in enumerate(value.split(","), start=1):
        key = raw.strip()
        if len(key) < MIN_KEY_CHARS:
            raise InvalidSigningKeys(
                f"invalid TARGET_SIGNING_KEYS: key {position} is "
                f"{'empty' if not key else 'too short'}; each key needs at least "
                f"{MIN_KEY_CHARS} characters"
            )
        keys.append(key.encode("utf-8"))
    return tuple(keys)


def signed_content(timestamp: int, task_id: str, body: bytes) -> bytes:
    """What each ``v1`` is the HMAC of: ``"<t>.<task id>."`` and then the body, byte for byte."""
    return f"{timestamp}.{task_id}.".encode() + body


def _digest(key: bytes, content: bytes) -> str:
    return hmac.new(key, content, hashlib.sha256).hexdigest()


def sign(keys: Sequence[bytes], timestamp: int, task_id: str, body: bytes) -> str:
    """The ``Task-Signature`` value for one delivery: ``t=<timestamp>,v1=<hex>...``, one ``v1``
    per key in order. ``keys`` must not be empty."""
    if not keys:
        raise ValueError("signing needs at least one key")
    content = signed_content(timestamp, task_id, body)
    return ",".join([f"t={timestamp}", *(f"{VERSION}={_digest(key, content)}" for key in keys)])


def verify(
    header: str,
    keys: Sequence[bytes],
    task_id: str,
    body: bytes,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """Whether ``header`` is a valid ``Task-Signature`` for this delivery: its time within
    ``tolerance_s`` of ``now`` and one of its ``v1`` values made with one of ``keys``.

    The reference for receivers. ``task_id`` is the one the receiver was told (``Task-Id``),
    ``body`` the raw bytes it read, before any JSON parsing. A malformed header is not valid.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, equals, value = item.strip().partition("=")
        if not equals:
            return False
        if name == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                return False
            timestamp = int(value)
        elif name == VERSION:
            candidates.append(value)
        # Any other name is a scheme newer than this verifier: skipped, as Stripe's are.
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance_s:
        return False
    content = signed_content(timestamp, task_id, body)
    expected = [_digest(key, content) for key in keys]
    # Compare every pair, in constant time each, so timing says nothing about which matched.
    matched = False
    for candidate in candidates:
        for digest in expected:
            matched |= hmac.compare_digest(candidate.encode(), digest.encode())
    return matched
