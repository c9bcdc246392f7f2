"""Alarm: one long-lived timer thread that rings at the last deadline it was given."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pykka
import pytest

from actors.alarm import Alarm, posting

RING_TIMEOUT_S = 5.0
"""How long a test waits for a ring that should come."""
QUIET_S = 0.2
"""How long a test listens for a ring that should not come: well past the deadlines it set."""

_names = itertools.count()


class Bell:
    """Records when the alarm rang, on the alarm's thread."""

    def __init__(self) -> None:
        self.rang = threading.Event()
        self.times: list[float] = []

    def __call__(self) -> None:
        self.times.append(time.monotonic())
        self.rang.set()


@pytest.fixture
def bell() -> Bell:
    return Bell()


@pytest.fixture
def alarm_name() -> str:
    return f"test-alarm-{next(_names)}"


@pytest.fixture
def alarm(bell: Bell, alarm_name: str) -> Iterator[Alarm]:
    alarm = Alarm(bell, name=alarm_name)
    yield alarm
    alarm.close()


def threads_named(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == name]


def test_an_alarm_rings_once_its_deadline_has_passed(alarm: Alarm, bell: Bell) -> None:
    deadline = time.monotonic() + 0.02
    alarm.set(deadline)

    assert bell.rang.wait(RING_TIMEOUT_S)
    assert bell.times[0] >= deadline


def test_an_alarm_rings_at_once_for_a_deadline_already_past(alarm: Alarm, bell: Bell) -> None:
    alarm.set(time.monotonic() - 1.0)
    assert bell.rang.wait(RING_TIMEOUT_S)


def test_an_alarm_rings_once_per_deadline(alarm: Alarm, bell: Bell) -> None:
    alarm.set(time.monotonic())
    assert bell.rang.wait(RING_TIMEOUT_S)
    bell.rang.clear()
    alarm.set(time.monotonic())
    assert bell.rang.wait(RING_TIMEOUT_S)
    bell.rang.clear()

    assert not bell.rang.wait(QUIET_S)
    assert len(bell.times) == 2


def test_an_earlier_deadline_replaces_a_later_one(alarm: Alarm, bell: Bell) -> None:
    alarm.set(time.monotonic() + 60.0)
    alarm.set(time.monotonic() + 0.01)

    assert bell.rang.wait(RING_TIMEOUT_S)
    assert len(bell.times) == 1


def test_a_later_deadline_replaces_an_earlier_one(alarm: Alarm, bell: Bell) -> None:
    alarm.set(time.monotonic() + 0.02)
    alarm.set(time.monotonic() + 60.0)

    assert not bell.rang.wait(QUIET_S)


def test_close_prevents_a_pending_ring_and_ends_the_thread(bell: Bell) -> None:
    name = f"test-alarm-{next(_names)}"
    alarm = Alarm(bell, name=name)
    alarm.set(time.monotonic() + 0.05)

    alarm.close()

    assert threads_named(name) == []
    assert not bell.rang.wait(QUIET_S)


def test_an_alarm_keeps_exactly_one_thread_however_often_it_is_set(bell: Bell) -> None:
    name = f"test-alarm-{next(_names)}"
    before = threading.active_count()
    alarm = Alarm(bell, name=name)
    try:
        now = time.monotonic()
        for offset_s in range(10_000):
            alarm.set(now + 60.0 + offset_s)
        alarm.set(time.monotonic())
        assert bell.rang.wait(RING_TIMEOUT_S)

        assert len(threads_named(name)) == 1
        assert threading.active_count() == before + 1
    finally:
        alarm.close()


def test_an_alarm_thread_never_holds_the_process_open(alarm: Alarm, alarm_name: str) -> None:
    [thread] = threads_named(alarm_name)
    assert thread.daemon


def test_a_failing_callback_does_not_stop_the_alarm() -> None:
    first_ring = threading.Event()
    second_ring = threading.Event()

    def flaky() -> None:
        if not first_ring.is_set():
            first_ring.set()
            raise RuntimeError("first ring fails")
        second_ring.set()

    alarm = Alarm(flaky, name=f"test-alarm-{next(_names)}")
    try:
        alarm.set(time.monotonic())
        assert first_ring.wait(RING_TIMEOUT_S)
        alarm.set(time.monotonic())
        assert second_ring.wait(RING_TIMEOUT_S)
    finally:
        alarm.close()


def test_a_whole_number_deadline_rings_like_any_other(alarm: Alarm, bell: Bell) -> None:
    # ``set(deadline: float)`` accepts an int by the numeric tower; time.monotonic() values
    # are floats in practice, but a whole number must not kill the thread.
    alarm.set(int(time.monotonic()))
    assert bell.rang.wait(RING_TIMEOUT_S)


HAMMER_THREADS = 4
HAMMER_SETS = 40_000
"""Sets per hammering thread at most; the old SimpleQueue-based alarm missed a deadline for
good within about 150,000 sets in all."""
HAMMER_S = 3.0
"""How long the threads hammer at most, whatever the machine's speed."""
HAMMER_RING_S = 1.0
"""A deadline microseconds away must ring within this, however busy the machine."""


def test_deadlines_microseconds_away_always_ring_however_hard_the_alarm_is_hammered() -> None:
    # Each thread owns an alarm and sets it again and again to a deadline a few microseconds
    # away, waiting for each ring, while the other threads keep the GIL busy: the alarm thread
    # is routinely paused past a deadline between computing its wait and starting it.
    failures: list[str] = []
    alarms: list[Alarm] = []
    stop_at = time.monotonic() + HAMMER_S

    def hammer(seed: int) -> None:
        rang = threading.Event()
        alarm = Alarm(rang.set, name=f"test-alarm-{next(_names)}")
        alarms.append(alarm)
        for i in range(HAMMER_SETS):
            if time.monotonic() > stop_at:
                return
            rang.clear()
            alarm.set(time.monotonic() + 1e-6 * (1 + (seed + i) % 50))
            if not rang.wait(HAMMER_RING_S):
                failures.append(f"thread {seed}: set {i} did not ring within {HAMMER_RING_S} s")
                return

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(HAMMER_THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for alarm in alarms:
            alarm.close()

    assert failures == []


class _Inbox(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.got: list[object] = []

    def on_receive(self, message: object) -> object:
        if message == "what":
            return list(self.got)
        self.got.append(message)
        return None


def test_a_posting_ring_tells_its_actor_and_is_quiet_once_the_actor_has_stopped() -> None:
    actor = _Inbox.start()
    ring = posting(actor, "rang")

    ring()
    ring()
    assert actor.ask("what", timeout=RING_TIMEOUT_S) == ["rang", "rang"]
    actor.stop()
    ring()  # no ActorDeadError on the alarm's thread
