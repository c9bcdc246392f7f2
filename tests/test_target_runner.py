"""TargetRunner: a task with a target is delivered by the worker's runner itself; every other
task goes to the runner it wraps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import pytest

from actors.allow_list import AllowList
from actors.attempt import AttemptReport
from actors.target import Target
from actors.target_runner import Deliveries, TargetRunner
from actors.task import RUNNING, new_task
from actors.thread_runner import ThreadRunner
from tests.receiver import Answer, Receiver

if TYPE_CHECKING:
    from collections.abc import Iterator

    from actors.task import Task


class Inner:
    """A runner that reports the same each time and remembers what it ran."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, int]] = []
        self.closed: list[float] = []
        self.ready: list[float | None] = []

    def run(self, task: Task, timeout_ms: int) -> AttemptReport:
        self.ran.append((task.id, timeout_ms))
        return AttemptReport("returned", result=b'"handled"')

    def close(self, timeout_s: float) -> None:
        self.closed.append(timeout_s)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        self.ready.append(timeout_s)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def running(task_id: str, target: Target | None, attempts: int = 1) -> Task:
    task = new_task(task_id, b'{"x": 1}', 3, target=target)
    return msgspec.structs.replace(task, status=RUNNING, attempts=attempts)


def runner_for(
    receiver: Receiver, inner: Inner, signing_keys: tuple[bytes, ...] = ()
) -> TargetRunner:
    allow = AllowList.parse(receiver.url("/"))
    deliveries = Deliveries(allow, workers=2, result_max_bytes=1000, signing_keys=signing_keys)
    return TargetRunner(inner, deliveries)


def test_a_task_without_a_target_goes_to_the_wrapped_runner(receiver: Receiver) -> None:
    inner = Inner()

    report = runner_for(receiver, inner).run(running("plain", None), 1500)

    assert report == AttemptReport("returned", result=b'"handled"')
    assert inner.ran == [("plain", 1500)]
    assert receiver.requests() == []


def test_a_task_with_a_target_is_sent_with_its_attempt_number_and_signed(
    receiver: Receiver,
) -> None:
    inner = Inner()
    url = receiver.answer("/hook", Answer(201, b'{"id": 9}'))
    runner = runner_for(receiver, inner, signing_keys=(b"k" * 16,))

    report = runner.run(running("sent", Target(url, "PUT", (("X-A", "b"),)), attempts=2), 2000)

    assert report == AttemptReport("returned", result=b'{"status":201,"body":{"id":9}}')
    assert inner.ran == []
    (request,) = receiver.requests()
    assert (request.method, request.body) == ("PUT", b'{"x": 1}')
    assert (request.headers["task-attempt"], request.headers["x-a"]) == ("2", "b")
    assert request.headers["task-signature"].startswith("t=")


def test_a_retryable_answer_carries_its_retry_after(receiver: Receiver) -> None:
    url = receiver.answer("/busy", Answer(503, headers=(("Retry-After", "7"),)))

    report = runner_for(receiver, Inner()).run(running("busy", Target(url)), 2000)

    assert report == AttemptReport("raised", error="HTTP 503 from target", retry_after_s=7.0)


def test_a_target_no_longer_allowed_fails_for_good_without_a_request(receiver: Receiver) -> None:
    inner = Inner()
    runner = TargetRunner(inner, Deliveries(AllowList(), workers=1, result_max_bytes=1000))

    report = runner.run(running("gone", Target(receiver.url("/hook"))), 2000)

    assert report == AttemptReport("permanent", error="target not allowed")
    assert receiver.requests() == []


def test_closing_and_readiness_are_the_wrapped_runners(receiver: Receiver) -> None:
    inner = Inner()
    runner = runner_for(receiver, inner)

    runner.wait_ready()
    runner.wait_ready(5.0)
    runner.close(1.5)

    assert (inner.ready, inner.closed) == ([60.0, 5.0], [1.5])


def test_it_takes_over_only_if_its_inner_runner_does() -> None:
    deliveries = Deliveries(AllowList(), workers=1, result_max_bytes=100)
    on_thread = ThreadRunner(lambda view: None, result_max_bytes=100)
    try:
        assert TargetRunner(on_thread, deliveries).take_over_with(lambda report: None)
        assert not TargetRunner(Inner(), deliveries).take_over_with(lambda report: None)
    finally:
        on_thread.close(1.0)
