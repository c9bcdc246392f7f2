"""``GET /stats`` and ``GET /readyz``: where the queue stands, and whether it takes work now."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final

import falcon
import msgspec

from actors.messages import Readiness
from actors.reply import SystemStopped
from actors.task import CANCELLED, DONE, FAILED, QUEUED, RUNNING
from api.options import JsonOptions
from api.reply import wait_for
from api.schema import encoder

if TYPE_CHECKING:
    from actors.system import SystemStats, TaskSystem


class InvalidCount:
    """How many enqueue bodies were refused with 400, counted by the request threads.

    A lock rather than an actor message: the count is only ever touched on the 400 path and by
    ``GET /stats``, so the 201 path pays nothing, and no actor's inbox takes traffic from bad
    clients. (``itertools.count`` would be atomic too, but cannot be read without counting.)
    """

    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def add(self) -> None:
        with self._lock:
            self._value += 1

    @property
    def value(self) -> int:
        return self._value


class StatusCounts(msgspec.Struct, frozen=True):
    """Tasks per status now."""

    queued: int
    running: int
    done: int
    failed: int
    cancelled: int


class Workers(msgspec.Struct, frozen=True):
    total: int
    busy: int


class Rejected(msgspec.Struct, frozen=True):
    """Enqueues refused since start, by reason."""

    full: int
    duplicate: int
    shutting_down: int
    store_unavailable: int
    too_many_scheduled: int
    invalid: int


class ProcessesReplaced(msgspec.Struct, frozen=True):
    """Worker processes replaced since start, by reason (WORKER_MODE=process)."""

    timeout: int
    """An attempt ran past its time limit: the process was killed."""
    crash: int
    """The process died during an attempt."""
    max_tasks: int
    """Recycled after WORKER_MAX_TASKS attempts."""
    max_memory: int
    """Recycled after an attempt left it above WORKER_MAX_MEMORY_MB."""


class Totals(msgspec.Struct, frozen=True):
    """Counts since the service started."""

    enqueued: int
    rejected: Rejected
    attempts: int
    retries: int
    done: int
    failed: int
    cancelled: int
    evicted: int
    processes_replaced: ProcessesReplaced
    threads_abandoned: int
    """Handler threads left running past their time limit (WORKER_MODE=thread)."""


class StatsBody(msgspec.Struct, frozen=True):
    """The body of ``GET /stats``."""

    tasks: StatusCounts
    waiting: int
    """Tasks waiting in line for a worker."""
    scheduled: int
    """Tasks waiting for a retry or delayed (queued, with ``next_attempt_at`` set)."""
    workers: Workers
    queue_size: int
    scheduled_max: int
    """Tasks that may be ``scheduled`` before new delayed tasks are refused."""
    store: str
    """The durable store (DB_PATH): ``available``, ``unavailable`` (it cannot be written now:
    new work is refused) or ``none`` (tasks in memory only)."""
    totals: Totals
    uptime_s: float


def stats_body(stats: SystemStats, invalid: int) -> StatsBody:
    counts = stats.counts
    return StatsBody(
        tasks=StatusCounts(
            queued=counts.get(QUEUED, 0),
            running=counts.get(RUNNING, 0),
            done=counts.get(DONE, 0),
            failed=counts.get(FAILED, 0),
            cancelled=counts.get(CANCELLED, 0),
        ),
        waiting=stats.waiting,
        scheduled=stats.scheduled,
        workers=Workers(total=stats.workers, busy=stats.busy),
        queue_size=stats.queue_size,
        scheduled_max=stats.scheduled_max,
        store=stats.store,
        totals=Totals(
            enqueued=stats.enqueued,
            rejected=Rejected(
                full=stats.rejected_full,
                duplicate=stats.rejected_duplicate,
                shutting_down=stats.rejected_shutting_down,
                store_unavailable=stats.rejected_store_unavailable,
                too_many_scheduled=stats.rejected_too_many_scheduled,
                invalid=invalid,
            ),
            attempts=stats.attempts,
            retries=stats.retries,
            done=stats.done,
            failed=stats.failed,
            cancelled=stats.cancelled,
            evicted=stats.evicted,
            processes_replaced=msgspec.convert(stats.processes_replaced, ProcessesReplaced),
            threads_abandoned=stats.threads_abandoned,
        ),
        uptime_s=round(stats.uptime_s, 3),
    )


class StatsResource(JsonOptions):
    def __init__(self, system: TaskSystem, invalid: InvalidCount, *, timeout_s: float) -> None:
        self._system = system
        self._invalid = invalid
        self._timeout_s = timeout_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        stats = wait_for(self._system.stats_async(), self._timeout_s)
        resp.data = encoder.encode(stats_body(stats, self._invalid.value))


class ReadinessBody(msgspec.Struct, frozen=True):
    """The body of ``GET /readyz``: ``ready``, ``full``, ``store unavailable`` or
    ``shutting down``."""

    status: str


_READINESS: Final = {
    readiness: encoder.encode(ReadinessBody(status=readiness.value)) for readiness in Readiness
}


class ReadinessResource(JsonOptions):
    """200 while a new task, delayed or not, would be admitted; 503 when the line is full,
    ``scheduled_max`` tasks wait for their time, the store cannot be written, or shutdown
    began."""

    def __init__(self, system: TaskSystem, *, timeout_s: float) -> None:
        self._system = system
        self._timeout_s = timeout_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            readiness = wait_for(self._system.ready_async(), self._timeout_s)
        except SystemStopped:
            readiness = Readiness.SHUTTING_DOWN
        if readiness is not Readiness.READY:
            resp.status = falcon.HTTP_503
        resp.data = _READINESS[readiness]
