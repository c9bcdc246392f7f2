"""Queues: their state, pausing and resuming them, and the timer of their rate limits."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from actors.queues import QueueInfo
    from actors.reply import Reply
    from actors.store import StoreError


class GetQueues(NamedTuple):
    """Request thread -> dispatcher: reply with every queue's QueueInfo, in QUEUES order."""

    reply: Reply[tuple[QueueInfo, ...]]


class PauseQueue(NamedTuple):
    """Request thread -> dispatcher: pause (or resume) queue ``name``: a paused queue takes
    tasks but starts none. Replied with the queue as it is then, or None for an unknown name;
    with a store, only once the repository kept the new state (SaveQueuePaused)."""

    name: str
    paused: bool
    reply: Reply[QueueInfo | None]


class SaveQueuePaused(NamedTuple):
    """Dispatcher -> repository: keep whether queue ``name`` is paused, then reply ``info``."""

    name: str
    paused: bool
    info: QueueInfo
    reply: Reply[QueueInfo | None]


class LoadPausedQueues(NamedTuple):
    """Entry object -> repository, at start after Recover: reply with the names of the queues
    the store keeps paused (none without a store, or with one that keeps no queue states), or
    the StoreError that stopped it reading them."""

    reply: Reply[frozenset[str] | StoreError]


class TokensDue(NamedTuple):
    """Rate-limit alarm -> dispatcher: a queue's next start is allowed now."""
