"""FiringTimer: when each schedule fires next, in one heap, with one alarm thread for all.

Used by the ScheduleActor and the ClusterScheduleActor from their own threads: it holds times
by key and rings for the earliest, however many schedules there are (no thread per schedule).
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import TYPE_CHECKING, Any, Final

from actors.alarm import Alarm

if TYPE_CHECKING:
    from collections.abc import Callable

COMPACT_AT: Final = 1024
"""Emptied heap entries (paused or deleted schedules) tolerated beyond the live ones before the
heap is rebuilt without them."""


class FiringTimer:
    """A time for each key (a schedule's id), and an alarm that calls ``ring`` (on the alarm's
    thread) once the earliest has come. Times are wall-clock seconds (a cron time is one),
    read with ``clock``; the alarm waits on the monotonic clock, set again at every ``arm``."""

    def __init__(self, ring: Callable[[], None], clock: Callable[[], float]) -> None:
        self._clock = clock
        # [at, tie-breaker, key or None once unplanned], and each key's entry: how an unplan
        # finds it.
        self._heap: list[list[Any]] = []
        self._entries: dict[str, list[Any]] = {}
        self._order = itertools.count()
        self._emptied = 0
        self._alarm = Alarm(ring, name="schedule-alarm")
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    def plan(self, key: str, at: float) -> None:
        """Ring for ``key`` at ``at`` (instead of any earlier plan of it); the alarm is set
        earlier if it must be."""
        self.unplan(key)
        if self._closed:
            return
        entry = [at, next(self._order), key]
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, entry)
        self._entries[key] = entry
        if earliest is None or at < earliest:
            self.arm()

    def unplan(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        entry[2] = None
        self._emptied += 1
        if self._emptied > max(COMPACT_AT, len(self._entries)):
            self._heap = [entry for entry in self._heap if entry[2] is not None]
            heapq.heapify(self._heap)
            self._emptied = 0

    def due(self, now: float) -> list[tuple[float, str]]:
        """Take every plan whose time is ``now`` or earlier, earliest first; ``arm`` after."""
        taken: list[tuple[float, str]] = []
        while self._heap and self._heap[0][0] <= now:
            at, _, key = heapq.heappop(self._heap)
            if key is None:
                self._emptied -= 1
                continue
            del self._entries[key]
            taken.append((at, key))
        return taken

    def arm(self) -> None:
        """Set the alarm for the earliest plan."""
        if self._closed or not self._heap:
            return
        self._alarm.set(time.monotonic() + (self._heap[0][0] - self._clock()))

    def close(self) -> None:
        """Ring no more; plans made from now on are dropped."""
        if not self._closed:
            self._closed = True
            self._alarm.close()
