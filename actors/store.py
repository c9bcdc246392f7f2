"""The store under the RepositoryActor: the protocol a durable store meets, and one in memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from actors.base import tell_or_fail
from actors.reply import Reply

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    import pykka

    from actors.task import Task

T = TypeVar("T")


class StoreError(Exception):
    """The store cannot be opened, read or written: nothing durable can be promised over it."""


class Store(Protocol):
    """Where the RepositoryActor keeps the tasks that must outlive the process.

    The repository's own map still answers every read; the store is read once, at start, and
    written in transactions of whole task states. Only the repository's thread ever uses it, so
    an implementation needs no locks (and an SQLite connection never crosses threads).
    """

    def load(self) -> list[Task]:
        """Every stored task, in creation order."""
        ...

    def commit(self, tasks: Sequence[Task], deleted: Collection[str] = ()) -> None:
        """Delete the ``deleted`` ids, then store these task states, in one transaction: all of
        it, or none (StoreError).

        A known id keeps its place in creation order and takes the new state; a new id goes
        after every task already stored, in the order given.
        """
        ...

    def check(self) -> None:
        """Raise StoreError unless a write would reach the store now; repair what can be
        repaired first (SqliteStore writes a removed file again from the open one). The
        repository calls it before each retry of a store that failed."""
        ...

    def close(self) -> None:
        """Release the store; nothing staged is lost, since a commit is already stored."""
        ...


@runtime_checkable
class QueueStates(Protocol):
    """A store that also keeps which queues are paused, across restarts (POST /queues/pause).

    Apart from Store so that a store without it still works: its pauses last as long as the
    process.
    """

    def paused_queues(self) -> frozenset[str]:
        """The names of the paused queues; StoreError if they cannot be read."""
        ...

    def save_paused(self, name: str, paused: bool) -> None:
        """Keep whether queue ``name`` is paused, at once; StoreError if it cannot be written."""
        ...


OpenStore = Callable[[], Store]
"""Opens a store. The repository calls it on its own thread, the only one that uses the store."""


class MemoryStore:
    """A store that lasts as long as this object: the actors' durability without a file.

    Hand the same one to two TaskSystems in a row and the second recovers what the first left,
    as it would from a file: what tests of recovery need, with nothing on disk.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._paused: set[str] = set()
        self.commits = 0
        """Transactions committed so far."""

    def load(self) -> list[Task]:
        return list(self._tasks.values())

    def commit(self, tasks: Sequence[Task], deleted: Collection[str] = ()) -> None:
        for task_id in deleted:
            self._tasks.pop(task_id, None)
        for task in tasks:
            self._tasks[task.id] = task
        self.commits += 1

    def paused_queues(self) -> frozenset[str]:
        return frozenset(self._paused)

    def save_paused(self, name: str, paused: bool) -> None:
        if paused:
            self._paused.add(name)
        else:
            self._paused.discard(name)

    def check(self) -> None:
        """Always writable."""

    def close(self) -> None:
        """Nothing to release: the tasks stay for the next TaskSystem that opens this store."""


def ask_store(actor: pykka.ActorRef, question: Callable[[Reply[T | StoreError]], object]) -> T:
    """Ask ``actor`` ``question`` about the store it owns (opening it, loading from it) and wait
    for the answer, without a timeout: loading takes as long as the store is big, and a store
    another process holds is given up on after the store's own lock timeout. A StoreError it
    answers with is raised, and on any failure ``actor`` is stopped first: nothing is left
    running behind a start that failed."""
    reply: Reply[T | StoreError] = Reply()
    try:
        tell_or_fail(actor, question(reply))
        answer = reply.get()
        if isinstance(answer, StoreError):
            raise answer
    except BaseException:
        actor.stop()
        raise
    return answer
