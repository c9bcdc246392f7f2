"""PgStore (actors/pg_store.py) and the schema (actors/pg_schema.py) against a real PostgreSQL.

Each test has a database of its own on the session's private server (tests/pg_server.py);
without PostgreSQL they skip saying why, and in CI they fail instead.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import psycopg
import pytest

from actors.pg_connect import DatabaseUrl
from actors.pg_schema import SCHEMA_VERSION, TABLE
from actors.pg_store import PgStore
from actors.protocol.answers import Admission, BatchAdmission
from actors.store import StoreError
from actors.task import CANCELLED, DONE, FAILED, QUEUED, RUNNING, new_task
from tests.pg_claims import claim_one

if TYPE_CHECKING:
    from tests.pg_server import PgServer


def open_store(url: str, instance: str = "a", **bounds: int) -> PgStore:
    settings = {"lease_ms": 5000, "queue_size": 100, "scheduled_max": 100} | bounds
    return PgStore.open(DatabaseUrl.parse(url), instance, **settings)


@pytest.fixture
def store(pg_database: str) -> PgStore:
    opened = open_store(pg_database)
    yield opened  # type: ignore[misc]
    opened.close()


def enqueue(store: PgStore, *tasks: object) -> dict[str, Admission]:
    store.commit(tasks)  # type: ignore[arg-type]
    return dict(store.refused)


def test_the_schema_is_created_once_by_instances_starting_together(pg_database: str) -> None:
    stores: list[PgStore] = []
    errors: list[BaseException] = []

    def start(name: str) -> None:
        try:
            stores.append(open_store(pg_database, name))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(f"i{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert len(stores) == 6
    with psycopg.connect(pg_database) as connection:
        versions = connection.execute("SELECT version FROM task_queue_schema").fetchall()
    assert versions == [(SCHEMA_VERSION,)]
    for opened in stores:
        opened.close()


def test_a_schema_newer_than_the_code_is_refused_and_left_alone(pg_database: str) -> None:
    open_store(pg_database).close()
    with psycopg.connect(pg_database, autocommit=True) as connection:
        connection.execute("UPDATE task_queue_schema SET version = %s", (SCHEMA_VERSION + 1,))

    with pytest.raises(StoreError, match="newer than this code") as raised:
        open_store(pg_database)

    assert "database test_" in str(raised.value)
    with psycopg.connect(pg_database) as connection:
        row = connection.execute("SELECT version FROM task_queue_schema").fetchone()
    assert row == (SCHEMA_VERSION + 1,)


def test_an_unreachable_database_is_a_store_error_naming_host_and_database_not_password(
    pg_server: PgServer,
) -> None:
    url = "postgresql://someone:hunter2-secret@127.0.0.1:1/orders"
    started = time.monotonic()

    with pytest.raises(StoreError) as raised:
        open_store(url)

    assert time.monotonic() - started < 15
    message = str(raised.value)
    assert "127.0.0.1:1" in message
    assert "orders" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("url", ["mysql://u:secret@h/db", "postgresql://u:secret@h:notaport/db"])
def test_a_url_that_is_not_postgresql_is_refused_without_quoting_it(url: str) -> None:
    with pytest.raises(StoreError) as raised:
        DatabaseUrl.parse(url)
    assert "secret" not in str(raised.value)


def test_an_id_taken_by_any_instance_is_a_duplicate_for_every_other(pg_database: str) -> None:
    a, b = open_store(pg_database, "a"), open_store(pg_database, "b")
    try:
        assert enqueue(a, new_task("one", b"{}", 3)) == {}
        assert enqueue(b, new_task("one", b"{}", 3), new_task("two", b"{}", 3)) == {
            "one": Admission.DUPLICATE
        }
        assert a.get("two") is not None
        assert b.get("one") == a.get("one")
    finally:
        a.close()
        b.close()


def test_the_queue_bound_holds_across_instances(pg_database: str) -> None:
    a = open_store(pg_database, "a", queue_size=3, scheduled_max=2)
    b = open_store(pg_database, "b", queue_size=3, scheduled_max=2)
    try:
        assert enqueue(a, new_task("a1", b"{}", 3), new_task("a2", b"{}", 3)) == {}
        refused = enqueue(b, new_task("b1", b"{}", 3), new_task("b2", b"{}", 3))
        assert refused == {"b2": Admission.QUEUE_FULL}
        delayed = [new_task(f"d{n}", b"{}", 3, delay_s=60) for n in range(3)]
        # The line is full: a delayed task is refused too, as in one process.
        assert enqueue(a, delayed[0]) == {"d0": Admission.QUEUE_FULL}
        assert claim_one(a, 1)[0][0].id == "a1"
        assert enqueue(a, *delayed) == {"d2": Admission.TOO_MANY_SCHEDULED}
        assert a.lines() == {"default": (2, 2)}
    finally:
        a.close()
        b.close()


def test_a_batch_is_taken_whole_or_not_at_all(store: PgStore) -> None:
    enqueue(store, new_task("taken", b"{}", 3))

    answer = store.insert_batch([new_task("x", b"{}", 3), new_task("taken", b"{}", 3)])

    assert answer == BatchAdmission(Admission.DUPLICATE, 1)
    assert store.get("x") is None
    assert store.insert_batch([new_task("x", b"{}", 3)]) == BatchAdmission(Admission.ACCEPTED)
    assert store.get("x") is not None
    repeated = [new_task("y", b"{}", 3), new_task("z", b"{}", 3), new_task("y", b"{}", 3)]
    assert store.insert_batch(repeated) == BatchAdmission(Admission.DUPLICATE, 2)
    assert store.get("y") is None


def test_claims_take_priority_first_then_creation_and_never_the_same_task_twice(
    pg_database: str,
) -> None:
    a, b = open_store(pg_database, "a"), open_store(pg_database, "b")
    try:
        now = time.time()
        tasks = [new_task(f"t{n}", b"{}", 3, now + n / 1000) for n in range(6)]
        tasks.append(new_task("urgent", b"{}", 3, now + 1, priority=9))
        tasks.append(new_task("later", b"{}", 3, now, delay_s=60))
        enqueue(a, *tasks)

        first = claim_one(a, 3)[0]
        second = claim_one(b, 10)[0]

        assert [task.id for task in first] == ["urgent", "t0", "t1"]
        assert [task.id for task in second] == ["t2", "t3", "t4", "t5"]
        # Handed over as before the claim: the worker's Run counts the attempt.
        assert {(task.status, task.attempts) for task in first + second} == {(QUEUED, 0)}
        stored = a.get("t2")
        assert stored is not None
        assert (stored.status, stored.attempts) == (RUNNING, 1)
        assert claim_one(a, 10)[0] == []
    finally:
        a.close()
        b.close()


def test_claims_racing_from_many_connections_take_each_task_once(pg_database: str) -> None:
    seed = open_store(pg_database, "seed", queue_size=1000)
    enqueue(seed, *(new_task(f"t{n}", b"{}", 3) for n in range(200)))
    seed.close()
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        own = open_store(pg_database, name)
        try:
            while batch := claim_one(own, 7)[0]:
                with lock:
                    claimed.extend(task.id for task in batch)
        finally:
            own.close()

    threads = [threading.Thread(target=claimer, args=(f"c{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(claimed) == sorted(f"t{n}" for n in range(200))


def test_an_outcome_is_written_only_by_the_instance_holding_the_lease(pg_database: str) -> None:
    a, b = open_store(pg_database, "a"), open_store(pg_database, "b")
    try:
        enqueue(a, new_task("t", b"{}", 3))
        (task,) = claim_one(a, 1)[0]
        done = task.__class__(**{**_fields(task), "status": DONE, "attempts": 1})

        assert b.finish([done]) == set()
        assert a.finish([done]) == {"t"}
        stored = b.get("t")
        assert stored is not None
        assert stored.status == DONE
        assert a.finish([done]) == set()  # not running any more: never written twice
    finally:
        a.close()
        b.close()


def test_cancel_requeue_and_delete_work_on_tasks_any_instance_took_in(pg_database: str) -> None:
    a, b = open_store(pg_database, "a"), open_store(pg_database, "b")
    try:
        enqueue(a, new_task("t", b"{}", 3), new_task("r", b"{}", 3))

        cancelled = b.cancel("t", time.time())
        assert cancelled.task is not None
        assert cancelled.task.status == CANCELLED
        assert b.cancel("t", time.time()).conflict == "task is cancelled"
        assert b.cancel("missing", time.time()).task is None
        claim_one(a, 1)
        assert b.cancel("r", time.time()).conflict == "task is running"
        assert b.delete("r").conflict == "task is running; only a finished task can be deleted"

        requeued = b.requeue("t", time.time())
        assert requeued.task is not None
        assert (requeued.task.status, requeued.task.attempts) == (QUEUED, 0)
        assert b.requeue("t", time.time()).conflict is not None
        b.cancel("t", time.time())
        deleted = a.delete("t")
        assert deleted.task is not None
        assert b.get("t") is None
    finally:
        a.close()
        b.close()


def test_pages_follow_creation_order_either_way_with_a_status(store: PgStore) -> None:
    now = time.time()
    enqueue(store, *(new_task(f"t{n}", b"{}", 3, now + n) for n in range(5)))
    store.cancel("t1", now)
    store.cancel("t3", now)

    first = store.page(limit=2)
    assert first is not None
    assert ([task.id for task in first.tasks], first.more) == (["t0", "t1"], True)
    rest = store.page(limit=2, after="t1")
    assert rest is not None
    assert [task.id for task in rest.tasks] == ["t2", "t3"]
    newest = store.page(limit=10, newest_first=True, status=CANCELLED)
    assert newest is not None
    assert ([task.id for task in newest.tasks], newest.more) == (["t3", "t1"], False)
    assert store.page(after="unknown") is None
    counts = store.counts()
    assert (counts.queued, counts.cancelled) == (3, 2)


def test_a_lost_connection_is_an_error_once_and_made_again_at_the_next_use(
    store: PgStore, pg_database: str
) -> None:
    enqueue(store, new_task("t", b"{}", 3))
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'task_queue a'"
        )

    with pytest.raises(StoreError):
        store.get("t")
    store.check()
    assert store.get("t") is not None


def test_rows_that_are_not_sound_are_never_served(store: PgStore, pg_database: str) -> None:
    enqueue(store, new_task("good", b"{}", 3), new_task("bad", b"{}", 3))
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute(f"UPDATE {TABLE} SET status = 'weird' WHERE id = 'bad'")

    page = store.page()
    assert page is not None
    assert [task.id for task in page.tasks] == ["good"]
    assert store.get("bad") is None


def _fields(task: object) -> dict[str, object]:
    import msgspec

    return msgspec.structs.asdict(task)  # type: ignore[arg-type]


def test_failed_outcomes_keep_their_error(pg_database: str) -> None:
    a = open_store(pg_database)
    try:
        enqueue(a, new_task("t", b"{}", 0))
        (task,) = claim_one(a, 1)[0]
        failed = task.__class__(
            **{**_fields(task), "status": FAILED, "attempts": 1, "last_error": "boom"}
        )
        assert a.finish([failed]) == {"t"}
        stored = a.get("t")
        assert stored is not None
        assert (stored.status, stored.last_error) == (FAILED, "boom")
    finally:
        a.close()


def test_intake_counts_only_near_the_bound_and_never_lets_a_stale_count_refuse(
    store: PgStore, pg_database: str
) -> None:
    small = open_store(pg_database, "small", queue_size=3, scheduled_max=3)
    try:
        # Far more tasks than the bound pass through one by one: each is claimed and finished
        # before the next, so the queue never holds more than one.
        for n in range(12):
            assert enqueue(small, new_task(f"t{n}", b"{}", 3)) == {}
            (task,) = claim_one(small, 1)[0]
            done = task.__class__(**{**_fields(task), "status": DONE, "attempts": 1})
            assert small.finish([done]) == {task.id}
        with psycopg.connect(pg_database) as connection:
            row = connection.execute(
                "SELECT bound FROM task_queue_intake WHERE queue = 'default'"
            ).fetchone()
        assert row is not None
        assert row[0] <= 4  # set exactly whenever intake counted
    finally:
        small.close()


def test_a_late_outcome_never_overwrites_the_next_attempt_of_the_same_instance(
    store: PgStore,
) -> None:
    enqueue(store, new_task("t", b"{}", 3))
    (first,) = claim_one(store, 1)[0]
    # Its lease ran out and it was rescued; this instance claimed it again for attempt 2.
    store.execute(
        "reset",
        "UPDATE task_queue_tasks SET status = 'queued', owner = NULL, lease_until = NULL",
    )
    claim_one(store, 1)
    late = first.__class__(**{**_fields(first), "status": DONE, "attempts": 1})

    assert store.finish([late]) == set()
    stored = store.get("t")
    assert stored is not None
    assert (stored.status, stored.attempts) == (RUNNING, 2)


def test_a_claim_writes_the_outcomes_that_wait_in_the_same_round_trip(store: PgStore) -> None:
    enqueue(store, new_task("first", b"{}", 3), new_task("second", b"{}", 3))
    (first,) = claim_one(store, 1)[0]
    done = first.__class__(**{**_fields(first), "status": DONE, "attempts": 1})

    claimed, written, _ = claim_one(store, 5, [done])

    assert [task.id for task in claimed] == ["second"]
    assert written == {"first"}
    stored = store.get("first")
    assert stored is not None
    assert stored.status == DONE


def test_a_transaction_begun_on_a_connection_the_server_ended_is_a_store_error(
    pg_server: PgServer, pg_database: str
) -> None:
    store = open_store(pg_database)
    try:
        store.check()
        pg_server.stop()

        with pytest.raises(StoreError, match="cannot renew"), store.transaction("cannot renew"):
            pass  # pragma: no cover - the BEGIN fails

        pg_server.start()
        with store.transaction("renews again") as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
    finally:
        store.close()
