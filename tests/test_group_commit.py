"""GroupCommit on its own: a fake store, a fake alarm and a clock that only moves when told."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, NamedTuple

import pykka
import pytest

from actors.group_commit import BATCH_CAP, COMMIT_DELAY_S, GroupCommit, Held
from actors.outage import Failure, StoreOutage
from actors.store import MemoryStore, StoreError
from actors.task import Task, new_task

if TYPE_CHECKING:
    from collections.abc import Callable


class FakeStore(MemoryStore):
    """A store in memory that records each commit, and fails while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[list[str], list[str]]] = []
        self.failing = False
        self.checks = 0
        self.closed = False

    def commit(self, tasks: Sequence[Task], deleted: Collection[str] = ()) -> None:
        if self.failing:
            raise StoreError("the store at memory cannot be written: database or disk is full")
        self.batches.append(([task.id for task in tasks], list(deleted)))
        super().commit(tasks, deleted)

    def check(self) -> None:
        self.checks += 1
        if self.failing:
            raise StoreError("the store at memory cannot be written: database or disk is full")

    def close(self) -> None:
        self.closed = True


class FakeAlarm:
    """Records the deadlines it is given; rings only when a test says so."""

    def __init__(self) -> None:
        self.deadlines: list[float] = []
        self.closed = False

    def set(self, deadline: float) -> None:
        self.deadlines.append(deadline)

    def close(self) -> None:
        self.closed = True


class Inbox:
    def __init__(self, *, empty: bool) -> None:
        self.is_empty = empty

    def empty(self) -> bool:
        return self.is_empty


def task(task_id: str, *, priority: int = 0) -> Task:
    return new_task(task_id, b"{}", 3, priority=priority)


EMPTY = Inbox(empty=True)
BUSY = Inbox(empty=False)
NOW = 1000.0


class Accepted(NamedTuple):
    """An acceptance as GroupCommit sees one: tasks, and what granting it says."""

    tasks: tuple[Task, ...]
    said: object


class Owner:
    """What the repository does with a granted acceptance, a failed commit and a store that is
    back, recorded."""

    def __init__(self) -> None:
        self.sent: list[object] = []
        self.on_grant: Callable[[], object] | None = None
        self.failures: list[tuple[StoreError, Failure, list[Held]]] = []
        self.backs = 0

    def grant(self, acceptance: Accepted) -> None:
        self.sent.append(acceptance.said)
        if self.on_grant is not None:
            self.on_grant()

    def failed(self, exc: StoreError, failure: Failure, held: list[Held]) -> None:
        self.failures.append((exc, failure, held))

    def back(self) -> None:
        self.backs += 1


class Fixture:
    def __init__(self) -> None:
        self.store = FakeStore()
        self.alarm = FakeAlarm()
        self.outage = StoreOutage(uniform=lambda low, high: high)
        self.owner = Owner()
        self.sent = self.owner.sent
        self.group = GroupCommit(
            self.store,
            self.alarm,
            self.outage,
            grant=self.owner.grant,
            failed=self.owner.failed,
            back=self.owner.back,
            clock=lambda: NOW,
        )


@pytest.fixture
def fx() -> Fixture:
    return Fixture()


def test_nothing_staged_sends_at_once_and_commits_nothing(fx: Fixture) -> None:
    fx.group.send(fx.sent.append, "answer")
    fx.group.settle(EMPTY)

    assert fx.sent == ["answer"]
    assert fx.store.batches == []
    assert fx.alarm.deadlines == []


def test_a_send_after_a_change_waits_for_the_commit_of_it(fx: Fixture) -> None:
    fx.group.stage(task("t1"))
    fx.group.send(fx.sent.append, "answer")

    assert fx.sent == []
    fx.group.settle(EMPTY)
    assert fx.store.batches == [(["t1"], [])]
    assert fx.sent == ["answer"]
    assert not fx.group.pending


def test_changes_share_one_commit_while_more_messages_wait(fx: Fixture) -> None:
    for n in range(3):
        fx.group.accept(Accepted((task(f"t{n}"),), f"accepted t{n}"))
        fx.group.settle(BUSY)
    assert fx.store.batches == []

    fx.group.stage(task("t0", priority=1))  # the latest state, in its first place
    fx.group.delete("gone")
    fx.group.settle(EMPTY)

    assert fx.store.batches == [(["t0", "t1", "t2"], ["gone"])]
    assert fx.store.load()[0].priority == 1
    assert fx.sent == ["accepted t0", "accepted t1", "accepted t2"]


def test_a_deleted_id_is_no_longer_staged(fx: Fixture) -> None:
    fx.group.stage(task("t1"))
    fx.group.delete("t1")
    fx.group.flush()

    assert fx.store.batches == [([], ["t1"])]


def test_held_sends_go_out_in_the_order_they_were_made(fx: Fixture) -> None:
    fx.group.stage(task("t1"))
    for n in range(5):
        fx.group.send(fx.sent.append, n)
    fx.group.accept(Accepted((task("t2"),), "accepted"))
    fx.group.send(fx.sent.append, 5)
    fx.group.settle(EMPTY)

    assert fx.sent == [0, 1, 2, 3, 4, "accepted", 5]


def test_batch_cap_commits_even_while_messages_wait(fx: Fixture) -> None:
    for n in range(BATCH_CAP - 1):
        fx.group.stage(task(f"t{n}"))
        fx.group.settle(BUSY)
    assert fx.store.batches == []

    fx.group.send(fx.sent.append, "answer")
    fx.group.settle(BUSY)

    assert [len(tasks) for tasks, _ in fx.store.batches] == [BATCH_CAP - 1]
    assert fx.sent == ["answer"]


def test_a_change_nobody_waits_on_is_committed_when_the_alarm_rings(fx: Fixture) -> None:
    fx.group.stage(task("t1"))
    fx.group.settle(EMPTY)
    fx.group.stage(task("t2"))
    fx.group.settle(EMPTY)

    assert fx.store.batches == []
    assert fx.alarm.deadlines == [NOW + COMMIT_DELAY_S]  # set once for both

    fx.group.due()

    assert fx.store.batches == [(["t1", "t2"], [])]


def test_the_alarm_is_set_again_only_after_it_rang(fx: Fixture) -> None:
    fx.group.stage(task("t1"))
    fx.group.settle(EMPTY)
    fx.group.flush()  # committed before the alarm rang: it stays set
    fx.group.stage(task("t2"))
    fx.group.settle(EMPTY)
    assert len(fx.alarm.deadlines) == 1

    fx.group.due()
    fx.group.stage(task("t3"))
    fx.group.settle(EMPTY)

    assert len(fx.alarm.deadlines) == 2


def test_a_failed_commit_keeps_the_changes_and_hands_back_what_was_held(fx: Fixture) -> None:
    fx.store.failing = True
    accepted = Accepted((task("t1"),), "accepted")
    fx.group.accept(accepted)
    fx.group.send(fx.sent.append, "answer")
    fx.group.settle(EMPTY)

    assert fx.sent == []
    [(exc, failure, held)] = fx.owner.failures
    assert "disk is full" in str(exc)
    assert failure.began
    assert [value for _, value in held] == [accepted, "answer"]
    assert fx.outage.down
    assert fx.alarm.deadlines == [failure.retry_at]
    assert fx.group.pending


def test_while_the_store_is_down_nothing_is_held_and_only_the_alarm_commits(
    fx: Fixture,
) -> None:
    fx.store.failing = True
    fx.group.stage(task("t1"))
    fx.group.flush()
    fx.owner.failures.clear()

    fx.group.stage(task("t2"))
    fx.group.send(fx.sent.append, "answer")
    fx.group.settle(EMPTY)
    fx.group.flush()

    assert fx.sent == ["answer"]
    assert fx.store.checks == 0 and fx.owner.failures == []


def test_a_store_back_commits_what_waited_and_says_so(fx: Fixture) -> None:
    fx.store.failing = True
    fx.group.stage(task("t1"))
    fx.group.flush()
    fx.group.due()  # the retry fails too, at the check
    assert fx.store.checks == 1
    assert len(fx.owner.failures) == 2 and not fx.owner.failures[1][1].began

    fx.store.failing = False
    fx.group.due()

    assert fx.store.batches == [(["t1"], [])]
    assert fx.owner.backs == 1
    assert not fx.outage.down


def test_a_dead_receiver_never_keeps_the_others_from_theirs(fx: Fixture) -> None:
    def dead(value: object) -> None:
        raise pykka.ActorDeadError("stopped")

    def broken(value: object) -> None:
        raise RuntimeError("bug")

    fx.group.stage(task("t1"))
    fx.group.send(dead, "lost")
    fx.group.send(fx.sent.append, 1)
    fx.group.send(broken, "lost too")
    fx.group.send(fx.sent.append, 2)
    fx.group.settle(EMPTY)

    assert fx.sent == [1, 2]


def test_changes_staged_while_delivering_wait_for_the_alarm(fx: Fixture) -> None:
    fx.owner.on_grant = lambda: fx.group.delete("t1")
    fx.group.accept(Accepted((task("t1"),), "accepted"))
    fx.group.settle(EMPTY)

    assert fx.store.batches == [(["t1"], [])]
    assert fx.alarm.deadlines == [NOW + COMMIT_DELAY_S]
    fx.group.due()
    assert fx.store.batches[-1] == ([], ["t1"])


def test_close_commits_what_is_staged_then_releases_the_store_and_alarm(fx: Fixture) -> None:
    fx.group.stage(task("t1"))
    fx.group.close()

    assert fx.store.batches == [(["t1"], [])]
    assert fx.store.closed and fx.alarm.closed


def test_close_with_a_store_that_fails_says_what_is_lost(
    fx: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    fx.store.failing = True
    fx.group.stage(task("t1"))
    fx.group.close()

    assert "1 task state(s) and 0 deletion(s) the store never took" in caplog.text
    assert fx.store.closed and fx.alarm.closed
