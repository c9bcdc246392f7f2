"""End to end with DATABASE_URL: issue 15's schedules in a cluster of ``python main.py`` processes.

Every instance's timer rings for every schedule; the firing's transaction on the schedule's row
decides which one enqueues. So these tests run two instances (at least) and check what the
cluster as a whole did: each firing's task exactly once, on time, with its id; a change made on
one instance honoured by the other; a schedule outliving the instance that created it; one
catch-up after the whole cluster was down. Waits are on conditions with deadlines.
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import psycopg
import pytest

from tests.support import wait_until
from tests.test_e2e import json_body
from tests.test_e2e_cluster import Cluster, cluster, runs_by_id  # noqa: F401 (the fixture)
from tests.test_e2e_schedules import BAD, FIRE_ID, ON_TIME_S, seconds, stamp

if TYPE_CHECKING:
    from tests.pg_server import PgServer
    from tests.test_e2e import Service

V1_SCHEMA: Final = Path(__file__).with_name("pg_schema_v1.sql")


def create(service: Service, body: dict[str, Any]) -> dict[str, Any]:
    reply = service.request("POST", "/schedules", json_body(body))
    assert reply.status == 201, reply
    created: dict[str, Any] = reply.json()
    return created


def shown(service: Service, schedule_id: str) -> dict[str, Any]:
    reply = service.request("GET", f"/schedule?id={schedule_id}")
    assert reply.status == 200, reply
    found: dict[str, Any] = reply.json()
    return found


def fired_tasks(service: Service, schedule_id: str) -> list[dict[str, Any]]:
    """The tasks the schedule's firings enqueued, in creation order (the cluster's)."""
    reply = service.request("GET", "/tasks")
    assert reply.status == 200, reply
    return [task for task in reply.json() if task["id"].startswith(f"{schedule_id}@")]


def at_least(service: Service, schedule_id: str, count: int, timeout_s: float = 15.0) -> list[Any]:
    def enough() -> list[Any] | None:
        tasks = fired_tasks(service, schedule_id)
        return tasks if len(tasks) >= count else None

    return wait_until(enough, timeout_s=timeout_s, interval_s=0.05)


def quick(runs: Path, sleep_s: float = 0) -> dict[str, Any]:
    return {"payload": {"log": str(runs), "sleep_s": sleep_s}}


def assert_on_time(
    tasks: list[dict[str, Any]], schedule_id: str, first_at: float, period_s: float
) -> None:
    """Each task is the firing of its period, in order, none missing, each started in time."""
    for index, task in enumerate(tasks):
        due = first_at + index * period_s
        match = FIRE_ID.match(task["id"])
        assert match is not None, task["id"]
        assert (match["schedule"], match["time"]) == (schedule_id, stamp(due)), (index, task)
        assert 0 <= seconds(task["created_at"]) - due < ON_TIME_S, task


def fire_time(task: dict[str, Any]) -> float:
    """The time of the firing that enqueued ``task``, as its id says."""
    match = FIRE_ID.match(task["id"])
    assert match is not None, task["id"]
    return seconds(match["time"])


def quiet(service: Service) -> None:
    """Losing a firing to another instance is no error: nothing above INFO is said of it."""
    log = service.log()
    for word in (" ERROR ", " WARNING ", " CRITICAL ", "Traceback"):
        assert word not in log, log


def test_a_periodic_schedule_fires_on_time_and_each_firing_once_though_both_instances_try(
    cluster: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.jsonl"
    a, b = cluster.start("alpha"), cluster.start("beta")

    created = create(a, {"id": "poll", "every_ms": 1000, "task": quick(runs)})

    first_at = seconds(created["created_at"]) + 1.0
    assert seconds(created["next_run_at"]) == pytest.approx(first_at, abs=1e-3)
    tasks = at_least(b, "poll", 6)[:6]
    assert_on_time(tasks, "poll", first_at, 1.0)
    assert all(task["payload"] == quick(runs)["payload"] for task in tasks)
    wait_until(lambda: all(b.task(task["id"])["status"] == "done" for task in tasks))
    by_id = runs_by_id(runs)
    assert all(len(by_id[task["id"]]) == 1 for task in tasks), by_id
    # Both instances' timers rang for every firing: the table let one of them through each time.
    listed = b.request("GET", "/schedules").json()
    assert [item["id"] for item in listed] == ["poll"]
    fired = listed[0]["fired"]
    assert fired >= 6
    assert listed[0]["skipped"] == 0
    assert fired <= len(fired_tasks(a, "poll")) <= fired + 1  # one may fire between the reads
    quiet(a)
    quiet(b)


def test_a_cron_schedule_of_every_minute_fires_at_the_next_minute_once(
    cluster: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.jsonl"
    a, b = cluster.start("alpha"), cluster.start("beta")

    created = create(
        b, {"id": "minutely", "cron": "* * * * *", "timezone": "Europe/Berlin", "task": quick(runs)}
    )

    next_minute = (math.floor(seconds(created["created_at"]) / 60) + 1) * 60
    assert seconds(created["next_run_at"]) == next_minute
    (task,) = at_least(a, "minutely", 1, timeout_s=70.0)
    assert task["id"] == f"minutely@{stamp(next_minute)}"
    assert 0 <= seconds(task["created_at"]) - next_minute < ON_TIME_S
    assert seconds(shown(a, "minutely")["next_run_at"]) == next_minute + 60


def test_firings_are_skipped_while_the_last_task_still_runs_on_either_instance(
    cluster: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.jsonl"
    a, b = cluster.start("alpha"), cluster.start("beta")

    create(a, {"id": "slow", "every_ms": 1000, "task": quick(runs, sleep_s=3.5)})

    (first,) = at_least(b, "slow", 1)
    skipping = wait_until(lambda: (s := shown(b, "slow"))["skipped"] >= 2 and s)
    assert [task["id"] for task in fired_tasks(a, "slow")] == [first["id"]]
    assert skipping["fired"] == 1
    assert skipping["last_task_id"] == first["id"]
    logs = a.log() + b.log()
    assert "firing of" in logs and "is skipped" in logs and repr(first["id"]) in logs
    # Once it is done, the next firing goes through.
    second = at_least(a, "slow", 2, timeout_s=10.0)[1]
    finished = seconds(a.task(first["id"])["updated_at"])
    assert seconds(second["created_at"]) > finished - ON_TIME_S


def test_pause_resume_and_delete_on_one_instance_are_honoured_by_the_other(
    cluster: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.jsonl"
    a, b = cluster.start("alpha"), cluster.start("beta")
    create(a, {"id": "poll", "every_ms": 1000, "task": quick(runs)})
    # A witness: its firings measure the time in which the other fired nothing.
    create(a, {"id": "witness", "every_ms": 1000, "task": quick(runs)})
    at_least(a, "poll", 1)

    paused = b.request("POST", "/schedule/pause?id=poll")
    assert paused.status == 200, paused
    assert (paused.json()["paused"], paused.json()["next_run_at"]) == (True, None)
    assert shown(a, "poll")["paused"] is True
    before = len(fired_tasks(a, "poll"))
    at_least(a, "witness", len(fired_tasks(a, "witness")) + 3)
    assert len(fired_tasks(a, "poll")) == before

    resumed = b.request("POST", "/schedule/resume?id=poll")
    assert resumed.status == 200, resumed
    assert resumed.json()["paused"] is False
    at_least(a, "poll", before + 2)

    deleted = b.request("DELETE", "/schedule?id=poll")
    assert deleted.status == 204, deleted
    after = len(fired_tasks(a, "poll"))
    b.kill()  # A alone from now: its own copy must not fire what B deleted
    at_least(a, "witness", len(fired_tasks(a, "witness")) + 3)
    assert len(fired_tasks(a, "poll")) == after
    for method, path in (
        ("GET", "/schedule?id=poll"),
        ("DELETE", "/schedule?id=poll"),
        ("POST", "/schedule/pause?id=poll"),
        ("POST", "/schedule/resume?id=poll"),
    ):
        reply = a.request(method, path)
        assert (reply.status, reply.json()) == (404, {"error": "schedule not found"}), path
    assert [item["id"] for item in a.request("GET", "/schedules").json()] == ["witness"]


def test_a_schedule_created_on_an_instance_killed_at_once_is_fired_by_another(
    cluster: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.jsonl"
    a, b = cluster.start("alpha"), cluster.start("beta")

    created = create(a, {"id": "orphan", "every_ms": 2000, "task": quick(runs)})
    a.send(signal.SIGKILL)
    a.wait_exit()

    first_at = seconds(created["created_at"]) + 2.0
    tasks = at_least(b, "orphan", 3)[:3]
    assert_on_time(tasks, "orphan", first_at, 2.0)
    wait_until(lambda: all(b.task(task["id"])["status"] == "done" for task in tasks))
    ran_on = {runs_by_id(runs)[task["id"]][0]["pid"] for task in tasks}
    assert ran_on == {b.process.pid}


def test_after_the_whole_cluster_was_down_a_missed_firing_is_caught_up_once(
    cluster: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.jsonl"
    a, b = cluster.start("alpha"), cluster.start("beta")
    created = create(a, {"id": "every5", "every_ms": 5000, "task": quick(runs)})
    missed_at = seconds(created["next_run_at"])
    a.kill()
    b.kill()
    # Down for two of its periods and more.
    wait_until(lambda: time.time() > missed_at + 6.0, timeout_s=15.0, interval_s=0.05)

    restarted_at = time.time()
    c, d = cluster.start("gamma"), cluster.start("delta")

    caught_up = at_least(d, "every5", 1)[0]
    assert caught_up["id"] == f"every5@{stamp(missed_at)}"
    tasks = fired_tasks(c, "every5")
    state = shown(c, "every5")
    # Then on from now: the firings after it are of times after the restart (the start of
    # an instance may take longer than a period here), none of those missed.
    fire_times = [fire_time(task) for task in tasks]
    assert [at < restarted_at for at in fire_times] == [True] + [False] * (len(tasks) - 1)
    following = [*fire_times[1:], seconds(state["next_run_at"])]
    assert following[0] == pytest.approx(
        missed_at + 5 * math.ceil((seconds(caught_up["created_at"]) - missed_at) / 5), abs=1e-3
    )
    assert state["fired"] >= len(tasks)
    logs = c.log() + d.log()
    assert logs.count("s late (no instance could fire it in time)") == 1


def test_bad_schedules_are_400_and_a_taken_id_is_409_on_every_instance(
    cluster: Cluster,  # noqa: F811
) -> None:
    a, b = cluster.start("alpha"), cluster.start("beta")
    for body, message in BAD:
        reply = a.request("POST", "/schedules", json_body(body))
        assert reply.status == 400, (body, reply)
        assert message in reply.json()["error"], (body, reply.json())
    create(a, {"id": "taken", "cron": "0 3 * * *", "task": {}})
    reply = b.request(
        "POST", "/schedules", json_body({"id": "taken", "every_ms": 1000, "task": {}})
    )
    assert (reply.status, reply.json()) == (409, {"error": "schedule already exists"})
    assert [item["id"] for item in b.request("GET", "/schedules").json()] == ["taken"]


def test_a_database_of_schema_version_1_is_migrated_and_its_schedules_work(
    cluster: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.jsonl"
    with psycopg.connect(cluster.database_url, autocommit=True) as connection:
        connection.execute(V1_SCHEMA.read_text())  # type: ignore[arg-type]
        connection.execute(
            "INSERT INTO task_queue_tasks (id, payload, max_retries, status, attempts, "
            "created_at, updated_at, enqueued_by) VALUES (%s, %s, 0, 'queued', 0, %s, %s, 'v1')",
            ("from-v1", f'{{"log": "{runs}"}}'.encode(), time.time(), time.time()),
        )
    a, b = cluster.start("alpha"), cluster.start("beta")

    assert a.wait_for_task("from-v1", lambda task: task["status"] == "done")["attempts"] == 1
    created = create(b, {"id": "poll", "every_ms": 1000, "task": quick(runs)})
    tasks = at_least(a, "poll", 2)[:2]
    assert_on_time(tasks, "poll", seconds(created["created_at"]) + 1.0, 1.0)
    with psycopg.connect(cluster.database_url) as connection:
        version = connection.execute("SELECT version FROM task_queue_schema").fetchall()
    assert version == [(2,)]


def test_firings_wait_out_a_database_outage_then_the_missed_time_fires_once_and_on_from_now(
    cluster: Cluster,  # noqa: F811
    pg_server: PgServer,
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.jsonl"
    a, b = cluster.start("alpha"), cluster.start("beta")
    create(a, {"id": "poll", "every_ms": 1000, "task": quick(runs)})
    at_least(b, "poll", 2)

    pg_server.stop()
    stopped_at = time.time()
    reply = b.request("GET", "/schedules")
    assert (reply.status, reply.json()) == (503, {"error": "store unavailable"})
    # Down for three periods and more: every instance's timer tries, and waits.
    wait_until(lambda: time.time() > stopped_at + 3.5, timeout_s=10.0, interval_s=0.05)
    pg_server.start()
    started_at = time.time()

    def fired_since_the_restart() -> bool:
        tasks = fired_tasks(a, "poll")
        return bool(tasks) and fire_time(tasks[-1]) > started_at + 2

    wait_until(fired_since_the_restart, timeout_s=20.0)
    times = [fire_time(task) for task in fired_tasks(a, "poll")]
    during = [at for at in times if stopped_at < at < started_at - 1]
    assert len(during) <= 1, times  # the missed times: one catch-up at most
    after = [at for at in times if at > started_at]
    assert after == [after[0] + n for n in range(len(after))], times  # then every second
    for service in (a, b):
        assert service.log().count("firings wait until it is back") <= 1
    assert "the database is available again; firings go on" in a.log() + b.log()
