"""Retention: finished tasks evicted oldest first by count and by age; unfinished ones never."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import msgspec
import pytest

from actors import (
    CANCELLED,
    DONE,
    FAILED,
    KEEP_ALL,
    QUEUED,
    MemoryStore,
    Retention,
    TaskSystem,
    new_task,
)
from actors.retention import FinishedOrder
from tests.handlers import Gate
from tests.support import ANSWER_S, all_tasks, starting_systems, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from actors import Task, TaskView


class FakeClock:
    """The wall clock, moved on by hand: ages pass without waiting for them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0

    def __call__(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


@pytest.fixture
def start() -> Iterator[Callable[..., TaskSystem]]:
    yield from starting_systems(workers=1)


def finished(task_id: str, at: float, status: str = DONE) -> Task:
    task = new_task(task_id, b"null", 0, now=at)
    return msgspec.structs.replace(task, status=status, updated_at=at)


# --- FinishedOrder on its own -------------------------------------------------------------------


def test_evicts_beyond_the_count_oldest_finish_first() -> None:
    tasks = {t.id: t for t in (finished("a", 1.0), finished("b", 2.0), finished("c", 3.0))}
    order = FinishedOrder()
    for task_id in ("a", "b", "c"):
        order.finished(task_id)

    assert order.evict(tasks, finished=3, rules=Retention(2, 0), now=10.0) == ["a"]
    assert order.evict(tasks, finished=2, rules=Retention(2, 0), now=10.0) == []


def test_evicts_by_age_counted_from_the_finish() -> None:
    tasks = {t.id: t for t in (finished("a", 100.0), finished("b", 150.0))}
    order = FinishedOrder()
    order.finished("a")
    order.finished("b")

    rules = Retention(0, 60)
    assert order.evict(tasks, 2, rules, now=159.0) == []
    assert order.evict(tasks, 2, rules, now=160.0) == ["a"]
    assert order.next_expiry(tasks, rules) == 210.0
    assert order.evict(tasks, 1, rules, now=210.0) == ["b"]
    assert order.next_expiry(tasks, rules) is None


def test_a_task_retried_by_hand_is_placed_by_its_latest_finish() -> None:
    order = FinishedOrder()
    order.finished("a")
    order.finished("b")
    # "a" is queued again (its entry goes stale), then finishes again, after "b".
    order.unfinished("a")
    order.finished("a")
    tasks = {t.id: t for t in (finished("a", 5.0), finished("b", 2.0))}

    assert order.evict(tasks, finished=2, rules=Retention(1, 0), now=10.0) == ["b"]
    assert len(order) == 1


def test_a_deleted_task_is_skipped_even_if_its_id_finishes_again() -> None:
    order = FinishedOrder()
    order.finished("x")
    order.unfinished("x")  # deleted
    order.finished("y")
    order.finished("x")  # enqueued again under the same id, and finished
    tasks = {t.id: t for t in (finished("y", 1.0), finished("x", 2.0))}

    assert order.evict(tasks, finished=2, rules=Retention(1, 0), now=10.0) == ["y"]


def test_no_rule_means_nothing_is_evicted() -> None:
    assert not KEEP_ALL.enabled
    assert Retention(1, 0).enabled
    assert Retention(0, 1).enabled


# --- in a running system ------------------------------------------------------------------------


def test_finished_tasks_beyond_the_count_are_evicted_oldest_first_and_counted(
    start: Callable[..., TaskSystem],
) -> None:
    system = start(lambda task: None, retention=Retention(max_finished=2, ttl_s=0))
    for n in range(5):
        system.submit_async(new_task(f"t{n}", b"null", 0)).get(timeout=ANSWER_S)

    wait_until(lambda: system.stats_async().get(timeout=ANSWER_S).totals.evicted == 3)

    assert [system.get_async(f"t{n}").get(timeout=ANSWER_S) for n in range(3)] == [None, None, None]
    kept = [system.get_async(f"t{n}").get(timeout=ANSWER_S) for n in (3, 4)]
    assert [task.status for task in kept if task is not None] == [DONE, DONE]
    stats = system.stats_async().get(timeout=ANSWER_S)
    assert stats.tasks.done == 2
    assert [task.id for task in all_tasks(system)] == ["t3", "t4"]


def test_unfinished_tasks_are_never_evicted_by_count(start: Callable[..., TaskSystem]) -> None:
    gate = Gate()
    system = start(gate, retention=Retention(max_finished=1, ttl_s=0), queue_size=10)
    for n in range(4):
        system.submit_async(new_task(f"t{n}", b"null", 0)).get(timeout=ANSWER_S)
    wait_until(lambda: gate.entered == 1)

    # One running and three queued, over a limit of one finished task: none goes.
    assert len(all_tasks(system)) == 4
    assert system.stats_async().get(timeout=ANSWER_S).totals.evicted == 0
    gate.open()
    wait_until(lambda: system.stats_async().get(timeout=ANSWER_S).totals.evicted == 3)
    assert [task.id for task in all_tasks(system)] == ["t3"]


def test_finished_tasks_older_than_the_ttl_are_evicted_by_the_clock(
    start: Callable[..., TaskSystem],
) -> None:
    clock = FakeClock()
    system = start(lambda task: None, retention=Retention(max_finished=0, ttl_s=60), clock=clock)
    system.submit_async(new_task("old", b"null", 0)).get(timeout=ANSWER_S)
    wait_until(
        lambda: (
            (task := system.get_async("old").get(timeout=ANSWER_S)) is not None
            and task.status == DONE
        )
    )

    clock.advance(59)
    # Every finish applies the rules too: once "probe" is done, they have seen the clock at +59.
    system.submit_async(new_task("probe", b"null", 0)).get(timeout=ANSWER_S)
    wait_until(
        lambda: (
            (task := system.get_async("probe").get(timeout=ANSWER_S)) is not None
            and task.status == DONE
        )
    )
    assert system.get_async("old").get(timeout=ANSWER_S) is not None
    assert system.stats_async().get(timeout=ANSWER_S).totals.evicted == 0

    clock.advance(2)  # past the TTL: the sweep alarm finds it within a second, nothing else runs
    wait_until(lambda: system.get_async("old").get(timeout=ANSWER_S) is None)
    assert (
        system.stats_async().get(timeout=ANSWER_S).totals.evicted == 2
    )  # "probe" finished with the clock at +59 too


def test_an_old_unfinished_task_outlives_the_ttl(start: Callable[..., TaskSystem]) -> None:
    clock = FakeClock()
    system = start(lambda task: None, retention=Retention(max_finished=0, ttl_s=1), clock=clock)
    # Delayed for a minute: queued all along, created long before the TTL.
    system.submit_async(new_task("later", b"null", 0, delay_s=60)).get(timeout=ANSWER_S)
    system.submit_async(new_task("now", b"null", 0)).get(timeout=ANSWER_S)
    clock.advance(10)

    wait_until(lambda: system.get_async("now").get(timeout=ANSWER_S) is None)
    later = system.get_async("later").get(timeout=ANSWER_S)
    assert later is not None and later.status == QUEUED


def test_eviction_and_deletion_remove_the_tasks_from_the_store() -> None:
    store = MemoryStore()
    handler: Callable[[TaskView], object] = lambda task: None  # noqa: E731
    system = TaskSystem.start(
        handler, workers=1, open_store=lambda: store, retention=Retention(2, 0)
    )
    for n in range(4):
        system.submit_async(new_task(f"t{n}", b"null", 0)).get(timeout=ANSWER_S)
    wait_until(lambda: system.stats_async().get(timeout=ANSWER_S).totals.evicted == 2)
    assert system.delete_async("t3").get(timeout=ANSWER_S).task is not None
    system.stop()

    assert [task.id for task in store.load()] == ["t2"]


def test_recovery_applies_retention_to_what_the_store_holds() -> None:
    store = MemoryStore()
    store.commit(
        [
            finished(f"t{n}", at=1000.0 + n, status=(DONE, FAILED, CANCELLED)[n % 3])
            for n in range(5)
        ]
    )

    system = TaskSystem.start(
        lambda task: None, workers=1, open_store=lambda: store, retention=Retention(2, 0)
    )
    try:
        assert [task.id for task in all_tasks(system)] == ["t3", "t4"]
        assert system.stats_async().get(timeout=ANSWER_S).totals.evicted == 3
    finally:
        system.stop()
    assert [task.id for task in store.load()] == ["t3", "t4"]


def test_recovery_evicts_what_is_older_than_the_ttl() -> None:
    store = MemoryStore()
    now = time.time()
    store.commit([finished("ancient", at=now - 7200), finished("recent", at=now - 60)])

    system = TaskSystem.start(
        lambda task: None, workers=1, open_store=lambda: store, retention=Retention(0, 3600)
    )
    try:
        assert [task.id for task in all_tasks(system)] == ["recent"]
        assert system.stats_async().get(timeout=ANSWER_S).totals.evicted == 1
    finally:
        system.stop()
