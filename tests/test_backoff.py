"""compute_backoff_ms and should_retry: the retry rule as pure functions, random source pinned."""

from __future__ import annotations

import pytest

from actors.backoff import compute_backoff_ms, should_retry


def upper_bound(a: float, b: float) -> float:
    """A uniform that always draws the top of its range: the most jitter there can be."""
    return b


def lower_bound(a: float, b: float) -> float:
    """A uniform that always draws the bottom of its range: no jitter."""
    return a


@pytest.mark.parametrize(
    ("attempt", "expected_ms"),
    [
        (1, 100.0),
        (2, 200.0),
        (3, 400.0),
        (4, 800.0),
        (9, 25_600.0),
        (10, 30_000.0),  # 51,200 capped
        (11, 30_000.0),
    ],
)
def test_the_delay_doubles_from_the_base_up_to_the_cap(attempt: int, expected_ms: float) -> None:
    delay_ms = compute_backoff_ms(attempt, base_ms=100, max_ms=30_000, uniform=lower_bound)
    assert delay_ms == expected_ms


@pytest.mark.parametrize(
    ("attempt", "expected_ms"),
    [
        (1, 100.0 + 50.0),
        (2, 200.0 + 50.0),
        (5, 1_600.0 + 50.0),
        (10, 30_000.0 + 50.0),  # the jitter is added on top of the cap, never capped itself
    ],
)
def test_the_jitter_adds_at_most_half_the_base(attempt: int, expected_ms: float) -> None:
    delay_ms = compute_backoff_ms(attempt, base_ms=100, max_ms=30_000, uniform=upper_bound)
    assert delay_ms == expected_ms


@pytest.mark.parametrize("attempt", [1, 2, 7, 64, 1_000])
def test_the_jitter_is_drawn_once_from_zero_to_half_the_base(attempt: int) -> None:
    draws: list[tuple[float, float]] = []

    def recording_uniform(a: float, b: float) -> float:
        draws.append((a, b))
        return 3.0

    delay_ms = compute_backoff_ms(attempt, base_ms=10, max_ms=1_000, uniform=recording_uniform)

    assert draws == [(0, 5.0)]
    assert delay_ms == min(1_000, 10 * 2 ** (attempt - 1)) + 3.0


@pytest.mark.parametrize("attempt", [63, 64, 100, 1_025, 10**6, 10**18])
def test_huge_attempt_numbers_stay_at_the_cap_without_overflowing(attempt: int) -> None:
    delay_ms = compute_backoff_ms(attempt, base_ms=100.0, max_ms=30_000.0, uniform=upper_bound)
    assert delay_ms == 30_050.0


def test_a_cap_below_the_base_caps_even_the_first_retry() -> None:
    assert compute_backoff_ms(1, base_ms=500, max_ms=200, uniform=lower_bound) == 200


def test_a_zero_base_means_retrying_at_once() -> None:
    assert compute_backoff_ms(5, base_ms=0, max_ms=30_000, uniform=upper_bound) == 0


def test_the_default_random_source_keeps_the_delay_within_its_jitter_range() -> None:
    for _ in range(200):
        delay_ms = compute_backoff_ms(3, base_ms=10, max_ms=1_000)
        assert 40.0 <= delay_ms <= 45.0


@pytest.mark.parametrize("attempt", [0, -1, -100])
def test_attempt_numbers_below_one_are_refused(attempt: int) -> None:
    with pytest.raises(ValueError, match="start at 1"):
        compute_backoff_ms(attempt, base_ms=100, max_ms=30_000, uniform=lower_bound)


@pytest.mark.parametrize(
    ("attempt", "max_retries", "expected"),
    [
        (1, 0, False),
        (1, 1, True),
        (2, 1, False),
        (1, 3, True),
        (3, 3, True),
        (4, 3, False),
        (100, 100, True),
        (101, 100, False),
    ],
)
def test_a_failed_attempt_earns_a_retry_only_while_retries_remain(
    attempt: int, max_retries: int, expected: bool
) -> None:
    assert should_retry(attempt, max_retries) is expected


@pytest.mark.parametrize("max_retries", [0, 1, 3, 100])
def test_a_task_that_always_fails_makes_max_retries_plus_one_attempts(max_retries: int) -> None:
    attempts = 0
    while True:
        attempts += 1  # this attempt fails
        if not should_retry(attempts, max_retries):
            break
    assert attempts == max_retries + 1
