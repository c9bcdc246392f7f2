"""ClusterDispatcherActor with QUEUES, with fake actors around it: each queue claims for its own
idle workers, at its own rate, and pause, resume and GET /queues go to the repository."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
import pytest

from actors import cluster_dispatcher
from actors.cluster_dispatcher import ClusterDispatcherActor
from actors.protocol.cluster import Claim, Claimed, FillQueues
from actors.protocol.intake import TaskStored
from actors.protocol.lifecycle import Connect
from actors.protocol.queues import GetQueues, PauseQueue, SaveQueuePaused
from actors.protocol.running import AttemptFinished, Run, Save
from actors.queues import QueueInfo, QueueSpec
from actors.reply import Reply
from actors.task import DONE, new_task
from tests.support import wait_until
from tests.test_cluster_dispatcher import Actors, Recorded, Recorder, recorded

if TYPE_CHECKING:
    import pykka

QUEUES = (QueueSpec("emails", 1), QueueSpec("reports", 2, 4.0))


@pytest.fixture(autouse=True)
def no_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the claims each test causes: the poll's would come at a time of its own."""
    monkeypatch.setattr(cluster_dispatcher, "POLL_INTERVAL_S", 600.0)


def started() -> Actors:
    repository = Recorder.start()
    dispatcher = ClusterDispatcherActor.start(repository, 64, 100, QUEUES)
    workers = [Recorder.start() for _ in range(3)]
    retry = Recorder.start()
    dispatcher.tell(Connect(tuple(workers), retry))
    return Actors(repository, dispatcher, workers, retry)


def claims(repository: pykka.ActorRef) -> list[tuple[str, int, float | None]]:
    """Every queue's claims, in order, whether asked alone or with others."""
    return [tuple(want) for claim in recorded(repository, Claim) for want in claim.wants]


def test_each_queue_claims_for_its_own_idle_workers_and_hands_tasks_to_them() -> None:
    repository, dispatcher, workers, _ = started()
    wait_until(lambda: len(claims(repository)) == 2)
    assert sorted(claims(repository)) == [("emails", 1, None), ("reports", 2, 4.0)]
    assert len(recorded(repository, Claim)) == 1, "woken together: claimed in one statement"

    report = new_task("r1", b"{}", 3, queue="reports")
    dispatcher.tell(Claimed("reports", (report,), 2))
    dispatcher.tell(Claimed("emails", (), 1))

    (run,) = wait_until(lambda: recorded(workers[1], Run))
    assert run.task.id == "r1", "reports' first worker is the second of all"
    assert recorded(workers[0], Run) == []
    # A new email wakes only its queue; a report's end only reports.
    dispatcher.tell(TaskStored(new_task("e1", b"{}", 3, queue="emails")))
    wait_until(lambda: len(claims(repository)) == 3)
    assert claims(repository)[2] == ("emails", 1, None)
    finished = msgspec.structs.replace(report, status=DONE, attempts=1)
    dispatcher.tell(AttemptFinished(1, finished, None))
    # One claim out at a time, as with one queue: reports' goes once emails' is answered.
    wait_until(lambda: recorded(repository, Save))  # the end was handled
    assert len(claims(repository)) == 3
    dispatcher.tell(Claimed("emails", (), 1))
    wait_until(lambda: len(claims(repository)) == 4)
    assert claims(repository)[3] == ("reports", 2, 4.0)


def test_a_claim_held_back_by_the_rate_claims_again_when_the_token_comes() -> None:
    repository, dispatcher, _, _ = started()
    wait_until(lambda: len(claims(repository)) == 2)
    dispatcher.tell(Claimed("emails", (), 1))

    held_back = time.monotonic()
    dispatcher.tell(Claimed("reports", (), 2, 0.2))

    wait_until(lambda: len(claims(repository)) == 3)
    assert time.monotonic() - held_back >= 0.19
    assert claims(repository)[2] == ("reports", 2, 4.0)


def test_pause_and_resume_are_written_by_the_repository_and_a_resume_claims_after() -> None:
    repository, dispatcher, _, _ = started()
    wait_until(lambda: len(claims(repository)) == 2)
    dispatcher.tell(Claimed("emails", (), 1))
    dispatcher.tell(Claimed("reports", (), 2))
    unknown: Reply[QueueInfo | None] = Reply()

    dispatcher.tell(PauseQueue("nope", True, unknown))
    dispatcher.tell(PauseQueue("emails", False, Reply()))

    assert unknown.get(timeout=5) is None
    wait_until(lambda: len(claims(repository)) == 3)
    (save,) = recorded(repository, SaveQueuePaused)
    assert (save.name, save.paused, save.info.workers) == ("emails", False, 1)
    messages = repository.ask(Recorded(), timeout=5)
    last_claim = recorded(repository, Claim)[-1]
    positions = {id(message): n for n, message in enumerate(messages)}
    assert positions[id(save)] < positions[id(last_claim)]


def test_get_queues_sends_this_instances_workers_to_be_filled_in() -> None:
    repository, dispatcher, _, _ = started()
    wait_until(lambda: len(claims(repository)) == 2)
    dispatcher.tell(Claimed("reports", (new_task("r1", b"{}", 3, queue="reports"),), 2))

    dispatcher.tell(GetQueues(Reply()))

    (fill,) = wait_until(lambda: recorded(repository, FillQueues))
    assert fill.queues == (
        QueueInfo("emails", 1, 0, 0, 0, False, None),
        QueueInfo("reports", 2, 1, 0, 0, False, 4.0),
    )
