"""When a failed task runs again: exponential backoff with jitter, as one pure function."""

from __future__ import annotations

import random
from collections.abc import Callable

Uniform = Callable[[float, float], float]
"""A random source shaped like ``random.uniform(a, b)``; injected so tests can pin it."""


def should_retry(attempt: int, max_retries: int) -> bool:
    """Whether failed attempt number ``attempt`` (1 = the first run) earns another.

    ``max_retries`` counts retries after the first attempt, so a task that always fails makes
    ``max_retries + 1`` attempts in all (as Celery, Sidekiq, RQ and Dramatiq count them).
    """
    return attempt <= max_retries


def compute_backoff_ms(
    attempt: int,
    *,
    base_ms: float,
    max_ms: float,
    uniform: Uniform = random.uniform,
) -> float:
    """Delay in milliseconds before the attempt that follows failed attempt number ``attempt``.

    ``min(max_ms, base_ms * 2 ** (attempt - 1)) + uniform(0, base_ms / 2)``: the exponential
    part is capped, the jitter is not, so retries of tasks that failed together spread out even
    at the cap.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    # Cap the exponent before computing the power: max_retries goes up to 100 and 2**99 ms is
    # not a delay anyone means. Past 2**62 the cap always wins for any sane max_ms.
    exponential = base_ms * 2 ** min(attempt - 1, 62)
    return min(max_ms, exponential) + uniform(0, base_ms / 2)
