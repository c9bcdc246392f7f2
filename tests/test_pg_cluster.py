"""Cluster mode in process: TaskSystems with ``cluster=`` on one real PostgreSQL database are
one queue (actors/cluster.py, actors/cluster_repository.py, actors/cluster_dispatcher.py)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from actors.pg_connect import Cluster, DatabaseUrl
from actors.protocol.answers import Admission, Readiness
from actors.recovery import INTERRUPTED
from actors.retention import KEEP_ALL
from actors.store import StoreError
from actors.task import DONE, QUEUED, new_task
from tests.support import ANSWER_S, starting_systems, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from actors.system import TaskSystem
    from actors.task import TaskView
    from tests.pg_server import PgServer


@pytest.fixture
def start(pg_database: str) -> Iterator[Callable[..., TaskSystem]]:
    """Start an instance on the test's database: ``start("a", handler, workers=2)``."""
    starting = starting_systems(retention=KEEP_ALL)
    make = next(starting)

    def instance(name: str, handler: Callable[[TaskView], object], **options: Any) -> TaskSystem:
        lease_ms = options.pop("lease_ms", 1000)
        cluster = Cluster(DatabaseUrl.parse(pg_database), name, lease_ms)
        return make(handler, cluster=cluster, **options)

    yield instance
    next(starting, None)


def ran_by(runs: list[tuple[str, str]]) -> Callable[[str], Callable[[TaskView], object]]:
    lock = threading.Lock()

    def handler_of(name: str) -> Callable[[TaskView], object]:
        def handler(task: TaskView) -> None:
            with lock:
                runs.append((task.id, name))

        return handler

    return handler_of


def test_instances_on_one_database_are_one_queue(start: Callable[..., TaskSystem]) -> None:
    runs: list[tuple[str, str]] = []
    handler = ran_by(runs)
    a, b = start("a", handler("a")), start("b", handler("b"))

    for n in range(40):
        assert (a if n % 2 else b).submit_async(new_task(f"t{n}", b"{}", 3)).get(
            timeout=ANSWER_S
        ) is Admission.ACCEPTED
    assert b.submit_async(new_task("t1", b"{}", 3)).get(timeout=ANSWER_S) is Admission.DUPLICATE
    assert a.submit_async(new_task("t2", b"{}", 3)).get(timeout=ANSWER_S) is Admission.DUPLICATE

    wait_until(lambda: a.stats_async().get(timeout=ANSWER_S).tasks.done == 40)
    assert Counter(task_id for task_id, _ in runs) == {f"t{n}": 1 for n in range(40)}
    assert {name for _, name in runs} == {"a", "b"}
    task = b.get_async("t3").get(timeout=ANSWER_S)
    assert task is not None
    assert (task.status, task.attempts) == (DONE, 1)
    stats = b.stats_async().get(timeout=ANSWER_S)
    assert stats.instance == "b"
    assert stats.tasks == a.stats_async().get(timeout=ANSWER_S).tasks


def test_a_task_enqueued_on_a_busy_instance_starts_at_once_on_an_idle_other(
    start: Callable[..., TaskSystem],
) -> None:
    release = threading.Event()
    started: dict[str, float] = {}

    def busy(task: TaskView) -> None:
        started[task.id] = time.monotonic()
        release.wait(10)

    def idle(task: TaskView) -> None:
        started[task.id] = time.monotonic()

    a = start("a", busy, workers=1)
    start("b", idle, workers=1)
    a.submit_async(new_task("block", b"{}", 3)).get(timeout=ANSWER_S)
    wait_until(lambda: "block" in started)
    try:
        for n in range(5):
            sent = time.monotonic()
            a.submit_async(new_task(f"t{n}", b"{}", 3)).get(timeout=ANSWER_S)
            began = wait_until(lambda n=n: started.get(f"t{n}"), timeout_s=2)
            # NOTIFY, not the poll (a second), brings it to the other instance.
            assert began - sent < 0.2
    finally:
        release.set()


def test_an_attempt_cut_off_by_the_shutdown_deadline_is_released_as_interrupted(
    start: Callable[..., TaskSystem],
) -> None:
    release = threading.Event()
    a = start("a", lambda task: release.wait(10), lease_ms=60_000)
    assert a.submit_async(new_task("long", b"{}", 3)).get(timeout=ANSWER_S) is Admission.ACCEPTED
    wait_until(lambda: a.stats_async().get(timeout=ANSWER_S).workers.busy == 1)
    b = start("b", lambda task: None, workers=1)
    b.begin_shutdown()  # it only reads: the released attempt stays to be seen

    a.stop(deadline=time.monotonic() + 0.2)
    release.set()

    task = b.get_async("long").get(timeout=ANSWER_S)
    assert task is not None
    # At once, not when the minute-long lease ends.
    assert (task.status, task.last_error, task.attempts) == (QUEUED, INTERRUPTED, 1)


def test_waiting_tasks_of_an_instance_that_stops_stay_for_the_others(
    start: Callable[..., TaskSystem],
) -> None:
    runs: list[tuple[str, str]] = []
    a = start("a", ran_by(runs)("a"))
    for n in range(3):
        delayed = new_task(f"t{n}", b"{}", 3, delay_s=0.3)
        assert a.submit_async(delayed).get(timeout=ANSWER_S) is Admission.ACCEPTED

    summary = a.stop(deadline=time.monotonic() + 1)
    start("b", ran_by(runs)("b"))

    assert summary.counts[QUEUED] == 3
    wait_until(lambda: len(runs) == 3)
    assert sorted(runs) == [("t0", "b"), ("t1", "b"), ("t2", "b")]


def test_with_the_database_down_intake_is_refused_quickly_and_comes_back_by_itself(
    start: Callable[..., TaskSystem], pg_server: PgServer
) -> None:
    release = threading.Event()
    a = start("a", lambda task: release.wait(10), workers=1, lease_ms=60_000)
    a.submit_async(new_task("running", b"{}", 3)).get(timeout=ANSWER_S)
    wait_until(lambda: a.stats_async().get(timeout=ANSWER_S).workers.busy == 1)

    pg_server.stop("immediate")
    try:
        began = time.monotonic()
        answers = [
            a.submit_async(new_task(f"t{n}", b"{}", 3)).get(timeout=ANSWER_S) for n in range(3)
        ]
        assert answers == [Admission.STORE_UNAVAILABLE] * 3
        assert time.monotonic() - began < 3
        assert a.ready_async().get(timeout=ANSWER_S) is Readiness.STORE_UNAVAILABLE
        with pytest.raises(StoreError):  # the API answers it with 503 (api/errors.py)
            a.get_async("running").get(timeout=ANSWER_S)
        release.set()  # the running attempt ends during the outage
        wait_until(lambda: a.stats_async().get(timeout=ANSWER_S).workers.busy == 0)
    finally:
        pg_server.start()

    wait_until(
        lambda: (
            a.submit_async(new_task("after", b"{}", 3)).get(timeout=ANSWER_S) is Admission.ACCEPTED
        ),
        timeout_s=10,
        interval_s=0.2,
    )
    assert a.ready_async().get(timeout=ANSWER_S) is Readiness.READY
    # Its outcome, kept through the outage, is written once the database is back.
    wait_until(
        lambda: (
            (a.get_async("running").get(timeout=ANSWER_S) or new_task("x", b"", 0)).status == DONE
        )
    )
    assert a.get_async("t0").get(timeout=ANSWER_S) is None
