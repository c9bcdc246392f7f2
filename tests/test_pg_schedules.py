"""PgScheduleStore (actors/pg_schedule_store.py) and schema version 2 against a real PostgreSQL.

Two stores on one database stand for two instances: what one changes the other reads, and of
the firings both try for one time, exactly one enqueues its task. Each test has a database of
its own on the session's private server (tests/pg_server.py); in CI they must not skip.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import psycopg
import pytest

from actors.pg_connect import DatabaseUrl
from actors.pg_schedule_store import Firing, PgScheduleStore
from actors.pg_schema import INTAKE_LOCK, SCHEMA_VERSION, TABLE
from actors.pg_store import PgStore, raise_intake_bound
from actors.schedule import new_schedule, timing_of
from actors.target import Target
from actors.task import DONE, QUEUED, new_task

if TYPE_CHECKING:
    from collections.abc import Iterator

    from actors.schedule import Schedule
    from tests.pg_server import PgServer

V1_SCHEMA = Path(__file__).with_name("pg_schema_v1.sql")
NOW = 1_800_000_000.0
"""2027-01-15T08:00:00Z."""


def open_tasks(url: str, instance: str = "a", queue_size: int = 100) -> PgStore:
    return PgStore.open(
        DatabaseUrl.parse(url), instance, lease_ms=5000, queue_size=queue_size, scheduled_max=100
    )


@pytest.fixture
def stores(pg_database: str) -> Iterator[tuple[PgScheduleStore, PgScheduleStore]]:
    """Two instances' schedule stores, over a schema their task stores prepared."""
    tasks = open_tasks(pg_database)
    a = PgScheduleStore.open(DatabaseUrl.parse(pg_database), "a")
    b = PgScheduleStore.open(DatabaseUrl.parse(pg_database), "b")
    yield a, b
    for store in (a, b, tasks):
        store.close()


def every(schedule_id: str, seconds: int = 1, created_at: float = NOW) -> Schedule:
    template = new_task(schedule_id, b'{"n": 1}', 2, 0.0, priority=4, timeout_ms=500)
    return new_schedule(schedule_id, timing_of(None, seconds * 1000, None), template, created_at)


def task_rows(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(f"SELECT id, status, enqueued_by FROM {TABLE} ORDER BY seq")
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows.fetchall()]


def set_status(url: str, task_id: str, status: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"UPDATE {TABLE} SET status = %s WHERE id = %s", (status, task_id))


# --- the schema ---------------------------------------------------------------------------------


def test_a_fresh_database_and_a_migrated_version_1_end_identical(
    pg_server: PgServer, pg_database: str
) -> None:
    old = pg_server.create_database("v1")
    try:
        with psycopg.connect(pg_server.url(old), autocommit=True) as connection:
            connection.execute(V1_SCHEMA.read_text())  # type: ignore[arg-type]
            connection.execute(
                f"INSERT INTO {TABLE} (id, payload, max_retries, status, attempts, created_at, "
                "updated_at, enqueued_by) VALUES ('kept', '1', 3, 'queued', 0, 1, 1, 'old')"
            )
        open_tasks(pg_server.url(old)).close()
        open_tasks(pg_database).close()

        assert pg_server.schema(old) == pg_server.schema(pg_database.rsplit("/", 1)[1])
        assert "task_queue_schedules" in pg_server.schema(old)
        with psycopg.connect(pg_server.url(old)) as connection:
            assert connection.execute("SELECT version FROM task_queue_schema").fetchall() == [
                (SCHEMA_VERSION,)
            ]
            assert connection.execute(f"SELECT id FROM {TABLE}").fetchall() == [("kept",)]
        assert SCHEMA_VERSION == 2
        migrated = PgScheduleStore.open(DatabaseUrl.parse(pg_server.url(old)), "a")
        assert migrated.add(every("after-migration"))
        assert [s.id for s in migrated.load()] == ["after-migration"]
        migrated.close()
    finally:
        pg_server.drop_database(old)


# --- the API's changes, seen by every instance --------------------------------------------------


def test_a_schedule_added_on_one_instance_is_read_whole_on_the_other_and_its_id_is_taken(
    stores: tuple[PgScheduleStore, PgScheduleStore],
) -> None:
    a, b = stores
    target = Target(url="https://example.com/hook", method="POST", headers=(("X-Key", "k"),))
    template = new_task("nightly", b'{"x": [1]}', 5, 0.0, priority=3, target=target)
    nightly = new_schedule("nightly", timing_of("0 3 * * *", None, "Europe/Berlin"), template, NOW)

    assert a.add(nightly) is True
    assert a.add(every("poll")) is True
    assert b.add(every("nightly")) is False

    assert b.get("nightly") == nightly
    assert [s.id for s in b.load()] == ["nightly", "poll"]
    assert b.get("nope") is None


def test_changes_hold_what_the_api_changed_since_a_version_and_what_was_deleted(
    stores: tuple[PgScheduleStore, PgScheduleStore],
) -> None:
    a, b = stores
    start = b.changes(None)
    assert start is not None
    assert (start.changed, start.ids) == ((), frozenset())
    assert b.changes(start.version) is None

    a.add(every("one"))
    a.add(every("two"))
    first = b.changes(start.version)
    assert first is not None
    assert [s.id for s in first.changed] == ["one", "two"]

    paused = a.pause("one", True, NOW + 5)
    assert paused is not None
    assert paused.paused
    assert a.delete("two") is True
    assert a.delete("two") is False
    second = b.changes(first.version)
    assert second is not None
    assert [(s.id, s.paused) for s in second.changed] == [("one", True)]
    assert second.ids == {"one"}
    assert b.changes(second.version) is None

    resumed = a.pause("one", False, NOW + 7.5)
    assert resumed is not None
    assert resumed.next_run_at == NOW + 8
    assert a.pause("one", False, NOW + 9) == resumed  # already running: unchanged
    assert a.pause("nope", True, NOW) is None


# --- firing ------------------------------------------------------------------------------------


def test_of_two_instances_firing_one_time_exactly_one_enqueues_and_the_other_moves_on(
    pg_database: str, stores: tuple[PgScheduleStore, PgScheduleStore]
) -> None:
    a, b = stores
    poll = every("poll")
    a.add(poll)
    due = NOW + 1

    won = a.fire("poll", due, due + 0.2)
    lost = b.fire("poll", due, due + 0.3)

    assert won.outcome is Firing.FIRED
    assert won.task_id == "poll@2027-01-15T08:00:01Z"
    assert won.schedule == msgspec.structs.replace(
        poll, next_run_at=NOW + 2, last_task_id=won.task_id, fired=1
    )
    assert lost.outcome is Firing.STALE
    assert lost.schedule == won.schedule
    assert task_rows(pg_database) == [(won.task_id, QUEUED, "a")]
    assert b.get("poll") == won.schedule


def test_firings_tried_at_once_by_many_instances_enqueue_once(pg_database: str) -> None:
    open_tasks(pg_database).close()
    stores = [PgScheduleStore.open(DatabaseUrl.parse(pg_database), f"i{n}") for n in range(6)]
    stores[0].add(every("race"))
    outcomes: list[Firing] = []
    start = threading.Barrier(len(stores))

    def fire(store: PgScheduleStore) -> None:
        start.wait()
        outcomes.append(store.fire("race", NOW + 1, NOW + 1.1).outcome)

    threads = [threading.Thread(target=fire, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for store in stores:
        store.close()

    assert sorted(o.value for o in outcomes).count("fired") == 1
    assert {o.value for o in outcomes} <= {"fired", "stale", "busy"}
    assert [row[0] for row in task_rows(pg_database)] == ["race@2027-01-15T08:00:01Z"]


def test_a_firing_is_skipped_while_the_last_task_is_queued_or_running_anywhere(
    pg_database: str, stores: tuple[PgScheduleStore, PgScheduleStore]
) -> None:
    a, b = stores
    a.add(every("slow"))
    first = a.fire("slow", NOW + 1, NOW + 1)
    assert first.outcome is Firing.FIRED

    skipped = b.fire("slow", NOW + 2, NOW + 2)
    set_status(pg_database, str(first.task_id), "running")
    skipped_again = a.fire("slow", NOW + 3, NOW + 3)
    set_status(pg_database, str(first.task_id), DONE)
    second = b.fire("slow", NOW + 4, NOW + 4)

    assert (skipped.outcome, skipped.task_id, skipped.why) == (
        Firing.SKIPPED,
        first.task_id,
        QUEUED,
    )
    assert (skipped_again.outcome, skipped_again.why) == (Firing.SKIPPED, "running")
    assert second.outcome is Firing.FIRED
    shown = a.get("slow")
    assert shown is not None
    assert (shown.fired, shown.skipped, shown.last_task_id) == (2, 2, second.task_id)
    assert shown.next_run_at == NOW + 5
    assert [row[0] for row in task_rows(pg_database)] == [first.task_id, second.task_id]


def test_a_stale_copy_never_fires_a_paused_or_deleted_schedule(
    pg_database: str, stores: tuple[PgScheduleStore, PgScheduleStore]
) -> None:
    a, b = stores
    a.add(every("paused"))
    a.add(every("deleted"))
    b.pause("paused", True, NOW + 0.5)
    b.delete("deleted")

    paused = a.fire("paused", NOW + 1, NOW + 1)
    deleted = a.fire("deleted", NOW + 1, NOW + 1)

    assert paused.outcome is Firing.STALE
    assert paused.schedule is not None
    assert paused.schedule.paused
    assert (deleted.outcome, deleted.schedule) == (Firing.GONE, None)
    assert task_rows(pg_database) == []


def test_a_late_firing_fires_once_for_its_time_then_goes_on_from_now(
    pg_database: str, stores: tuple[PgScheduleStore, PgScheduleStore]
) -> None:
    a, b = stores
    a.add(every("five", seconds=5))
    late = NOW + 5 + 17.5  # three periods and more missed: one firing, with the missed time

    fired = a.fire("five", NOW + 5, late)
    again = b.fire("five", NOW + 5, late)

    assert fired.task_id == "five@2027-01-15T08:00:05Z"
    assert fired.schedule is not None
    assert fired.schedule.next_run_at == NOW + 25
    assert again.outcome is Firing.STALE
    assert len(task_rows(pg_database)) == 1


def test_a_firing_gets_past_a_full_queue_and_keeps_the_intake_bound_above_the_queue(
    pg_database: str,
) -> None:
    tasks = open_tasks(pg_database, queue_size=1)
    store = PgScheduleStore.open(DatabaseUrl.parse(pg_database), "a")
    try:
        tasks.commit([new_task("filler", b"null", 0)])
        assert tasks.refused == {}
        store.add(every("poll"))

        fired = store.fire("poll", NOW + 1, NOW + 1)
        tasks.commit([new_task("refused", b"null", 0)])

        assert fired.outcome is Firing.FIRED
        assert [row[0] for row in task_rows(pg_database)] == ["filler", fired.task_id]
        assert set(tasks.refused) == {"refused"}
        with psycopg.connect(pg_database) as connection:
            row = connection.execute(
                "SELECT bound FROM task_queue_intake WHERE queue = 'default'"
            ).fetchone()
        assert row is not None
        assert row[0] >= 2
    finally:
        store.close()
        tasks.close()


def test_a_task_with_the_firing_s_id_already_there_is_a_duplicate_and_runs_once(
    pg_database: str, stores: tuple[PgScheduleStore, PgScheduleStore]
) -> None:
    a, _ = stores
    tasks = open_tasks(pg_database)
    try:
        tasks.commit([new_task("poll@2027-01-15T08:00:01Z", b"null", 0)])
    finally:
        tasks.close()
    a.add(every("poll"))

    fired = a.fire("poll", NOW + 1, NOW + 1)

    assert (fired.outcome, fired.task_id) == (Firing.DUPLICATE, "poll@2027-01-15T08:00:01Z")
    assert fired.schedule is not None
    assert fired.schedule.fired == 0
    assert len(task_rows(pg_database)) == 1


def test_a_row_another_instance_holds_is_busy_not_waited_for_and_fires_once_let_go(
    pg_database: str, stores: tuple[PgScheduleStore, PgScheduleStore]
) -> None:
    a, _ = stores
    a.add(every("held"))
    with psycopg.connect(pg_database) as holder:
        holder.execute("SELECT 1 FROM task_queue_schedules WHERE id = 'held' FOR UPDATE")

        busy = a.fire("held", NOW + 1, NOW + 1)
        holder.rollback()
    fired = a.fire("held", NOW + 1, NOW + 1.2)

    assert (busy.outcome, busy.schedule) == (Firing.BUSY, None)
    assert fired.outcome is Firing.FIRED
    assert [row[0] for row in task_rows(pg_database)] == ["held@2027-01-15T08:00:01Z"]


# --- firing in batches --------------------------------------------------------------------------


def test_a_batch_fires_exactly_the_firings_its_rows_allow_and_moves_each_row_on(
    pg_database: str, stores: tuple[PgScheduleStore, PgScheduleStore]
) -> None:
    a, b = stores
    for name in ("due", "also-due", "paused", "deleted", "running", "queued", "elsewhere", "held"):
        a.add(every(name))
    a.add(every("taken"))
    a.add(every("late", seconds=5))
    tasks = open_tasks(pg_database)
    try:
        tasks.commit([new_task("taken@2027-01-15T08:00:01Z", b"null", 0)])
    finally:
        tasks.close()
    # What this instance's copy does not know: changes and firings made on the other one.
    b.pause("paused", True, NOW + 0.5)
    b.delete("deleted")
    for name in ("running", "queued"):
        assert b.fire(name, NOW + 1, NOW + 1).outcome is Firing.FIRED
    set_status(pg_database, "running@2027-01-15T08:00:01Z", "running")
    assert b.fire("elsewhere", NOW + 1, NOW + 1.1).outcome is Firing.FIRED
    before = {schedule.id: schedule for schedule in a.load()}
    now = NOW + 2.25
    batch = [
        ("due", NOW + 1),
        ("also-due", NOW + 1),
        ("paused", NOW + 1),
        ("deleted", NOW + 1),
        ("running", NOW + 2),
        ("queued", NOW + 2),
        ("elsewhere", NOW + 1),
        ("held", NOW + 1),
        ("taken", NOW + 1),
        ("late", NOW + 5 - 10),  # a time its row does not name: the copy is wrong
    ]

    with psycopg.connect(pg_database) as holder:
        holder.execute("SELECT 1 FROM task_queue_schedules WHERE id = 'held' FOR UPDATE")
        fired = a.fire_batch(batch, now)
        holder.rollback()

    outcomes = {schedule_id: f for (schedule_id, _), f in zip(batch, fired, strict=True)}
    assert {name: f.outcome for name, f in outcomes.items()} == {
        "due": Firing.FIRED,
        "also-due": Firing.FIRED,
        "paused": Firing.STALE,
        "deleted": Firing.GONE,
        "running": Firing.SKIPPED,
        "queued": Firing.SKIPPED,
        "elsewhere": Firing.STALE,
        "held": Firing.BUSY,
        "taken": Firing.DUPLICATE,
        "late": Firing.STALE,
    }
    assert (outcomes["running"].task_id, outcomes["running"].why) == (
        "running@2027-01-15T08:00:01Z",
        "running",
    )
    assert (outcomes["queued"].task_id, outcomes["queued"].why) == (
        "queued@2027-01-15T08:00:01Z",
        QUEUED,
    )
    assert (outcomes["deleted"].schedule, outcomes["held"].schedule) == (None, None)
    # Each answer is the row as the transaction left it, and the table holds the same.
    rows = {schedule.id: schedule for schedule in b.load()}
    for name, f in outcomes.items():
        if f.schedule is not None:
            assert rows[name] == f.schedule, name
    moved = NOW + 3
    assert rows["due"] == msgspec.structs.replace(
        before["due"], next_run_at=moved, last_task_id="due@2027-01-15T08:00:01Z", fired=1
    )
    assert rows["also-due"].fired == 1
    assert rows["running"] == msgspec.structs.replace(
        before["running"], next_run_at=moved, skipped=1
    )
    assert rows["queued"] == msgspec.structs.replace(before["queued"], next_run_at=moved, skipped=1)
    assert rows["taken"] == msgspec.structs.replace(
        before["taken"], next_run_at=moved, last_task_id="taken@2027-01-15T08:00:01Z"
    )
    # Left as they were: not this batch's to change.
    for name in ("paused", "elsewhere", "held", "late"):
        assert rows[name] == before[name], name
    assert rows["paused"].paused
    assert "deleted" not in rows
    assert [row[0] for row in task_rows(pg_database)] == [
        "taken@2027-01-15T08:00:01Z",
        "running@2027-01-15T08:00:01Z",
        "queued@2027-01-15T08:00:01Z",
        "elsewhere@2027-01-15T08:00:01Z",
        "due@2027-01-15T08:00:01Z",
        "also-due@2027-01-15T08:00:01Z",
    ]
    enqueued = {row[0]: row for row in task_rows(pg_database)}
    assert enqueued["due@2027-01-15T08:00:01Z"][1:] == (QUEUED, "a")


def test_a_batch_s_firings_get_past_a_full_queue_and_raise_the_intake_bound_by_their_number(
    pg_database: str,
) -> None:
    tasks = open_tasks(pg_database, queue_size=1)
    store = PgScheduleStore.open(DatabaseUrl.parse(pg_database), "a")
    try:
        tasks.commit([new_task("filler", b"null", 0)])
        for n in range(3):
            store.add(every(f"poll{n}"))

        fired = store.fire_batch([(f"poll{n}", NOW + 1) for n in range(3)], NOW + 1)
        tasks.commit([new_task("refused", b"null", 0)])

        assert [f.outcome for f in fired] == [Firing.FIRED] * 3
        assert len(task_rows(pg_database)) == 4
        assert set(tasks.refused) == {"refused"}
        with psycopg.connect(pg_database) as connection:
            row = connection.execute(
                "SELECT bound FROM task_queue_intake WHERE queue = 'default'"
            ).fetchone()
        assert row is not None
        assert row[0] >= 4
    finally:
        store.close()
        tasks.close()


def test_firings_raise_each_queue_s_own_intake_bound_and_leave_a_queue_without_one_to_be_counted(
    pg_database: str,
) -> None:
    open_tasks(pg_database).close()  # the schema
    firings = [
        msgspec.structs.replace(new_task(f"f{n}", b"null", 0), queue=queue)
        for n, queue in enumerate(("emails", "emails", "reports", "uncounted"))
    ]
    with psycopg.connect(pg_database, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO task_queue_intake (queue, bound) VALUES ('emails', 5), ('reports', 1)"
        )
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (INTAKE_LOCK,))
            raise_intake_bound(connection, firings)
        bounds = dict(connection.execute("SELECT queue, bound FROM task_queue_intake").fetchall())

    assert bounds == {"emails": 7, "reports": 2}


def test_an_empty_batch_is_nothing(stores: tuple[PgScheduleStore, PgScheduleStore]) -> None:
    a, _ = stores
    assert a.fire_batch([], NOW) == []


def test_instances_firing_the_same_batch_at_once_fire_each_firing_once(pg_database: str) -> None:
    open_tasks(pg_database).close()
    stores = [PgScheduleStore.open(DatabaseUrl.parse(pg_database), f"i{n}") for n in range(4)]
    names = [f"s{n:03}" for n in range(300)]
    for name in names:
        stores[0].add(every(name))
    fired_by: dict[str, list[str]] = {name: [] for name in names}
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def fire(store: PgScheduleStore, instance: str) -> None:
        try:
            start.wait()
            batch = [(name, NOW + 1) for name in names]
            # As the actor does: a row another instance held is tried again, until none is.
            while batch:
                answers = store.fire_batch(batch, NOW + 1.1)
                for (name, _), answer in zip(batch, answers, strict=True):
                    assert answer.outcome in (Firing.FIRED, Firing.STALE, Firing.BUSY), answer
                    if answer.outcome is Firing.FIRED:
                        fired_by[name].append(instance)
                batch = [
                    due
                    for due, answer in zip(batch, answers, strict=True)
                    if answer.outcome is Firing.BUSY
                ]
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=fire, args=(store, f"i{n}")) for n, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        rows = stores[0].load()
    finally:
        for store in stores:
            store.close()

    assert errors == []
    assert {name: len(by) for name, by in fired_by.items()} == dict.fromkeys(names, 1)
    assert sorted(row[0] for row in task_rows(pg_database)) == [
        f"{name}@2027-01-15T08:00:01Z" for name in names
    ]
    assert {(row.fired, row.next_run_at) for row in rows} == {(1, NOW + 2)}
    enqueued_by = {row[0].split("@")[0]: row[2] for row in task_rows(pg_database)}
    assert enqueued_by == {name: by[0] for name, by in fired_by.items()}
