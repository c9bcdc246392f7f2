"""Tally: histograms kept per thread without locks, added up when Prometheus scrapes.

prometheus_client's ``Histogram.observe`` takes a lock for the sum and another for the bucket
on every call, and the workers observe twice per attempt and the HTTP middleware twice per
request: on those hot paths the locks show in profiles. A tally is written only by the thread
that observes (its own row per label set, found through a ``threading.local``), so an
observation is a bisect and two additions; the scrape reads every thread's rows and adds them
up. The exposition is still prometheus_client's (``HistogramMetricFamily`` /
``CounterMetricFamily`` from a collector), only the counting is ours.

A scrape may see an observation in its bucket but not yet in the sum (two separate additions);
counts never go backwards, since rows of threads that ended are kept.
"""

from __future__ import annotations

import bisect
import threading
from typing import TYPE_CHECKING, Generic, TypeVar

from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Sequence

K = TypeVar("K", bound="Hashable")
G = TypeVar("G", bound="Hashable")


class Tally(Generic[K]):
    """Observations by key (a tuple of label values), into fixed upper-bound buckets."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(sorted(bounds))
        # One row per key per thread: a count per bucket (the last is +Inf), then the sum.
        self._width = len(self._bounds) + 2
        self._local = threading.local()
        self._tables: list[dict[K, list[float]]] = []
        self._lock = threading.Lock()  # only for a thread's first observation, and scrapes

    def observe(self, key: K, value: float) -> None:
        try:
            table: dict[K, list[float]] = self._local.table
        except AttributeError:
            table = self._local.table = {}
            with self._lock:
                self._tables.append(table)
        row = table.get(key)
        if row is None:
            row = table[key] = [0] * self._width
        row[bisect.bisect_left(self._bounds, value)] += 1
        row[-1] += value

    def rows(self) -> dict[K, list[float]]:
        """Every thread's rows added up, by key."""
        return self.grouped(lambda key: key)

    def grouped(self, group: Callable[[K], G]) -> dict[G, list[float]]:
        """Every thread's rows added up, by ``group(key)``."""
        with self._lock:
            tables = list(self._tables)
        merged: dict[G, list[float]] = {}
        for table in tables:
            # Copied in one step (the owner may add a key meanwhile); the values are read live.
            for key, row in list(table.items()):
                name = group(key)
                total = merged.get(name)
                if total is None:
                    merged[name] = list(row)
                else:
                    for index, value in enumerate(row):
                        total[index] += value
        return merged

    def empty_row(self) -> list[float]:
        """A row with nothing observed: for label values a scrape should show from the start."""
        return [0] * self._width

    def buckets(self, row: list[float]) -> list[tuple[str, float]]:
        """A row as Prometheus buckets: cumulative counts by upper bound, ending with +Inf."""
        cumulative: list[tuple[str, float]] = []
        running = 0.0
        for bound, count in zip((*self._bounds, float("inf")), row[:-1], strict=True):
            running += count
            cumulative.append((floatToGoString(bound), running))
        return cumulative

    @staticmethod
    def count(row: list[float]) -> float:
        return sum(row[:-1])

    @staticmethod
    def total(row: list[float]) -> float:
        """The sum of the observed values."""
        return row[-1]
