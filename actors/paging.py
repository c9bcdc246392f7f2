"""CreationOrder: the repository's index for paging through tasks in creation order.

Used only on the repository's thread, beside its task map (the map stays the one source of
truth). ``GET /tasks?after=<id>`` must find ``<id>``'s place without walking every task before
it, which a dict cannot do: this keeps the ids in a list (creation order by position) and a dict
of id -> position, so finding the place is one lookup and a page is read by position from there.

It follows the map lazily, when a page after a given task is asked for, instead of on every
insert: intake pays nothing, and a service nobody pages past the first page of (the
dashboard's newest-first view, say) spends no memory on it. Catching up is cheap because new
tasks only ever go at the map's end (a dict keeps insertion order, and replacing a value keeps
its place): the ids inserted since the last page are the newest ones, read from the end with
``reversed``. If the map shrank or was replaced (recovery, deletion, eviction), the index is
rebuilt once, O(n); code that removes tasks calls ``invalidate``, since a removal followed by
as many inserts cannot always be told apart from inserts alone.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterator

    from actors.task import Task

logger = logging.getLogger(__name__)


class Page(NamedTuple):
    """One page of tasks in creation order, and whether more match after it."""

    tasks: list[Task]
    more: bool


class CreationOrder:
    """Ids in creation order, and each id's position: a page starts in O(1) wherever it is.

    Memory: a list slot, a dict entry and an int per task, spent only once someone pages.
    Building it whole (first page, or after a recovery) holds the repository for a pass over
    the map, which is why it is not built before then.
    """

    __slots__ = ("_ids", "_indexed", "_position")

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._position: dict[str, int] = {}
        # The map the index was built from: a new map (recovery) means a rebuild.
        self._indexed: dict[str, Task] | None = None

    def page(
        self,
        tasks: dict[str, Task],
        *,
        status: str | None = None,
        limit: int | None = None,
        after: str | None = None,
        newest_first: bool = False,
        queue: str | None = None,
    ) -> Page | None:
        """The tasks of ``tasks`` after ``after`` with ``status`` (and in ``queue``), at most
        ``limit`` of them;
        ``newest_first`` reads creation order backwards (and "after" means older than).

        None when ``after`` is not a known id. Only the tasks of the page are copied out; with a
        status, finding whether another one follows may read on to the end of the map.
        A first page (no ``after``) is read straight from the map, either end: the index is
        built only for a page that starts after a given task.
        """
        if after is None:
            return _collect(
                reversed(tasks.values()) if newest_first else iter(tasks.values()),
                status,
                limit,
                queue,
            )
        self._catch_up(tasks)
        ids = self._ids
        position = self._position.get(after)
        if position is None or after not in tasks:
            return None
        # By index, not islice: islice would step through every id before the start.
        positions = range(position - 1, -1, -1) if newest_first else range(position + 1, len(ids))
        found = (tasks[ids[p]] for p in positions if ids[p] in tasks)
        return _collect(found, status, limit, queue)

    def invalidate(self) -> None:
        """Forget the index: to be called by whatever removes a task from the map."""
        self._indexed = None

    def _catch_up(self, tasks: dict[str, Task]) -> None:
        missing = len(tasks) - len(self._ids)
        if tasks is not self._indexed or missing < 0:
            self._rebuild(tasks)
            return
        # The newest ``missing`` ids, and the one before them, which must be the last indexed:
        # otherwise something was removed (and others added), and the positions are wrong.
        newest = list(itertools.islice(reversed(tasks), missing + 1))
        if len(newest) > missing and newest[-1] != self._ids[-1]:
            self._rebuild(tasks)
            return
        for task_id in reversed(newest[:missing]):
            self._position[task_id] = len(self._ids)
            self._ids.append(task_id)

    def _rebuild(self, tasks: dict[str, Task]) -> None:
        self._ids = list(tasks)
        self._position = dict(zip(self._ids, range(len(self._ids)), strict=True))
        self._indexed = tasks
        logger.debug("creation-order index rebuilt over %d tasks", len(self._ids))


def _collect(
    tasks: Iterator[Task], status: str | None, limit: int | None, queue: str | None = None
) -> Page:
    """The first ``limit`` of ``tasks`` with ``status`` in ``queue``, and whether another one
    follows."""
    if status is None and limit is None and queue is None:
        return Page(list(tasks), more=False)  # every task (an unpaged listing): copied in C
    found: list[Task] = []
    for task in tasks:
        if status is not None and task.status != status:
            continue
        if queue is not None and task.queue != queue:
            continue
        if limit is not None and len(found) == limit:
            return Page(found, more=True)
        found.append(task)
    return Page(found, more=False)
