"""Helpers the tests share: waiting on conditions with deadlines, never fixed sleeps."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

import pykka

from actors import TaskSystem
from actors.reply import Reply
from actors.store import MemoryStore, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Sequence

    from actors import Task, TaskView

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0

ANSWER_S = 5.0
"""How long a test waits for an actor's answer: far longer than one takes, so a question left
unanswered fails the test with pykka.Timeout."""


def wait_until(
    condition: Callable[[], T], timeout_s: float = DEFAULT_TIMEOUT_S, interval_s: float = 0.005
) -> T:
    """Poll ``condition`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout_s} s: {condition}")
        time.sleep(interval_s)


def ask(
    actor: pykka.ActorRef, question: Callable[[Reply[T]], object], timeout_s: float = ANSWER_S
) -> T:
    """Tell ``actor`` the message ``question`` makes of a new Reply, and wait for the answer:
    ``ask(repository, TakeStock)``, ``ask(repository, lambda reply: GetTask("a", reply))``."""
    reply: Reply[T] = Reply()
    actor.tell(question(reply))
    return reply.get(timeout=timeout_s)


def all_tasks(system: TaskSystem, timeout_s: float = ANSWER_S) -> list[Task]:
    """Every task the system holds, in creation order."""
    page = system.list_page_async().get(timeout=timeout_s)
    assert page is not None
    return page.tasks


def no_jitter(a: float, b: float) -> float:
    """A ``uniform`` that always gives its lower bound: backoff delays become exact."""
    return a


def starting_systems(**defaults: Any) -> Iterator[Callable[..., TaskSystem]]:
    """For a fixture: start TaskSystems with small retry delays and no jitter (``defaults`` and
    each call's options override), and stop afterwards every one the test did not stop itself."""
    started: list[TaskSystem] = []

    def start(handler: Callable[[TaskView], object] | None = None, **options: Any) -> TaskSystem:
        options = {
            "retry_base_ms": 1,
            "retry_max_ms": 10,
            "uniform": no_jitter,
            **defaults,
            **options,
        }
        system = TaskSystem.start(handler, **options)
        started.append(system)
        return system

    yield start
    for system in started:
        # A system the test already stopped has no actors left to stop.
        with contextlib.suppress(pykka.ActorDeadError):
            system.stop(deadline=time.monotonic() + 1)


class FlakyStore(MemoryStore):
    """A store in memory whose writes fail while ``full`` is set, as a full disk's do."""

    def __init__(self) -> None:
        super().__init__()
        self.full = threading.Event()
        self.written_then_lost = threading.Event()
        self.tries = 0
        self.checks = 0

    def commit(self, tasks: Sequence[Task], deleted: Collection[str] = ()) -> None:
        self.tries += 1
        if self.written_then_lost.is_set():
            super().commit(tasks, deleted)
            raise StoreError("the store at memory was removed or replaced while in use")
        if self.full.is_set():
            raise StoreError("the store at memory cannot be written: database or disk is full")
        super().commit(tasks, deleted)

    def check(self) -> None:
        self.checks += 1
        if self.full.is_set():
            raise StoreError("the store at memory cannot be written: database or disk is full")
