"""Thousands of enqueues from many threads: every accepted task is done exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from actors import DONE, Admission, Task, TaskSystem, TaskView, new_task
from tests.support import all_tasks, wait_until

TASKS = 5_000
CLIENTS = 16
TIMEOUT_S = 30.0


class Ledger:
    """What the handler ran, recorded from every worker thread under one lock."""

    def __init__(self, fail_first_attempt: bool = False) -> None:
        self._fail_first_attempt = fail_first_attempt
        self._lock = threading.Lock()
        self.attempts: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()

    def __call__(self, view: TaskView) -> None:
        with self._lock:
            self.attempts[view.id] += 1
            if self._fail_first_attempt and view.attempts == 1:
                raise RuntimeError("first attempts fail")
            self.successes[view.id] += 1

    def done(self) -> int:
        with self._lock:
            return sum(self.successes.values())


@pytest.fixture
def system_for() -> Iterator[Callable[..., TaskSystem]]:
    started: list[TaskSystem] = []

    def start(handler: Ledger, queue_size: int) -> TaskSystem:
        system = TaskSystem.start(
            handler, workers=8, queue_size=queue_size, retry_base_ms=1, retry_max_ms=5
        )
        started.append(system)
        return system

    yield start
    for system in started:
        system.stop(deadline=time.monotonic() + 5)


def enqueue_from_many_threads(system: TaskSystem, *, retry_when_full: bool) -> list[str]:
    """Each client thread submits its share of ids; returns the ids that were accepted."""
    accepted: list[list[str]] = [[] for _ in range(CLIENTS)]
    unexpected: list[Admission] = []
    go = threading.Barrier(CLIENTS)

    def client(number: int) -> None:
        go.wait(TIMEOUT_S)
        for n in range(number, TASKS, CLIENTS):
            task = new_task(f"task-{n}", b'{"n": %d}' % n, max_retries=3)
            while True:
                admission = system.submit_async(task).get(timeout=TIMEOUT_S)
                if admission is Admission.QUEUE_FULL and retry_when_full:
                    # A client backing off as a 503 with Retry-After tells it to; not a wait
                    # on a condition of the test.
                    time.sleep(0.001)
                    continue
                break
            if admission is Admission.ACCEPTED:
                accepted[number].append(task.id)
            else:
                unexpected.append(admission)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)

    assert not any(thread.is_alive() for thread in threads)
    assert unexpected == []
    return [task_id for ids in accepted for task_id in ids]


def assert_each_done_exactly_once(
    system: TaskSystem, ledger: Ledger, accepted: list[str], attempts: int
) -> None:
    wait_until(lambda: ledger.done() >= len(accepted), TIMEOUT_S)

    def all_done() -> list[Task] | None:
        tasks = all_tasks(system)
        return tasks if all(task.status == DONE for task in tasks) else None

    tasks = wait_until(all_done, TIMEOUT_S)
    assert tasks is not None

    assert sorted(task.id for task in tasks) == sorted(accepted)
    assert all(task.attempts == attempts for task in tasks)
    assert ledger.successes == Counter({task_id: 1 for task_id in accepted})
    assert ledger.attempts == Counter({task_id: attempts for task_id in accepted})


def test_thousands_of_concurrent_enqueues_are_each_done_exactly_once(
    system_for: Callable[..., TaskSystem],
) -> None:
    ledger = Ledger()
    system = system_for(ledger, queue_size=TASKS)

    accepted = enqueue_from_many_threads(system, retry_when_full=False)

    assert len(accepted) == TASKS
    assert_each_done_exactly_once(system, ledger, accepted, attempts=1)


def test_clients_retrying_on_a_full_line_still_get_every_task_done_exactly_once(
    system_for: Callable[..., TaskSystem],
) -> None:
    ledger = Ledger()
    system = system_for(ledger, queue_size=32)

    accepted = enqueue_from_many_threads(system, retry_when_full=True)

    assert len(accepted) == TASKS
    assert_each_done_exactly_once(system, ledger, accepted, attempts=1)


def test_retries_under_load_still_get_every_task_done_exactly_once(
    system_for: Callable[..., TaskSystem],
) -> None:
    ledger = Ledger(fail_first_attempt=True)
    system = system_for(ledger, queue_size=64)

    accepted = enqueue_from_many_threads(system, retry_when_full=True)

    assert len(accepted) == TASKS
    assert_each_done_exactly_once(system, ledger, accepted, attempts=2)
