"""End to end: cancel, retry and delete over real HTTP against ``python main.py``, and
``RETENTION_MAX_FINISHED`` forgetting the oldest finished tasks."""

from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING

import pytest

from tests.support import wait_until
from tests.test_e2e import Reply, Service, assert_json_error, launch, task_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start services for one test; every one of them is killed at the end, whatever happened."""
    started: list[Service] = []

    def start(handler: str, **settings: str | int) -> Service:
        service = launch(tmp_path, handler, **settings)
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


def act(service: Service, method: str, route: str, task_id: str) -> Reply:
    """``POST /task/cancel``, ``POST /task/retry`` or ``DELETE /task`` on ``task_id``."""
    return service.request(method, f"{route}?{urllib.parse.urlencode({'id': task_id})}")


def runs_of(log: Path, task_id: str) -> list[int]:
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    return [line["attempt"] for line in lines if line["id"] == task_id]


def test_cancel_retry_and_delete_over_http_and_what_stats_says_after(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service("record_then_sleep", WORKERS=1, QUEUE_SIZE=4)
    log, release = tmp_path / "runs.jsonl", tmp_path / "release"
    service.accept({"id": "blocker", "payload": {"log": str(log), "release": str(release)}})
    service.wait_for_task("blocker", lambda task: task["status"] == "running")
    for task_id in ("victim", "gone"):
        service.accept({"id": task_id, "payload": {"log": str(log)}})
    broken = {"log": str(log), "failures": 1}
    service.accept({"id": "broken", "payload": broken, "max_retries": 0})

    cancelled = act(service, "POST", "/task/cancel", "victim")
    assert cancelled.status == 200, cancelled
    assert cancelled.json()["status"] == "cancelled"
    running = act(service, "POST", "/task/cancel", "blocker")
    assert running.status == 409
    assert assert_json_error(running) == "task is running"
    requeued = act(service, "POST", "/task/retry", "victim")
    assert requeued.status == 200, requeued
    assert requeued.json()["status"] == "queued"
    assert act(service, "POST", "/task/cancel", "gone").status == 200
    deleted = act(service, "DELETE", "/task", "gone")
    assert deleted.status == 204
    assert deleted.body == b""
    assert service.request("GET", task_path("gone")).status == 404
    assert act(service, "DELETE", "/task", "nope").status == 404

    release.touch()
    service.wait_for_task("victim", lambda task: task["status"] == "done")
    service.wait_for_task("broken", lambda task: task["status"] == "failed")
    again = act(service, "POST", "/task/retry", "broken")
    assert again.status == 200, again
    assert again.json()["attempts"] == 0
    wait_until(lambda: runs_of(log, "broken") == [1, 1])
    service.wait_for_task("broken", lambda task: task["status"] == "failed")
    assert act(service, "DELETE", "/task", "blocker").status == 204

    assert runs_of(log, "victim") == [1]
    assert runs_of(log, "gone") == []
    stats = service.request("GET", "/stats").json()
    assert stats["tasks"] == {"queued": 0, "running": 0, "done": 1, "failed": 1, "cancelled": 0}
    totals = stats["totals"]
    assert totals["enqueued"] == 4
    assert totals["cancelled"] == 2
    assert totals["done"] == 2
    assert totals["failed"] == 2
    assert totals["evicted"] == 0


def test_retention_max_finished_forgets_the_oldest_finished_tasks(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service("record_run", WORKERS=1, RETENTION_MAX_FINISHED=2)
    log = str(tmp_path / "runs.jsonl")
    for number in range(4):
        service.accept({"id": f"t-{number}", "payload": {"log": log}})
        service.wait_for_task(f"t-{number}", lambda task: task["status"] == "done")

    wait_until(lambda: service.request("GET", task_path("t-1")).status == 404)

    assert service.request("GET", task_path("t-0")).status == 404
    assert service.task("t-2")["status"] == "done"
    assert service.task("t-3")["status"] == "done"
    listed = service.request("GET", "/tasks").json()
    assert [task["id"] for task in listed] == ["t-2", "t-3"]
    stats = service.request("GET", "/stats").json()
    assert stats["tasks"]["done"] == 2
    assert stats["totals"]["done"] == 4
    assert stats["totals"]["evicted"] == 2
    # A forgotten id is free again.
    assert service.enqueue({"id": "t-0", "payload": {"log": log}}).status == 201


def test_retention_ttl_forgets_finished_tasks_and_keeps_unfinished_ones(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service("record_run", RETENTION_TTL_S="0.3")
    log = str(tmp_path / "runs.jsonl")
    service.accept({"id": "short-lived", "payload": {"log": log}})
    service.accept({"id": "delayed", "payload": {"log": log}, "delay_ms": 60_000})
    service.wait_for_task("short-lived", lambda task: task["status"] == "done")

    wait_until(lambda: service.request("GET", task_path("short-lived")).status == 404)

    assert service.task("delayed")["status"] == "queued"
    totals = service.request("GET", "/stats").json()["totals"]
    assert (totals["done"], totals["evicted"]) == (1, 1)
