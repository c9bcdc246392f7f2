"""Retention: which finished tasks the repository forgets, so memory stays bounded over weeks."""

from __future__ import annotations

from collections import Counter, deque
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from actors.task import Task


class Retention(NamedTuple):
    """The rules: keep at most ``max_finished`` finished tasks, none older than ``ttl_s``.

    A finished task's age counts from when it finished (its ``updated_at``). 0 turns a rule off.
    Unfinished tasks are never evicted.
    """

    max_finished: int = 100_000
    ttl_s: float = 86_400.0

    @property
    def enabled(self) -> bool:
        return self.max_finished > 0 or self.ttl_s > 0


KEEP_ALL: Final = Retention(max_finished=0, ttl_s=0)
"""No eviction: every finished task is kept until deleted."""
DEFAULT_RETENTION: Final = Retention()
"""The service's defaults."""


class FinishedOrder:
    """Finished task ids, oldest finish first: what eviction walks from the front.

    A deque of ids costs 8 bytes per finished task. A task that stops being finished (retried
    by hand, deleted) is not looked for in the deque: its entry is counted as stale instead and
    skipped when it reaches the front. Entries of one id are in the order they were made, so
    the front one is always the oldest, the stale one. Used only on the repository's thread.
    """

    __slots__ = ("_ids", "_stale")

    def __init__(self) -> None:
        self._ids: deque[str] = deque()
        self._stale: Counter[str] = Counter()

    def __len__(self) -> int:
        """Entries, stale ones included."""
        return len(self._ids)

    def finished(self, task_id: str) -> None:
        """``task_id`` has just reached a final status."""
        self._ids.append(task_id)

    def unfinished(self, task_id: str) -> None:
        """``task_id`` is no longer finished (queued again, or deleted): its entry is stale."""
        self._stale[task_id] += 1

    def evict(
        self, tasks: dict[str, Task], finished: int, rules: Retention, now: float
    ) -> list[str]:
        """Take out of the order and return the ids the rules no longer keep, oldest first.

        ``finished`` is how many finished tasks ``tasks`` holds now. The caller removes the
        returned ids from ``tasks``.
        """
        evicted: list[str] = []
        oldest_kept = now - rules.ttl_s
        ids, stale = self._ids, self._stale
        while ids:
            task_id = ids[0]
            if stale.get(task_id):
                ids.popleft()
                stale[task_id] -= 1
                if not stale[task_id]:
                    del stale[task_id]
                continue
            over = rules.max_finished > 0 and finished - len(evicted) > rules.max_finished
            expired = rules.ttl_s > 0 and tasks[task_id].updated_at <= oldest_kept
            if not (over or expired):
                break
            ids.popleft()
            evicted.append(task_id)
        return evicted

    def next_expiry(self, tasks: dict[str, Task], rules: Retention) -> float | None:
        """When the oldest kept task expires (clock time), or None if nothing will.

        Right after ``evict``, which leaves a kept, current entry at the front.
        """
        if rules.ttl_s <= 0 or not self._ids:
            return None
        return tasks[self._ids[0]].updated_at + rules.ttl_s
