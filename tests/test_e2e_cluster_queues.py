"""End to end with DATABASE_URL and QUEUES: two ``python main.py`` instances on one PostgreSQL
run named queues as one: each queue's own workers and line (bounded across the cluster), pause
and resume from any instance for all of them and across restarts, and a rate shared by all.

The instances and their database are those of tests/test_e2e_cluster.py; their handler
records each attempt as it starts (``record_then_sleep``: the process that ran it and when).
"""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING, Any, cast

import psycopg

from actors import pg_schema
from tests.handlers import read_runs
from tests.support import wait_until
from tests.test_e2e import json_body, run_main
from tests.test_e2e_cluster import Cluster, cluster, is_done, is_running, runs_by_id

if TYPE_CHECKING:
    from pathlib import Path

    from tests.test_e2e import Service

__all__ = ["cluster"]  # the fixture, used by name

NOTICE_S = 1.5
"""How soon another instance acts on a pause or resume: about a second (issue 15 in a cluster)."""


def queues(service: Service) -> dict[str, dict[str, Any]]:
    reply = service.request("GET", "/queues")
    assert reply.status == 200, reply
    return {queue["name"]: queue for queue in reply.json()}


def pause(service: Service, name: str, action: str = "pause") -> dict[str, Any]:
    reply = service.request("POST", f"/queues/{action}?name={name}")
    assert reply.status == 200, reply
    body: dict[str, Any] = reply.json()
    return body


def restart(cluster: Cluster, service: Service, name: str, **settings: str | int) -> Service:
    service.send(signal.SIGTERM)
    assert service.wait_exit() == 0
    return cluster.start(name, **settings)


def test_a_slow_flood_in_one_queue_does_not_delay_another_on_either_instance(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs, held = tmp_path / "runs.jsonl", tmp_path / "reports-may-finish"
    settings = {"QUEUES": "reports:2,emails:1"}
    a, b = cluster.start("a", **settings), cluster.start("b", **settings)
    for n in range(20):
        report = {"id": f"report-{n:02d}", "payload": {"log": str(runs), "release": str(held)}}
        (a if n % 2 else b).accept({**report, "queue": "reports"})
    wait_until(lambda: queues(a)["reports"]["waiting"] == 16)  # four running, two on each

    email = a.accept({"id": "email", "payload": {"log": str(runs)}, "queue": "emails"})
    done = b.wait_for_task("email", is_done, timeout_s=5.0)

    assert (email["queue"], done["queue"]) == ("emails", "emails")
    # Every report still waits behind the held ones: the email had a worker of its own.
    for service in (a, b):
        reports = queues(service)["reports"]
        assert (reports["busy"], reports["waiting"]) == (2, 16), "busy here, waiting everywhere"
    listed = b.request("GET", "/tasks?queue=emails&limit=100")
    assert [task["id"] for task in listed.json()] == ["email"]
    held.touch()
    final = wait_until(
        lambda: (
            (tasks := a.request("GET", "/tasks?queue=reports").json())
            and all(task["status"] == "done" for task in tasks)
            and tasks
        )
    )
    assert len(final) == 20
    assert {run[0]["pid"] for run in runs_by_id(runs).values()} == {
        a.process.pid,
        b.process.pid,
    }


def test_an_unknown_queue_is_400_and_a_queue_runs_only_where_it_is_declared(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.jsonl"
    a = cluster.start("a", QUEUES="default:1,emails:1")
    b = cluster.start("b", QUEUES="default:1")

    unknown = b.enqueue({"id": "e", "queue": "emails"})
    assert (unknown.status, unknown.json()) == (400, {"error": "unknown queue"})
    batch = b.request("POST", "/enqueue/batch", json_body([{"id": "x"}, {"id": "y", "queue": "z"}]))
    assert (batch.status, batch.json()) == (400, {"error": "unknown queue", "index": 1})
    listing = b.request("GET", "/tasks?queue=emails")
    assert (listing.status, listing.json()) == (400, {"error": "unknown queue"})
    missing = b.request("POST", "/queues/pause?name=emails")
    assert (missing.status, missing.json()) == (404, {"error": "queue not found"})
    assert b.request("GET", "/tasks").json() == []

    a.accept({"id": "e", "payload": {"log": str(runs)}, "queue": "emails"})
    assert b.wait_for_task("e", is_done)["queue"] == "emails"
    assert [run["pid"] for run in read_runs(runs)] == [a.process.pid]


def test_a_pause_on_one_instance_holds_work_on_the_other_and_a_resume_releases_it_there(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs, release = tmp_path / "runs.jsonl", tmp_path / "release"
    settings = {"QUEUES": "default:1,other:1"}
    a = cluster.start("a", **settings)
    # Alone in the cluster, so this one occupies a's only worker of default: whatever else
    # of default starts, starts on b.
    a.accept({"id": "blocker", "payload": {"log": str(runs), "release": str(release)}})
    a.wait_for_task("blocker", is_running)
    b = cluster.start("b", **settings)

    paused = pause(a, "default")
    assert (paused["name"], paused["paused"], paused["workers"], paused["busy"]) == (
        "default",
        True,
        1,
        1,
    )
    b.accept({"id": "held", "payload": {"log": str(runs)}})
    # A task of the other queue, enqueued after it, runs to its end on b: the held one had
    # its chance to start there, and did not.
    b.accept({"id": "free", "payload": {"log": str(runs)}, "queue": "other"})
    b.wait_for_task("free", is_done)
    assert b.task("held")["status"] == "queued"
    seen_by_b = queues(b)["default"]
    assert (seen_by_b["paused"], seen_by_b["waiting"], seen_by_b["busy"]) == (True, 1, 0)
    stats = b.request("GET", "/stats").json()
    assert [queue["name"] for queue in stats["queues"]] == ["default", "other"]
    assert stats["queues"][0]["paused"] is True
    metrics = b.request("GET", "/metrics").body.decode()
    assert 'taskqueue_queue_paused{queue="default"} 1.0' in metrics
    assert 'taskqueue_queue_waiting{queue="default"} 1.0' in metrics

    resumed_at = time.time()
    assert pause(a, "default", "resume")["paused"] is False

    b.wait_for_task("held", is_done, timeout_s=5.0)
    (held,) = runs_by_id(runs)["held"]
    assert held["pid"] == b.process.pid
    assert cast("float", held["at"]) - resumed_at < NOTICE_S
    release.touch()


def test_the_pause_survives_restarting_every_instance(cluster: Cluster, tmp_path: Path) -> None:
    runs = tmp_path / "runs.jsonl"
    settings = {"QUEUES": "default:1,other:1"}
    a, b = cluster.start("a", **settings), cluster.start("b", **settings)
    pause(b, "default")
    a.accept({"id": "held", "payload": {"log": str(runs)}})

    a = restart(cluster, a, "a", **settings)
    b = restart(cluster, b, "b", **settings)

    assert queues(a)["default"]["paused"] is True
    assert queues(b)["other"]["paused"] is False
    a.accept({"id": "free", "payload": {"log": str(runs)}, "queue": "other"})
    b.wait_for_task("free", is_done)
    assert b.task("held")["status"] == "queued"
    pause(a, "default", "resume")
    b.wait_for_task("held", is_done, timeout_s=5.0)
    assert [run["id"] for run in read_runs(runs)] == ["free", "held"]


def test_a_rate_limit_holds_for_the_cluster_spreading_20_starts_over_three_seconds(
    cluster: Cluster, tmp_path: Path
) -> None:
    log = tmp_path / "starts.jsonl"
    settings = {"QUEUES": "limited:4:5"}
    a, b = cluster.start("a", **settings), cluster.start("b", **settings)
    batches = [
        [{"id": f"{name}-{n}", "payload": {"log": str(log)}, "queue": "limited"} for n in range(10)]
        for name in ("a", "b")
    ]
    # Both at once: each instance alone would start its ten within two seconds.
    threads = [
        threading.Thread(
            target=lambda s, batch: s.request("POST", "/enqueue/batch", json_body(batch)),
            args=(service, batch),
        )
        for service, batch in zip((a, b), batches, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    wait_until(lambda: len(read_runs(log)) == 20, timeout_s=15.0)
    runs = read_runs(log)
    starts = sorted(cast("float", run["at"]) for run in runs)
    # Five at once (one second's burst), then one every 0.2 s, the two instances together:
    # the twentieth 3 s after the first. Allowed for: the few ms between the claim taking a
    # token and the handler reading the clock.
    jitter_s = 0.1
    assert starts[-1] - starts[0] >= 3.0 - jitter_s, starts
    for index in range(5, 20):
        assert starts[index] - starts[0] >= (index - 4) * 0.2 - jitter_s, (index, starts)
    assert {run["pid"] for run in runs} == {a.process.pid, b.process.pid}
    assert queues(b)["limited"]["max_per_second"] == 5


def test_queue_size_bounds_each_queue_across_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    runs, release = tmp_path / "runs.jsonl", tmp_path / "release"
    queue_size = 3
    settings: dict[str, str | int] = {"QUEUES": "reports:1,emails:1", "QUEUE_SIZE": queue_size}
    instances = [cluster.start(name, **settings) for name in ("a", "b")]
    hold = {"log": str(runs), "release": str(release)}
    for n, service in enumerate(instances):  # one running report on each: none waits yet
        service.accept({"id": f"busy-{n}", "payload": hold, "queue": "reports"})
    wait_until(lambda: queues(instances[0])["reports"]["waiting"] == 0)
    wait_until(lambda: all(queues(s)["reports"]["busy"] == 1 for s in instances))

    replies = [
        instances[n % 2].enqueue({"id": f"report-{n}", "payload": hold, "queue": "reports"})
        for n in range(8)
    ]

    accepted = [reply for reply in replies if reply.status == 201]
    assert len(accepted) == queue_size
    for reply in replies[queue_size:]:
        assert (reply.status, reply.json()) == (503, {"error": "queue is full"})
        assert "retry-after" in reply.headers
    for service in instances:
        assert service.request("GET", "/readyz").status == 200, "emails still takes work"
        service.accept({"id": f"email-{service.port}", "payload": hold, "queue": "emails"})
    assert queues(instances[1])["reports"]["waiting"] == queue_size
    for n in range(3):
        instances[0].enqueue({"id": f"email-{n}", "payload": hold, "queue": "emails"})
    for service in instances:
        ready = service.request("GET", "/readyz")
        assert (ready.status, ready.json()) == (503, {"status": "full"}), "every queue is full"
    release.touch()


def test_an_instance_with_queues_works_on_a_database_of_schema_version_1(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.jsonl"
    with psycopg.connect(cluster.database_url, autocommit=True) as connection:
        for statement in pg_schema._VERSION_1:
            connection.execute(statement)  # type: ignore[arg-type]
        connection.execute("INSERT INTO task_queue_schema (version) VALUES (1)")
        connection.execute(
            "INSERT INTO task_queue_tasks (id, payload, max_retries, status, attempts, "
            "created_at, updated_at, enqueued_by) VALUES ('old', %s, 3, 'queued', 0, 1, 1, 'v1')",
            (json_body({"log": str(runs)}),),
        )
        connection.execute("UPDATE task_queue_intake SET bound = 1")

    a = cluster.start("a", QUEUES="default:1,emails:1:50")
    a.accept({"id": "new", "payload": {"log": str(runs)}, "queue": "emails"})

    assert a.wait_for_task("old", is_done)["queue"] == "default"
    assert a.wait_for_task("new", is_done)["queue"] == "emails"
    assert pause(a, "emails")["paused"] is True
    with psycopg.connect(cluster.database_url) as connection:
        version = connection.execute("SELECT version FROM task_queue_schema").fetchall()
    assert version == [(pg_schema.SCHEMA_VERSION,)]


def test_bad_queues_with_database_url_exit_2_saying_what_is_wrong() -> None:
    result = run_main(
        DATABASE_URL="postgresql://u:s3cret@127.0.0.1:1/tasks", QUEUES="default:1,default:2"
    )

    assert result.returncode == 2, result
    assert "declared twice" in result.stderr
    assert "s3cret" not in result.stderr
