"""ClusterDispatcherActor on its own, with fake actors around it: one claim at a time, for the
idle workers only; claimed tasks handed one per worker; what it refuses by itself."""

from __future__ import annotations

from typing import Any, NamedTuple

import pykka
import pytest

from actors.cluster_dispatcher import ClusterDispatcherActor
from actors.protocol.answers import Admission, Outcome, Readiness
from actors.protocol.cluster import AskReadiness, Claim, Claimed, Wake, Want
from actors.protocol.intake import AdmitTask, AnswerRefusal, StoreAdmittedTask, TaskStored
from actors.protocol.lifecycle import BeginShutdown, Connect, StoreAvailability, WhenIdle
from actors.protocol.reading import GetReadiness
from actors.protocol.running import AttemptFinished, Run, Save
from actors.protocol.task_actions import CancelInLine
from actors.protocol.waiting import HoldUntilDue
from actors.reply import Reply
from actors.task import DONE, new_task
from tests.support import ask, wait_until

TIMEOUT_S = 5.0


class Recorded(NamedTuple):
    """-> a fake actor: answered with every message it recorded, in order."""


class Recorder(pykka.ThreadingActor):
    """A fake repository, worker or retry actor: records what it is told."""

    def __init__(self) -> None:
        super().__init__()
        self._messages: list[object] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Recorded):
            return list(self._messages)
        self._messages.append(message)
        return None


def recorded(actor: pykka.ActorRef, kind: type) -> list[Any]:
    return [m for m in actor.ask(Recorded(), timeout=TIMEOUT_S) if isinstance(m, kind)]


class Actors(NamedTuple):
    repository: pykka.ActorRef
    dispatcher: pykka.ActorRef
    workers: list[pykka.ActorRef]
    retry: pykka.ActorRef


def started(workers: int = 2) -> Actors:
    repository = Recorder.start()
    dispatcher = ClusterDispatcherActor.start(repository, 64, 100)
    worker_refs = [Recorder.start() for _ in range(workers)]
    retry = Recorder.start()
    dispatcher.tell(Connect(tuple(worker_refs), retry))
    return Actors(repository, dispatcher, worker_refs, retry)


def test_it_claims_once_for_all_its_idle_workers_and_hands_one_task_to_each() -> None:
    repository, dispatcher, workers, _ = started(workers=2)
    (claim,) = wait_until(lambda: recorded(repository, Claim))
    assert claim.wants == (Want("default", 2),)

    dispatcher.tell(Wake())  # while the claim is out: no second one
    tasks = (new_task("a", b"{}", 3), new_task("b", b"{}", 3))
    dispatcher.tell(Claimed("default", tasks, 2))

    wait_until(lambda: all(recorded(worker, Run) for worker in workers))
    assert sorted(recorded(worker, Run)[0].task.id for worker in workers) == ["a", "b"]
    # A full claim may have left more: once a worker is free, it claims again, for it alone.
    dispatcher.tell(
        AttemptFinished(0, tasks[1].__class__(**{**_fields(tasks[1]), "status": DONE}), None)
    )
    claims = wait_until(lambda: recorded(repository, Claim)[1:])
    assert [claim.wants for claim in claims] == [(Want("default", 1),)]
    assert [save.task.id for save in recorded(repository, Save)] == ["b"]


def test_a_retry_is_a_wake_up_at_its_due_time_on_this_instance() -> None:
    repository, dispatcher, workers, retry = started(workers=1)
    wait_until(lambda: recorded(repository, Claim))
    dispatcher.tell(Claimed("default", (new_task("a", b"{}", 3),), 1))
    wait_until(lambda: recorded(workers[0], Run))
    waiting = new_task("a", b"{}", 3, delay_s=0.5)

    dispatcher.tell(AttemptFinished(0, waiting, 0.5))
    # Idle once no claim is out, as a shutdown waits for: the one the free worker made.
    idle: Reply[None] = Reply()
    dispatcher.tell(WhenIdle(idle))
    wait_until(lambda: len(recorded(repository, Claim)) == 2)
    with pytest.raises(pykka.Timeout):
        idle.get(timeout=0.1)
    dispatcher.tell(Claimed("default", (), 1))
    idle.get(timeout=TIMEOUT_S)
    scheduled = wait_until(lambda: recorded(retry, HoldUntilDue))
    assert [(s.task.id, s.delay_s) for s in scheduled] == [("a", 0.5)]


def test_new_work_goes_to_the_repository_unless_shutdown_or_an_outage_refuses_it() -> None:
    repository, dispatcher, _, _ = started()
    reply: Reply[Admission] = Reply()
    dispatcher.tell(AdmitTask(new_task("a", b"{}", 3), reply))
    (insert,) = wait_until(lambda: recorded(repository, StoreAdmittedTask))
    assert insert.task.id == "a"

    dispatcher.tell(StoreAvailability(False))
    dispatcher.tell(AdmitTask(new_task("b", b"{}", 3), Reply()))
    assert ask(dispatcher, GetReadiness) is Readiness.STORE_UNAVAILABLE
    cancel: Reply[Outcome] = Reply()
    dispatcher.tell(CancelInLine("a", cancel))
    assert cancel.get(timeout=TIMEOUT_S).refused is Admission.STORE_UNAVAILABLE

    dispatcher.tell(StoreAvailability(True))
    ask(dispatcher, BeginShutdown)
    dispatcher.tell(AdmitTask(new_task("c", b"{}", 3), Reply()))
    refusals = wait_until(
        lambda: recorded(repository, AnswerRefusal)[1:] and recorded(repository, AnswerRefusal)
    )
    assert [(r.task_id, r.reason) for r in refusals] == [
        ("b", Admission.STORE_UNAVAILABLE),
        ("c", Admission.SHUTTING_DOWN),
    ]


def test_whether_the_cluster_has_room_is_asked_of_the_repository() -> None:
    repository, dispatcher, _, _ = started()
    dispatcher.tell(GetReadiness(Reply()))
    assert wait_until(lambda: recorded(repository, AskReadiness))


def test_a_delayed_task_taken_in_here_wakes_this_instance_when_due() -> None:
    _, dispatcher, _, retry = started()
    delayed = new_task("d", b"{}", 3, delay_s=30)

    dispatcher.tell(TaskStored(delayed))

    (scheduled,) = wait_until(lambda: recorded(retry, HoldUntilDue))
    assert scheduled.task.id == "d"
    assert 29 < scheduled.delay_s <= 30


def _fields(task: object) -> dict[str, object]:
    import msgspec

    return msgspec.structs.asdict(task)  # type: ignore[arg-type]
