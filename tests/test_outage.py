"""StoreOutage: when a store that failed is tried again, and how loud each failure is said."""

from __future__ import annotations

import logging

import pytest

from actors.outage import STORE_LOG_INTERVAL_S, STORE_RETRY_MAX_MS, StoreOutage
from actors.store import StoreError
from tests.support import no_jitter

FULL = StoreError("the store at tasks.db cannot be written: database or disk is full")


def test_a_store_is_available_until_a_write_fails_and_again_once_one_succeeds() -> None:
    outage = StoreOutage(uniform=no_jitter)
    assert not outage.down

    first = outage.failed(FULL, now=100.0)

    assert first.began
    assert outage.down
    assert outage.error is FULL
    assert not outage.failed(FULL, now=100.1).began
    outage.ended()
    assert not outage.down
    assert outage.failures == 0


@pytest.mark.parametrize(
    ("failures", "wait_ms"),
    [(1, 50), (2, 100), (3, 200), (4, 400), (5, 800), (6, 1600), (7, 2000), (30, 2000)],
)
def test_each_failure_waits_twice_as_long_up_to_the_cap(failures: int, wait_ms: float) -> None:
    outage = StoreOutage(uniform=no_jitter)
    for _ in range(failures - 1):
        outage.failed(FULL, now=0.0)

    assert outage.failed(FULL, now=10.0).retry_at == pytest.approx(10.0 + wait_ms / 1000)
    assert wait_ms <= STORE_RETRY_MAX_MS


def test_critical_when_it_begins_then_at_most_once_per_interval() -> None:
    outage = StoreOutage(uniform=no_jitter)
    levels = [outage.failed(FULL, now=t).level for t in (0.0, 1.0, 30.0, 59.9)]
    later = outage.failed(FULL, now=STORE_LOG_INTERVAL_S).level

    assert levels == [logging.CRITICAL] + [logging.DEBUG] * 3
    assert later == logging.CRITICAL


def test_a_new_outage_soon_after_the_last_critical_line_is_said_at_error() -> None:
    outage = StoreOutage(uniform=no_jitter)
    outage.failed(FULL, now=0.0)
    outage.ended()

    again = outage.failed(FULL, now=5.0)

    assert again.began
    assert again.level == logging.ERROR
    assert outage.failures == 1
    assert outage.began_at == 5.0
