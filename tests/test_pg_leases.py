"""Leases and their rescue (actors/leases.py) and retention in batches (actors/pg_retention.py),
against a real PostgreSQL."""

from __future__ import annotations

import time

import pytest

from actors.leases import renew, renew_interval_s, rescue, rescue_interval_s
from actors.pg_connect import DatabaseUrl
from actors.pg_retention import SWEEP_BATCH, sweep
from actors.pg_store import PgStore
from actors.recovery import INTERRUPTED
from actors.retention import Retention
from actors.task import FAILED, QUEUED, RUNNING, new_task
from actors.worker import RetryPolicy
from tests.pg_claims import claim_one
from tests.support import no_jitter, wait_until

POLICY = RetryPolicy(base_ms=100, max_ms=1000)


def open_store(url: str, instance: str, lease_ms: int = 300) -> PgStore:
    return PgStore.open(
        DatabaseUrl.parse(url), instance, lease_ms=lease_ms, queue_size=5000, scheduled_max=5000
    )


def test_leases_are_renewed_well_before_they_end_and_rescued_within_two() -> None:
    assert renew_interval_s(15_000) == 5.0
    assert rescue_interval_s(15_000) == 7.5
    # Death just after a renewal: lease end, then at worst a whole rescue interval.
    assert 15.0 + rescue_interval_s(15_000) < 2 * 15.0


def test_an_expired_lease_is_an_interrupted_attempt_retried_with_backoff(pg_database: str) -> None:
    dead, alive = open_store(pg_database, "dead"), open_store(pg_database, "alive")
    try:
        dead.commit([new_task("t", b"{}", 3), new_task("last", b"{}", 0)])
        assert len(claim_one(dead, 2)[0]) == 2
        assert rescue(alive, POLICY, no_jitter) == []  # the leases still run

        rescued = wait_until(lambda: rescue(alive, POLICY, no_jitter), timeout_s=5)

        by_id = {task.id: task for task in rescued}
        retried, failed = by_id["t"], by_id["last"]
        assert (retried.status, retried.attempts, retried.last_error) == (QUEUED, 1, INTERRUPTED)
        assert retried.next_attempt_at is not None
        assert retried.next_attempt_at - retried.updated_at == pytest.approx(0.1, abs=0.01)
        assert (failed.status, failed.last_error, failed.next_attempt_at) == (
            FAILED,
            INTERRUPTED,
            None,
        )
        assert alive.get("t") == retried
        # The dead instance's late outcome is dropped: the rescuer counted that attempt.
        assert dead.finish([retried]) == set()
    finally:
        dead.close()
        alive.close()


def test_a_renewed_lease_is_never_rescued(pg_database: str) -> None:
    busy, other = open_store(pg_database, "busy"), open_store(pg_database, "other")
    try:
        busy.commit([new_task("t", b"{}", 3)])
        claim_one(busy, 1)
        deadline = time.monotonic() + 1.0  # over three leases
        while time.monotonic() < deadline:
            assert renew(busy) == 1
            assert rescue(other, POLICY, no_jitter) == []
            time.sleep(0.05)
        task = other.get("t")
        assert task is not None
        assert task.status == RUNNING
    finally:
        busy.close()
        other.close()


def test_an_instance_releases_its_own_attempts_at_once_when_asked(pg_database: str) -> None:
    a, b = open_store(pg_database, "a", lease_ms=60_000), open_store(pg_database, "b")
    try:
        a.commit([new_task("mine", b"{}", 3)])
        b.commit([new_task("theirs", b"{}", 3)])
        claim_one(a, 1)
        claim_one(b, 1)

        released = rescue(a, POLICY, no_jitter, own=True)

        assert [task.id for task in released] == ["mine"]
        theirs = a.get("theirs")
        assert theirs is not None
        assert theirs.status == RUNNING
    finally:
        a.close()
        b.close()


def test_retention_deletes_in_bounded_batches_oldest_first(pg_database: str) -> None:
    store = open_store(pg_database, "a")
    try:
        now = time.time()
        tasks = [new_task(f"t{n}", b"{}", 3, now - 1000 + n) for n in range(SWEEP_BATCH + 10)]
        store.commit(tasks)
        for task in tasks:
            store.cancel(task.id, task.created_at)

        deleted = sweep(store, Retention(max_finished=5, ttl_s=0), now)

        assert deleted == SWEEP_BATCH + 5
        page = store.page()
        assert page is not None
        assert [task.id for task in page.tasks] == [
            f"t{n}" for n in range(SWEEP_BATCH + 5, SWEEP_BATCH + 10)
        ]
        # Finished at now + 5 ... now + 9: ten seconds after now + 7.5, three are too old.
        assert sweep(store, Retention(max_finished=0, ttl_s=10), now + 17.5) == 3
    finally:
        store.close()
