"""WorkerActor on its own: one attempt per Run, run by its runner, reported as done, retry or
failed. Most tests give it a scripted runner: what a report means is the worker's business,
whichever runner made it."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pykka
import pytest

from actors.attempt import AttemptReport
from actors.group_commit import COMMIT_DELAY_S
from actors.observer import AttemptObserver, AttemptOutcome
from actors.protocol.lifecycle import Recover
from actors.protocol.reading import GetTask
from actors.protocol.running import AttemptFinished, Run, Save
from actors.reply import Reply
from actors.repository import RepositoryActor
from actors.store import MemoryStore
from actors.task import DONE, FAILED, QUEUED, RUNNING, Task, TaskView, new_task
from actors.thread_runner import ThreadRunner
from actors.worker import AttemptPolicy, RetryPolicy, WorkerActor
from tests.support import ask

TIMEOUT_S = 5.0
POLICY = AttemptPolicy(RetryPolicy(base_ms=10, max_ms=1_000), task_timeout_ms=7_000)


def upper_bound(a: float, b: float) -> float:
    return b


class Outbox(pykka.ThreadingActor):
    """A fake dispatcher: puts every message it is told on a queue the test reads."""

    def __init__(self, received: queue.Queue[Any]) -> None:
        super().__init__()
        self._received = received

    def on_receive(self, message: Any) -> Any:
        self._received.put(message)
        return None


class Scripted:
    """An AttemptRunner that answers each run with ``answer(task, timeout_ms)`` and remembers."""

    def __init__(self, answer: Callable[[Task, int], AttemptReport]) -> None:
        self._answer = answer
        self.runs: list[tuple[Task, int]] = []
        self.closed = threading.Event()

    def run(self, task: Task, timeout_ms: int) -> AttemptReport:
        self.runs.append((task, timeout_ms))
        return self._answer(task, timeout_ms)

    def close(self, timeout_s: float) -> None:
        self.closed.set()


def reporting(report: AttemptReport) -> Scripted:
    return Scripted(lambda task, timeout_ms: report)


class Bench:
    """One worker (index 3) between a fake dispatcher and a real repository."""

    def __init__(
        self,
        runner: Scripted | ThreadRunner,
        observer: AttemptObserver | None = None,
        *,
        store: MemoryStore | None = None,
        policy: AttemptPolicy = POLICY,
    ) -> None:
        self.reports: queue.Queue[AttemptFinished] = queue.Queue()
        self.repository = RepositoryActor.start(None if store is None else lambda: store)
        if store is not None:
            ask(self.repository, Recover, TIMEOUT_S)
            policy = msgspec.structs.replace(policy, durable=True)
        self.worker = WorkerActor.start(
            3, runner, Outbox.start(self.reports), self.repository, policy, upper_bound, observer
        )

    def run(self, task: Task) -> AttemptFinished:
        self.repository.tell(Save(task))
        self.worker.tell(Run(task))
        return self.reports.get(timeout=TIMEOUT_S)

    def stored(self, task_id: str) -> Task | None:
        reply: Reply[Task | None] = Reply()
        self.repository.tell(GetTask(task_id, reply))
        return reply.get(timeout=TIMEOUT_S)


def on_thread(handler: Callable[[TaskView], object]) -> ThreadRunner:
    return ThreadRunner(handler, result_max_bytes=1_000)


def a_task(task_id: str = "task-1", *, max_retries: int = 3, attempts: int = 0) -> Task:
    task = new_task(task_id, b'{"n": 1}', max_retries=max_retries, now=1_000.0)
    return msgspec.structs.replace(task, attempts=attempts)


RETURNED = AttemptReport("returned")
RAISED = AttemptReport("raised", error="RuntimeError: boom", traceback="Traceback: frames\nboom")


def test_the_task_is_stored_as_running_with_one_more_attempt_before_the_handler_runs() -> None:
    seen: list[Task | None] = []

    def look_in_the_repository(view: TaskView) -> None:
        seen.append(bench.stored(view.id))

    bench = Bench(on_thread(look_in_the_repository))
    retry = msgspec.structs.replace(a_task(attempts=1), last_error="boom", next_attempt_at=1_001.0)

    bench.run(retry)

    [stored] = seen
    assert stored is not None
    assert (stored.status, stored.attempts, stored.next_attempt_at) == (RUNNING, 2, None)


def test_with_a_store_the_attempt_runs_only_once_its_start_is_committed() -> None:
    # A handler that takes the whole service down must still have cost its task this attempt:
    # "running, attempts + 1" has to be in the store, not only in the map, before it runs.
    store = MemoryStore()
    committed_at_run: list[Task | None] = []

    def look_in_the_store(task: Task, timeout_ms: int) -> AttemptReport:
        committed_at_run.append(next((t for t in store.load() if t.id == task.id), None))
        return RETURNED

    bench = Bench(Scripted(look_in_the_store), store=store)
    started = time.monotonic()

    bench.run(a_task(attempts=1))

    [committed] = committed_at_run
    assert committed is not None
    assert (committed.status, committed.attempts) == (RUNNING, 2)
    # Committed because the worker waits on it, not because the delay ran out.
    assert time.monotonic() - started < TIMEOUT_S
    assert COMMIT_DELAY_S > 0


def test_the_runner_gets_the_tasks_own_timeout_or_the_services() -> None:
    runner = reporting(RETURNED)
    bench = Bench(runner)

    bench.run(a_task("default"))
    bench.run(msgspec.structs.replace(a_task("own"), timeout_ms=250))

    assert [(task.id, timeout_ms) for task, timeout_ms in runner.runs] == [
        ("default", 7_000),
        ("own", 250),
    ]


def test_the_handler_sees_id_payload_max_retries_and_the_number_of_this_attempt() -> None:
    views: list[TaskView] = []
    bench = Bench(on_thread(views.append))

    bench.run(a_task("task-7", max_retries=5, attempts=2))

    [view] = views
    assert (view.id, view.payload, view.max_retries, view.attempts) == ("task-7", {"n": 1}, 5, 3)


def test_a_returned_attempt_makes_the_task_done_with_its_result() -> None:
    bench = Bench(reporting(AttemptReport("returned", result=b'{"pid":42}')))

    report = bench.run(a_task())

    assert report.worker == 3
    assert report.retry_delay_s is None
    task = report.task
    assert (task.status, task.attempts, task.last_error, task.result) == (
        DONE,
        1,
        None,
        b'{"pid":42}',
    )
    assert task.updated_at >= task.created_at


def test_a_done_task_keeps_the_error_of_the_attempt_before() -> None:
    bench = Bench(reporting(RETURNED))
    retried = msgspec.structs.replace(a_task(attempts=1), last_error="RuntimeError: boom")

    assert bench.run(retried).task.last_error == "RuntimeError: boom"


def test_a_dropped_result_leaves_the_task_done_saying_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    why = "result dropped: not JSON-encodable (object)"
    bench = Bench(reporting(AttemptReport("returned", error=why)))

    with caplog.at_level(logging.WARNING, logger="actors.worker"):
        report = bench.run(a_task(max_retries=3))

    task = report.task
    assert (task.status, task.result, task.last_error) == (DONE, None, why)
    assert report.retry_delay_s is None  # never run again for it
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert why in record.getMessage()


@pytest.mark.parametrize(
    ("report", "error"),
    [
        (RAISED, "RuntimeError: boom"),
        (AttemptReport("timed_out", error="timed out after 250 ms"), "timed out after 250 ms"),
        (
            AttemptReport("crashed", error="worker process exited with code 3"),
            "worker process exited with code 3",
        ),
    ],
    ids=["raised", "timed_out", "crashed"],
)
def test_a_failed_attempt_with_retries_left_waits_for_its_backoff(
    report: AttemptReport, error: str
) -> None:
    bench = Bench(reporting(report))

    finished = bench.run(a_task(max_retries=3, attempts=2))

    # Attempt 3 failed: min(1000, 10 * 2**2) + 10 / 2 ms.
    assert finished.retry_delay_s == pytest.approx(0.045)
    task = finished.task
    assert (task.status, task.attempts, task.last_error) == (QUEUED, 3, error)
    assert task.next_attempt_at == pytest.approx(task.updated_at + 0.045)


@pytest.mark.parametrize(
    ("retry_after_s", "delay_s"),
    [(None, 0.045), (0.01, 0.045), (2.0, 2.0), (86_400.0, 86_400.0), (10**9, 86_400.0)],
    ids=["none", "shorter than the backoff", "longer", "a day", "past a day"],
)
def test_a_retry_after_longer_than_the_backoff_is_waited_for_at_most_a_day(
    retry_after_s: float | None, delay_s: float
) -> None:
    report = AttemptReport("raised", error="HTTP 503 from target", retry_after_s=retry_after_s)
    bench = Bench(reporting(report))

    finished = bench.run(a_task(max_retries=3, attempts=2))

    assert finished.retry_delay_s == pytest.approx(delay_s)
    task = finished.task
    assert task.next_attempt_at == pytest.approx(task.updated_at + delay_s)


@pytest.mark.parametrize(("max_retries", "attempts_before"), [(0, 0), (1, 1), (3, 3)])
def test_the_last_allowed_attempt_failing_makes_the_task_failed(
    max_retries: int, attempts_before: int
) -> None:
    bench = Bench(reporting(RAISED))

    report = bench.run(a_task(max_retries=max_retries, attempts=attempts_before))

    assert report.retry_delay_s is None
    task = report.task
    assert (task.status, task.attempts, task.last_error) == (
        FAILED,
        max_retries + 1,
        "RuntimeError: boom",
    )
    assert task.next_attempt_at is None


def test_a_permanent_error_fails_the_task_at_once_whatever_retries_are_left() -> None:
    bench = Bench(reporting(AttemptReport("permanent", error="bad input", traceback="tb")))

    report = bench.run(a_task(max_retries=5))

    assert report.retry_delay_s is None
    task = report.task
    assert (task.status, task.attempts, task.last_error) == (FAILED, 1, "bad input")


@pytest.mark.parametrize(
    ("max_retries", "level", "words"),
    [(3, logging.WARNING, "retrying in"), (0, logging.ERROR, "failed for good")],
    ids=["retried", "final"],
)
def test_a_failed_attempt_logs_the_handlers_traceback_at_warning_or_error_when_final(
    caplog: pytest.LogCaptureFixture, max_retries: int, level: int, words: str
) -> None:
    bench = Bench(reporting(RAISED))

    with caplog.at_level(logging.INFO, logger="actors.worker"):
        bench.run(a_task("logged", max_retries=max_retries))

    [record] = caplog.records
    assert record.levelno == level
    assert words in record.getMessage()
    assert record.getMessage().endswith(": RuntimeError: boom")
    assert record.traceback == RAISED.traceback  # type: ignore[attr-defined]


def test_a_runner_that_fails_itself_still_ends_the_attempt_and_frees_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(task: Task, timeout_ms: int) -> AttemptReport:
        if task.id == "broken":
            raise RuntimeError("runner bug")
        return RETURNED

    bench = Bench(Scripted(broken))

    with caplog.at_level(logging.ERROR, logger="actors.worker"):
        report = bench.run(a_task("broken", max_retries=3))
    after = bench.run(a_task("after"))

    assert (report.task.status, report.task.last_error) == (
        FAILED,
        "worker error, see the service log",
    )
    assert after.task.status == DONE
    assert "worker error" in caplog.records[0].getMessage()


def test_a_worker_reports_each_attempt_in_the_order_it_was_sent() -> None:
    bench = Bench(on_thread(lambda view: None))

    for n in range(20):
        bench.worker.tell(Run(a_task(f"task-{n}")))
    reports = [bench.reports.get(timeout=TIMEOUT_S) for _ in range(20)]

    assert [report.task.id for report in reports] == [f"task-{n}" for n in range(20)]
    assert all(report.task.status == DONE for report in reports)


def test_a_stopped_worker_closes_its_runner() -> None:
    runner = reporting(RETURNED)
    bench = Bench(runner)

    bench.worker.stop(timeout=TIMEOUT_S)

    assert runner.closed.wait(TIMEOUT_S)


class Heard:
    """An AttemptObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Task, AttemptOutcome, float]] = []

    def attempt_ended(self, task: Task, outcome: AttemptOutcome, duration_s: float) -> None:
        self.calls.append((task, outcome, duration_s))


@pytest.mark.parametrize(
    ("report", "max_retries", "outcome", "status"),
    [(RETURNED, 3, "done", DONE), (RAISED, 3, "retry", QUEUED), (RAISED, 0, "failed", FAILED)],
)
def test_the_observer_hears_how_each_attempt_ended_before_the_dispatcher_does(
    report: AttemptReport, max_retries: int, outcome: str, status: str
) -> None:
    heard = Heard()
    bench = Bench(reporting(report), heard)

    finished = bench.run(a_task(max_retries=max_retries))

    [(task, told, duration_s)] = heard.calls
    assert (told, task.status) == (outcome, status)
    assert task == finished.task
    assert duration_s >= 0


def test_the_observed_duration_is_the_handlers_time() -> None:
    heard = Heard()
    work_s = 0.05

    def busy(view: TaskView) -> None:
        time.sleep(work_s)  # the attempt's work, not a wait for something to happen

    bench = Bench(on_thread(busy), heard)
    bench.run(a_task())

    [(_, _, duration_s)] = heard.calls
    assert work_s <= duration_s < work_s + 1.0


def test_an_observer_that_raises_is_logged_and_the_attempt_still_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def attempt_ended(self, task: Task, outcome: AttemptOutcome, duration_s: float) -> None:
            raise RuntimeError("observer bug")

    bench = Bench(reporting(RETURNED), Broken())

    with caplog.at_level(logging.ERROR, logger="actors.worker"):
        report = bench.run(a_task("observed"))
        after = bench.run(a_task("after"))

    assert (report.task.status, after.task.status) == (DONE, DONE)
    assert [(r.message, r.task_id) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("attempt observer failed", "observed"),
        ("attempt observer failed", "after"),
    ]


@pytest.mark.parametrize(
    ("report", "max_retries", "expected"),
    [
        (RETURNED, 3, [(logging.DEBUG, 1, "running"), (logging.DEBUG, 1, "done")]),
        (RAISED, 3, [(logging.DEBUG, 1, "running"), (logging.WARNING, 1, "retrying in")]),
        (RAISED, 0, [(logging.DEBUG, 1, "running"), (logging.ERROR, 1, "failed for good")]),
    ],
    ids=["done", "retry", "failed"],
)
def test_each_line_about_an_attempt_carries_the_task_id_and_attempt_at_its_level(
    caplog: pytest.LogCaptureFixture,
    report: AttemptReport,
    max_retries: int,
    expected: list[tuple[int, int, str]],
) -> None:
    bench = Bench(reporting(report))

    with caplog.at_level(logging.DEBUG, logger="actors.worker"):
        bench.run(a_task("logged", max_retries=max_retries))

    records = [r for r in caplog.records if r.name == "actors.worker"]
    assert len(records) == len(expected), [r.getMessage() for r in records]
    for record, (level, attempt, words) in zip(records, expected, strict=True):
        assert record.levelno == level
        assert (record.task_id, record.attempt) == ("logged", attempt)  # type: ignore[attr-defined]
        assert words in record.getMessage()
