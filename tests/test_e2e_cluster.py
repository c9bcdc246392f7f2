"""End to end with DATABASE_URL: several ``python main.py`` on one PostgreSQL are one queue.

Each test gets a fresh database on the session's private server (tests/pg_server.py) and starts
instances of the service on it exactly as tests/test_e2e.py starts one: a child process on a
free port, real HTTP, real signals. The instances run their handler on their own threads
(``WORKER_MODE=thread``), so the process id that ``record_then_sleep`` writes with each run is
the instance that ran it, and its time (``at``, this machine's clock, as are the services')
says when the attempt started.
"""

from __future__ import annotations

import datetime
import json
import signal
import socket
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any, Final, cast

import pytest

from tests.handlers import read_runs
from tests.support import wait_until
from tests.test_e2e import Service, exchange, launch

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

HANDLER: Final = "record_then_sleep"
LEASE_MS: Final = 1000
"""Short, so that a killed instance's attempts are rescued within a test's patience."""
WAKE_UP_S: Final = 0.050
"""A task enqueued on one instance starts this soon on an idle other (issue 14)."""
SETTLE_S: Final = 20.0
"""How long a whole cluster may take to finish a test's tasks."""


class Cluster:
    """The instances of one test, all on one database; every one is killed at the end."""

    def __init__(self, log_dir: Path, database_url: str) -> None:
        self.log_dir = log_dir
        self.database_url = database_url
        self.instances: list[Service] = []

    def start(self, name: str, **settings: str | int) -> Service:
        """Start the instance ``name`` (its INSTANCE_ID) on the test's database; two workers
        unless ``settings`` declare QUEUES (which gives each queue its workers)."""
        options: dict[str, str | int] = {
            "DATABASE_URL": self.database_url,
            "INSTANCE_ID": name,
            "LEASE_MS": LEASE_MS,
            "WORKER_MODE": "thread",
            "RETRY_BASE_MS": 1,
            "RETRY_MAX_MS": 10,
            **({} if "QUEUES" in settings else {"WORKERS": 2}),
            **settings,
        }
        service = launch(self.log_dir, HANDLER, **options)
        self.instances.append(service)
        return service

    def kill_all(self) -> None:
        for service in self.instances:
            service.kill()


@pytest.fixture
def cluster(tmp_path: Path, pg_database: str) -> Iterator[Cluster]:
    started = Cluster(tmp_path, pg_database)
    yield started
    started.kill_all()


def list_tasks(service: Service) -> list[dict[str, Any]]:
    reply = service.request("GET", "/tasks")
    assert reply.status == 200, reply
    tasks: list[dict[str, Any]] = reply.json()
    return tasks


def all_final(service: Service, count: int, timeout_s: float = SETTLE_S) -> list[dict[str, Any]]:
    """Wait until ``service`` lists ``count`` tasks, all done or failed; return them."""

    def finished() -> list[dict[str, Any]] | None:
        tasks = list_tasks(service)
        final = len(tasks) == count and all(task["status"] in ("done", "failed") for task in tasks)
        return tasks if final else None

    tasks = wait_until(finished, timeout_s=timeout_s, interval_s=0.02)
    assert tasks is not None
    return tasks


def timestamp(rfc3339: str) -> float:
    return datetime.datetime.fromisoformat(rfc3339).timestamp()


def runs_by_id(runs: Path) -> dict[str, list[dict[str, Any]]]:
    """Every recorded run, by task id, oldest first."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for run in read_runs(runs):
        by_id.setdefault(cast("str", run["id"]), []).append(cast("dict[str, Any]", run))
    return by_id


def is_running(task: dict[str, Any]) -> bool:
    return task["status"] == "running"


def is_done(task: dict[str, Any]) -> bool:
    return task["status"] == "done"


# --- one queue ---------------------------------------------------------------------------------


def test_a_task_enqueued_on_one_instance_is_seen_controlled_and_deleted_from_another(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.jsonl"
    a, b = cluster.start("alpha"), cluster.start("beta")

    created = a.accept({"id": "shared", "payload": {"log": str(runs)}, "delay_ms": 600_000})

    assert b.task("shared") == created
    assert [task["id"] for task in list_tasks(b)] == ["shared"]
    duplicate = b.enqueue({"id": "shared"})
    assert duplicate.status == 409, duplicate
    assert duplicate.json() == {"error": "task already exists"}
    stats = b.request("GET", "/stats")
    assert stats.status == 200
    assert stats.json()["tasks"]["queued"] == 1
    assert b"beta" in stats.body, "/stats names the instance"

    cancelled = b.request("POST", "/task/cancel?id=shared")
    assert cancelled.status == 200, cancelled
    assert a.task("shared")["status"] == "cancelled"
    again = a.request("POST", "/task/cancel?id=shared")
    assert again.status == 409, again

    retried = a.request("POST", "/task/retry?id=shared")
    assert retried.status == 200, retried
    done = b.wait_for_task("shared", is_done)
    assert done["attempts"] == 1
    assert [run["id"] for run in read_runs(runs)] == ["shared"]

    deleted = b.request("DELETE", "/task?id=shared")
    assert deleted.status == 204, deleted
    assert a.request("GET", "/task?id=shared").status == 404
    assert a.enqueue({"id": "shared", "payload": {"log": str(runs)}}).status == 201


def test_work_spreads_over_the_instances_and_each_task_runs_exactly_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.jsonl"
    instances = [cluster.start(name) for name in ("alpha", "beta", "gamma")]
    ids = [f"task-{n:03d}" for n in range(90)]

    # All on one instance: the others must learn of the work and claim their share of it.
    for task_id in ids:
        instances[0].accept({"id": task_id, "payload": {"log": str(runs), "sleep_s": 0.02}})
    final = all_final(instances[2], len(ids))

    assert [task["id"] for task in final] == ids
    assert {(task["status"], task["attempts"]) for task in final} == {("done", 1)}
    by_id = runs_by_id(runs)
    assert sorted(by_id) == ids
    assert all(len(attempts) == 1 for attempts in by_id.values()), "a task ran twice"
    ran_on = {run[0]["pid"] for run in by_id.values()}
    assert ran_on == {service.process.pid for service in instances}


def test_one_id_sent_to_two_instances_at_once_is_accepted_exactly_once(cluster: Cluster) -> None:
    instances = [cluster.start(name, QUEUE_SIZE=1000) for name in ("alpha", "beta")]
    ids = [f"race-{n:03d}" for n in range(150)]
    statuses: dict[str, list[int]] = {task_id: [] for task_id in ids}
    lock = threading.Lock()
    start = threading.Barrier(len(instances))

    def send_all(service: Service) -> None:
        connection = service.connect()
        start.wait()
        try:
            for task_id in ids:
                body = json.dumps({"id": task_id, "delay_ms": 600_000}).encode()
                reply = exchange(connection, "POST", "/enqueue", body)
                with lock:
                    statuses[task_id].append(reply.status)
        finally:
            connection.close()

    threads = [threading.Thread(target=send_all, args=(service,)) for service in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {task_id: sorted(got) for task_id, got in statuses.items()} == {
        task_id: [201, 409] for task_id in ids
    }
    assert [task["id"] for task in list_tasks(instances[1])] == ids


def test_instances_started_together_on_an_empty_database_create_one_schema_and_all_serve(
    cluster: Cluster,
) -> None:
    names = [f"starter-{n}" for n in range(4)]
    failures: list[BaseException] = []

    def start(name: str) -> None:
        try:
            cluster.start(name)
        except BaseException as exc:  # an instance that did not come up: its log is in exc
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not failures, failures
    for n, service in enumerate(cluster.instances):
        service.accept({"id": f"from-{n}", "delay_ms": 600_000})
    assert len(list_tasks(cluster.instances[0])) == len(names)


def test_an_instance_without_instance_id_is_named_by_host_and_pid(cluster: Cluster) -> None:
    named = cluster.start("named")
    unnamed = cluster.start("", WORKERS=1)  # empty counts as unset

    stats = unnamed.request("GET", "/stats").body.decode()

    assert f"{socket.gethostname()}-{unnamed.process.pid}-" in stats, stats
    assert "named" in named.request("GET", "/stats").body.decode()


def test_scheduled_max_bounds_the_delayed_tasks_of_the_whole_cluster(cluster: Cluster) -> None:
    scheduled_max = 5
    instances = [cluster.start(name, SCHEDULED_MAX=scheduled_max) for name in ("a", "b")]
    accepted = 0
    for n in range(2 * scheduled_max):
        reply = instances[n % 2].enqueue({"id": f"later-{n}", "delay_ms": 600_000})
        if reply.status == 201:
            accepted += 1
            continue
        assert (reply.status, reply.json()) == (503, {"error": "too many scheduled tasks"})
        assert "retry-after" in reply.headers

    assert scheduled_max <= accepted <= scheduled_max + len(instances), accepted
    for service in instances:
        late = service.enqueue({"id": f"late-{service.port}", "delay_ms": 600_000})
        assert late.status == 503, late
        assert service.enqueue({"id": f"now-{service.port}"}).status == 201


# --- an instance dies --------------------------------------------------------------------------


def test_a_killed_instances_attempts_are_rescued_as_interrupted_within_two_leases(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs, release = tmp_path / "runs.jsonl", tmp_path / "release"
    doomed = cluster.start("doomed", WORKERS=2)
    held = ["held-1", "held-2"]
    for task_id in held:  # alone in the cluster, so these run on the doomed instance
        doomed.accept({"id": task_id, "payload": {"log": str(runs), "release": str(release)}})
    for task_id in held:
        doomed.wait_for_task(task_id, is_running)
    survivor = cluster.start("survivor", WORKERS=2)
    assert {survivor.task(task_id)["status"] for task_id in held} == {"running"}
    # Accepted by the instance about to die, while its workers are busy: the survivor runs them.
    rest = [f"task-{n:02d}" for n in range(20)]
    for task_id in rest:
        doomed.accept({"id": task_id, "payload": {"log": str(runs), "sleep_s": 0.01}})

    doomed.send(signal.SIGKILL)
    killed_at = time.time()
    assert doomed.wait_exit() == -signal.SIGKILL
    release.touch()
    final = all_final(survivor, len(held) + len(rest))

    assert {task["status"] for task in final} == {"done"}
    by_task = {task["id"]: task for task in final}
    by_id = runs_by_id(runs)
    for task_id in held:
        assert (by_task[task_id]["attempts"], by_task[task_id]["last_error"]) == (2, "interrupted")
        first, second = by_id[task_id]
        assert first["pid"] == doomed.process.pid
        assert second["pid"] == survivor.process.pid
        rescued_after_s = second["at"] - killed_at
        assert rescued_after_s <= 2 * LEASE_MS / 1000, (task_id, rescued_after_s)
    for task_id in rest:
        assert [run["pid"] for run in by_id[task_id]] == [survivor.process.pid], task_id
        assert (by_task[task_id]["attempts"], by_task[task_id]["last_error"]) == (1, None)


def test_a_finished_task_never_runs_again_after_a_kill_and_a_restart(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs, release = tmp_path / "runs.jsonl", tmp_path / "release"
    # Worker processes, as deployed: the kill takes the service down, its children with it.
    settings: dict[str, str | int] = {"WORKER_MODE": "process", "WORKERS": 4}
    first = cluster.start("first", **settings)
    ids = [f"task-{n:02d}" for n in range(40)]
    for task_id in ids:
        payload: dict[str, Any] = {"log": str(runs), "sleep_s": 0.05}
        if task_id == "task-01":  # certain to be mid-attempt when the process dies
            payload["release"] = str(release)
        first.accept({"id": task_id, "payload": payload})
    first.wait_for_task("task-01", is_running)

    def some_done() -> list[dict[str, Any]] | None:
        tasks = list_tasks(first)
        return tasks if sum(task["status"] == "done" for task in tasks) >= 8 else None

    seen = wait_until(some_done)
    assert seen is not None
    first.send(signal.SIGKILL)
    assert first.wait_exit() == -signal.SIGKILL
    killed_at = time.time()
    done_before_kill = {task["id"] for task in seen if task["status"] == "done"}
    release.touch()

    second = cluster.start("second", **settings)
    final = all_final(second, len(ids))

    assert [task["id"] for task in final] == ids
    assert {task["status"] for task in final} == {"done"}
    by_task = {task["id"]: task for task in final}
    assert (by_task["task-01"]["attempts"], by_task["task-01"]["last_error"]) == (2, "interrupted")
    after_restart = [run for run in read_runs(runs) if cast("float", run["at"]) > killed_at]
    rerun = {run["id"] for run in after_restart}
    assert not rerun & done_before_kill
    assert len(after_restart) == len(rerun), "a task ran twice after the restart"
    assert "task-01" in rerun
    assert {run["id"] for run in read_runs(runs)} == set(ids)
    assert second.enqueue({"id": "task-00"}).status == 409


# --- backpressure across the cluster -----------------------------------------------------------


def test_queue_size_bounds_the_waiting_tasks_of_the_whole_cluster(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs, release = tmp_path / "runs.jsonl", tmp_path / "release"
    queue_size = 6
    instances = [cluster.start(name, WORKERS=1, QUEUE_SIZE=queue_size) for name in ("a", "b")]
    hold = {"log": str(runs), "release": str(release)}
    for n, service in enumerate(instances):  # one running attempt per worker: none waits yet
        service.accept({"id": f"busy-{n}", "payload": hold})
    wait_until(lambda: sum(is_running(task) for task in list_tasks(instances[0])) == 2)

    # Both instances at once, as a load balancer would spread the clients.
    replies: list[tuple[str, int, Any, dict[str, str]]] = []
    lock = threading.Lock()

    def flood(service: Service, name: str) -> None:
        for n in range(15):
            task_id = f"{name}-{n}"
            reply = service.enqueue({"id": task_id, "payload": hold})
            with lock:
                replies.append((task_id, reply.status, reply.json(), reply.headers))

    threads = [
        threading.Thread(target=flood, args=(service, name))
        for service, name in zip(instances, ("a", "b"), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    accepted = [task_id for task_id, status, _, _ in replies if status == 201]
    refused = [(status, body, headers) for _, status, body, headers in replies if status != 201]
    assert queue_size <= len(accepted) <= queue_size + len(instances), len(accepted)
    assert refused
    for status, body, headers in refused:
        assert (status, body) == (503, {"error": "queue is full"})
        assert "retry-after" in headers
    for service in instances:
        late = service.enqueue({"id": f"late-{service.port}"})
        assert (late.status, late.json()) == (503, {"error": "queue is full"})
        assert service.request("GET", "/readyz").json() == {"status": "full"}
        assert service.request("GET", "/stats").json()["tasks"]["queued"] == len(accepted)

    release.touch()
    final = all_final(instances[1], len(accepted) + 2)
    assert {task["status"] for task in final} == {"done"}
    assert sorted(runs_by_id(runs)) == sorted([*accepted, "busy-0", "busy-1"])


# --- one instance stops ------------------------------------------------------------------------


def test_an_instance_stopped_with_sigterm_finishes_its_attempt_and_leaves_its_line_to_the_others(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs, release_a, release_b = (tmp_path / name for name in ("runs.jsonl", "a", "b"))
    staying = cluster.start("staying", WORKERS=1)
    staying.accept({"id": "hold-b", "payload": {"log": str(runs), "release": str(release_b)}})
    staying.wait_for_task("hold-b", is_running)
    leaving = cluster.start("leaving", WORKERS=1)
    leaving.accept({"id": "hold-a", "payload": {"log": str(runs), "release": str(release_a)}})
    leaving.wait_for_task("hold-a", is_running)
    line = [f"line-{n}" for n in range(5)]
    for task_id in line:  # no worker is free anywhere: these wait
        leaving.accept({"id": task_id, "payload": {"log": str(runs)}})

    leaving.send(signal.SIGTERM)
    wait_until(lambda: leaving.intake_closed("hold-a"), timeout_s=2.0)
    release_a.touch()
    assert leaving.wait_exit() == 0
    assert staying.task("hold-a")["status"] == "done"
    assert {staying.task(task_id)["status"] for task_id in line} == {"queued"}
    release_b.touch()
    final = all_final(staying, 2 + len(line))

    assert {(task["status"], task["attempts"]) for task in final} == {("done", 1)}
    ran_on = {task_id: [run["pid"] for run in runs] for task_id, runs in runs_by_id(runs).items()}
    assert ran_on == {
        "hold-a": [leaving.process.pid],
        "hold-b": [staying.process.pid],
        **{task_id: [staying.process.pid] for task_id in line},
    }


def test_an_attempt_cut_off_by_the_shutdown_deadline_is_released_at_once_not_at_lease_end(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs, release = tmp_path / "runs.jsonl", tmp_path / "release"
    # A lease far longer than the test: only a release at shutdown lets the other run it soon.
    long_lease: dict[str, str | int] = {"LEASE_MS": 120_000, "WORKERS": 1}
    leaving = cluster.start("leaving", SHUTDOWN_TIMEOUT_S=1, **long_lease)
    leaving.accept({"id": "cut", "payload": {"log": str(runs), "release": str(release)}})
    leaving.wait_for_task("cut", is_running)
    staying = cluster.start("staying", **long_lease)

    leaving.send(signal.SIGTERM)
    assert leaving.wait_exit() == 0
    wait_until(lambda: len(runs_by_id(runs).get("cut", [])) == 2, timeout_s=10.0)
    release.touch()
    done = staying.wait_for_task("cut", is_done)

    assert (done["attempts"], done["last_error"]) == (2, "interrupted")
    assert [run["pid"] for run in runs_by_id(runs)["cut"]] == [
        leaving.process.pid,
        staying.process.pid,
    ]


# --- wake-ups ----------------------------------------------------------------------------------


def test_a_task_enqueued_on_a_busy_instance_starts_within_50_ms_on_an_idle_other(
    cluster: Cluster, tmp_path: Path
) -> None:
    runs, release = tmp_path / "runs.jsonl", tmp_path / "release"
    busy = cluster.start("busy", WORKERS=1)
    busy.accept({"id": "hold", "payload": {"log": str(runs), "release": str(release)}})
    busy.wait_for_task("hold", is_running)
    idle = cluster.start("idle", WORKERS=1)

    latencies = []
    for n in range(9):
        task_id = f"wake-{n}"
        created = busy.accept({"id": task_id, "payload": {"log": str(runs)}})
        idle.wait_for_task(task_id, is_done)
        [run] = runs_by_id(runs)[task_id]
        assert run["pid"] == idle.process.pid
        latencies.append(run["at"] - timestamp(created["created_at"]))
    release.touch()

    # The median: one scheduling hiccup of a 2-core machine must not decide the test.
    assert statistics.median(latencies) <= WAKE_UP_S, sorted(latencies)
