"""StoreOutage: a store that cannot be written, as the repository lives through it.

When to try the store again (backoff, actors/backoff.py) and how loud to say each failure
(CRITICAL when it begins, then at most once a minute), with the clock and the random source
outside, so the rules are tested without waiting.
"""

from __future__ import annotations

import logging
import math
import random
from typing import TYPE_CHECKING, Final, NamedTuple

from actors.backoff import compute_backoff_ms

if TYPE_CHECKING:
    from actors.backoff import Uniform
    from actors.store import StoreError

STORE_RETRY_BASE_MS: Final = 50
"""First wait before trying again a store that failed; doubled after each failure."""

STORE_RETRY_MAX_MS: Final = 2000
"""Longest wait between two tries of a store that failed: how late, at worst, a store that can
be written again (the disk has room again) is noticed."""

STORE_LOG_INTERVAL_S: Final = 60.0
"""A store failure is logged at CRITICAL when it begins, then at most this often."""


class Failure(NamedTuple):
    """What to do about one failed write."""

    began: bool
    """The store was available until now: tell whoever refuses new work."""
    level: int
    """How loud to log it."""
    retry_at: float
    """When to try again (the clock's time)."""


class StoreOutage:
    """The failed writes of one store: whether it is down, since when, and what each failure
    calls for. Used from the repository's thread only."""

    def __init__(self, *, uniform: Uniform = random.uniform) -> None:
        self.error: StoreError | None = None
        """Why the store is down; None while it is available."""
        self.failures = 0
        """Failed writes in a row, in this outage."""
        self.began_at = 0.0
        self._logged_at = -math.inf
        self._uniform = uniform

    @property
    def down(self) -> bool:
        return self.error is not None

    def failed(self, error: StoreError, now: float) -> Failure:
        """A write failed at ``now``: CRITICAL if none was said for STORE_LOG_INTERVAL_S, else
        ERROR for a new outage and DEBUG for another failure of the same one."""
        began = self.error is None
        if began:
            self.began_at = now
        self.error = error
        self.failures += 1
        if now - self._logged_at >= STORE_LOG_INTERVAL_S:
            self._logged_at = now
            level = logging.CRITICAL
        else:
            level = logging.ERROR if began else logging.DEBUG
        delay_ms = compute_backoff_ms(
            self.failures,
            base_ms=STORE_RETRY_BASE_MS,
            max_ms=STORE_RETRY_MAX_MS,
            uniform=self._uniform,
        )
        return Failure(began, level, now + delay_ms / 1000)

    def ended(self) -> None:
        """A write succeeded: the store is available again."""
        self.error = None
        self.failures = 0
