"""RetryActor: holds tasks until their next attempt is due, then sends them back to the line.

The tasks it holds wait for a retry after a failed attempt, or are delayed tasks not yet due.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

import pykka

from actors.alarm import Alarm, posting
from actors.base import Actor, tell_or_fail
from actors.protocol.reading import GetRetryStats
from actors.protocol.task_actions import CancelInLine, CancelInRepository
from actors.protocol.waiting import (
    AlarmRang,
    HoldUntilDue,
    StopRetryTimer,
    TasksDue,
    WaitingCancelled,
)

if TYPE_CHECKING:
    from actors.task import Task

logger = logging.getLogger(__name__)

_ALARM_RANG = AlarmRang()

COMPACT_AT = 1024
"""Emptied heap entries (cancelled tasks) tolerated beyond the live ones before the heap is
rebuilt without them: else cancelling and enqueueing again grows it without bound."""


class RetryActor(Actor):
    """Keeps waiting retries in a heap by due time, with one alarm thread for all of them.

    Due tasks go back to the dispatcher in one message, and the dispatcher lets them into the
    line even when it is full: a retry is never dropped. Stopping this actor stops the alarm.
    A cancelled task leaves its heap entry behind, emptied, until the entry comes due or the
    emptied entries outnumber the live ones (and COMPACT_AT), when the heap is rebuilt.
    """

    def __init__(self, dispatcher: pykka.ActorRef, repository: pykka.ActorRef) -> None:
        super().__init__()
        self._dispatcher = dispatcher
        self._repository = repository
        # [due, tie-breaker, task or None once cancelled]: the counter keeps equal due times in
        # arrival order and means tasks themselves are never compared.
        self._waiting: list[list[Any]] = []
        # The heap entry of each task waiting here, by id: how a cancel finds it.
        self._entries: dict[str, list[Any]] = {}
        self._order = itertools.count()
        self._emptied = 0
        self._alarm: Alarm | None = None
        self._cancelled = False

    def on_start(self) -> None:
        self._alarm = Alarm(posting(self.actor_ref, _ALARM_RANG), name="retry-alarm")

    def on_stop(self) -> None:
        super().on_stop()
        self._cancel()

    def on_receive(self, message: Any) -> Any:
        match message:
            case HoldUntilDue(task, delay_s):
                self._schedule(task, time.monotonic() + delay_s)
            case AlarmRang():
                self._release_due()
            case StopRetryTimer(reply):
                reply.set(self._cancel())
            case GetRetryStats(reply):
                reply.set(len(self._entries))
            case CancelInLine(task_id, reply, rounds):
                entry = self._entries.pop(task_id, None)
                if entry is not None:
                    queue = entry[2].queue
                    entry[2] = None
                    self._emptied += 1
                    if self._emptied > max(COMPACT_AT, len(self._entries)):
                        self._compact()
                    # Before the repository answers the client: its next enqueue finds the
                    # dispatcher's count already down.
                    self._dispatcher.tell(WaitingCancelled(1, queue))
                found = entry is not None
                tell_or_fail(
                    self._repository,
                    CancelInRepository(task_id, reply, found, self._dispatcher, rounds),
                )
            case _:
                return super().on_receive(message)
        return None

    def _schedule(self, task: Task, due: float) -> None:
        earliest_before = self._waiting[0][0] if self._waiting else None
        entry = [due, next(self._order), task]
        heapq.heappush(self._waiting, entry)
        self._entries[task.id] = entry
        if earliest_before is None or due < earliest_before:
            self._set_alarm()

    def _compact(self) -> None:
        self._waiting = [entry for entry in self._waiting if entry[2] is not None]
        heapq.heapify(self._waiting)
        self._emptied = 0

    def _cancel(self) -> int:
        """Stop the alarm for good; the waiting tasks stay where they are. Returns their count."""
        if not self._cancelled:
            self._cancelled = True
            assert self._alarm is not None
            self._alarm.close()
            logger.debug("retry timer cancelled with %d task(s) waiting", len(self._entries))
        return len(self._entries)

    def _release_due(self) -> None:
        if self._cancelled:
            return
        now = time.monotonic()
        due: list[Task] = []
        while self._waiting and self._waiting[0][0] <= now:
            task = heapq.heappop(self._waiting)[2]
            if task is None:
                self._emptied -= 1
            else:
                del self._entries[task.id]
                due.append(task)
        if due:
            self._dispatcher.tell(TasksDue(tuple(due)))
        if self._waiting:
            self._set_alarm()

    def _set_alarm(self) -> None:
        if self._cancelled:
            return
        assert self._alarm is not None
        self._alarm.set(self._waiting[0][0])
