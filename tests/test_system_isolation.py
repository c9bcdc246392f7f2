"""TaskSystem with runners: time limits, crashes and results end to end without HTTP, in both
worker modes, and what a shutdown does to an attempt still running at its deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors import DONE, FAILED, HandlerLoadError, Task, TaskSystem, new_task
from actors.handlers import HandlerSpec
from actors.runners import process_runners, thread_runners
from tests.handlers import steered
from tests.support import ANSWER_S, starting_systems, wait_until
from tests.test_runners import alive

SPEC = HandlerSpec("tests.handlers:steered")
TIMEOUT_S = 10.0


@pytest.fixture
def start() -> Iterator[Callable[..., TaskSystem]]:
    yield from starting_systems()


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "release"
    yield path
    path.touch()


def runners_for(kind: str, **options: Any) -> Any:
    if kind == "thread":
        return thread_runners(steered, 65_536)
    return process_runners(SPEC, result_max_bytes=65_536, **options)


def submit(system: TaskSystem, task_id: str, payload: Any, **options: Any) -> None:
    max_retries = options.pop("max_retries", 3)
    task = new_task(task_id, msgspec.json.encode(payload), max_retries, **options)
    assert system.submit_async(task).get(timeout=ANSWER_S).value == "accepted"


def final(system: TaskSystem, task_id: str) -> Task:
    def settled() -> Task | None:
        task = system.get_async(task_id).get(timeout=ANSWER_S)
        return task if task is not None and task.is_final else None

    task = wait_until(settled, TIMEOUT_S)
    assert task is not None
    return task


BOTH = pytest.mark.parametrize("kind", ["thread", "process"])


@BOTH
def test_a_timed_out_attempt_is_retried_and_counted(
    start: Callable[..., TaskSystem], kind: str, release: Path
) -> None:
    system = start(runners=runners_for(kind), workers=1, task_timeout_ms=200)

    submit(system, "slow", {"do": ["hang", "return"], "release": str(release), "value": 7})
    task = final(system, "slow")

    assert (task.status, task.attempts, task.last_error, task.result) == (
        DONE,
        2,
        "timed out after 200 ms",
        b"7",
    )
    stats = system.stats_async().get(timeout=ANSWER_S)
    if kind == "thread":
        assert (stats.totals.threads_abandoned, stats.totals.processes_replaced.timeout) == (1, 0)
    else:
        assert (stats.totals.threads_abandoned, stats.totals.processes_replaced.timeout) == (0, 1)


@BOTH
def test_a_tasks_own_timeout_beats_the_services(
    start: Callable[..., TaskSystem], kind: str, release: Path
) -> None:
    system = start(runners=runners_for(kind), workers=1, task_timeout_ms=60_000)

    submit(system, "own", {"do": "hang", "release": str(release)}, max_retries=0, timeout_ms=150)

    task = final(system, "own")
    assert (task.status, task.last_error) == (FAILED, "timed out after 150 ms")


@BOTH
def test_a_permanent_error_fails_the_task_with_retries_left(
    start: Callable[..., TaskSystem], kind: str
) -> None:
    system = start(runners=runners_for(kind), workers=1)

    submit(system, "stop", {"do": "permanent", "message": "bad customer"}, max_retries=5)

    task = final(system, "stop")
    assert (task.status, task.attempts, task.last_error) == (FAILED, 1, "bad customer")


def test_a_crash_costs_one_attempt_and_the_worker_serves_on(
    start: Callable[..., TaskSystem],
) -> None:
    system = start(runners=runners_for("process"), workers=1)

    submit(system, "crash", {"do": ["exit", "pid"]})
    submit(system, "after", {"do": "return", "value": "ok"})

    crashed = final(system, "crash")
    assert (crashed.status, crashed.attempts) == (DONE, 2)
    assert crashed.last_error == "worker process exited with code 3"
    assert final(system, "after").result == b'"ok"'
    assert system.stats_async().get(timeout=ANSWER_S).totals.processes_replaced.crash == 1


def test_a_handler_its_worker_processes_cannot_load_stops_the_start() -> None:
    bad = HandlerSpec("tests.handlers:no_such_function")

    with pytest.raises(HandlerLoadError, match="has no attribute 'no_such_function'"):
        TaskSystem.start(runners=process_runners(bad, result_max_bytes=100), workers=2)


def test_a_shutdown_deadline_kills_the_process_of_an_attempt_still_running(
    start: Callable[..., TaskSystem], release: Path, tmp_path: Path
) -> None:
    system = start(runners=runners_for("process"), workers=2, task_timeout_ms=600_000)
    log = tmp_path / "runs.log"
    submit(system, "hung", {"do": "hang", "release": str(release), "log": str(log)})
    wait_until(log.exists)
    pid = msgspec.json.decode(log.read_text().splitlines()[0])["pid"]

    started = time.monotonic()
    summary = system.stop(deadline=time.monotonic() + 0.2)

    assert not summary.drained
    assert time.monotonic() - started < 3.0
    assert not alive(pid)


def test_in_thread_mode_a_shutdown_deadline_does_not_wait_for_a_hung_attempt(
    start: Callable[..., TaskSystem], release: Path, tmp_path: Path
) -> None:
    system = start(runners=runners_for("thread"), workers=2, task_timeout_ms=600_000)
    log = tmp_path / "runs.log"
    submit(system, "hung", {"do": "hang", "release": str(release), "log": str(log)})
    wait_until(log.exists)

    started = time.monotonic()
    summary = system.stop(deadline=time.monotonic() + 0.2)

    assert not summary.drained
    assert summary.counts["running"] == 1
    assert time.monotonic() - started < 3.0
