"""TokenBucket: at most ``rate`` starts a second, with a burst of one second's worth."""

from __future__ import annotations


class TokenBucket:
    """Tokens refill at ``rate`` a second up to ``max(rate, 1)``; each start takes one.

    Pure: the caller passes the time (``time.monotonic()``), so tests need no clock. Kept on
    one thread (the dispatcher's).
    """

    __slots__ = ("_capacity", "_rate", "_tokens", "_updated")

    def __init__(self, rate: float, *, now: float) -> None:
        if not rate > 0:
            raise ValueError("rate must be above 0")
        self._rate = rate
        self._capacity = max(rate, 1.0)
        self._tokens = self._capacity  # a fresh queue may start its first second's worth at once
        self._updated = now

    @property
    def rate(self) -> float:
        return self._rate

    def take(self, now: float) -> bool:
        """Take a token if one is there now; False (nothing taken) if not."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def next_at(self, now: float) -> float:
        """When the next token is there (``now`` if it already is)."""
        self._refill(now)
        if self._tokens >= 1.0:
            return now
        return now + (1.0 - self._tokens) / self._rate

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
