"""The schedule's timing on its own: next firings by cron in a time zone (DST included) and by
period, each firing's task id, and the timings refused."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from actors.schedule import (
    InvalidTiming,
    fire_id,
    firing_task,
    new_schedule,
    timing_of,
)
from actors.task import QUEUED, new_task

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, zone: ZoneInfo | None = None) -> float:
    """Seconds since the epoch of an ISO time, in ``zone`` (UTC without one)."""
    return datetime.fromisoformat(text).replace(tzinfo=zone or UTC).timestamp()


def utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@pytest.mark.parametrize(
    ("cron", "zone", "after", "expected"),
    [
        # Every minute: the next whole minute, strictly after.
        ("* * * * *", "UTC", "2026-11-29T12:00:30", "2026-11-29T12:01:00+00:00"),
        ("* * * * *", "UTC", "2026-11-29T12:00:00", "2026-11-29T12:01:00+00:00"),
        # 3 am in Berlin is 2 am UTC in winter (CET, +1), 1 am UTC in summer (CEST, +2).
        ("0 3 * * *", "Europe/Berlin", "2026-11-29T12:00:00", "2026-11-30T02:00:00+00:00"),
        ("0 3 * * *", "Europe/Berlin", "2026-07-01T12:00:00", "2026-07-02T01:00:00+00:00"),
        ("30 8 * * 1-5", "America/New_York", "2026-11-27T14:00:00", "2026-11-30T13:30:00+00:00"),
    ],
)
def test_a_cron_schedule_fires_at_its_next_time_in_its_time_zone(
    cron: str, zone: str, after: str, expected: str
) -> None:
    timing = timing_of(cron, None, zone)
    assert utc(timing.next_run(at(after), at(after))) == expected


def test_a_time_skipped_by_the_spring_gap_fires_right_after_it() -> None:
    # 2026-03-29: Berlin's clocks jump from 02:00 to 03:00; 02:30 does not exist that night.
    timing = timing_of("30 2 * * *", None, "Europe/Berlin")
    fired = timing.next_run(at("2026-03-28T12:00:00"), 0.0)
    assert datetime.fromtimestamp(fired, BERLIN).isoformat() == "2026-03-29T03:00:00+02:00"
    # And the night after, at 02:30 again.
    following = timing.next_run(fired, 0.0)
    assert datetime.fromtimestamp(following, BERLIN).isoformat() == "2026-03-30T02:30:00+02:00"


def test_a_time_repeated_by_the_autumn_change_fires_once() -> None:
    # 2026-10-25: Berlin's clocks go back from 03:00 to 02:00; 02:30 happens twice.
    timing = timing_of("30 2 * * *", None, "Europe/Berlin")
    first = timing.next_run(at("2026-10-24T12:00:00"), 0.0)
    assert utc(first) == "2026-10-25T00:30:00+00:00"  # the first 02:30, still CEST
    following = timing.next_run(first, 0.0)
    assert utc(following) == "2026-10-26T01:30:00+00:00"  # not the second 02:30 (01:30 UTC)


def test_an_hourly_schedule_goes_on_by_the_hour_through_a_dst_change() -> None:
    timing = timing_of("0 * * * *", None, "Europe/Berlin")
    fired = at("2026-03-29T00:00:00")  # 01:00 in Berlin, an hour before the gap
    times = []
    for _ in range(3):
        fired = timing.next_run(fired, 0.0)
        times.append(utc(fired))
    assert times == [
        "2026-03-29T01:00:00+00:00",
        "2026-03-29T02:00:00+00:00",
        "2026-03-29T03:00:00+00:00",
    ]


def test_a_period_fires_first_one_period_after_creation_and_keeps_its_phase() -> None:
    timing = timing_of(None, 60_000, None)
    created = 1000.25
    schedule = new_schedule("poll", timing, new_task("poll", b"null", 3), created)
    assert schedule.next_run_at == created + 60
    # However late it is asked, the next firing stays on the grid of the creation time.
    assert timing.next_run(created + 60, created) == created + 120
    assert timing.next_run(created + 60.9, created) == created + 120
    assert timing.next_run(created + 1000, created) == created + 1020


def test_a_firing_s_task_id_is_the_schedule_s_id_and_the_time_to_the_second() -> None:
    assert fire_id("nightly-report", at("2026-11-30T02:00:00")) == (
        "nightly-report@2026-11-30T02:00:00Z"
    )
    assert fire_id("poll", at("2026-11-30T02:00:00") + 0.999) == "poll@2026-11-30T02:00:00Z"


def test_a_firing_s_task_is_the_template_with_its_own_id_and_times() -> None:
    template = new_task("poll", b'{"a": 1}', 5, 0.0, priority=7, timeout_ms=1000)
    schedule = new_schedule("poll", timing_of(None, 1000, None), template, 10.0)
    task = firing_task(schedule, at("2026-11-30T02:00:00"), 99.5)
    assert task.id == "poll@2026-11-30T02:00:00Z"
    assert (task.payload, task.max_retries, task.priority, task.timeout_ms) == (
        b'{"a": 1}',
        5,
        7,
        1000,
    )
    assert (task.status, task.attempts, task.created_at, task.updated_at) == (QUEUED, 0, 99.5, 99.5)
    assert task.next_attempt_at is None


@pytest.mark.parametrize(
    ("cron", "every_ms", "zone", "message"),
    [
        (None, None, None, "give exactly one of cron and every_ms"),
        ("* * * * *", 1000, None, "give exactly one of cron and every_ms"),
        ("* * * *", None, None, "cron must have five fields"),
        ("0 0 * * * *", None, None, "cron must have five fields"),
        ("61 * * * *", None, None, "invalid cron expression"),
        ("* * 31 2 *", None, None, "invalid cron expression"),
        (None, 999, None, "every_ms must be an integer from 1000"),
        (None, 0, None, "every_ms must be an integer from 1000"),
        (None, 1000, "Mars/Olympus_Mons", "unknown timezone 'Mars/Olympus_Mons'"),
        (None, 1000, "../../etc/passwd", "unknown timezone"),
        (None, 1000, "", "unknown timezone"),
        (None, 1000, "America", "unknown timezone 'America'"),
        (None, 1000, "a" * 5000, "unknown timezone"),
    ],
)
def test_a_timing_that_cannot_be_used_is_refused_saying_why(
    cron: str | None, every_ms: int | None, zone: str | None, message: str
) -> None:
    with pytest.raises(InvalidTiming, match=message.replace("(", r"\(")):
        timing_of(cron, every_ms, zone)


def test_a_timing_without_a_time_zone_is_in_utc() -> None:
    assert timing_of("0 3 * * *", None, None).timezone == "UTC"
