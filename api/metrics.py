"""``GET /metrics``: Prometheus metrics, cheap enough to leave on.

Three sources, each costing as little as its events allow:

- what ``GET /stats`` counts (tasks per status, the line, workers, enqueues and attempts since
  start) is read at scrape time by ``StatsCollector``: one question to the actors per scrape,
  nothing per task;
- the workers observe each attempt's duration, and a task's time from enqueue to its final
  state, into ``TaskMetrics``'s histograms as it happens (the only place that knows);
- ``HttpMetrics``, a falcon middleware, counts and times every request by route template.

The last two count in tallies (api/tally.py): per thread, without locks, added up at scrape
time, because prometheus_client's own Histogram takes two locks per observation on these hot
paths.

Every app has a registry of its own, not prometheus_client's global one: tests build many apps.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import msgspec
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from actors.observer import OUTCOMES
from actors.task import DEFAULT_QUEUE
from api.options import JsonOptions
from api.reply import wait_for
from api.tally import Tally

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    import falcon
    from falcon.routing import CompiledRouter
    from prometheus_client.metrics_core import Metric

    from actors.observer import AttemptOutcome
    from actors.queues import QueueInfo
    from actors.system import TaskSystem
    from actors.task import Task
    from api.stats import InvalidCount

METRICS_PATH: Final = "/metrics"

FINAL_OUTCOMES: Final = ("done", "failed")
"""The attempt outcomes that are a task's final state."""

PREFIX: Final = "taskqueue"

UNMATCHED: Final = "unmatched"
"""The route label of a request for a path no route has (a 404, or a 401 without the token)."""

OTHER_METHOD: Final = "other"
"""The method label of a method no route could have: a client cannot grow the label set."""

KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

ATTEMPT_BUCKETS_S: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Retries wait up to RETRY_MAX_MS (30 s by default) each, so a task can take many minutes.
TO_FINAL_BUCKETS_S: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
HTTP_BUCKETS_S: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

# No `_created` series: one more series per label set that no dashboard here reads (process-wide,
# as prometheus_client only offers it; the service is the process).
disable_created_metrics()


class TaskMetrics:
    """The workers' histograms (an ``AttemptObserver``): attempt durations by queue and outcome,
    and enqueue-to-final times of tasks that ended done or failed, by queue and status. Counted
    in tallies, lock-free on the workers' threads (api/tally.py), and exposed by ``collect`` at
    scrape time.

    A task cancelled through the API also ends, but not on a worker: it is not observed here.
    """

    def __init__(self, registry: CollectorRegistry, queues: Sequence[str] = (DEFAULT_QUEUE,)):
        self._queues = tuple(queues)
        self._attempts: Tally[tuple[str, str]] = Tally(ATTEMPT_BUCKETS_S)
        self._to_final: Tally[tuple[str, str]] = Tally(TO_FINAL_BUCKETS_S)
        registry.register(self)

    def attempt_ended(self, task: Task, outcome: AttemptOutcome, duration_s: float) -> None:
        self._attempts.observe((task.queue, outcome), duration_s)
        if outcome != "retry":
            elapsed_s = max(0.0, task.updated_at - task.created_at)
            self._to_final.observe((task.queue, outcome), elapsed_s)

    def collect(self) -> Iterator[Metric]:
        # Every label value from the first scrape on, observed or not: a series that appears
        # only later makes rate() and alerts miss its start.
        yield _histogram(
            f"{PREFIX}_attempt_duration_seconds",
            "Time a worker spent on one attempt, by queue and how the attempt ended.",
            ("queue", "outcome"),
            self._attempts,
            self._every(self._attempts, OUTCOMES),
        )
        yield _histogram(
            f"{PREFIX}_task_enqueue_to_final_seconds",
            "Time from a task's enqueue to its final state (done or failed), retries included.",
            ("queue", "status"),
            self._to_final,
            self._every(self._to_final, FINAL_OUTCOMES),
        )

    def _every(
        self, tally: Tally[tuple[str, str]], values: Iterable[str]
    ) -> dict[tuple[str, str], list[float]]:
        """The tally's rows, with an empty one for every queue and value not observed yet."""
        rows = {(queue, value): tally.empty_row() for queue in self._queues for value in values}
        rows.update(tally.rows())
        return rows


def _histogram(
    name: str,
    doc: str,
    labels: Sequence[str],
    tally: Tally[Any],
    rows: Mapping[Any, list[float]],
) -> HistogramMetricFamily:
    """A histogram family with a sample per key of ``rows``: a tuple of its labels' values."""
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for values, row in sorted(rows.items()):
        family.add_metric(list(values), tally.buckets(row), tally.total(row))
    return family


class StatsCollector:
    """What ``GET /stats`` says, as counters and gauges, asked of the actors at scrape time."""

    def __init__(self, system: TaskSystem, invalid: InvalidCount, *, timeout_s: float) -> None:
        self._system = system
        self._invalid = invalid
        self._timeout_s = timeout_s

    def collect(self) -> Iterator[Metric]:
        # Raises the API's 503 when the actors do not answer: the scrape fails, visibly.
        stats = wait_for(self._system.stats_async(), self._timeout_s)
        body = stats.with_invalid(self._invalid.value)
        totals = body.totals

        def counter(name: str, doc: str, value: int) -> CounterMetricFamily:
            return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)

        def by_label(
            family: type[CounterMetricFamily | GaugeMetricFamily],
            name: str,
            doc: str,
            label: str,
            counts: msgspec.Struct,
        ) -> CounterMetricFamily | GaugeMetricFamily:
            """One sample per field of ``counts``, the field's name as ``label``."""
            metric = family(f"{PREFIX}_{name}", doc, labels=[label])
            for key, count in msgspec.structs.asdict(counts).items():
                metric.add_metric([key], count)
            return metric

        yield counter("tasks_enqueued", "Tasks accepted since start.", totals.enqueued)
        yield by_label(
            CounterMetricFamily,
            "tasks_rejected",
            "Enqueues refused since start, by reason.",
            "reason",
            totals.rejected,
        )
        yield counter(
            "attempts_started", "Attempts handed to a worker since start.", totals.attempts
        )
        outcomes = CounterMetricFamily(
            f"{PREFIX}_attempts", "Attempts ended since start, by outcome.", labels=["outcome"]
        )
        for outcome, count in zip(
            OUTCOMES, (totals.done, totals.retries, totals.failed), strict=True
        ):
            outcomes.add_metric([outcome], count)
        yield outcomes
        yield counter("tasks_cancelled", "Tasks cancelled since start.", totals.cancelled)
        yield counter("tasks_evicted", "Final tasks evicted since start.", totals.evicted)
        yield by_label(
            CounterMetricFamily,
            "worker_processes_replaced",
            "Worker processes replaced since start, by reason.",
            "reason",
            totals.processes_replaced,
        )
        yield counter(
            "worker_threads_abandoned",
            "Handler threads abandoned past their time limit since start.",
            totals.threads_abandoned,
        )

        yield by_label(GaugeMetricFamily, "tasks", "Tasks per status now.", "status", body.tasks)
        yield gauge("tasks_waiting", "Tasks waiting in line for a worker.", body.waiting)
        yield gauge("tasks_scheduled", "Tasks waiting for a later attempt.", body.scheduled)
        yield gauge("workers", "Worker actors.", body.workers.total)
        yield gauge("workers_busy", "Workers running an attempt now.", body.workers.busy)
        yield gauge("queue_size", "Tasks that may wait in line (QUEUE_SIZE).", body.queue_size)
        yield gauge(
            "scheduled_max",
            "Tasks that may wait for their time before new delayed tasks are refused "
            "(SCHEDULED_MAX).",
            body.scheduled_max,
        )
        yield from _queue_gauges(body.queues)


_QUEUE_GAUGES: Final = (
    ("waiting", "Tasks waiting in a queue's line for one of its workers."),
    ("scheduled", "Tasks of a queue waiting for a later attempt."),
    ("workers", "A queue's workers."),
    ("busy", "A queue's workers running an attempt now."),
    ("paused", "1 while a queue is paused (POST /queues/pause), else 0."),
)


def _queue_gauges(queues: Sequence[QueueInfo]) -> Iterator[Metric]:
    """Each queue's line and workers, labelled ``queue``; and the rate of those with one."""
    for field, doc in _QUEUE_GAUGES:
        family = GaugeMetricFamily(f"{PREFIX}_queue_{field}", doc, labels=["queue"])
        for queue in queues:
            family.add_metric([queue.name], float(getattr(queue, field)))
        yield family
    rate = GaugeMetricFamily(
        f"{PREFIX}_queue_max_per_second",
        "Most attempts a queue starts a second (QUEUES); only queues with a limit.",
        labels=["queue"],
    )
    for queue in queues:
        if queue.max_per_second is not None:
            rate.add_metric([queue.name], queue.max_per_second)
    yield rate


class HttpMetrics:
    """Falcon middleware: requests counted by route template, method and status, and timed by
    route template. Installed before authentication, so that 401s are counted too.

    One tally keyed by (route, method, status) serves both: the counter is each key's count,
    the histogram its rows added up by route.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._tally: Tally[tuple[str, str, int]] = Tally(HTTP_BUCKETS_S)
        self._router: CompiledRouter | None = None
        registry.register(self)

    def route_with(self, router: CompiledRouter) -> None:
        """Find the route template of requests refused before routing in ``router``, the app's."""
        self._router = router

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.metrics_started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        started = getattr(req.context, "metrics_started", None)
        method = req.method if req.method in KNOWN_METHODS else OTHER_METHOD
        elapsed = 0.0 if started is None else time.perf_counter() - started
        route = req.uri_template
        if route is None and self._router is not None:
            # Authentication refuses before routing: a 401 is counted under the route it asked
            # for, as its 200 would be.
            found = self._router.find(req.path, req)
            route = None if found is None else found[3]
        self._tally.observe((route or UNMATCHED, method, resp.status_code), elapsed)

    def collect(self) -> Iterator[Metric]:
        rows = self._tally.rows()
        requests = CounterMetricFamily(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            labels=["route", "method", "status"],
        )
        for (route, method, status), row in sorted(rows.items()):
            requests.add_metric([route, method, str(status)], Tally.count(row))
        yield requests
        yield _histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time the application took to answer, by route template.",
            ("route",),
            self._tally,
            self._tally.grouped(lambda key: (key[0],)),
        )


class Metrics:
    """One app's metrics: its registry, the workers' histograms and the HTTP middleware.

    Give ``tasks`` to ``TaskSystem.start(observer=...)`` and the whole object to ``create_app``;
    one Metrics serves one app.
    """

    def __init__(self, queues: Sequence[str] = (DEFAULT_QUEUE,)) -> None:
        self.registry = CollectorRegistry()
        self.tasks = TaskMetrics(self.registry, queues)
        self.http = HttpMetrics(self.registry)

    def watch(self, system: TaskSystem, invalid: InvalidCount, *, timeout_s: float) -> None:
        """Read ``system``'s counts (and the app's count of invalid bodies) at every scrape."""
        self.registry.register(StatsCollector(system, invalid, timeout_s=timeout_s))


class MetricsResource(JsonOptions):
    """Serves the registry in the Prometheus text format."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = generate_latest(self._registry)
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = data
