"""ScheduleActor on its own, with an injected clock and a fake dispatcher and repository:
firings on time with their ids, skips while the last task runs, pause, resume, delete, and
what a restart over the same store fires."""

from __future__ import annotations

import queue
import threading
from typing import Any

import msgspec
import pykka
import pytest

from actors.protocol.answers import Admission
from actors.protocol.reading import GetTask
from actors.protocol.schedules import (
    AddSchedule,
    AdmitFiring,
    DeleteSchedule,
    GetSchedule,
    ListSchedules,
    OpenSchedules,
    PauseSchedule,
    ScheduleAlarmRang,
    StopSchedules,
)
from actors.reply import Reply
from actors.schedule import Schedule, timing_of
from actors.schedule_store import MemoryScheduleStore
from actors.schedules import ScheduleActor
from actors.store import StoreError
from actors.task import DONE, RUNNING, Task, new_task
from tests.support import ask, wait_until

START = 1_800_000_000.0
"""2027-01-15T08:00:00Z: the fake clock's first reading, on a whole minute."""


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class FakeDispatcher(pykka.ThreadingActor):
    """Admits every firing (or answers ``answer``) and records its task."""

    def __init__(self, admitted: queue.Queue[Task], answer: Admission) -> None:
        super().__init__()
        self._admitted = admitted
        self._answer = answer

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, AdmitFiring):
            self._admitted.put(message.task)
            message.reply.set(self._answer)
        return None


class FakeRepository(pykka.ThreadingActor):
    """Answers GetTask from ``tasks``, which the test sets."""

    def __init__(self, tasks: dict[str, Task]) -> None:
        super().__init__()
        self._tasks = tasks

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, GetTask):
            message.reply.set(self._tasks.get(message.task_id))
        return None


class Harness:
    def __init__(
        self,
        store: MemoryScheduleStore | None = None,
        clock: FakeClock | None = None,
        answer: Admission = Admission.ACCEPTED,
    ) -> None:
        self.clock = clock or FakeClock()
        self.store = store or MemoryScheduleStore()
        self.admitted: queue.Queue[Task] = queue.Queue()
        self.tasks: dict[str, Task] = {}
        self.dispatcher = FakeDispatcher.start(self.admitted, answer)
        self.repository = FakeRepository.start(self.tasks)
        self.actor = ScheduleActor.start(
            self.dispatcher, self.repository, lambda: self.store, clock=self.clock
        )
        assert ask(self.actor, OpenSchedules) == len(self.store.load())

    def add(
        self,
        schedule_id: str,
        cron: str | None = None,
        every_ms: int | None = None,
        timezone: str | None = None,
    ) -> Schedule | None:
        timing = timing_of(cron, every_ms, timezone)
        template = new_task(schedule_id, b'{"n": 1}', 2, 0.0, priority=4)
        return ask(self.actor, lambda reply: AddSchedule(schedule_id, timing, template, reply))

    def get(self, schedule_id: str) -> Schedule:
        schedule = ask(self.actor, lambda reply: GetSchedule(schedule_id, reply))
        assert schedule is not None
        return schedule

    def tick(self, seconds: float) -> None:
        """Move the clock on and ring the alarm, as its thread would at the new time."""
        self.clock.advance(seconds)
        self.actor.tell(ScheduleAlarmRang())

    def next_admitted(self) -> Task:
        return self.admitted.get(timeout=5)

    def nothing_admitted(self) -> bool:
        # Whatever the actor does for a ring is done once it answers a question asked after it.
        self.get_all()
        return self.admitted.empty()

    def get_all(self) -> tuple[Schedule, ...]:
        return ask(self.actor, ListSchedules)

    def restart(self) -> Harness:
        self.actor.stop()
        return Harness(self.store, self.clock)


@pytest.fixture
def harness() -> Harness:
    return Harness()


def test_a_periodic_schedule_fires_each_period_with_the_time_in_its_task_id(
    harness: Harness,
) -> None:
    created = harness.add("poll", every_ms=60_000)
    assert created is not None
    assert created.next_run_at == START + 60
    harness.tick(59)
    assert harness.nothing_admitted()
    harness.tick(1)
    task = harness.next_admitted()
    assert task.id == "poll@2027-01-15T08:01:00Z"
    assert (task.payload, task.max_retries, task.priority) == (b'{"n": 1}', 2, 4)
    harness.tasks[task.id] = msgspec.structs.replace(task, status=DONE)
    harness.tick(60)
    assert harness.next_admitted().id == "poll@2027-01-15T08:02:00Z"
    schedule = wait_until(lambda: (s := harness.get("poll")).fired == 2 and s)
    assert schedule.last_task_id == "poll@2027-01-15T08:02:00Z"
    assert schedule.next_run_at == START + 180


def test_a_cron_schedule_fires_at_the_next_minute(harness: Harness) -> None:
    harness.clock.advance(20)
    created = harness.add("minutely", cron="* * * * *")
    assert created is not None
    assert created.next_run_at == START + 60
    harness.tick(39)
    assert harness.nothing_admitted()
    harness.tick(1)
    assert harness.next_admitted().id == "minutely@2027-01-15T08:01:00Z"


def test_a_firing_is_skipped_while_the_last_task_is_still_running(harness: Harness) -> None:
    harness.add("poll", every_ms=1000)
    harness.tick(1)
    first = harness.next_admitted()
    wait_until(lambda: harness.get("poll").fired == 1)
    harness.tasks[first.id] = msgspec.structs.replace(first, status=RUNNING, attempts=1)
    harness.tick(1)
    wait_until(lambda: harness.get("poll").skipped == 1)
    harness.tick(1)
    schedule = wait_until(lambda: (s := harness.get("poll")).skipped == 2 and s)
    assert harness.admitted.empty()
    assert schedule.last_task_id == first.id
    harness.tasks[first.id] = msgspec.structs.replace(first, status=DONE, attempts=1)
    harness.tick(1)
    assert harness.next_admitted().id == "poll@2027-01-15T08:00:04Z"


def test_a_paused_schedule_does_not_fire_and_resumes_from_now(harness: Harness) -> None:
    harness.add("poll", every_ms=10_000)
    paused = ask(harness.actor, lambda reply: PauseSchedule("poll", True, reply))
    assert paused is not None
    assert paused.paused
    assert paused.next_run_at is None
    harness.tick(35)
    assert harness.nothing_admitted()
    resumed = ask(harness.actor, lambda reply: PauseSchedule("poll", False, reply))
    assert resumed is not None
    # The next time on its grid after now, without making up those missed while paused.
    assert resumed.next_run_at == START + 40
    harness.tick(5)
    assert harness.next_admitted().id == "poll@2027-01-15T08:00:40Z"
    assert harness.admitted.empty()


def test_a_deleted_schedule_never_fires_again(harness: Harness) -> None:
    harness.add("poll", every_ms=1000)
    assert ask(harness.actor, lambda reply: DeleteSchedule("poll", reply)) is True
    assert ask(harness.actor, lambda reply: DeleteSchedule("poll", reply)) is False
    harness.tick(5)
    assert harness.nothing_admitted()
    assert harness.get_all() == ()
    assert harness.store.load() == []


def test_a_known_id_is_refused_and_unknown_ids_answer_none(harness: Harness) -> None:
    assert harness.add("poll", every_ms=1000) is not None
    assert harness.add("poll", cron="* * * * *") is None
    assert ask(harness.actor, lambda reply: GetSchedule("nope", reply)) is None
    assert ask(harness.actor, lambda reply: PauseSchedule("nope", True, reply)) is None


def test_a_firing_missed_while_down_fires_once_at_start_then_goes_on_from_now() -> None:
    first = Harness()
    first.add("nightly", cron="0 3 * * *", timezone="Europe/Berlin")
    assert first.get("nightly").next_run_at == START + 18 * 3600  # 02:00 UTC the next day
    # Down for three days: three firings missed.
    first.clock.advance(3 * 86_400)
    second = first.restart()
    caught_up = second.next_admitted()
    assert caught_up.id == "nightly@2027-01-16T02:00:00Z"  # the first one missed, once
    assert second.nothing_admitted()
    schedule = wait_until(lambda: (s := second.get("nightly")).fired == 1 and s)
    assert schedule.next_run_at == START + 3 * 86_400 + 18 * 3600
    # Written down, so a third start catches up nothing.
    third = second.restart()
    assert third.nothing_admitted()


def test_a_catch_up_whose_task_exists_already_is_not_counted_as_fired() -> None:
    first = Harness(answer=Admission.DUPLICATE)
    first.add("poll", every_ms=1000)
    first.tick(1)
    first.next_admitted()
    assert first.nothing_admitted()
    assert first.get("poll").fired == 0


def test_changes_are_kept_in_the_store_and_loaded_by_the_next_start() -> None:
    first = Harness()
    first.add("a", every_ms=5000)
    first.add("b", cron="*/5 * * * *", timezone="Asia/Tokyo")
    ask(first.actor, lambda reply: PauseSchedule("b", True, reply))
    second = first.restart()
    loaded = second.get_all()
    assert [schedule.id for schedule in loaded] == ["a", "b"]
    assert loaded[1].paused
    assert loaded[1].timing.timezone == "Asia/Tokyo"
    assert loaded[0].task.payload == b'{"n": 1}'


def test_stopped_schedules_fire_no_more(harness: Harness) -> None:
    harness.add("poll", every_ms=1000)
    assert ask(harness.actor, StopSchedules) == 1
    harness.tick(5)
    assert harness.nothing_admitted()


class FailingStore(MemoryScheduleStore):
    def commit(self, *args: Any, **kwargs: Any) -> None:
        raise StoreError("disk full")


def test_a_schedule_the_store_cannot_keep_is_refused_and_not_held() -> None:
    harness = Harness(FailingStore())
    with pytest.raises(StoreError, match="disk full"):
        harness.add("poll", every_ms=1000)
    assert harness.get_all() == ()


def test_ten_thousand_schedules_are_held_by_one_alarm_thread() -> None:
    before = {thread.name for thread in threading.enumerate()}
    harness = Harness(clock=FakeClock())
    timing = timing_of(None, 60_000, None)
    template = new_task("t", b"null", 0, 0.0)
    for index in range(10_000):
        reply: Reply[Schedule | None] = Reply()
        harness.actor.tell(AddSchedule(f"s{index}", timing, template, reply))
    assert len(harness.get_all()) == 10_000
    alarms = [t for t in threading.enumerate() if t.name == "schedule-alarm"]
    assert len(alarms) == 1
    assert "schedule-alarm" not in before


def test_a_task_system_keeps_its_schedules_in_the_store_across_a_restart() -> None:
    from actors.system import TaskSystem

    store = MemoryScheduleStore()
    first = TaskSystem.start(lambda task: None, workers=1, open_schedules=lambda: store)
    timing = timing_of("0 3 * * *", None, "Europe/Berlin")
    added = first.add_schedule_async("nightly", timing, new_task("nightly", b"null", 0, 0.0))
    assert added.get(timeout=5) is not None
    first.stop()
    second = TaskSystem.start(lambda task: None, workers=1, open_schedules=lambda: store)
    try:
        (kept,) = second.list_schedules_async().get(timeout=5)
        assert (kept.id, kept.timing) == ("nightly", timing)
    finally:
        second.stop()


def test_a_schedule_store_that_cannot_be_opened_stops_the_start() -> None:
    from actors.system import TaskSystem

    def unusable() -> MemoryScheduleStore:
        raise StoreError("is not a task_queue schedule store")

    with pytest.raises(StoreError, match="schedule store"):
        TaskSystem.start(lambda task: None, workers=1, open_schedules=unusable)
    wait_until(lambda: not pykka.ActorRegistry.get_all())
