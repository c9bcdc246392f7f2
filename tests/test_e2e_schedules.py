"""End to end: schedules against a real ``python main.py``, firing into its line on its clock.

Every wait is on a condition with a deadline; the firings' own times are what the tests check.
"""

from __future__ import annotations

import math
import re
import signal
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import pytest

from tests.support import wait_until
from tests.test_e2e import Service, json_body, launch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

HANDLER: Final = "sleep_for"
"""Sleeps ``payload["sleep_s"]``: 0 for a task that ends at once."""
QUICK: Final = {"payload": {"sleep_s": 0}}
FIRE_ID: Final = re.compile(r"^(?P<schedule>.+)@(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)$")
ON_TIME_S: Final = 1.0
"""A firing starts within one second of its time."""


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(**settings: str | int) -> Service:
        service = launch(tmp_path, HANDLER, WORKER_MODE="thread", **settings)
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


def seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def stamp(at: float) -> str:
    return datetime.fromtimestamp(math.floor(at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create(service: Service, body: dict[str, Any]) -> dict[str, Any]:
    reply = service.request("POST", "/schedules", json_body(body))
    assert reply.status == 201, reply
    created: dict[str, Any] = reply.json()
    return created


def schedule(service: Service, schedule_id: str) -> dict[str, Any]:
    reply = service.request("GET", f"/schedule?id={schedule_id}")
    assert reply.status == 200, reply
    found: dict[str, Any] = reply.json()
    return found


def fired_tasks(service: Service, schedule_id: str) -> list[dict[str, Any]]:
    """The tasks the schedule's firings enqueued, in creation order."""
    reply = service.request("GET", "/tasks")
    assert reply.status == 200, reply
    return [task for task in reply.json() if task["id"].startswith(f"{schedule_id}@")]


def at_least(service: Service, schedule_id: str, count: int, timeout_s: float = 15.0) -> list[Any]:
    """The schedule's tasks, once there are ``count`` of them or more."""

    def enough() -> list[Any] | None:
        tasks = fired_tasks(service, schedule_id)
        return tasks if len(tasks) >= count else None

    return wait_until(enough, timeout_s=timeout_s, interval_s=0.05)


def test_a_periodic_schedule_fires_on_time_with_the_id_format(
    start_service: Callable[..., Service],
) -> None:
    service = start_service()
    created = create(service, {"id": "poll", "every_ms": 1000, "task": QUICK})
    assert created["next_run_at"] is not None
    first_at = seconds(created["created_at"]) + 1.0
    assert seconds(created["next_run_at"]) == pytest.approx(first_at, abs=1e-3)
    tasks = at_least(service, "poll", 3)
    for index, task in enumerate(tasks[:3]):
        due = first_at + index
        match = FIRE_ID.match(task["id"])
        assert match is not None, task["id"]
        assert match["schedule"] == "poll"
        assert match["time"] == stamp(due)
        assert 0 <= seconds(task["created_at"]) - due < ON_TIME_S, task
        assert task["payload"] == {"sleep_s": 0}
    shown = wait_until(lambda: (s := schedule(service, "poll"))["fired"] >= 3 and s)
    assert shown["skipped"] == 0


def test_a_cron_schedule_of_every_minute_fires_at_the_next_minute(
    start_service: Callable[..., Service],
) -> None:
    service = start_service()
    created = create(
        service, {"id": "minutely", "cron": "* * * * *", "timezone": "Europe/Berlin", "task": QUICK}
    )
    next_minute = (math.floor(seconds(created["created_at"]) / 60) + 1) * 60
    assert seconds(created["next_run_at"]) == next_minute
    (task,) = at_least(service, "minutely", 1, timeout_s=70.0)
    assert task["id"] == f"minutely@{stamp(next_minute)}"
    assert 0 <= seconds(task["created_at"]) - next_minute < ON_TIME_S


def test_a_firing_gets_into_a_full_line_like_a_due_retry(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(WORKERS=1, QUEUE_SIZE=1)
    service.accept({"id": "busy", "payload": {"sleep_s": 5}})
    service.wait_for_task("busy", lambda task: task["status"] == "running")
    service.accept({"id": "waiting", "payload": {"sleep_s": 0}})
    refused = service.enqueue({"id": "refused", "payload": {"sleep_s": 0}})
    assert (refused.status, refused.json()) == (503, {"error": "queue is full"})
    create(service, {"id": "poll", "every_ms": 1000, "task": QUICK})
    (fired,) = at_least(service, "poll", 1)
    assert fired["status"] == "queued"
    stats = service.request("GET", "/stats").json()
    assert stats["waiting"] == 2, stats  # the bound is 1: the firing passed it


def test_firings_are_skipped_while_the_last_task_still_runs(
    start_service: Callable[..., Service],
) -> None:
    service = start_service()
    create(service, {"id": "slow", "every_ms": 1000, "task": {"payload": {"sleep_s": 3.5}}})
    (first,) = at_least(service, "slow", 1)
    shown = wait_until(lambda: (s := schedule(service, "slow"))["skipped"] >= 2 and s)
    # While the first task runs, its schedule enqueued nothing more.
    assert [task["id"] for task in fired_tasks(service, "slow")] == [first["id"]]
    assert shown["fired"] == 1
    assert shown["last_task_id"] == first["id"]
    assert "firing of" in service.log() and "is skipped" in service.log()
    # Once it is done, the next firing goes through.
    second = at_least(service, "slow", 2, timeout_s=10.0)[1]
    assert (
        seconds(second["created_at"]) > seconds(service.task(first["id"])["updated_at"]) - ON_TIME_S
    )


def test_pause_resume_and_delete(start_service: Callable[..., Service]) -> None:
    service = start_service()
    create(service, {"id": "poll", "every_ms": 1000, "task": QUICK})
    # A witness schedule: its firings measure the time in which the paused one fired nothing.
    create(service, {"id": "witness", "every_ms": 1000, "task": QUICK})
    at_least(service, "poll", 1)
    reply = service.request("POST", "/schedule/pause?id=poll")
    assert reply.status == 200, reply
    assert reply.json()["paused"] is True
    assert reply.json()["next_run_at"] is None
    before = len(fired_tasks(service, "poll"))
    witnessed = len(fired_tasks(service, "witness"))
    at_least(service, "witness", witnessed + 3)
    assert len(fired_tasks(service, "poll")) == before
    reply = service.request("POST", "/schedule/resume?id=poll")
    assert reply.status == 200, reply
    assert reply.json()["paused"] is False
    assert seconds(reply.json()["next_run_at"]) > time.time() - ON_TIME_S
    at_least(service, "poll", before + 1)
    reply = service.request("DELETE", "/schedule?id=poll")
    assert reply.status == 204, reply
    after = len(fired_tasks(service, "poll"))
    witnessed = len(fired_tasks(service, "witness"))
    at_least(service, "witness", witnessed + 3)
    assert len(fired_tasks(service, "poll")) in (after, after + 1)  # one may have been on its way
    for method, path in (
        ("GET", "/schedule?id=poll"),
        ("DELETE", "/schedule?id=poll"),
        ("POST", "/schedule/pause?id=poll"),
        ("POST", "/schedule/resume?id=poll"),
    ):
        reply = service.request(method, path)
        assert reply.status == 404, reply
        assert reply.json() == {"error": "schedule not found"}
    listed = service.request("GET", "/schedules").json()
    assert [item["id"] for item in listed] == ["witness"]


def test_a_schedule_survives_a_restart_and_catches_up_once(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    db_path = str(tmp_path / "tasks.db")
    first = start_service(DB_PATH=db_path)
    created = create(first, {"id": "every5", "every_ms": 5000, "task": QUICK})
    missed_at = seconds(created["next_run_at"])
    first.kill()  # before its first firing: it falls due while the service is down
    # Down for two of its periods and more.
    wait_until(lambda: time.time() > missed_at + 6.0, timeout_s=15.0, interval_s=0.05)
    second = start_service(DB_PATH=db_path)
    (caught_up,) = at_least(second, "every5", 1)
    assert caught_up["id"] == f"every5@{stamp(missed_at)}"
    shown = wait_until(lambda: (s := schedule(second, "every5"))["fired"] == 1 and s)
    # Then on from now: the next firing is after the start, not one of those missed.
    assert seconds(shown["next_run_at"]) > seconds(caught_up["created_at"])
    assert seconds(shown["next_run_at"]) == pytest.approx(
        missed_at + 5 * math.ceil((seconds(caught_up["created_at"]) - missed_at) / 5), abs=1e-3
    )
    ids = [task["id"] for task in fired_tasks(second, "every5")]
    assert ids == [caught_up["id"]]
    # A graceful stop and a third start: nothing fell due, nothing is caught up twice.
    second.send(signal.SIGTERM)
    assert second.wait_exit() == 0
    third = start_service(DB_PATH=db_path)
    assert schedule(third, "every5")["id"] == "every5"
    tasks = fired_tasks(third, "every5")
    assert [task["id"] for task in tasks].count(caught_up["id"]) == 1


BAD: Final = [
    ({"id": "x", "task": {}}, "give exactly one of cron and every_ms"),
    ({"id": "x", "cron": "* * * * *", "every_ms": 1000, "task": {}}, "give exactly one of"),
    ({"id": "x", "cron": "* * *", "task": {}}, "cron must have five fields"),
    ({"id": "x", "cron": "99 * * * *", "task": {}}, "invalid cron expression"),
    ({"id": "x", "every_ms": 999, "task": {}}, "every_ms must be an integer from 1000"),
    ({"id": "x", "every_ms": "60000", "task": {}}, "every_ms must be an integer"),
    ({"id": "x", "every_ms": 1000, "timezone": "Mars/Base", "task": {}}, "unknown timezone"),
    ({"id": "x", "every_ms": 1000, "task": {"queue": "nope"}}, "unknown queue"),
    ({"id": "x", "every_ms": 1000, "task": {"priority": 10}}, "task: priority must be"),
    ({"id": "x", "every_ms": 1000, "task": {"id": "t"}}, "unknown field `id`"),
    ({"id": "x", "every_ms": 1000, "task": {"delay_ms": 5}}, "unknown field `delay_ms`"),
    ({"id": "x", "every_ms": 1000, "task": {}, "extra": 1}, "unknown field `extra`"),
    ({"id": "x", "every_ms": 1000}, "missing required field `task`"),
    ({"id": "", "every_ms": 1000, "task": {}}, "id must be a string of 1 to 235"),
    ({"id": "x" * 236, "every_ms": 1000, "task": {}}, "id must be a string of 1 to 235"),
    ({"id": "x", "every_ms": 1000, "task": []}, "task must be a JSON object"),
]


def test_bad_schedules_are_400_saying_what_is_wrong(
    start_service: Callable[..., Service],
) -> None:
    service = start_service()
    for body, message in BAD:
        reply = service.request("POST", "/schedules", json_body(body))
        assert reply.status == 400, (body, reply)
        assert message in reply.json()["error"], (body, reply.json())
    reply = service.request("POST", "/schedules", b"{not json")
    assert (reply.status, reply.json()) == (400, {"error": "invalid JSON"})
    create(service, {"id": "taken", "cron": "0 3 * * *", "task": {}})
    reply = service.request(
        "POST", "/schedules", json_body({"id": "taken", "every_ms": 1000, "task": {}})
    )
    assert (reply.status, reply.json()) == (409, {"error": "schedule already exists"})
    assert [item["id"] for item in service.request("GET", "/schedules").json()] == ["taken"]
