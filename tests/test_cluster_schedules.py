"""ClusterScheduleActor on its own, with an injected clock, a fake dispatcher and a fake store:
how the firings due at one ring reach the store (in batches, earliest first) and what the
actor does with what each batch did. The store's side is tests/test_pg_schedules.py."""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, Any

import msgspec
import pykka
import pytest

from actors.cluster_schedules import BUSY_RETRY_S, RETRY_S, ClusterScheduleActor
from actors.pg_schedule_store import FIRINGS_PER_TRANSACTION, Changes, Fired, Firing
from actors.protocol.cluster import Wake
from actors.protocol.schedules import GetSchedule, OpenSchedules, ScheduleAlarmRang
from actors.schedule import new_schedule, timing_of
from actors.store import StoreError
from actors.task import new_task
from tests.support import ask
from tests.test_schedules import START, FakeClock

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from actors.schedule import Schedule


class FakeStore:
    """Holds ``schedules``; each batch is recorded, then answered by ``answer`` (FIRED, the
    row moved on a period, by default)."""

    def __init__(self, schedules: Sequence[Schedule]) -> None:
        self.schedules = {schedule.id: schedule for schedule in schedules}
        self.batches: queue.Queue[list[tuple[str, float]]] = queue.Queue()
        self.failing = 0

    def changes(self, since: int | None) -> Changes | None:
        if since is not None:
            return None
        return Changes(1, tuple(self.schedules.values()), frozenset(self.schedules))

    def get(self, schedule_id: str) -> Schedule | None:
        return self.schedules.get(schedule_id)

    def fire_batch(self, due: Sequence[tuple[str, float]], now: float) -> list[Fired]:
        self.batches.put(list(due))
        if self.failing:
            self.failing -= 1
            raise StoreError("PostgreSQL cannot be reached")
        return [self.answer(schedule_id, fire_at, now) for schedule_id, fire_at in due]

    def answer(self, schedule_id: str, fire_at: float, now: float) -> Fired:
        schedule = self.schedules[schedule_id]
        moved = msgspec.structs.replace(schedule, next_run_at=fire_at + 60, fired=1)
        self.schedules[schedule_id] = moved
        return Fired(Firing.FIRED, moved, f"{schedule_id}@t")

    def close(self) -> None:
        pass


class Wakes(pykka.ThreadingActor):
    def __init__(self, woken: queue.Queue[Wake]) -> None:
        super().__init__()
        self._woken = woken

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Wake):
            self._woken.put(message)
        return None


class Harness:
    def __init__(self, schedules: Sequence[Schedule]) -> None:
        self.clock = FakeClock()
        self.store = FakeStore(schedules)
        self.woken: queue.Queue[Wake] = queue.Queue()
        self.dispatcher = Wakes.start(self.woken)
        self.actor = ClusterScheduleActor.start(
            self.dispatcher,
            lambda: self.store,  # type: ignore[arg-type,return-value]  # the fake
            clock=self.clock,
        )
        assert ask(self.actor, OpenSchedules) == len(schedules)

    def wakes(self) -> int:
        """How many times the dispatcher was woken (the Wakes the actor sent have arrived once
        the dispatcher answers a question asked after them)."""
        self.dispatcher.ask("sync")
        return self.woken.qsize()

    def tick(self, seconds: float) -> list[list[tuple[str, float]]]:
        """Move the clock on, ring the alarm, and take the batches the ring sent the store."""
        self.clock.advance(seconds)
        self.actor.tell(ScheduleAlarmRang())
        # Whatever the actor does for a ring is done once it answers a question asked after it.
        ask(self.actor, lambda reply: GetSchedule("-", reply))
        batches = []
        while not self.store.batches.empty():
            batches.append(self.store.batches.get_nowait())
        return batches


def every_second(count: int) -> list[Schedule]:
    """``count`` schedules every second, each created a little after the one before."""
    timing = timing_of(None, 1000, None)
    return [
        new_schedule(f"s{n}", timing, new_task(f"s{n}", b"null", 0), START + n / 100_000)
        for n in range(count)
    ]


@pytest.fixture
def stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


@pytest.mark.usefixtures("stop_actors")
def test_the_firings_due_at_a_ring_go_to_the_store_in_batches_earliest_first() -> None:
    schedules = every_second(2 * FIRINGS_PER_TRANSACTION + 100)
    harness = Harness(list(reversed(schedules)))

    batches = harness.tick(2)

    assert [len(batch) for batch in batches] == [FIRINGS_PER_TRANSACTION] * 2 + [100]
    assert [due for batch in batches for due in batch] == [
        (schedule.id, schedule.next_run_at) for schedule in schedules
    ]
    # The dispatcher is woken once a batch, not once a firing.
    assert harness.wakes() == 3
    # Each goes on from its row as the batch left it: nothing more is due a second later.
    assert harness.tick(1) == []


@pytest.mark.usefixtures("stop_actors")
def test_a_batch_that_fails_waits_for_the_database_and_is_tried_again_whole() -> None:
    schedules = every_second(3)
    harness = Harness(schedules)
    harness.store.failing = 1

    failed = harness.tick(1.5)
    waiting = harness.tick(RETRY_S / 2)
    retried = harness.tick(RETRY_S / 2)

    expected = [(schedule.id, schedule.next_run_at) for schedule in schedules]
    assert (failed, waiting, retried) == ([expected], [], [expected])
    assert harness.wakes() == 1


@pytest.mark.usefixtures("stop_actors")
def test_rows_another_instance_held_are_tried_again_shortly_in_one_batch() -> None:
    schedules = every_second(4)
    harness = Harness(schedules)
    fire = harness.store.answer

    def held_odd(schedule_id: str, fire_at: float, now: float) -> Fired:
        if int(schedule_id[1:]) % 2:
            return Fired(Firing.BUSY, None)
        return fire(schedule_id, fire_at, now)

    harness.store.answer = held_odd  # type: ignore[method-assign]
    first = harness.tick(1.5)
    harness.store.answer = fire  # type: ignore[method-assign]
    again = harness.tick(BUSY_RETRY_S)

    assert [len(batch) for batch in first] == [4]
    assert again == [[(s.id, s.next_run_at) for s in schedules if int(s.id[1:]) % 2]]
