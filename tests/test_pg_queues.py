"""Named queues in a cluster (actors/pg_store.py, actors/pg_queues.py, actors/pg_schema.py's
queues block) against a real PostgreSQL: claims by queue, pause, the shared token bucket, each
queue's bound, and the schema of version 2, fresh or migrated from version 1.

Each test has a database of its own on the session's private server (tests/pg_server.py);
without PostgreSQL they skip saying why, and in CI they fail instead.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec
import psycopg
import pytest

from actors import pg_retention, pg_schema, pg_store
from actors.pg_connect import DatabaseUrl
from actors.pg_queues import queue_lines
from actors.pg_store import PgStore
from actors.protocol.answers import Admission, BatchAdmission, Readiness
from actors.protocol.cluster import Want
from actors.queues import QueueInfo
from actors.task import FAILED, new_task
from tests.pg_claims import claim_one

if TYPE_CHECKING:
    from collections.abc import Iterator

    from actors.task import Task
    from tests.pg_server import PgServer


def open_store(url: str, instance: str = "a", **bounds: int) -> PgStore:
    settings = {"lease_ms": 5000, "queue_size": 100, "scheduled_max": 100} | bounds
    return PgStore.open(DatabaseUrl.parse(url), instance, **settings)


@pytest.fixture
def stores(pg_database: str) -> Iterator[tuple[PgStore, PgStore]]:
    a, b = open_store(pg_database, "a"), open_store(pg_database, "b")
    yield a, b
    a.close()
    b.close()


def task(task_id: str, queue: str, **options: object) -> Task:
    return new_task(task_id, b"{}", 3, queue=queue, **options)  # type: ignore[arg-type]


def enqueue(store: PgStore, *tasks: Task) -> dict[str, Admission]:
    store.commit(tasks)
    return dict(store.refused)


def ids(tasks: list[Task]) -> list[str]:
    return [claimed.id for claimed in tasks]


# --- claims ------------------------------------------------------------------------------------


def test_a_claim_takes_only_tasks_of_its_queue(stores: tuple[PgStore, PgStore]) -> None:
    a, b = stores
    enqueue(a, task("r1", "reports", priority=9), task("e1", "emails"), task("e2", "emails"))

    emails = claim_one(b, 10, queue="emails").tasks
    reports = claim_one(a, 10, queue="reports").tasks

    assert ids(emails) == ["e1", "e2"]
    assert ids(reports) == ["r1"]
    assert claim_one(a, 10).tasks == [], "nothing of default"


def test_one_claim_takes_several_queues_each_up_to_its_own_limit(
    stores: tuple[PgStore, PgStore],
) -> None:
    a, b = stores
    enqueue(a, *(task(f"e{n}", "emails") for n in range(3)), task("r1", "reports"))
    enqueue(a, *(task(f"s{n}", "slow") for n in range(3)), task("d1", "default"))
    b.pause("default", paused=True)

    wants = [Want("emails", 2), Want("reports", 5), Want("slow", 3, 1.0), Want("default", 1)]
    claims = a.claim_many(wants)

    assert {queue: ids(tasks) for queue, tasks in claims.tasks.items()} == {
        "emails": ["e0", "e1"],
        "reports": ["r1"],
        "slow": ["s0"],
    }
    assert set(claims.next_token_s) == {"slow"}


def test_the_claim_uses_the_queue_index(stores: tuple[PgStore, PgStore]) -> None:
    a, _ = stores
    a.execute("off", "SET enable_seqscan = off")  # an empty table: else a scan is as cheap
    rows = a.execute("explain", f"EXPLAIN {pg_store._CLAIM}", ("a", 1000, ["x", "y"], [1, 2]))

    plan = "\n".join(row[0] for row in rows)
    assert "task_queue_claim" in plan, plan
    assert "Sort" not in plan, plan


def _plan(store: PgStore, statement: str, params: tuple[object, ...]) -> str:
    return "\n".join(row[0] for row in store.execute("explain", f"EXPLAIN {statement}", params))


def test_a_claim_and_a_retention_batch_find_their_rows_by_key_not_by_scanning_the_table(
    pg_database: str,
) -> None:
    """Finished tasks stay in the table until retention takes them: a statement that scans it
    costs more with every task the cluster has run. As ``seq IN (subquery)`` the planner
    hash-joined the whole table on every claim."""
    a = open_store(pg_database, "big", queue_size=10_000)
    assert enqueue(a, *(task(f"t{n}", "default") for n in range(3000))) == {}
    with psycopg.connect(pg_database, autocommit=True) as connection:
        connection.execute(
            f"INSERT INTO {pg_schema.TABLE} (id, payload, max_retries, status, attempts, "
            "created_at, updated_at, enqueued_by) SELECT 'done' || n, '{}', 0, 'done', 1, n, n, "
            "'big' FROM generate_series(1, 30000) AS n"
        )
        connection.execute(f"ANALYZE {pg_schema.TABLE}")

    plans = {
        "claim": _plan(a, pg_store._CLAIM, ("a", 1000, ["default", "emails"], [1, 2])),
        "expired": _plan(a, pg_retention._EXPIRED, (time.time(), 1000)),
        "oldest": _plan(a, pg_retention._OLDEST, (1000,)),
    }

    a.close()
    for name, plan in plans.items():
        assert f"Seq Scan on {pg_schema.TABLE}" not in plan, (name, plan)
        assert "task_queue_tasks_pkey" in plan, (name, plan)


# --- pause -------------------------------------------------------------------------------------


def test_a_queue_paused_by_one_instance_starts_nothing_anywhere_until_resumed(
    stores: tuple[PgStore, PgStore], pg_database: str
) -> None:
    a, b = stores
    enqueue(a, task("e1", "emails"), task("d1", "default"))

    a.pause("emails", paused=True)

    assert claim_one(b, 5, queue="emails").tasks == []
    assert claim_one(b, 5, queue="emails", max_per_second=100).tasks == []
    assert ids(claim_one(b, 5).tasks) == ["d1"], "other queues go on"
    later = open_store(pg_database, "c")  # a restarted instance sees it too
    try:
        assert queue_lines(later).paused == frozenset({"emails"})
    finally:
        later.close()
    b.pause("emails", paused=False)
    assert ids(claim_one(a, 5, queue="emails").tasks) == ["e1"]
    assert queue_lines(a).paused == frozenset()


def test_a_pause_notifies_the_other_instances(
    stores: tuple[PgStore, PgStore], pg_database: str
) -> None:
    a, _ = stores
    with psycopg.connect(pg_database, autocommit=True) as listening:
        listening.execute(f"LISTEN {pg_schema.CHANNEL}")
        a.pause("emails", paused=False)
        heard = [note.payload for note in listening.notifies(timeout=2.0, stop_after=1)]
    assert heard == ["a"]


# --- the rate ----------------------------------------------------------------------------------


def test_the_token_bucket_is_shared_so_two_instances_start_no_more_than_the_rate(
    stores: tuple[PgStore, PgStore],
) -> None:
    a, b = stores
    enqueue(a, *(task(f"t{n:02d}", "slow") for n in range(60)))
    rate = 5.0
    claimed: list[Task] = []
    waits: list[float] = []
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        for store in (a, b):
            result = claim_one(store, 10, queue="slow", max_per_second=rate)
            claimed.extend(result.tasks)
            if result.next_token_s is not None:
                waits.append(result.next_token_s)
    elapsed = time.monotonic() - started

    # A burst of one second's worth, then the rate: for both instances together.
    assert rate <= len(claimed) <= rate + rate * elapsed + 1, (len(claimed), elapsed)
    assert len(set(ids(claimed))) == len(claimed)
    assert waits, "a claim held back by the bucket says when the next token comes"
    assert all(0 <= wait <= 1 / rate + 0.01 for wait in waits), waits


def test_a_claim_the_bucket_holds_back_says_when_its_next_token_comes(
    stores: tuple[PgStore, PgStore],
) -> None:
    a, _ = stores
    enqueue(a, *(task(f"t{n}", "slow") for n in range(5)))

    first = claim_one(a, 3, queue="slow", max_per_second=2)
    second = claim_one(a, 3, queue="slow", max_per_second=2)

    assert (len(first.tasks), len(second.tasks)) == (2, 0)
    assert second.next_token_s is not None
    assert 0 < second.next_token_s <= 0.5  # two tokens taken, refilling at two a second
    assert first.next_token_s is not None


def test_a_rate_limited_claim_of_an_empty_queue_asks_for_no_wake_up(
    stores: tuple[PgStore, PgStore],
) -> None:
    a, _ = stores
    result = claim_one(a, 3, queue="slow", max_per_second=2)
    assert result == (result.tasks, set(), None)
    assert result.tasks == []


# --- bounds ------------------------------------------------------------------------------------


def test_each_queue_has_its_own_bound_across_instances(pg_database: str) -> None:
    a = open_store(pg_database, "a", queue_size=2)
    b = open_store(pg_database, "b", queue_size=2)
    try:
        assert enqueue(a, task("e1", "emails")) == {}
        assert enqueue(b, task("e2", "emails")) == {}
        assert enqueue(a, task("e3", "emails")) == {"e3": Admission.QUEUE_FULL}
        assert enqueue(b, task("e4", "emails")) == {"e4": Admission.QUEUE_FULL}
        assert enqueue(b, task("r1", "reports"), task("r2", "reports")) == {}
        assert b.insert_batch([task("r3", "reports")]) == BatchAdmission(Admission.QUEUE_FULL)
        assert a.insert_batch([task("d1", "default")]) == BatchAdmission(Admission.ACCEPTED)
        # A claimed task leaves its queue's line: room again, only there.
        assert ids(claim_one(a, 1, queue="emails").tasks) == ["e1"]
        assert enqueue(b, task("e5", "emails"), task("r4", "reports")) == {
            "r4": Admission.QUEUE_FULL
        }
    finally:
        a.close()
        b.close()


def test_scheduled_max_counts_the_delayed_tasks_of_every_queue(pg_database: str) -> None:
    a = open_store(pg_database, "a", scheduled_max=3)
    try:
        later = {"delay_s": 600.0}
        assert enqueue(a, task("e1", "emails", **later), task("r1", "reports", **later)) == {}
        assert enqueue(a, task("d1", "default", **later)) == {}
        assert enqueue(a, task("x1", "other", **later)) == {"x1": Admission.TOO_MANY_SCHEDULED}
    finally:
        a.close()


def test_a_retry_by_hand_needs_room_in_its_own_queue(pg_database: str) -> None:
    a = open_store(pg_database, "a", queue_size=1)
    try:
        enqueue(a, task("e1", "emails"))
        assert a.cancel("e1", time.time()).task is not None
        enqueue(a, task("e2", "emails"), task("r1", "reports"))
        assert a.requeue("e1", time.time()).refused is Admission.QUEUE_FULL
        (claimed,) = claim_one(a, 1, queue="emails").tasks
        failed = msgspec.structs.replace(claimed, status=FAILED, attempts=1)
        assert a.finish([failed]) == {"e2"}
        requeued = a.requeue("e1", time.time()).task
        assert requeued is not None
        assert requeued.queue == "emails"
    finally:
        a.close()


# --- reads -------------------------------------------------------------------------------------


def test_lines_pages_and_readiness_by_queue(pg_database: str) -> None:
    a = open_store(pg_database, "a", queue_size=2, scheduled_max=10)
    try:
        later = task("e2", "emails", delay_s=600.0)
        enqueue(a, later, task("e1", "emails"), task("e3", "emails"), task("d1", "default"))
        a.pause("reports", paused=True)

        lines = queue_lines(a)
        page = a.page(queue="emails")

        assert lines.lines == {"emails": (2, 1), "default": (1, 0)}
        assert lines.paused == frozenset({"reports"})
        assert page is not None
        assert ids(page.tasks) == ["e2", "e1", "e3"]
        info = QueueInfo("emails", 2, 1, 0, 0, False, None)
        assert lines.fill(info) == QueueInfo("emails", 2, 1, 2, 1, False, None)
        reports = QueueInfo("reports", 1, 0, 0, 0, False, 5)
        assert lines.fill(reports) == QueueInfo("reports", 1, 0, 0, 0, True, 5)
        assert lines.readiness(["emails"], 2, 10) is Readiness.FULL
        assert lines.readiness(["emails", "default"], 2, 10) is Readiness.READY
        assert lines.readiness(["reports"], 2, 1) is Readiness.TOO_MANY_SCHEDULED
    finally:
        a.close()


# --- the schema --------------------------------------------------------------------------------


def schema_of(url: str) -> dict[str, list[tuple[object, ...]]]:
    """What makes two schemas the same: tables and columns, indexes, constraints."""
    with psycopg.connect(url) as connection:
        return {
            "columns": connection.execute(
                "SELECT table_name, column_name, data_type, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = 'public' "
                "ORDER BY table_name, column_name"
            ).fetchall(),
            "indexes": connection.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "ORDER BY indexname"
            ).fetchall(),
            "constraints": connection.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                "FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
                "ORDER BY 1, 2"
            ).fetchall(),
            "version": connection.execute("SELECT version FROM task_queue_schema").fetchall(),
        }


def make_version_1(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        for statement in pg_schema._VERSION_1:
            connection.execute(statement)  # type: ignore[arg-type]
        connection.execute("INSERT INTO task_queue_schema (version) VALUES (1)")


def test_a_migrated_version_1_database_is_the_same_as_a_fresh_one(
    pg_server: PgServer, pg_database: str
) -> None:
    fresh_name = pg_server.create_database()
    fresh = pg_server.url(fresh_name)
    try:
        open_store(fresh).close()
        make_version_1(pg_database)
        open_store(pg_database).close()

        assert schema_of(pg_database) == schema_of(fresh)
        assert schema_of(fresh)["version"] == [(pg_schema.SCHEMA_VERSION,)]
    finally:
        pg_server.drop_database(fresh_name)


def test_a_migrated_database_keeps_its_tasks_and_bounds_its_queue(pg_database: str) -> None:
    make_version_1(pg_database)
    with psycopg.connect(pg_database, autocommit=True) as connection:
        for n in range(3):
            connection.execute(
                "INSERT INTO task_queue_tasks (id, payload, max_retries, status, attempts, "
                "created_at, updated_at, enqueued_by) "
                "VALUES (%s, '{}', 3, 'queued', 0, 1, 1, 'v1')",
                (f"old{n}",),
            )
    a = open_store(pg_database, "a", queue_size=4)
    try:
        assert enqueue(a, task("new1", "default")) == {}
        assert enqueue(a, task("new2", "default")) == {"new2": Admission.QUEUE_FULL}
        assert ids(claim_one(a, 10).tasks) == ["old0", "old1", "old2", "new1"]
    finally:
        a.close()
