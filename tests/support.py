"""Helpers the tests share: waiting on conditions with deadlines, never fixed sleeps."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0


def wait_until(
    condition: Callable[[], T], timeout_s: float = DEFAULT_TIMEOUT_S, interval_s: float = 0.005
) -> T:
    """Poll ``condition`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout_s} s: {condition}")
        time.sleep(interval_s)
