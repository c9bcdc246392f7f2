"""DispatcherActor with several queues: a line and workers each, pause, and a rate limit."""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgspec
import pykka
import pytest

from actors.dispatcher import DispatcherActor
from actors.protocol.answers import Admission
from actors.protocol.intake import AdmitBatch, AdmitTask
from actors.protocol.lifecycle import Connect
from actors.protocol.queues import GetQueues, PauseQueue
from actors.protocol.running import AttemptFinished, Run
from actors.protocol.waiting import TasksDue
from actors.queues import QueueInfo, QueueSpec
from actors.reply import Reply
from actors.repository import RepositoryActor
from actors.task import DONE, Task, new_task
from tests.support import wait_until
from tests.test_dispatcher import Recorded, Recorder

TIMEOUT_S = 5.0


class Queues:
    """A dispatcher over ``specs``, wired to a real repository and fake workers."""

    def __init__(
        self,
        specs: tuple[QueueSpec, ...],
        queue_size: int = 2,
        paused: frozenset[str] = frozenset(),
    ) -> None:
        self.repository = RepositoryActor.start()
        self.dispatcher = DispatcherActor.start(
            queue_size, self.repository, queues=specs, paused=paused
        )
        self.workers = tuple(Recorder.start() for spec in specs for _ in range(spec.workers))
        self.dispatcher.tell(Connect(self.workers, Recorder.start()))

    def submit(self, task_id: str, queue: str) -> Admission:
        reply: Reply[Admission] = Reply()
        task = new_task(task_id, b"null", 0, queue=queue)
        self.dispatcher.tell(AdmitTask(task, reply))
        return reply.get(timeout=TIMEOUT_S)

    def queues(self) -> dict[str, QueueInfo]:
        reply: Reply[tuple[QueueInfo, ...]] = Reply()
        self.dispatcher.tell(GetQueues(reply))
        return {info.name: info for info in reply.get(timeout=TIMEOUT_S)}

    def runs(self, worker: int) -> list[Task]:
        self.queues()  # the dispatcher has told the workers all it is going to
        messages = self.workers[worker].ask(Recorded(), block=False).get(timeout=TIMEOUT_S)
        assert all(isinstance(message, Run) for message in messages)
        return [message.task for message in messages]

    def finish(self, worker: int) -> None:
        last = self.runs(worker)[-1]
        done = msgspec.structs.replace(last, status=DONE, attempts=last.attempts + 1)
        self.dispatcher.tell(AttemptFinished(worker, done, None))

    def pause(self, name: str, *, paused: bool = True) -> QueueInfo | None:
        reply: Reply[QueueInfo | None] = Reply()
        self.dispatcher.tell(PauseQueue(name, paused, reply))
        return reply.get(timeout=TIMEOUT_S)


@pytest.fixture(autouse=True)
def stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def test_each_queue_s_tasks_go_to_its_own_workers_only() -> None:
    system = Queues((QueueSpec("reports", 1), QueueSpec("emails", 2)))
    for n in range(3):
        assert system.submit(f"report-{n}", "reports") is Admission.ACCEPTED
    assert system.submit("email-0", "emails") is Admission.ACCEPTED

    assert [task.id for task in system.runs(0)] == ["report-0"]
    assert [task.id for worker in (1, 2) for task in system.runs(worker)] == ["email-0"]
    reports, emails = system.queues()["reports"], system.queues()["emails"]
    assert (reports.busy, reports.waiting, reports.workers) == (1, 2, 1)
    assert (emails.busy, emails.waiting, emails.workers) == (1, 0, 2)


def test_a_full_queue_refuses_its_own_tasks_and_no_other_s() -> None:
    system = Queues((QueueSpec("reports", 1), QueueSpec("emails", 1)), queue_size=2)
    for n in range(3):  # one running, two waiting: full
        assert system.submit(f"report-{n}", "reports") is Admission.ACCEPTED
    assert system.submit("report-3", "reports") is Admission.QUEUE_FULL
    for n in range(3):
        assert system.submit(f"email-{n}", "emails") is Admission.ACCEPTED


def test_a_batch_is_refused_whole_when_one_of_its_queues_is_full() -> None:
    system = Queues((QueueSpec("a", 1), QueueSpec("b", 1)), queue_size=1)
    assert system.submit("a-0", "a") is Admission.ACCEPTED
    assert system.submit("a-1", "a") is Admission.ACCEPTED  # a is full now
    reply: Reply[object] = Reply()
    batch = (new_task("b-0", b"null", 0, queue="b"), new_task("a-2", b"null", 0, queue="a"))
    system.dispatcher.tell(AdmitBatch(batch, reply))  # type: ignore[arg-type]
    assert reply.get(timeout=TIMEOUT_S) == (Admission.QUEUE_FULL, None)
    assert system.queues()["b"].waiting == 0
    assert system.submit("b-1", "b") is Admission.ACCEPTED  # no place of b was kept


def test_a_paused_queue_takes_tasks_but_starts_none_until_resumed() -> None:
    system = Queues((QueueSpec("a", 1), QueueSpec("b", 1)))
    paused = system.pause("a")
    assert paused is not None and paused.paused
    assert system.submit("a-0", "a") is Admission.ACCEPTED
    assert system.submit("b-0", "b") is Admission.ACCEPTED
    assert system.runs(0) == []
    assert [task.id for task in system.runs(1)] == ["b-0"]
    assert system.queues()["a"].waiting == 1

    resumed = system.pause("a", paused=False)
    assert resumed is not None and not resumed.paused
    assert [task.id for task in system.runs(0)] == ["a-0"]


def test_a_running_attempt_of_a_queue_paused_meanwhile_ends_and_nothing_follows_it() -> None:
    system = Queues((QueueSpec("a", 1),))
    system.submit("a-0", "a")
    system.submit("a-1", "a")
    system.pause("a")
    system.finish(0)
    assert [task.id for task in system.runs(0)] == ["a-0"]
    info = system.queues()["a"]
    assert (info.busy, info.waiting, info.paused) == (0, 1, True)


def test_a_queue_paused_at_start_stays_paused() -> None:
    system = Queues((QueueSpec("a", 1),), paused=frozenset({"a"}))
    system.submit("a-0", "a")
    assert system.runs(0) == []
    assert system.queues()["a"].paused


def test_pausing_an_unknown_queue_answers_none() -> None:
    system = Queues((QueueSpec("a", 1),))
    assert system.pause("nope") is None
    assert system.pause("nope", paused=False) is None


def test_a_rate_limited_queue_starts_a_burst_then_one_per_token_woken_by_its_alarm() -> None:
    system = Queues((QueueSpec("slow", 8, 10.0), QueueSpec("free", 1)), queue_size=64)
    began = time.monotonic()
    for n in range(12):
        system.submit(f"slow-{n}", "slow")
    system.submit("free-0", "free")

    def started() -> int:
        return sum(len(system.runs(worker)) for worker in range(8))

    assert started() == 8  # every worker busy: the burst allows ten
    for worker in range(8):
        system.finish(worker)
    assert wait_until(lambda: started() == 12, timeout_s=TIMEOUT_S)
    # Ten at once, then two more at 10 a second: the last no sooner than 0.2 s after the start.
    assert time.monotonic() - began >= 0.2 - 0.01
    assert [task.id for task in system.runs(8)] == ["free-0"]  # another queue is not held back


def test_a_due_retry_takes_a_token_like_any_start() -> None:
    system = Queues((QueueSpec("slow", 2, 1.0),), queue_size=8)
    system.submit("first", "slow")
    assert [task.id for task in system.runs(0)] == ["first"]  # the one token a second
    retry = new_task("retried", b"null", 3, queue="slow")
    began = time.monotonic()
    system.dispatcher.tell(TasksDue((retry,)))

    # A worker is idle, but the retry starts only with the next token.
    assert wait_until(lambda: system.runs(1), timeout_s=TIMEOUT_S)[0].id == "retried"
    assert time.monotonic() - began >= 0.9  # the next token, a second after the first
