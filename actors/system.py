"""TaskSystem: the entry object that starts the actors in order, talks to them, and stops them."""

from __future__ import annotations

import logging
import random
import time
from functools import partial
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import pykka

from actors.allow_list import AllowList
from actors.base import tell_or_fail
from actors.dispatcher import DEFAULT_SCHEDULED_MAX, DispatcherActor
from actors.protocol.answers import Admission, BatchAdmission, Outcome, Readiness, Stock
from actors.protocol.intake import AdmitBatch, AdmitTask
from actors.protocol.lifecycle import (
    BeginShutdown,
    Connect,
    Recover,
    Recovered,
    TakeStock,
    WatchStore,
    WhenIdle,
)
from actors.protocol.queues import GetQueues, LoadPausedQueues, PauseQueue
from actors.protocol.reading import (
    GetDispatcherStats,
    GetReadiness,
    GetRepositoryStats,
    GetTask,
    ListPage,
)
from actors.protocol.running import Save
from actors.protocol.schedules import (
    AddSchedule,
    DeleteSchedule,
    GetSchedule,
    ListSchedules,
    OpenSchedules,
    PauseSchedule,
    StopSchedules,
)
from actors.protocol.task_actions import AdmitRequeue, CancelInLine, DeleteTask
from actors.protocol.waiting import StopRetryTimer
from actors.queues import default_queues
from actors.recovery import plan_recovery
from actors.reply import Reply, SystemStopped
from actors.repository import RepositoryActor
from actors.retention import DEFAULT_RETENTION
from actors.retry import RetryActor
from actors.runners import RunnerCounts, StartsWarm, thread_runners
from actors.schedules import ScheduleActor
from actors.stats import StatsBody
from actors.store import StoreError, ask_store
from actors.target_runner import Deliveries, with_targets
from actors.task import DEFAULT_QUEUE
from actors.worker import DEFAULT_TASK_TIMEOUT_MS, AttemptPolicy, RetryPolicy, WorkerActor

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from actors.attempt import AttemptRunner
    from actors.backoff import Uniform
    from actors.observer import AttemptObserver
    from actors.paging import Page
    from actors.pg_connect import Cluster
    from actors.queues import QueueInfo, QueueSpec
    from actors.retention import Retention
    from actors.runners import RunnerFactory
    from actors.schedule import Schedule, Timing
    from actors.schedule_store import OpenScheduleStore
    from actors.stats import LineCounts, TaskCounts
    from actors.store import OpenStore
    from actors.task import Task
    from actors.worker import Handler

logger = logging.getLogger(__name__)

T = TypeVar("T")

STOP_TIMEOUT_S = 5.0
"""How long stopping one idle actor may take before we stop waiting for it."""

STOP_GRACE_S = 5.0
"""How long stopping the actors may take in all, after the deadline for running attempts: an
actor that is dead or stuck is given up on, so shutdown ends whatever state the actors are in."""

WORKER_KILL_GRACE_S = 0.5
"""How long past the shutdown deadline stopping the workers waits before it kills what runs."""

DEFAULT_RESULT_MAX_BYTES = 65_536
"""The largest result (encoded as JSON) kept for a task unless ``result_max_bytes`` says."""


class ShutdownSummary(NamedTuple):
    """What the system held when it stopped."""

    counts: dict[str, int]
    """Tasks per status."""
    abandoned_in_line: int
    """Queued tasks that never got a worker."""
    abandoned_retries: int
    """Tasks that were waiting for their next attempt."""
    drained: bool
    """False when the deadline passed with attempts still running."""
    kept: bool = False
    """True with a durable store: the queued and waiting tasks are kept for the next start."""
    unanswered: tuple[str, ...] = ()
    """The actors that were dead or stuck at shutdown: the counts they keep are missing."""


class StatsAnswer:
    """The three actors' answers to one stats question, asked in parallel, awaited together."""

    __slots__ = (
        "_dispatcher",
        "_queues",
        "_repository",
        "_retry",
        "_runner_counts",
        "_started_at",
    )

    def __init__(
        self,
        repository: Reply[TaskCounts],
        dispatcher: Reply[LineCounts],
        retry: Reply[int],
        started_at: float,
        runner_counts: RunnerCounts,
        queues: Reply[tuple[QueueInfo, ...]] | None = None,
    ) -> None:
        self._repository = repository
        self._dispatcher = dispatcher
        self._retry = retry
        self._started_at = started_at
        self._runner_counts = runner_counts
        self._queues = queues

    def get(self, *, timeout: float | None = None) -> StatsBody:
        """All three answers within ``timeout`` in all; else ``pykka.Timeout``, or
        SystemStopped if one of the actors stopped before it answered."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        tasks = self._repository.get(timeout=left())
        line = self._dispatcher.get(timeout=left())
        scheduled = self._retry.get(timeout=left())
        uptime_s = time.monotonic() - self._started_at
        queues = () if self._queues is None else self._queues.get(timeout=left())
        replacements = self._runner_counts.read()
        return StatsBody.of(tasks, line, scheduled, replacements, uptime_s, queues)


class TaskSystem:
    """The actor system as one object: usable with or without HTTP.

    ``start`` builds repository -> dispatcher -> workers -> retry actor -> schedule actor, each
    started after what it talks to; ``stop`` takes them down schedule actor -> retry ->
    dispatcher -> workers -> repository. Each
    question (the methods ending in ``_async``) returns a Reply for the caller to wait on with
    its own timeout: its ``get`` raises SystemStopped, at once, if an actor it needed has
    stopped or crashed. With ``open_store`` the tasks are durable, and ``start`` first recovers
    what the store holds (actors/recovery.py).
    """

    def __init__(
        self,
        repository: pykka.ActorRef,
        dispatcher: pykka.ActorRef,
        workers: tuple[pykka.ActorRef, ...],
        retry: pykka.ActorRef,
        *,
        runners: tuple[AttemptRunner, ...] = (),
        runner_counts: RunnerCounts | None = None,
        durable: bool = False,
        queues: Sequence[QueueSpec] = (),
    ) -> None:
        self._repository = repository
        self._dispatcher = dispatcher
        self._workers = workers
        self._retry = retry
        self._runners = runners
        self._runner_counts = runner_counts or RunnerCounts()
        self._durable = durable
        self._started_at = time.monotonic()
        self._schedules: pykka.ActorRef | None = None
        self._queue_names = frozenset(spec.name for spec in queues)
        self._first_queue = queues[0].name if queues else DEFAULT_QUEUE

    @classmethod
    def start(
        cls,
        handler: Handler | None = None,
        *,
        workers: int = 4,
        queue_size: int = 64,
        scheduled_max: int = DEFAULT_SCHEDULED_MAX,
        retry_base_ms: float = 100,
        retry_max_ms: float = 30_000,
        uniform: Uniform = random.uniform,
        open_store: OpenStore | None = None,
        retention: Retention = DEFAULT_RETENTION,
        clock: Callable[[], float] = time.time,
        observer: AttemptObserver | None = None,
        runners: RunnerFactory | None = None,
        task_timeout_ms: int = DEFAULT_TASK_TIMEOUT_MS,
        result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES,
        deliveries: Deliveries | None = None,
        open_schedules: OpenScheduleStore | None = None,
        queues: Sequence[QueueSpec] | None = None,
        cluster: Cluster | None = None,
    ) -> TaskSystem:
        """Start the actors; with ``open_store``, over a durable store, recovering its tasks.

        Each worker runs its attempts with a runner: ``handler`` on the worker's own thread (thread
        mode: a handler that outlives its timeout is abandoned, not stopped), or, instead of a
        handler, whatever ``runners`` makes for each worker (a child process each, in process mode).
        An attempt's time limit is its task's ``timeout_ms``, else ``task_timeout_ms``; a result
        longer than ``result_max_bytes`` as JSON is dropped. A task with a target is sent there
        instead, by its worker, as ``deliveries`` says (None: no target is allowed, so such a task
        fails).

        ``open_store`` is called on the repository's thread. Raises StoreError (with nothing
        left running) when the store cannot be used. ``retention`` bounds the finished tasks
        kept (the service's defaults; ``KEEP_ALL`` keeps them all), their ages measured
        with ``clock``. ``observer`` hears of every attempt's end from the workers (the
        metrics' histograms). With ``cluster`` (instead of ``open_store``), the tasks are in a
        PostgreSQL database shared with other instances (actors/cluster.py).

        ``queues`` declares the queues, each with workers of its own (their sum replaces
        ``workers``); without it, one queue, ``default``, with ``workers`` workers.
        """
        if queues is None:
            queues = default_queues(workers)
        workers = sum(spec.workers for spec in queues)
        if not queues or any(spec.workers < 1 for spec in queues):
            raise ValueError("each queue needs at least 1 worker")
        if workers < 1 or queue_size < 1:
            raise ValueError("workers and queue_size must be at least 1")
        if (handler is None) == (runners is None):
            raise ValueError("give a handler (thread mode) or runners: one of the two")
        if runners is None:
            assert handler is not None
            runners = thread_runners(handler, result_max_bytes)
        if deliveries is None:
            deliveries = Deliveries(AllowList(), workers=workers, result_max_bytes=result_max_bytes)
        runners = with_targets(runners, deliveries)
        policy = RetryPolicy(base_ms=retry_base_ms, max_ms=retry_max_ms)
        durable = open_store is not None or cluster is not None
        attempt_policy = AttemptPolicy(policy, task_timeout_ms=task_timeout_ms, durable=durable)
        counts = RunnerCounts()
        # First of all: a runner that cannot start (a handler its child cannot load, raising
        # HandlerLoadError) stops the start before the store is even opened.
        made = _make_runners(runners, workers, counts)
        if cluster is not None:
            return cls._start_cluster(
                cluster,
                made,
                counts,
                attempt_policy,
                uniform,
                observer,
                retention,
                clock,
                queue_size,
                scheduled_max,
                tuple(queues),
            )
        try:
            repository = RepositoryActor.start(open_store, retention=retention, clock=clock)
            stored = _recover(repository) if open_store is not None else ()
            paused = _paused_queues(repository) if open_store is not None else frozenset()
        except BaseException:
            _close_all(made, 0.0)
            raise
        plan = plan_recovery(stored, now=time.time(), policy=policy, uniform=uniform)
        for task in plan.saves:
            repository.tell(Save(task))
        dispatcher = DispatcherActor.start(
            queue_size, repository, scheduled_max, queues=queues, paused=paused
        )
        repository.tell(WatchStore(dispatcher))
        worker_refs = tuple(
            WorkerActor.start(
                index, runner, dispatcher, repository, attempt_policy, uniform, observer
            )
            for index, runner in enumerate(made)
        )
        retry = RetryActor.start(dispatcher, repository)
        dispatcher.tell(Connect(worker_refs, retry))
        if plan.line or plan.retries:
            # Before start returns, so before any AdmitTask: recovered tasks go ahead of new work,
            # and like due retries they get in past the line's bound; those waiting for a
            # retry go to the retry actor through the dispatcher, which counts what waits.
            dispatcher.tell(Recovered(plan.line, plan.retries))
        if open_store is not None:
            logger.info("%s", plan.describe())
        logger.debug("actor system started with %d workers", workers)
        system = cls(
            repository,
            dispatcher,
            worker_refs,
            retry,
            runners=made,
            runner_counts=counts,
            durable=open_store is not None,
            queues=queues,
        )
        # Last: its firings, a catch-up among them, go through the dispatcher like any task.
        system._start_schedules(lambda: ScheduleActor.start(dispatcher, repository, open_schedules))
        return system

    def _start_schedules(self, start: Callable[[], pykka.ActorRef]) -> None:
        """Start the schedule actor (``start``) and have it open its store; StoreError, with
        every actor stopped, if the store cannot be used."""
        self._schedules = start()
        reply: Reply[int | StoreError] = Reply()
        tell_or_fail(self._schedules, OpenSchedules(reply))
        try:
            opened = reply.get()
            if isinstance(opened, StoreError):
                raise opened
        except BaseException:
            self.stop(time.monotonic())
            raise

    @classmethod
    def _start_cluster(
        cls,
        cluster: Cluster,
        made: tuple[AttemptRunner, ...],
        counts: RunnerCounts,
        policy: AttemptPolicy,
        uniform: Uniform,
        observer: AttemptObserver | None,
        retention: Retention,
        clock: Callable[[], float],
        queue_size: int,
        scheduled_max: int,
        queues: tuple[QueueSpec, ...],
    ) -> TaskSystem:
        # psycopg is loaded only in cluster mode
        from actors.cluster import start_cluster
        from actors.cluster_schedules import ClusterScheduleActor
        from actors.pg_schedule_store import PgScheduleStore

        try:
            actors = start_cluster(
                cluster,
                made,
                policy=policy,
                uniform=uniform,
                observer=observer,
                retention=retention,
                clock=clock,
                queue_size=queue_size,
                scheduled_max=scheduled_max,
                queues=queues,
            )
        except BaseException:
            _close_all(made, 0.0)
            raise
        system = cls(
            *actors,
            runners=made,
            runner_counts=counts,
            durable=True,
            queues=queues,
        )
        open_schedules = partial(PgScheduleStore.open, cluster.url, cluster.instance_id)
        system._start_schedules(
            lambda: ClusterScheduleActor.start(actors.dispatcher, open_schedules)
        )
        return system

    # --- what the API asks ---------------------------------------------------------------------

    def submit_async(self, task: Task) -> Reply[Admission]:
        """Offer a new task; the reply says whether it was accepted, and if not, why."""
        reply: Reply[Admission] = Reply()
        tell_or_fail(self._dispatcher, AdmitTask(task, reply))
        return reply

    def submit_batch_async(self, tasks: Sequence[Task]) -> Reply[BatchAdmission]:
        """Offer new tasks, to be accepted all together or not at all."""
        reply: Reply[BatchAdmission] = Reply()
        tell_or_fail(self._dispatcher, AdmitBatch(tuple(tasks), reply))
        return reply

    def cancel_async(self, task_id: str) -> Reply[Outcome]:
        """Cancel a queued task (in line, delayed or awaiting a retry): it never runs again."""
        reply: Reply[Outcome] = Reply()
        tell_or_fail(self._dispatcher, CancelInLine(task_id, reply))
        return reply

    def requeue_async(self, task_id: str, queue: str | None = None) -> Reply[Outcome]:
        """Queue a failed or cancelled task of ``queue`` (None: the first queue) again for a
        fresh round of attempts; refused with a conflict if the task is in another queue."""
        reply: Reply[Outcome] = Reply()
        queue = self._first_queue if queue is None else queue
        tell_or_fail(self._dispatcher, AdmitRequeue(task_id, reply, queue))
        return reply

    @property
    def queue_names(self) -> frozenset[str]:
        """The names of the queues tasks may name."""
        return self._queue_names

    def queues_async(self) -> Reply[tuple[QueueInfo, ...]]:
        """Each queue as it is now, in QUEUES order."""
        reply: Reply[tuple[QueueInfo, ...]] = Reply()
        tell_or_fail(self._dispatcher, GetQueues(reply))
        return reply

    def pause_async(self, name: str, *, paused: bool = True) -> Reply[QueueInfo | None]:
        """Pause (or resume) queue ``name``; the reply is the queue then, or None if unknown.
        With a store the new state is kept for the next start before the reply is set."""
        reply: Reply[QueueInfo | None] = Reply()
        tell_or_fail(self._dispatcher, PauseQueue(name, paused, reply))
        return reply

    def add_schedule_async(
        self, schedule_id: str, timing: Timing, task: Task
    ) -> Reply[Schedule | None]:
        """Create a schedule firing ``task`` (a template: each firing gives it an id); the
        reply is the schedule, or None if the id is taken; it fails with StoreError if the
        store cannot be written."""
        reply: Reply[Schedule | None] = Reply()
        tell_or_fail(self._schedule_actor(), AddSchedule(schedule_id, timing, task, reply))
        return reply

    def get_schedule_async(self, schedule_id: str) -> Reply[Schedule | None]:
        """The schedule as it is now, or None if the id is unknown."""
        reply: Reply[Schedule | None] = Reply()
        tell_or_fail(self._schedule_actor(), GetSchedule(schedule_id, reply))
        return reply

    def list_schedules_async(self) -> Reply[tuple[Schedule, ...]]:
        """Every schedule, in creation order."""
        reply: Reply[tuple[Schedule, ...]] = Reply()
        tell_or_fail(self._schedule_actor(), ListSchedules(reply))
        return reply

    def pause_schedule_async(self, schedule_id: str, *, paused: bool) -> Reply[Schedule | None]:
        """Pause a schedule, or resume it from now on; None if the id is unknown."""
        reply: Reply[Schedule | None] = Reply()
        tell_or_fail(self._schedule_actor(), PauseSchedule(schedule_id, paused, reply))
        return reply

    def delete_schedule_async(self, schedule_id: str) -> Reply[bool]:
        """Forget a schedule (the tasks it enqueued stay); False if the id is unknown."""
        reply: Reply[bool] = Reply()
        tell_or_fail(self._schedule_actor(), DeleteSchedule(schedule_id, reply))
        return reply

    def _schedule_actor(self) -> pykka.ActorRef:
        assert self._schedules is not None, "started by start()"
        return self._schedules

    def delete_async(self, task_id: str) -> Reply[Outcome]:
        """Forget a finished task."""
        reply: Reply[Outcome] = Reply()
        tell_or_fail(self._repository, DeleteTask(task_id, reply))
        return reply

    def get_async(self, task_id: str) -> Reply[Task | None]:
        """The task as it is now, or None if the id is unknown."""
        reply: Reply[Task | None] = Reply()
        tell_or_fail(self._repository, GetTask(task_id, reply))
        return reply

    def list_page_async(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        after: str | None = None,
        newest_first: bool = False,
        queue: str | None = None,
    ) -> Reply[Page | None]:
        """Tasks in creation order (or newest first) after ``after``, with ``status``, at most
        ``limit`` of them (without any of these, every task); the reply is None when ``after``
        is not a known id; ``queue`` keeps only that queue's tasks."""
        reply: Reply[Page | None] = Reply()
        message = ListPage(reply, status, limit, after, newest_first, queue)
        tell_or_fail(self._repository, message)
        return reply

    def ready_async(self) -> Reply[Readiness]:
        """Whether a new task would be admitted now (GET /readyz)."""
        reply: Reply[Readiness] = Reply()
        tell_or_fail(self._dispatcher, GetReadiness(reply))
        return reply

    def stats_async(self) -> StatsAnswer:
        """Counts from the repository, the dispatcher and the retry actor: the repository and
        the dispatcher asked at once, the retry actor through the dispatcher (see
        GetDispatcherStats)."""
        repository: Reply[TaskCounts] = Reply()
        dispatcher: Reply[LineCounts] = Reply()
        retry: Reply[int] = Reply()
        tell_or_fail(self._repository, GetRepositoryStats(repository))
        tell_or_fail(self._dispatcher, GetDispatcherStats(dispatcher, retry))
        queues: Reply[tuple[QueueInfo, ...]] = Reply()
        tell_or_fail(self._dispatcher, GetQueues(queues))
        return StatsAnswer(
            repository, dispatcher, retry, self._started_at, self._runner_counts, queues
        )

    # --- shutdown ------------------------------------------------------------------------------

    def begin_shutdown(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Refuse new tasks from now on and stop starting queued ones; False (logged) if the
        dispatcher is dead or did not answer within ``timeout_s``."""
        stopping = _Stopping(time.monotonic() + timeout_s)
        # First the schedules' timer: nothing fires into a closing line.
        if self._schedules is not None:
            stopping.ask(self._schedules, "schedule actor", StopSchedules, 0)
        return stopping.ask(self._dispatcher, "dispatcher", BeginShutdown, False)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no attempt is running; False if ``timeout_s`` passed first, or if the
        dispatcher has already stopped and cannot say."""
        reply: Reply[None] = Reply()
        tell_or_fail(self._dispatcher, WhenIdle(reply))
        try:
            reply.get(timeout=max(0.0, timeout_s))
        except (SystemStopped, pykka.Timeout):
            return False
        return True

    def stop(self, deadline: float | None = None) -> ShutdownSummary:
        """Shut down: the schedule actor, intake, running attempts, then retry -> dispatcher ->
        workers -> repository.

        ``deadline`` (a ``time.monotonic()`` value) bounds the wait for running attempts, and
        stopping the actors takes at most ``STOP_GRACE_S`` more: an actor that is dead or stuck
        is given up on (and named in the summary's ``unanswered``), never waited on for ever.
        """
        if deadline is None:
            deadline = time.monotonic() + 30.0
        stopping = _Stopping(max(deadline, time.monotonic()) + STOP_GRACE_S)
        if self._schedules is not None:
            # First of all, so nothing fires into a stopping line; its schedules are stored.
            stopping.ask(self._schedules, "schedule actor", StopSchedules, 0)
            stopping.stop(self._schedules, "schedule actor")
        begun = stopping.ask(self._dispatcher, "dispatcher", BeginShutdown, False)
        drained = begun and self.wait_idle(deadline - time.monotonic())
        stopping.ask(self._retry, "retry actor", StopRetryTimer, 0)
        stopping.stop(self._retry, "retry actor")
        stopping.stop(self._dispatcher, "dispatcher")
        self._stop_workers(deadline)
        # Taken from the repository alone, after the others stopped: a task that moved between
        # them meanwhile (an attempt ending past the deadline) is counted where it ended up.
        stock = stopping.ask(self._repository, "repository", TakeStock, Stock({}, 0, 0))
        stopping.stop(self._repository, "repository")
        return ShutdownSummary(
            counts=stock.counts,
            abandoned_in_line=stock.in_line,
            abandoned_retries=stock.awaiting,
            drained=drained,
            kept=self._durable,
            unanswered=tuple(stopping.unanswered),
        )

    def _stop_workers(self, deadline: float) -> None:
        """Stop the workers, each closing its runner; then close what a worker still running
        an attempt past the deadline could not: its child process is killed, not waited for."""
        stopping = [worker.stop(block=False) for worker in self._workers]
        # Idle workers stop at once; a worker inside an attempt cannot answer until it ends.
        until = max(deadline, time.monotonic()) + WORKER_KILL_GRACE_S
        for future, runner in zip(stopping, self._runners, strict=True):
            try:
                future.get(timeout=max(0.0, until - time.monotonic()))
            except pykka.Timeout:
                # The worker waits on its runner; closing the runner from here ends that wait
                # (in thread mode the worker's thread is a daemon: it holds nothing open).
                runner.close(0.0)


def _make_runners(
    factory: RunnerFactory, workers: int, counts: RunnerCounts
) -> tuple[AttemptRunner, ...]:
    made: list[AttemptRunner] = []
    try:
        for index in range(workers):
            made.append(factory(index, counts))
        for runner in made:
            if isinstance(runner, StartsWarm):
                runner.wait_ready()
    except BaseException:
        _close_all(made, 0.0)
        raise
    return tuple(made)


def _close_all(runners: Sequence[AttemptRunner], timeout_s: float) -> None:
    for runner in runners:
        try:
            runner.close(timeout_s)
        except Exception:
            logger.exception("closing a runner failed")


class _Stopping:
    """Questions to the actors at shutdown under one shared deadline: an actor that is dead or
    does not answer in time is logged, named in ``unanswered``, and given up on."""

    def __init__(self, end: float) -> None:
        self._end = end
        self.unanswered: list[str] = []

    def ask(
        self, actor: pykka.ActorRef, name: str, question: Callable[[Reply[T]], object], default: T
    ) -> T:
        """``actor``'s answer to the message ``question`` makes of a Reply, or ``default``."""
        reply: Reply[T] = Reply()
        tell_or_fail(actor, question(reply))
        try:
            return reply.get(timeout=self._left())
        except SystemStopped:
            self._given_up(name, "had stopped")
        except pykka.Timeout:
            self._given_up(name, "did not answer in time")
        return default

    def stop(self, actor: pykka.ActorRef, name: str) -> None:
        if name in self.unanswered:
            actor.stop(block=False)  # if it ever gets to it; nobody waits
            return
        try:
            actor.stop(timeout=self._left())
        except pykka.Timeout:
            self._given_up(name, "did not stop in time")

    def _left(self) -> float:
        return min(STOP_TIMEOUT_S, max(0.0, self._end - time.monotonic()))

    def _given_up(self, name: str, why: str) -> None:
        logger.warning("shutdown: the %s %s; given up on", name, why)
        if name not in self.unanswered:
            self.unanswered.append(name)


def _paused_queues(repository: pykka.ActorRef) -> frozenset[str]:
    """The queues the store keeps paused; StoreError (with the repository stopped) if it
    cannot say."""
    return ask_store(repository, LoadPausedQueues)


def _recover(repository: pykka.ActorRef) -> tuple[Task, ...]:
    """Have the repository open its store; every stored task, or StoreError with it stopped."""
    return ask_store(repository, Recover)
