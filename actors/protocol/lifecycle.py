"""Start, recovery, the store's health, housekeeping and shutdown: the entry object and timer
threads talking to the actors."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pykka

    from actors.protocol.answers import Stock
    from actors.reply import Reply
    from actors.store import StoreError
    from actors.task import Task


class Connect(NamedTuple):
    """Entry object -> dispatcher: the workers and the retry actor, which start after it."""

    workers: tuple[pykka.ActorRef, ...]
    retry: pykka.ActorRef


class Recover(NamedTuple):
    """Entry object -> repository, first of all: open the store and load every task.

    Replied with every stored task in creation order, or with the StoreError that made the
    store unusable, given as the answer rather than raised: a raised one would crash the actor
    with a logged traceback, and it is the user's configuration error, which main.py reports
    plainly.
    """

    reply: Reply[tuple[Task, ...] | StoreError]


class Recovered(NamedTuple):
    """Entry object -> dispatcher, before any AdmitTask: the tasks a store held, to go back in
    line ahead of new work (past the line's bound) or to wait with the retry actor until due."""

    line: tuple[Task, ...]
    waiting: tuple[tuple[Task, float], ...]
    """Each task waiting for its next attempt, and the seconds from now until it is due."""


class WatchStore(NamedTuple):
    """Entry object -> repository: tell ``dispatcher`` whenever the store goes down or comes
    back (StoreAvailability), and now if it is already down."""

    dispatcher: pykka.ActorRef


class StoreAvailability(NamedTuple):
    """Repository -> dispatcher: the store can (or cannot) be written; while it cannot, new
    work is refused with STORE_UNAVAILABLE before it reaches the repository."""

    available: bool


class CommitDue(NamedTuple):
    """Alarm thread -> repository: changes nobody is waiting for have waited long enough; or,
    while the store is down, it is time to try writing to it again."""


class SweepRetention(NamedTuple):
    """Alarm thread -> repository: evict the finished tasks the retention rules no longer keep."""


class BeginShutdown(NamedTuple):
    """-> dispatcher: refuse new tasks and stop handing out queued ones; reply True once it
    does."""

    reply: Reply[bool]


class WhenIdle(NamedTuple):
    """-> dispatcher: set ``reply`` once no worker is running an attempt."""

    reply: Reply[None]


class TakeStock(NamedTuple):
    """TaskSystem.stop() -> repository: reply with a Stock, held back until everything before
    it is committed like any answer."""

    reply: Reply[Stock]
