"""The service's statistics: one set of types, filled by the actors that count, read by the API.

Each actor answers its own part (``TaskCounts`` from the repository, ``LineCounts`` from the
dispatcher, the number scheduled from the retry actor), filling the body's nested structs where it
owns them whole; ``StatsBody.of`` composes the parts into the body of ``GET /stats``, which the
API encodes as it is and ``GET /metrics`` reads. The body's field names and order are the
public shape (README, OpenAPI): each struct here is named as the OpenAPI document names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from actors.queues import QueueInfo

if TYPE_CHECKING:
    from actors.runners import Replacements


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
    """Bodies refused with 400: counted by the API, which no actor sees (0 from the actors)."""


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


class TaskCounts(msgspec.Struct, frozen=True):
    """The repository's part: tasks per status now, and every intake answer since start.

    Every Admission is decided in the repository (a refusal of a known id becomes DUPLICATE
    there), so that is where each enqueue is counted exactly once, by how it ended.
    """

    tasks: StatusCounts
    store: str
    """The durable store: ``available``, ``unavailable`` (cannot be written now) or ``none``."""
    enqueued: int
    """Tasks accepted since start."""
    rejected: Rejected
    cancelled: int
    """Tasks cancelled through the API since start."""
    evicted: int
    """Finished tasks the retention rules removed since start."""
    instance: str | None = None
    """This instance's INSTANCE_ID in a cluster (DATABASE_URL); None otherwise."""


class LineCounts(msgspec.Struct, frozen=True):
    """The dispatcher's part: its line and workers now, and attempts since start."""

    waiting: int
    """Tasks waiting in line for a worker."""
    workers: Workers
    queue_size: int
    scheduled_max: int
    """Tasks that may be ``scheduled`` before new delayed tasks are refused."""
    attempts: int
    """Attempts handed to a worker since start."""
    retries: int
    """Attempts that ended in a retry since start."""
    done: int
    failed: int


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


class StatsBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """The body of ``GET /stats``."""

    tasks: StatusCounts
    waiting: int
    scheduled: int
    """Tasks waiting for a retry or delayed (queued, with ``next_attempt_at`` set): the retry
    actor's part."""
    workers: Workers
    queue_size: int
    scheduled_max: int
    store: str
    """The durable store (DB_PATH): ``available``, ``unavailable`` (it cannot be written now:
    new work is refused) or ``none`` (tasks in memory only)."""
    totals: Totals
    uptime_s: float
    queues: tuple[QueueInfo, ...]
    """Each queue now (``GET /queues``), in QUEUES order."""
    instance: str | None = None
    """The instance that answered, in a cluster (DATABASE_URL): its INSTANCE_ID. Left out
    otherwise."""

    @classmethod
    def of(
        cls,
        tasks: TaskCounts,
        line: LineCounts,
        scheduled: int,
        replacements: Replacements,
        uptime_s: float,
        queues: tuple[QueueInfo, ...] = (),
    ) -> StatsBody:
        """The parts, each from whoever counts it, as one body (``rejected.invalid`` as the
        repository gave it: the API puts its own count in, ``with_invalid``)."""
        return cls(
            tasks=tasks.tasks,
            waiting=line.waiting,
            scheduled=scheduled,
            workers=line.workers,
            queue_size=line.queue_size,
            scheduled_max=line.scheduled_max,
            store=tasks.store,
            totals=Totals(
                enqueued=tasks.enqueued,
                rejected=tasks.rejected,
                attempts=line.attempts,
                retries=line.retries,
                done=line.done,
                failed=line.failed,
                cancelled=tasks.cancelled,
                evicted=tasks.evicted,
                processes_replaced=msgspec.convert(replacements.processes, ProcessesReplaced),
                threads_abandoned=replacements.threads_abandoned,
            ),
            uptime_s=round(uptime_s, 3),
            queues=queues,
            instance=tasks.instance,
        )

    def with_invalid(self, invalid: int) -> StatsBody:
        """This body with the API's count of bodies refused with 400."""
        replace = msgspec.structs.replace
        totals = self.totals
        rejected = replace(totals.rejected, invalid=invalid)
        return replace(self, totals=replace(totals, rejected=rejected))
