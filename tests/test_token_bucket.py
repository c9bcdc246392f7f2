"""TokenBucket: at most ``rate`` starts a second, a burst of one second's worth, no clock."""

from __future__ import annotations

import pytest

from actors.token_bucket import TokenBucket


def takes(bucket: TokenBucket, now: float) -> int:
    """How many tokens can be taken at ``now``, taking them all."""
    taken = 0
    while bucket.take(now):
        taken += 1
    return taken


def test_a_fresh_bucket_allows_one_second_s_worth_at_once_then_none() -> None:
    bucket = TokenBucket(5, now=100.0)
    assert takes(bucket, 100.0) == 5
    assert not bucket.take(100.0)


def test_tokens_come_back_at_the_rate_and_never_beyond_the_burst() -> None:
    bucket = TokenBucket(5, now=0.0)
    takes(bucket, 0.0)
    assert takes(bucket, 0.2) == 1
    assert takes(bucket, 0.3) == 0
    assert takes(bucket, 0.6) == 2
    assert takes(bucket, 60.0) == 5  # a minute idle still allows only one second's burst


def test_next_at_says_when_the_next_token_is_there() -> None:
    bucket = TokenBucket(4, now=10.0)
    takes(bucket, 10.0)
    assert bucket.next_at(10.0) == pytest.approx(10.25)
    assert bucket.next_at(10.1) == pytest.approx(10.25)
    assert not bucket.take(10.24)
    assert bucket.take(10.25)
    assert bucket.next_at(20.0) == 20.0  # a token is there: now


def test_a_rate_below_one_a_second_still_allows_one_start_then_waits() -> None:
    bucket = TokenBucket(0.5, now=0.0)
    assert takes(bucket, 0.0) == 1
    assert bucket.next_at(0.0) == pytest.approx(2.0)
    assert takes(bucket, 1.9) == 0
    assert takes(bucket, 2.0) == 1


@pytest.mark.parametrize("rate", [0, -1.0, float("nan")])
def test_a_rate_that_is_not_above_zero_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="above 0"):
        TokenBucket(rate, now=0.0)


def test_over_any_stretch_starts_never_exceed_the_burst_plus_the_rate_times_its_length() -> None:
    bucket = TokenBucket(5, now=0.0)
    # Three tries every 10 ms for ten seconds: far more demand than the rate.
    starts = [t / 100 for t in range(1000) for _ in range(3) if bucket.take(t / 100)]
    assert 5 + 5 * 9 <= len(starts) <= 5 + 5 * 10
    for first in range(len(starts)):
        within = [s for s in starts[first:] if s - starts[first] < 1.0]
        assert len(within) <= 5 + 5  # a full bucket and one second of refill at most
