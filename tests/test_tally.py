"""Tally: lock-free per-thread histograms that expose exactly what prometheus_client's would."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily

from api.tally import Tally

BOUNDS = (0.01, 0.1, 1.0)


class TallyCollector:
    def __init__(self, tally: Tally[str]) -> None:
        self.tally = tally

    def collect(self):  # type: ignore[no-untyped-def]
        family = HistogramMetricFamily("demo_seconds", "A demo.", labels=["kind"])
        for kind, row in sorted(self.tally.rows().items()):
            family.add_metric([kind], self.tally.buckets(row), self.tally.total(row))
        yield family


def test_it_exposes_the_same_text_as_a_prometheus_client_histogram() -> None:
    observations = [("a", 0.01), ("a", 0.0100001), ("a", 5.0), ("b", 0.0), ("b", 0.1), ("a", 1.0)]
    theirs = CollectorRegistry()
    histogram = Histogram("demo_seconds", "A demo.", ["kind"], registry=theirs, buckets=BOUNDS)
    ours = CollectorRegistry()
    tally: Tally[str] = Tally(BOUNDS)
    ours.register(TallyCollector(tally))

    for kind, value in observations:
        histogram.labels(kind).observe(value)
        tally.observe(kind, value)

    def series(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return sorted(line for line in text.splitlines() if not line.endswith("_created"))

    assert series(ours) == [line for line in series(theirs) if "_created" not in line]


def test_observations_from_many_threads_all_count() -> None:
    tally: Tally[str] = Tally(BOUNDS)
    start = threading.Barrier(8)

    def observe() -> None:
        start.wait()
        for n in range(5000):
            tally.observe("k", 0.05 if n % 2 else 0.5)

    threads = [threading.Thread(target=observe) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    row = tally.rows()["k"]
    assert Tally.count(row) == 40_000
    assert tally.buckets(row) == [("0.01", 0), ("0.1", 20_000), ("1.0", 40_000), ("+Inf", 40_000)]
    assert Tally.total(row) == pytest.approx(20_000 * 0.05 + 20_000 * 0.5)


def test_rows_can_be_grouped_by_part_of_the_key() -> None:
    tally: Tally[tuple[str, int]] = Tally(BOUNDS)
    tally.observe(("/task", 200), 0.001)
    tally.observe(("/task", 404), 2.0)
    tally.observe(("/tasks", 200), 0.5)

    grouped = tally.grouped(lambda key: key[0])

    assert {route: Tally.count(row) for route, row in grouped.items()} == {"/task": 2, "/tasks": 1}
    assert tally.buckets(grouped["/task"])[-1] == ("+Inf", 2)
