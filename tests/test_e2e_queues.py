"""End to end: ``python main.py`` with QUEUES: separate lines and workers, pause, rate limits."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any, cast

import pytest

from tests.handlers import read_runs
from tests.support import wait_until
from tests.test_e2e import Service, json_body, run_main, start_service

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["start_service"]  # the fixture, used by name

THREADS = {"WORKER_MODE": "thread"}
"""Attempts on the workers' threads: the behaviour under test is the dispatcher's, and threads
start in a fraction of the time worker processes take on a loaded machine."""


def queues(service: Service) -> dict[str, dict[str, Any]]:
    reply = service.request("GET", "/queues")
    assert reply.status == 200, reply
    return {queue["name"]: queue for queue in reply.json()}


def pause(service: Service, name: str, action: str = "pause") -> dict[str, Any]:
    reply = service.request("POST", f"/queues/{action}?name={name}")
    assert reply.status == 200, reply
    body: dict[str, Any] = reply.json()
    return body


def status(service: Service, task_id: str) -> str:
    return str(service.task(task_id)["status"])


def test_a_slow_flood_in_one_queue_does_not_delay_another(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service("wait_for_file", QUEUES="reports:2,emails:1", **THREADS)
    held = tmp_path / "reports-may-finish"
    released = tmp_path / "emails-need-not-wait"
    released.touch()
    for n in range(20):
        report = {"id": f"report-{n}", "payload": {"release": str(held)}, "queue": "reports"}
        service.accept(report)

    email = service.accept(
        {"id": "email", "payload": {"release": str(released)}, "queue": "emails"}
    )
    done = service.wait_for_task("email", lambda task: task["status"] == "done", timeout_s=5.0)

    assert (email["queue"], done["queue"]) == ("emails", "emails")
    # Every report still waits behind the two held ones: the email got a worker of its own.
    reports = queues(service)["reports"]
    assert (reports["busy"], reports["waiting"]) == (2, 18)
    held.touch()
    service.wait_for_task("report-19", lambda task: task["status"] == "done")
    listed = service.request("GET", "/tasks?queue=emails&limit=100")
    assert [task["id"] for task in listed.json()] == ["email"]


def test_a_full_queue_answers_503_and_the_others_still_take_work(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service("wait_for_file", QUEUES="reports:1,emails:1", QUEUE_SIZE=2, **THREADS)
    held = {"release": str(tmp_path / "never")}
    for n in range(3):
        service.accept({"id": f"report-{n}", "payload": held, "queue": "reports"})
    wait_until(lambda: queues(service)["reports"]["busy"] == 1)

    full = service.enqueue({"id": "report-3", "payload": held, "queue": "reports"})
    assert (full.status, full.json()) == (503, {"error": "queue is full"})
    for n in range(2):
        service.accept({"id": f"email-{n}", "payload": held, "queue": "emails"})
    assert service.request("GET", "/readyz").status == 200  # emails still takes work
    service.accept({"id": "email-2", "payload": held, "queue": "emails"})
    ready = service.request("GET", "/readyz")
    assert (ready.status, ready.json()) == (503, {"status": "full"})  # every queue is full
    (tmp_path / "never").touch()


def test_an_unknown_queue_is_400_on_enqueue_in_a_batch_and_in_a_filter(
    start_service: Callable[..., Service],
) -> None:
    service = start_service("record_run", QUEUES="default:1,emails:1", **THREADS)

    single = service.enqueue({"id": "t", "queue": "nope"})
    assert (single.status, single.json()) == (400, {"error": "unknown queue"})
    bad_name = service.enqueue({"id": "t", "queue": "Not A Name"})
    assert (bad_name.status, bad_name.json()) == (400, {"error": "unknown queue"})
    batch = service.request(
        "POST", "/enqueue/batch", json_body([{"id": "a"}, {"id": "b", "queue": "nope"}])
    )
    assert (batch.status, batch.json()) == (400, {"error": "unknown queue", "index": 1})
    listing = service.request("GET", "/tasks?queue=nope")
    assert (listing.status, listing.json()) == (400, {"error": "unknown queue"})
    assert service.request("GET", "/tasks").json() == []  # nothing was stored

    created = service.accept({"id": "t"})
    assert created["queue"] == "default"
    unknown = service.request("POST", "/queues/pause?name=nope")
    assert (unknown.status, unknown.json()) == (404, {"error": "queue not found"})


def test_pause_holds_work_resume_releases_it_and_the_pause_survives_a_restart(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    settings = {"QUEUES": "default:1,other:1", "DB_PATH": str(tmp_path / "tasks.db"), **THREADS}
    runs = tmp_path / "runs.jsonl"
    first = start_service("record_run", **settings)
    paused = pause(first, "default")
    assert paused == {
        "name": "default",
        "workers": 1,
        "busy": 0,
        "waiting": 0,
        "scheduled": 0,
        "paused": True,
        "max_per_second": None,
    }
    first.accept({"id": "held", "payload": {"log": str(runs)}})
    # A task of the other queue, enqueued after it, runs to its end: the held one had its
    # chance to start, and did not.
    first.accept({"id": "free", "payload": {"log": str(runs)}, "queue": "other"})
    first.wait_for_task("free", lambda task: task["status"] == "done")
    assert status(first, "held") == "queued"
    assert (queues(first)["default"]["waiting"], queues(first)["default"]["paused"]) == (1, True)
    assert first.request("GET", "/stats").json()["queues"] == list(queues(first).values())
    metrics = first.request("GET", "/metrics").body.decode()
    assert 'taskqueue_queue_paused{queue="default"} 1.0' in metrics
    assert 'taskqueue_queue_waiting{queue="default"} 1.0' in metrics
    assert 'taskqueue_queue_paused{queue="other"} 0.0' in metrics

    first.send(signal.SIGTERM)
    assert first.wait_exit() == 0
    second = start_service("record_run", **settings)
    assert queues(second)["default"]["paused"] is True
    assert queues(second)["other"]["paused"] is False
    second.accept({"id": "free-2", "payload": {"log": str(runs)}, "queue": "other"})
    second.wait_for_task("free-2", lambda task: task["status"] == "done")
    assert status(second, "held") == "queued"

    resumed = pause(second, "default", "resume")
    assert (resumed["paused"], resumed["name"]) == (False, "default")
    second.wait_for_task("held", lambda task: task["status"] == "done")
    assert [run["id"] for run in read_runs(runs)] == ["free", "free-2", "held"]

    second.send(signal.SIGTERM)
    assert second.wait_exit() == 0
    third = start_service("record_run", **settings)
    assert queues(third)["default"]["paused"] is False  # the resume was kept too


def test_a_rate_limit_spreads_the_start_times_of_20_tasks_over_three_seconds(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service("record_start", QUEUES="limited:4:5", **THREADS)
    log = tmp_path / "starts.jsonl"
    batch = [{"id": f"t-{n}", "payload": {"log": str(log)}, "queue": "limited"} for n in range(20)]
    assert service.request("POST", "/enqueue/batch", json_body(batch)).status == 201

    wait_until(lambda: len(read_runs(log)) == 20, timeout_s=15.0)
    starts = sorted(cast("float", run["at"]) for run in read_runs(log))
    # Five at once (one second's burst), then one every 0.2 s: the twentieth 3 s after the
    # first. The handler reads the clock as it starts, a few ms after the dispatcher took the
    # token: that jitter, and only that, is allowed for.
    jitter_s = 0.05
    assert starts[-1] - starts[0] >= 3.0 - jitter_s
    for index in range(5, 20):
        assert starts[index] - starts[0] >= (index - 4) * 0.2 - jitter_s, index
    assert queues(service)["limited"]["max_per_second"] == 5


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"QUEUES": "default:0"}, "workers '0'"),
        ({"QUEUES": "a:1,a:2"}, "declared twice"),
        ({"QUEUES": "Emails:1"}, "queue name 'Emails'"),
        ({"QUEUES": "a:1:0"}, "max_per_second '0'"),
        ({"QUEUES": "a:1:fast"}, "max_per_second 'fast'"),
        ({"QUEUES": "a"}, "not name:workers"),
        ({"QUEUES": "a:1", "WORKERS": "2"}, "are both set"),
    ],
)
def test_bad_queues_exit_2_saying_what_is_wrong(settings: dict[str, str], says: str) -> None:
    result = run_main(**settings)
    assert result.returncode == 2, result
    assert "QUEUES=" in result.stderr
    assert says in result.stderr
