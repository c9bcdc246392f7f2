"""DispatcherActor on its own: admission, the bounded line, one task per idle worker, shutdown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import msgspec
import pykka
import pytest

from actors.dispatcher import DEFAULT_SCHEDULED_MAX, DispatcherActor
from actors.protocol.answers import Admission, Outcome, Readiness
from actors.protocol.intake import AdmitTask, AnswerRefusal, StoreAdmittedTask, TaskStored
from actors.protocol.lifecycle import BeginShutdown, Connect, StoreAvailability, WhenIdle
from actors.protocol.reading import GetDispatcherStats, GetReadiness, GetTask
from actors.protocol.running import AttemptFinished, Run
from actors.protocol.schedules import AdmitFiring
from actors.protocol.task_actions import CancelInLine
from actors.protocol.waiting import HoldUntilDue, TasksDue
from actors.reply import Reply
from actors.repository import RepositoryActor
from actors.stats import LineCounts, Workers
from actors.task import DONE, FAILED, QUEUED, Task, new_task
from tests.support import ask

TIMEOUT_S = 5.0


class Recorded(NamedTuple):
    """-> a fake actor: answered with every message it recorded, in order."""


class Recorder(pykka.ThreadingActor):
    """A fake worker or retry actor: records what it is told, does nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self._messages: list[object] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Recorded):
            return list(self._messages)
        self._messages.append(message)
        return None


class ReleaseHeld(NamedTuple):
    """-> HoldingRepository: store every held task now, answering as the real one does."""


class HoldingRepository(pykka.ThreadingActor):
    """A fake repository that holds each StoreAdmittedTask until told to go on: a slow store."""

    def __init__(self) -> None:
        super().__init__()
        self._held: list[StoreAdmittedTask] = []
        self._ids: set[str] = set()

    def on_receive(self, message: Any) -> Any:
        match message:
            case StoreAdmittedTask():
                self._held.append(message)
            case AnswerRefusal(task_id, reply, reason):
                known = task_id in self._ids or any(i.task.id == task_id for i in self._held)
                reply.set(Admission.DUPLICATE if known else reason)
            case ReleaseHeld():
                for task, reply, admitted_by in self._held:
                    self._ids.add(task.id)
                    admitted_by.tell(TaskStored(task))
                    reply.set(Admission.ACCEPTED)
                self._held.clear()
        return None


class LineView(NamedTuple):
    """The dispatcher's line and workers now: the part of LineCounts these tests check."""

    waiting: int
    busy: int
    workers: int


class Line:
    """A dispatcher wired to a repository, fake workers and a fake retry actor."""

    def __init__(self, queue_size: int, workers: int, repository: pykka.ActorRef) -> None:
        self.repository = repository
        self.dispatcher = DispatcherActor.start(queue_size, repository)
        self.workers = tuple(Recorder.start() for _ in range(workers))
        self.retry = Recorder.start()
        self.dispatcher.tell(Connect(self.workers, self.retry))

    def submit_async(self, task_id: str) -> Reply[Admission]:
        reply: Reply[Admission] = Reply()
        self.dispatcher.tell(AdmitTask(new_task(task_id, b"null", max_retries=3), reply))
        return reply

    def submit(self, task_id: str) -> Admission:
        return self.submit_async(task_id).get(timeout=TIMEOUT_S)

    def stats(self) -> LineView:
        stats = dispatcher_stats(self)
        return LineView(waiting=stats.waiting, busy=stats.workers.busy, workers=stats.workers.total)

    def ran_by(self, worker: int) -> list[str]:
        """Ids of the tasks handed to a worker. Asking the dispatcher first flushes its inbox."""
        self.stats()
        return [run.task.id for run in self.runs(worker)]

    def runs(self, worker: int) -> list[Run]:
        messages = self.workers[worker].ask(Recorded(), block=False).get(timeout=TIMEOUT_S)
        assert all(isinstance(message, Run) for message in messages)
        return list(messages)

    def finish(self, worker: int, retry_delay_s: float | None = None) -> Task:
        """Report that ``worker`` finished the last task it was handed."""
        self.stats()  # the dispatcher has told the worker everything it is going to
        [*_, last] = self.runs(worker)
        status = DONE if retry_delay_s is None else QUEUED
        task = msgspec.structs.replace(last.task, status=status, attempts=last.task.attempts + 1)
        self.dispatcher.tell(AttemptFinished(worker, task, retry_delay_s))
        return task

    def stored(self, task_id: str) -> Task | None:
        reply: Reply[Task | None] = Reply()
        self.repository.tell(GetTask(task_id, reply))
        return reply.get(timeout=TIMEOUT_S)


@pytest.fixture
def repository() -> Iterator[pykka.ActorRef]:
    ref = RepositoryActor.start()
    yield ref
    ref.stop()


def test_the_line_holds_exactly_queue_size_tasks_beyond_the_running_ones(
    repository: pykka.ActorRef,
) -> None:
    line = Line(queue_size=3, workers=2, repository=repository)

    admissions = [line.submit(f"task-{n}") for n in range(5)]

    assert admissions == [Admission.ACCEPTED] * 5
    assert line.stats() == LineView(waiting=3, busy=2, workers=2)
    assert line.submit("one-too-many") is Admission.QUEUE_FULL


def test_a_refused_task_is_not_stored(repository: pykka.ActorRef) -> None:
    line = Line(queue_size=1, workers=1, repository=repository)
    line.submit("running")
    line.submit("waiting")

    assert line.submit("refused") is Admission.QUEUE_FULL
    assert line.stored("refused") is None
    assert line.stats().waiting == 1


def test_a_worker_that_finishes_makes_room_for_exactly_one_more(
    repository: pykka.ActorRef,
) -> None:
    line = Line(queue_size=2, workers=1, repository=repository)
    for n in range(3):
        line.submit(f"task-{n}")
    assert line.submit("refused-1") is Admission.QUEUE_FULL

    line.finish(0)

    assert line.submit("task-3") is Admission.ACCEPTED
    assert line.submit("refused-2") is Admission.QUEUE_FULL


def test_places_reserved_while_the_repository_stores_count_against_the_line() -> None:
    line = Line(queue_size=2, workers=1, repository=HoldingRepository.start())
    pending = [line.submit_async(f"task-{n}") for n in range(3)]

    # One for the idle worker and two for the line are reserved, none stored yet.
    assert line.submit("task-3") is Admission.QUEUE_FULL

    line.repository.tell(ReleaseHeld())
    assert [reply.get(timeout=TIMEOUT_S) for reply in pending] == [Admission.ACCEPTED] * 3
    assert line.stats() == LineView(waiting=2, busy=1, workers=1)
    assert line.ran_by(0) == ["task-0"]


def test_a_duplicate_releases_the_place_it_reserved(repository: pykka.ActorRef) -> None:
    line = Line(queue_size=1, workers=1, repository=repository)
    line.submit("task-0")  # running

    assert line.submit("task-0") is Admission.DUPLICATE
    assert line.submit("task-1") is Admission.ACCEPTED
    assert line.submit("task-2") is Admission.QUEUE_FULL


def test_a_known_id_is_a_duplicate_even_when_the_line_is_full(
    repository: pykka.ActorRef,
) -> None:
    line = Line(queue_size=1, workers=1, repository=repository)
    line.submit("task-0")
    line.submit("task-1")

    assert line.submit("task-1") is Admission.DUPLICATE
    assert line.submit("task-0") is Admission.DUPLICATE


def test_each_idle_worker_gets_one_task_and_no_worker_gets_a_backlog(
    repository: pykka.ActorRef,
) -> None:
    line = Line(queue_size=10, workers=2, repository=repository)
    for n in range(6):
        line.submit(f"task-{n}")

    assert sorted(line.ran_by(0) + line.ran_by(1)) == ["task-0", "task-1"]
    assert line.stats() == LineView(waiting=4, busy=2, workers=2)

    first_to_finish = 0
    before = line.ran_by(first_to_finish)
    line.finish(first_to_finish)

    assert line.ran_by(first_to_finish) == [*before, "task-2"]
    assert len(line.ran_by(1 - first_to_finish)) == 1
    assert line.stats() == LineView(waiting=3, busy=2, workers=2)


def test_tasks_leave_the_line_in_the_order_they_entered(repository: pykka.ActorRef) -> None:
    line = Line(queue_size=10, workers=1, repository=repository)
    ids = [f"task-{n}" for n in range(5)]
    for task_id in ids:
        line.submit(task_id)

    for _ in ids[1:]:
        line.finish(0)

    assert line.ran_by(0) == ids


def test_due_retries_enter_the_line_even_when_it_is_full(repository: pykka.ActorRef) -> None:
    line = Line(queue_size=1, workers=1, repository=repository)
    line.submit("task-0")
    line.submit("task-1")
    assert line.submit("refused") is Admission.QUEUE_FULL
    retries = tuple(
        msgspec.structs.replace(new_task(f"retry-{n}", b"null", 3), attempts=1) for n in range(2)
    )

    line.dispatcher.tell(TasksDue(retries))

    assert line.stats() == LineView(waiting=3, busy=1, workers=1)
    for _ in range(3):
        line.finish(0)
    assert line.ran_by(0) == ["task-0", "task-1", "retry-0", "retry-1"]


def test_a_failed_attempt_is_saved_then_handed_to_the_retry_actor(
    repository: pykka.ActorRef,
) -> None:
    line = Line(queue_size=1, workers=1, repository=repository)
    line.submit("task-0")

    waiting = line.finish(0, retry_delay_s=0.25)

    line.stats()
    assert line.retry.ask(Recorded(), timeout=TIMEOUT_S) == [HoldUntilDue(waiting, 0.25)]
    assert line.stored("task-0") == waiting


def test_begin_shutdown_refuses_new_tasks_without_storing_them(
    repository: pykka.ActorRef,
) -> None:
    line = Line(queue_size=5, workers=1, repository=repository)

    ask(line.dispatcher, BeginShutdown, TIMEOUT_S)

    assert line.submit("late") is Admission.SHUTTING_DOWN
    assert line.stored("late") is None


def test_begin_shutdown_stops_handing_out_queued_tasks_and_retries(
    repository: pykka.ActorRef,
) -> None:
    line = Line(queue_size=5, workers=1, repository=repository)
    line.submit("task-0")
    line.submit("task-1")

    ask(line.dispatcher, BeginShutdown, TIMEOUT_S)
    line.finish(0)
    line.dispatcher.tell(TasksDue((new_task("retry-0", b"null", 3),)))

    assert line.ran_by(0) == ["task-0"]
    assert line.stats() == LineView(waiting=2, busy=0, workers=1)


def test_when_idle_answers_once_the_last_running_attempt_finishes(
    repository: pykka.ActorRef,
) -> None:
    line = Line(queue_size=5, workers=2, repository=repository)
    line.submit("task-0")
    line.submit("task-1")
    [busy_a] = [w for w in range(2) if line.ran_by(w) == ["task-0"]]
    idle: Reply[None] = Reply()

    line.dispatcher.tell(WhenIdle(idle))
    line.finish(busy_a)
    line.stats()
    with pytest.raises(pykka.Timeout):
        idle.get(timeout=0)

    line.finish(1 - busy_a)
    idle.get(timeout=TIMEOUT_S)


def test_when_idle_answers_at_once_when_nothing_runs(repository: pykka.ActorRef) -> None:
    line = Line(queue_size=5, workers=3, repository=repository)
    idle: Reply[None] = Reply()

    line.dispatcher.tell(WhenIdle(idle))

    idle.get(timeout=TIMEOUT_S)


# --- stats and readiness ------------------------------------------------------------------------


def dispatcher_stats(line: Line) -> LineCounts:
    reply: Reply[LineCounts] = Reply()
    line.dispatcher.tell(GetDispatcherStats(reply))
    return reply.get(timeout=TIMEOUT_S)


def readiness(line: Line) -> Readiness:
    reply: Reply[Readiness] = Reply()
    line.dispatcher.tell(GetReadiness(reply))
    return reply.get(timeout=TIMEOUT_S)


def test_dispatcher_stats_count_attempts_handed_out_and_how_each_ended(
    repository: pykka.ActorRef,
) -> None:
    line = Line(queue_size=5, workers=1, repository=repository)
    for n in range(4):
        line.submit(f"task-{n}")

    line.finish(0, retry_delay_s=60)  # task-0 waits for a retry
    line.finish(0)  # task-1 done
    line.stats()
    [*_, last] = line.runs(0)
    failed = msgspec.structs.replace(last.task, status=FAILED, attempts=1)
    line.dispatcher.tell(AttemptFinished(0, failed, None))  # task-2 failed

    assert dispatcher_stats(line) == LineCounts(
        waiting=0,
        workers=Workers(total=1, busy=1),
        queue_size=5,
        scheduled_max=DEFAULT_SCHEDULED_MAX,
        attempts=4,
        retries=1,
        done=1,
        failed=1,
    )


def test_readiness_is_full_exactly_when_a_submit_would_be_refused_as_full(
    repository: pykka.ActorRef,
) -> None:
    line = Line(queue_size=2, workers=1, repository=repository)
    assert readiness(line) is Readiness.READY
    line.submit("running")
    line.submit("waiting-1")
    assert readiness(line) is Readiness.READY

    line.submit("waiting-2")

    assert readiness(line) is Readiness.FULL
    assert line.submit("one-too-many") is Admission.QUEUE_FULL
    line.finish(0)
    assert readiness(line) is Readiness.READY


def test_readiness_is_shutting_down_once_shutdown_began_even_with_room(
    repository: pykka.ActorRef,
) -> None:
    line = Line(queue_size=2, workers=1, repository=repository)

    ask(line.dispatcher, BeginShutdown, TIMEOUT_S)

    assert readiness(line) is Readiness.SHUTTING_DOWN


def test_while_the_store_is_down_new_work_and_cancels_are_refused_and_readiness_says_so(
    repository: pykka.ActorRef,
) -> None:
    line = Line(queue_size=2, workers=1, repository=repository)
    line.submit("running")
    line.submit("waiting")

    line.dispatcher.tell(StoreAvailability(False))

    assert readiness(line) is Readiness.STORE_UNAVAILABLE
    assert line.submit("new") is Admission.STORE_UNAVAILABLE
    assert line.submit("waiting") is Admission.DUPLICATE  # a known id is a conflict, even now
    cancelled: Reply[Outcome] = Reply()
    line.dispatcher.tell(CancelInLine("waiting", cancelled))
    assert cancelled.get(timeout=TIMEOUT_S) == Outcome(None, refused=Admission.STORE_UNAVAILABLE)
    line.finish(0)
    assert line.ran_by(0) == ["running", "waiting"]  # accepted work goes on

    line.dispatcher.tell(StoreAvailability(True))

    assert readiness(line) is Readiness.READY
    assert line.submit("new") is Admission.ACCEPTED


def test_shutting_down_outranks_a_store_that_is_down(repository: pykka.ActorRef) -> None:
    line = Line(queue_size=2, workers=1, repository=repository)
    line.dispatcher.tell(StoreAvailability(False))

    ask(line.dispatcher, BeginShutdown, TIMEOUT_S)

    assert readiness(line) is Readiness.SHUTTING_DOWN
    assert line.submit("new") is Admission.SHUTTING_DOWN


def firing(line: Line, task_id: str) -> Admission:
    """A schedule's firing, admitted through the dispatcher as the ScheduleActor sends it."""
    reply: Reply[Admission] = Reply()
    line.dispatcher.tell(AdmitFiring(new_task(task_id, b"null", max_retries=0), reply))
    return reply.get(timeout=TIMEOUT_S)


def test_a_firing_gets_into_a_full_line_and_its_place_counts(repository: pykka.ActorRef) -> None:
    line = Line(queue_size=1, workers=1, repository=repository)
    line.submit("running")
    line.submit("waiting")
    assert line.submit("refused") is Admission.QUEUE_FULL

    assert firing(line, "poll@2026-11-30T02:00:00Z") is Admission.ACCEPTED
    assert line.stats().waiting == 2
    assert firing(line, "poll@2026-11-30T02:00:00Z") is Admission.DUPLICATE
    assert line.stats().waiting == 2  # the duplicate's reserved place is let go
    line.finish(0)
    assert line.submit("still-refused") is Admission.QUEUE_FULL  # two waited, one left: full


def test_a_firing_is_refused_while_shutting_down(repository: pykka.ActorRef) -> None:
    line = Line(queue_size=1, workers=1, repository=repository)
    assert ask(line.dispatcher, BeginShutdown) is True
    assert firing(line, "poll@2026-11-30T02:00:00Z") is Admission.SHUTTING_DOWN
    assert line.stored("poll@2026-11-30T02:00:00Z") is None
