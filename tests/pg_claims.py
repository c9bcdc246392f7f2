"""One queue's claim, for the tests of the PostgreSQL store: ``PgStore.claim_many`` with one
``Want``, its answer for that queue alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from actors.protocol.cluster import Want
from actors.task import DEFAULT_QUEUE

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors.pg_store import PgStore
    from actors.task import Task


class ClaimResult(NamedTuple):
    """What one claim of one queue did."""

    tasks: list[Task]
    """The tasks claimed, as they were before the claim."""
    written: set[str]
    """The ids of the outcomes written, as ``PgStore.finish`` returns them."""
    next_token_s: float | None = None
    """With a rate limit that held the claim back: how soon the queue has its next token."""


def claim_one(
    store: PgStore,
    limit: int,
    finished: Sequence[Task] = (),
    *,
    queue: str = DEFAULT_QUEUE,
    max_per_second: float | None = None,
) -> ClaimResult:
    """Up to ``limit`` tasks of ``queue`` (writing ``finished`` first), as the cluster's
    dispatcher claims for one queue's idle workers."""
    claims = store.claim_many((Want(queue, limit, max_per_second),), finished)
    return ClaimResult(claims.tasks.get(queue, []), claims.written, claims.next_token_s.get(queue))
