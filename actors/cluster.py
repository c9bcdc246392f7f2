"""Cluster mode: many instances on one PostgreSQL database (DATABASE_URL) are one queue.

What TaskSystem.start builds instead of the single-process actors when given a Cluster: the
same workers and retry actor, with a ClusterRepositoryActor over the shared table and a
ClusterDispatcherActor that claims work from it (README, "Running a cluster").
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from actors.cluster_dispatcher import ClusterDispatcherActor
from actors.cluster_repository import ClusterRepositoryActor
from actors.pg_store import PgStore
from actors.protocol.lifecycle import Connect, Recover, WatchStore
from actors.retry import RetryActor
from actors.store import ask_store
from actors.worker import WorkerActor

if TYPE_CHECKING:
    from collections.abc import Callable

    import pykka

    from actors.attempt import AttemptRunner
    from actors.backoff import Uniform
    from actors.observer import AttemptObserver
    from actors.pg_connect import Cluster
    from actors.queues import QueueSpec
    from actors.retention import Retention
    from actors.worker import AttemptPolicy

logger = logging.getLogger(__name__)


class ClusterActors(NamedTuple):
    repository: pykka.ActorRef
    dispatcher: pykka.ActorRef
    workers: tuple[pykka.ActorRef, ...]
    retry: pykka.ActorRef


def start_cluster(
    cluster: Cluster,
    runners: tuple[AttemptRunner, ...],
    *,
    policy: AttemptPolicy,
    uniform: Uniform,
    observer: AttemptObserver | None,
    retention: Retention,
    clock: Callable[[], float],
    queue_size: int,
    scheduled_max: int,
    queues: tuple[QueueSpec, ...],
) -> ClusterActors:
    """Start an instance's actors over the cluster's database, the workers of each of
    ``queues`` in turn (``runners`` in that order); StoreError (nothing left running) if it
    cannot be used."""
    open_store = partial(
        PgStore.open,
        cluster.url,
        cluster.instance_id,
        lease_ms=cluster.lease_ms,
        queue_size=queue_size,
        scheduled_max=scheduled_max,
    )
    repository = ClusterRepositoryActor.start(
        open_store, retry=policy.retry, uniform=uniform, retention=retention, clock=clock
    )
    ask_store(repository, Recover)
    dispatcher = ClusterDispatcherActor.start(repository, queue_size, scheduled_max, queues)
    repository.tell(WatchStore(dispatcher))
    workers = tuple(
        WorkerActor.start(index, runner, dispatcher, repository, policy, uniform, observer)
        for index, runner in enumerate(runners)
    )
    retry = RetryActor.start(dispatcher, repository)
    dispatcher.tell(Connect(workers, retry))
    logger.info(
        "instance %s joined the cluster on PostgreSQL (%s), lease %d ms",
        cluster.instance_id,
        cluster.url.describe(),
        cluster.lease_ms,
    )
    return ClusterActors(repository, dispatcher, workers, retry)
