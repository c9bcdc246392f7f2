"""RetryActor on its own: waiting retries released in due order, by one timer thread."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from typing import Any, NamedTuple

import pykka

from actors.protocol.reading import GetRetryStats
from actors.protocol.task_actions import CancelInLine
from actors.protocol.waiting import (
    AlarmRang,
    HoldUntilDue,
    StopRetryTimer,
    TasksDue,
    WaitingCancelled,
)
from actors.reply import Reply
from actors.retry import COMPACT_AT, RetryActor
from actors.task import Task, new_task
from tests.support import ask, wait_until

TIMEOUT_S = 5.0
LATER_S = 60.0
"""A delay no test waits for."""


class Flush(NamedTuple):
    """-> Outbox, with ``ask``: answered once everything told before it is on the queue."""


class Outbox(pykka.ThreadingActor):
    """A fake dispatcher: puts every message it is told on a queue the test reads."""

    def __init__(self, received: queue.Queue[Any]) -> None:
        super().__init__()
        self._received = received

    def on_receive(self, message: Any) -> Any:
        if not isinstance(message, Flush):
            self._received.put(message)
        return None


class Retries:
    """A retry actor wired to a fake dispatcher."""

    def __init__(self) -> None:
        self.received: queue.Queue[TasksDue] = queue.Queue()
        self.dispatcher = Outbox.start(self.received)
        self.to_repository: queue.Queue[Any] = queue.Queue()
        self.repository = Outbox.start(self.to_repository)
        self.actor = RetryActor.start(self.dispatcher, self.repository)

    def schedule(self, task_id: str, delay_s: float) -> Task:
        task = new_task(task_id, b"null", max_retries=3)
        self.actor.tell(HoldUntilDue(task, delay_s))
        return task

    def released(self, count: int) -> list[str]:
        """Ids of the next ``count`` released tasks, in release order."""
        ids: list[str] = []
        while len(ids) < count:
            ids.extend(task.id for task in self.received.get(timeout=TIMEOUT_S).tasks)
        return ids

    def nothing_released(self) -> bool:
        self.dispatcher.ask(Flush(), timeout=TIMEOUT_S)
        return self.received.empty()

    def cancel(self) -> int:
        waiting: int = ask(self.actor, StopRetryTimer, TIMEOUT_S)
        return waiting


def alarm_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "retry-alarm")


def test_retries_are_released_in_due_order_not_arrival_order() -> None:
    retries = Retries()
    for task_id, delay_s in [("d", 0.06), ("b", 0.02), ("c", 0.04), ("a", 0.0)]:
        retries.schedule(task_id, delay_s)

    assert retries.released(4) == ["a", "b", "c", "d"]
    assert retries.nothing_released()


def test_retries_due_at_once_keep_their_arrival_order() -> None:
    retries = Retries()
    ids = [f"task-{n}" for n in range(50)]
    for task_id in ids:
        retries.schedule(task_id, 0.0)

    assert retries.released(50) == ids


def test_a_retry_is_not_released_before_it_is_due() -> None:
    retries = Retries()
    scheduled_at = time.monotonic()
    retries.schedule("first", 0.01)
    retries.schedule("second", 0.1)

    assert retries.released(1) == ["first"]
    first_s = time.monotonic() - scheduled_at
    assert retries.released(1) == ["second"]
    second_s = time.monotonic() - scheduled_at

    assert first_s >= 0.01
    assert second_s >= 0.1


def test_a_sooner_retry_is_not_held_up_behind_a_later_one() -> None:
    retries = Retries()
    retries.schedule("later", LATER_S)
    retries.schedule("sooner", 0.01)

    assert retries.released(1) == ["sooner"]
    assert retries.cancel() == 1


def test_the_released_task_is_the_one_that_was_scheduled() -> None:
    retries = Retries()
    task = retries.schedule("task-1", 0.0)

    assert retries.received.get(timeout=TIMEOUT_S) == TasksDue((task,))


def test_ten_thousand_waiting_retries_share_one_timer_thread() -> None:
    threads_before = threading.active_count()
    alarms_before = alarm_threads()
    retries = Retries()
    for n in range(10_000):
        retries.schedule(f"waiting-{n}", LATER_S + n / 1000)
    # Released only after the 10,000 before it have been taken in.
    retries.schedule("marker", 0.0)
    assert retries.released(1) == ["marker"]

    assert alarm_threads() == alarms_before + 1
    # The fake dispatcher and repository, the retry actor and its alarm: nothing per retry.
    assert threading.active_count() == threads_before + 4
    assert retries.cancel() == 10_000


def test_ten_thousand_retries_are_all_released_once_each_in_due_order() -> None:
    retries = Retries()
    delays_s = {f"task-{n}": (n * 7919 % 10_000) / 200_000 for n in range(10_000)}
    for task_id, delay_s in delays_s.items():
        retries.schedule(task_id, delay_s)

    released = retries.released(10_000)

    assert sorted(released) == sorted(delays_s)
    assert retries.nothing_released()
    assert retries.cancel() == 0
    # Due = arrival + delay, and arrivals only move forward: a task released before one that
    # arrived earlier must have had a delay no longer than that one's.
    arrival = {task_id: n for n, task_id in enumerate(delays_s)}
    for a, b in itertools.pairwise(released):
        if arrival[a] > arrival[b]:
            assert delays_s[a] <= delays_s[b], (a, b)


def test_cancel_retries_answers_how_many_wait_and_stops_the_alarm_thread() -> None:
    alarms_before = alarm_threads()
    retries = Retries()
    wait_until(lambda: alarm_threads() == alarms_before + 1)
    retries.schedule("soon-1", 0.05)
    retries.schedule("soon-2", 0.05)
    retries.schedule("later", LATER_S)

    assert retries.cancel() == 3
    assert alarm_threads() == alarms_before


def test_after_cancel_retries_nothing_is_released_even_when_due() -> None:
    retries = Retries()
    retries.schedule("soon", 0.02)
    due = time.monotonic() + 0.02
    assert retries.cancel() == 1

    wait_until(lambda: time.monotonic() > due + 0.01)
    retries.actor.tell(AlarmRang())  # as if a ring had been on its way when cancel came
    retries.schedule("after-cancel", 0.0)

    assert retries.cancel() == 2
    assert retries.nothing_released()


def test_stopping_the_retry_actor_stops_its_alarm_thread() -> None:
    alarms_before = alarm_threads()
    retries = Retries()
    retries.schedule("later", LATER_S)

    retries.actor.stop(timeout=TIMEOUT_S)

    assert alarm_threads() == alarms_before


def waiting(retries: Retries) -> int:
    reply: Reply[int] = Reply()
    retries.actor.tell(GetRetryStats(reply))
    return reply.get(timeout=TIMEOUT_S)


def test_retry_stats_count_the_tasks_still_waiting() -> None:
    retries = Retries()
    assert waiting(retries) == 0
    retries.schedule("soon", 0.0)
    retries.schedule("later-1", LATER_S)
    retries.schedule("later-2", LATER_S)

    assert retries.released(1) == ["soon"]
    assert waiting(retries) == 2


class HeapSize(NamedTuple):
    """-> MeasuredRetryActor, with ``ask``: answered with its heap's length, entries emptied by
    a cancel included."""


class MeasuredRetryActor(RetryActor):
    def on_receive(self, message: Any) -> Any:
        if isinstance(message, HeapSize):
            return len(self._waiting)
        return super().on_receive(message)


def test_cancelled_entries_do_not_pile_up_in_the_heap_until_due() -> None:
    retries = Retries()
    retries.actor.stop()
    retries.actor = MeasuredRetryActor.start(retries.dispatcher, retries.repository)
    for round_number in range(5):
        for n in range(1000):
            retries.schedule(f"r{round_number}-{n}", LATER_S)
        for n in range(1000):
            retries.actor.tell(CancelInLine(f"r{round_number}-{n}", Reply()))
    retries.schedule("kept", LATER_S)

    assert waiting(retries) == 1
    assert retries.actor.ask(HeapSize(), timeout=TIMEOUT_S) <= 2 * COMPACT_AT
    retries.dispatcher.ask(Flush(), timeout=TIMEOUT_S)
    told: list[Any] = []
    while not retries.received.empty():
        told.append(retries.received.get())
    assert told == [WaitingCancelled(1)] * 5000
