"""WorkerActor on its own: one attempt per Run, reported as done, retry or failed."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pykka
import pytest

from actors.messages import AttemptFinished, GetTask, Run, Save
from actors.observer import AttemptObserver, AttemptOutcome
from actors.reply import Reply
from actors.repository import RepositoryActor
from actors.task import DONE, FAILED, QUEUED, RUNNING, Task, TaskView, new_task
from actors.worker import RetryPolicy, WorkerActor

TIMEOUT_S = 5.0
POLICY = RetryPolicy(base_ms=10, max_ms=1_000)


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


class Bench:
    """One worker (index 3) between a fake dispatcher and a real repository."""

    def __init__(
        self, handler: Callable[[TaskView], object], observer: AttemptObserver | None = None
    ) -> None:
        self.reports: queue.Queue[AttemptFinished] = queue.Queue()
        self.repository = RepositoryActor.start()
        self.worker = WorkerActor.start(
            3, handler, Outbox.start(self.reports), self.repository, POLICY, upper_bound, observer
        )

    def run(self, task: Task) -> AttemptFinished:
        self.repository.tell(Save(task))
        self.worker.tell(Run(task))
        return self.reports.get(timeout=TIMEOUT_S)

    def stored(self, task_id: str) -> Task | None:
        reply: Reply[Task | None] = Reply()
        self.repository.tell(GetTask(task_id, reply))
        return reply.get(timeout=TIMEOUT_S)


def a_task(task_id: str = "task-1", *, max_retries: int = 3, attempts: int = 0) -> Task:
    task = new_task(task_id, b'{"n": 1}', max_retries=max_retries, now=1_000.0)
    return msgspec.structs.replace(task, attempts=attempts)


def succeed(view: TaskView) -> None:
    return None


def fail(view: TaskView) -> None:
    raise RuntimeError("boom")


def test_the_task_is_stored_as_running_with_one_more_attempt_before_the_handler_runs() -> None:
    seen: list[Task | None] = []

    def look_in_the_repository(view: TaskView) -> None:
        seen.append(bench.stored(view.id))

    bench = Bench(look_in_the_repository)
    retry = msgspec.structs.replace(a_task(attempts=1), last_error="boom", next_attempt_at=1_001.0)

    bench.run(retry)

    [stored] = seen
    assert stored is not None
    assert (stored.status, stored.attempts, stored.next_attempt_at) == (RUNNING, 2, None)


def test_the_handler_sees_id_payload_max_retries_and_the_number_of_this_attempt() -> None:
    views: list[TaskView] = []
    bench = Bench(views.append)

    bench.run(a_task("task-7", max_retries=5, attempts=2))

    [view] = views
    assert (view.id, view.payload, view.max_retries, view.attempts) == ("task-7", {"n": 1}, 5, 3)


def test_a_handler_that_returns_makes_the_attempt_done() -> None:
    bench = Bench(succeed)

    report = bench.run(a_task())

    assert report.worker == 3
    assert report.retry_delay_s is None
    assert (report.task.status, report.task.attempts, report.task.last_error) == (DONE, 1, None)
    assert report.task.updated_at >= report.task.created_at


def test_a_failed_attempt_with_retries_left_waits_for_its_backoff() -> None:
    bench = Bench(fail)

    report = bench.run(a_task(max_retries=3, attempts=2))

    # Attempt 3 failed: min(1000, 10 * 2**2) + 10 / 2 ms.
    assert report.retry_delay_s == pytest.approx(0.045)
    task = report.task
    assert (task.status, task.attempts, task.last_error) == (QUEUED, 3, "boom")
    assert task.next_attempt_at == pytest.approx(task.updated_at + 0.045)


@pytest.mark.parametrize(("max_retries", "attempts_before"), [(0, 0), (1, 1), (3, 3)])
def test_the_last_allowed_attempt_failing_makes_the_task_failed(
    max_retries: int, attempts_before: int
) -> None:
    bench = Bench(fail)

    report = bench.run(a_task(max_retries=max_retries, attempts=attempts_before))

    assert report.retry_delay_s is None
    task = report.task
    assert (task.status, task.attempts, task.last_error) == (FAILED, max_retries + 1, "boom")
    assert task.next_attempt_at is None


class Custom(BaseException):
    """Not an Exception: what a careless handler might raise."""


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad value"),
        SystemExit("exit requested"),
        KeyboardInterrupt("interrupted"),
        GeneratorExit("closed"),
        Custom("custom"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_a_handler_exception_fails_the_attempt_and_never_kills_the_worker(
    exc: BaseException,
) -> None:
    def handler(view: TaskView) -> None:
        if view.id == "raises":
            raise exc

    bench = Bench(handler)

    failed = bench.run(a_task("raises", max_retries=0))
    after = bench.run(a_task("after"))

    assert (failed.task.status, failed.task.last_error) == (FAILED, str(exc))
    assert after.task.status == DONE
    assert bench.worker.is_alive()


@pytest.mark.parametrize(
    "broken_by",
    [RuntimeError("no message for you"), SystemExit("no message"), TypeError("not a str")],
    ids=lambda exc: type(exc).__name__,
)
def test_an_exception_whose_message_cannot_be_read_still_fails_the_attempt(
    broken_by: BaseException,
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise broken_by

    def handler(view: TaskView) -> None:
        if view.id == "unprintable":
            raise Unprintable

    bench = Bench(handler)

    report = bench.run(a_task("unprintable", max_retries=0))

    assert report.task.status == FAILED
    assert isinstance(report.task.last_error, str)
    assert "Unprintable" in report.task.last_error
    assert bench.run(a_task("after")).task.status == DONE


def test_an_error_message_with_lone_surrogates_is_made_safe_to_encode() -> None:
    def handler(view: TaskView) -> None:
        raise RuntimeError("bad \ud800 input \udfff end")

    bench = Bench(handler)

    error = bench.run(a_task(max_retries=0)).task.last_error

    assert error is not None
    error.encode("utf-8")  # raises UnicodeEncodeError if a surrogate is left
    assert msgspec.json.decode(msgspec.json.encode(error)) == error
    assert error.startswith("bad ") and " input " in error and error.endswith(" end")


def test_an_error_message_in_any_language_is_kept_as_raised() -> None:
    def handler(view: TaskView) -> None:
        raise RuntimeError("échec: 失败 🚫")

    bench = Bench(handler)

    assert bench.run(a_task(max_retries=0)).task.last_error == "échec: 失败 🚫"


def test_a_payload_that_cannot_be_decoded_fails_the_attempt_not_the_worker() -> None:
    bench = Bench(succeed)
    broken = msgspec.structs.replace(a_task(max_retries=0), payload=b"{not json")

    report = bench.run(broken)

    assert report.task.status == FAILED
    assert report.task.last_error
    assert bench.run(a_task("after")).task.status == DONE


def test_a_worker_reports_each_attempt_in_the_order_it_was_sent() -> None:
    bench = Bench(succeed)

    for n in range(20):
        bench.worker.tell(Run(a_task(f"task-{n}")))
    reports = [bench.reports.get(timeout=TIMEOUT_S) for _ in range(20)]

    assert [report.task.id for report in reports] == [f"task-{n}" for n in range(20)]
    assert all(report.task.status == DONE for report in reports)


class Heard:
    """An AttemptObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Task, AttemptOutcome, float]] = []

    def attempt_ended(self, task: Task, outcome: AttemptOutcome, duration_s: float) -> None:
        self.calls.append((task, outcome, duration_s))


@pytest.mark.parametrize(
    ("handler", "max_retries", "outcome", "status"),
    [(succeed, 3, "done", DONE), (fail, 3, "retry", QUEUED), (fail, 0, "failed", FAILED)],
)
def test_the_observer_hears_how_each_attempt_ended_before_the_dispatcher_does(
    handler: Callable[[TaskView], object], max_retries: int, outcome: str, status: str
) -> None:
    heard = Heard()
    bench = Bench(handler, heard)

    report = bench.run(a_task(max_retries=max_retries))

    [(task, told, duration_s)] = heard.calls
    assert (told, task.status) == (outcome, status)
    assert task == report.task
    assert duration_s >= 0


def test_the_observed_duration_is_the_handlers_time() -> None:
    heard = Heard()
    work_s = 0.05

    def busy(view: TaskView) -> None:
        time.sleep(work_s)  # the attempt's work, not a wait for something to happen

    bench = Bench(busy, heard)
    bench.run(a_task())

    [(_, _, duration_s)] = heard.calls
    assert work_s <= duration_s < work_s + 1.0


def test_an_observer_that_raises_is_logged_and_the_attempt_still_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def attempt_ended(self, task: Task, outcome: AttemptOutcome, duration_s: float) -> None:
            raise RuntimeError("observer bug")

    bench = Bench(succeed, Broken())

    with caplog.at_level(logging.ERROR, logger="actors.worker"):
        report = bench.run(a_task("observed"))
        after = bench.run(a_task("after"))

    assert (report.task.status, after.task.status) == (DONE, DONE)
    assert [(r.message, r.task_id) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("attempt observer failed", "observed"),
        ("attempt observer failed", "after"),
    ]


@pytest.mark.parametrize(
    ("handler", "max_retries", "expected"),
    [
        (succeed, 3, [(logging.DEBUG, 1, "running"), (logging.DEBUG, 1, "done")]),
        (fail, 3, [(logging.DEBUG, 1, "running"), (logging.INFO, 1, "retrying in")]),
        (fail, 0, [(logging.DEBUG, 1, "running"), (logging.WARNING, 1, "failed for good")]),
    ],
    ids=["done", "retry", "failed"],
)
def test_each_line_about_an_attempt_carries_the_task_id_and_attempt_at_its_level(
    caplog: pytest.LogCaptureFixture,
    handler: Callable[[TaskView], object],
    max_retries: int,
    expected: list[tuple[int, int, str]],
) -> None:
    bench = Bench(handler)

    with caplog.at_level(logging.DEBUG, logger="actors.worker"):
        bench.run(a_task("logged", max_retries=max_retries))

    records = [r for r in caplog.records if r.name == "actors.worker"]
    assert len(records) == len(expected), [r.getMessage() for r in records]
    for record, (level, attempt, words) in zip(records, expected, strict=True):
        assert record.levelno == level
        assert (record.task_id, record.attempt) == ("logged", attempt)  # type: ignore[attr-defined]
        assert words in record.getMessage()
