"""GroupCommit: many changes to a store in one transaction, and nothing said of them before it.

Its owner (the RepositoryActor) applies each change to its own map at once and stages it here;
every message the owner sends while changes are staged is held here until they are committed.
So nobody ever learns of a state that a crash could still take back, and many changes share one
commit. It knows nothing of the map or of what the held messages mean: a failed commit hands
them back to the owner, who decides what each one becomes.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import pykka

from actors.store import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.outage import Failure, StoreOutage
    from actors.store import Store
    from actors.task import Task

logger = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_CAP: Final = 512
"""Changes plus held-back messages that may wait on one commit. Under a steady load the inbox
never empties; this bounds how long an answer waits for its commit (and what is held meanwhile)."""

COMMIT_DELAY_S: Final = 0.05
"""How long changes that nobody is waiting on (an attempt's end, a retry's wait) may wait to
share a commit with later ones. Each commit is a trip into the store that lets go of the GIL,
and under load getting it back costs more than the write itself. A crash inside the delay loses
only what nobody has seen: at worst an attempt that ended runs again, which at-least-once
allows. An attempt's start is waited on (SaveRunning): a handler that takes the service down
must still have its attempt counted."""

Held = tuple["Callable[[Any], object]", object]
"""A message held for the commit: how to send it, and what."""


class Timer(Protocol):
    """What GroupCommit needs of an alarm (actors/alarm.py): ring once at a deadline."""

    def set(self, deadline: float) -> None: ...

    def close(self) -> None: ...


class Acceptance(Protocol):
    """New work applied to the owner's map: its tasks are staged, and it is granted (by the
    owner's ``grant``) once they are committed, or handed back if the commit fails."""

    @property
    def tasks(self) -> tuple[Task, ...]: ...


class Inbox(Protocol):
    """What GroupCommit needs of its owner's inbox: whether more messages wait."""

    def empty(self) -> bool: ...


class GroupCommit:
    """The staged changes of one store and the messages held for them, and when to commit.

    The commit comes as soon as the owner's inbox is empty and someone is waiting on it (a
    message is held), or ``BATCH_CAP`` is reached, or, when nobody is waiting,
    ``COMMIT_DELAY_S`` after the first change (``alarm`` rings; the owner then calls ``due``).
    A failed commit keeps the staged changes for the next try, marks the store down in
    ``outage``, sets the alarm for the retry, and hands every held message (the acceptances
    included) to ``failed``; while the store is down nothing is held, and the first commit that
    succeeds again tells ``back``. Used from the owner's thread only.
    """

    __slots__ = (
        "_alarm",
        "_alarm_set",
        "_back",
        "_clock",
        "_deleted",
        "_failed",
        "_grant",
        "_held",
        "_outage",
        "_staged",
        "_store",
    )

    def __init__(
        self,
        store: Store,
        alarm: Timer,
        outage: StoreOutage,
        *,
        grant: Callable[[Any], object],
        failed: Callable[[StoreError, Failure, list[Held]], None],
        back: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._alarm = alarm
        # Set at most once until it rings, even if a commit came first: setting it wakes its
        # thread, and once per commit that costs more than the commits it saves.
        self._alarm_set = False
        self._outage = outage
        self._grant = grant
        self._failed = failed
        self._back = back
        self._clock = clock
        # Latest state per id, in the order each id was first staged: new tasks are stored in
        # creation order.
        self._staged: dict[str, Task] = {}
        self._deleted: list[str] = []
        self._held: list[Held] = []

    @property
    def pending(self) -> bool:
        """Whether anything is staged: a change or a deletion the store does not have yet."""
        return bool(self._staged or self._deleted)

    def stage(self, task: Task) -> None:
        """Write this state of the task at the next commit."""
        self._staged[task.id] = task

    def delete(self, task_id: str) -> None:
        """Delete the task's row at the next commit (whether the store has it or not)."""
        self._staged.pop(task_id, None)
        self._deleted.append(task_id)

    def accept(self, acceptance: Acceptance) -> None:
        """Stage the acceptance's tasks and hold ``grant(acceptance)`` for their commit, even in
        an outage: on a failure it is handed back, never granted."""
        staged = self._staged
        for task in acceptance.tasks:
            staged[task.id] = task
        self._held.append((self._grant, acceptance))

    def send(self, send: Callable[[T], object], value: T) -> None:
        """Send now, or after the commit if anything staged could still be lost.

        While the store is down nothing is held: an answer about what is in memory goes out at
        once (it may show a change not written yet); the owner refuses new work meanwhile.
        """
        if (self._staged or self._deleted) and not self._outage.down:
            self._held.append((send, value))
        else:
            deliver(send, value)

    def settle(self, inbox: Inbox) -> None:
        """After each message of the owner's: commit now, or have the alarm ring for it. In an
        outage the retry alarm is set, and only it commits."""
        if (self._staged or self._deleted) and not self._outage.down:
            if len(self._staged) + len(self._deleted) + len(self._held) >= BATCH_CAP or (
                self._held and inbox.empty()
            ):
                self.commit()
            else:
                self._arm()

    def flush(self) -> None:
        """Commit now what is staged, unless the store is down: before an answer that cannot
        be held."""
        if (self._staged or self._deleted) and not self._outage.down:
            self.commit()

    def due(self) -> None:
        """The alarm rang: commit what waited for it, or try the store that failed again."""
        self._alarm_set = False
        if self._staged or self._deleted or self._outage.down:
            self.commit()

    def commit(self) -> None:
        """Write what is staged (in an outage, check the store first: it may repair itself),
        then send what was held for it, in order. A failure is an outage of the store, handed
        to ``failed`` with the held messages."""
        outage = self._outage
        try:
            if outage.down:
                self._store.check()
            if self._staged or self._deleted:
                self._store.commit(tuple(self._staged.values()), self._deleted)
        except StoreError as exc:
            failure = outage.failed(exc, self._clock())
            held, self._held = self._held, []
            self._failed(exc, failure, held)
            self._alarm.set(failure.retry_at)
            self._alarm_set = True
            return
        self._staged.clear()
        self._deleted = []
        if outage.down:
            self._back()
            outage.ended()
        held, self._held = self._held, []
        for send, value in held:
            deliver(send, value)
        if self._staged or self._deleted:  # staged again while delivering (work withdrawn)
            self._arm()

    def take_held(self) -> list[Held]:
        """Everything held back, no longer to be sent: the owner is stopping without the
        commit those messages wait for, and answers them otherwise."""
        held, self._held = self._held, []
        return held

    def close(self) -> None:
        """Commit what is staged (a last try), then release the alarm and the store."""
        if self._staged or self._deleted:
            self.commit()
        if self._staged or self._deleted:
            logger.error(
                "stopping with %d task state(s) and %d deletion(s) the store never took: "
                "the next start finds those tasks as the store last had them",
                len(self._staged),
                len(self._deleted),
            )
        self.release()

    def release(self) -> None:
        """Release the alarm and the store, committing nothing."""
        self._alarm.close()
        self._store.close()

    def _arm(self) -> None:
        if not self._alarm_set:
            self._alarm.set(self._clock() + COMMIT_DELAY_S)
            self._alarm_set = True


def deliver(send: Callable[[T], object], value: T) -> None:
    """Send one held (or immediate) message on its own: one that cannot be delivered never
    keeps the others from theirs, nor stops the sender."""
    try:
        send(value)
    except pykka.ActorDeadError:
        # Only at shutdown: a message for an actor already stopped (a place freed in a line
        # that is gone). There is nobody left who needs it.
        logger.debug("dropped %r: its receiver has stopped", value)
    except Exception:
        logger.exception("could not deliver %r", value)
