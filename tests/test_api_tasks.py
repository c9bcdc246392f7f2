"""``GET /task``, ``GET /tasks`` and ``GET /healthz`` through falcon's TestClient, real actors."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import falcon.testing
import pytest

from actors import TaskSystem, noop
from api import create_app
from tests.handlers import ALWAYS_FAILS_MESSAGE, Gate, always_fail, fail_times
from tests.support import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from actors.worker import Handler


@pytest.fixture
def make_client() -> Iterator[Callable[..., falcon.testing.TestClient]]:
    """Build a TestClient over a fresh TaskSystem running ``handler``; stop them all at the end."""
    systems: list[TaskSystem] = []

    def make(handler: Handler, **options: Any) -> falcon.testing.TestClient:
        system = TaskSystem.start(handler, **options)
        systems.append(system)
        return falcon.testing.TestClient(create_app(system))

    yield make
    for system in systems:
        system.stop(time.monotonic() + 5)


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.open()


def enqueue(client: falcon.testing.TestClient, body: dict[str, Any]) -> dict[str, Any]:
    result = client.simulate_post("/enqueue", body=json.dumps(body))
    assert result.status_code == 201, result.text
    return result.json


def task(client: falcon.testing.TestClient, task_id: str) -> dict[str, Any]:
    result = client.simulate_get("/task", params={"id": task_id})
    assert result.status_code == 200, result.text
    assert result.headers["content-type"] == "application/json"
    return result.json


def tasks(client: falcon.testing.TestClient) -> list[dict[str, Any]]:
    result = client.simulate_get("/tasks")
    assert result.status_code == 200, result.text
    assert result.headers["content-type"] == "application/json"
    return result.json


def moment(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def wait_for_task(
    client: falcon.testing.TestClient, task_id: str, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """``GET /task`` until ``condition`` holds for the task; the task as it was then."""

    def check() -> dict[str, Any] | None:
        current = task(client, task_id)
        return current if condition(current) else None

    found = wait_until(check)
    assert found is not None
    return found


def wait_for_status(client: falcon.testing.TestClient, task_id: str, status: str) -> dict[str, Any]:
    return wait_for_task(client, task_id, lambda current: current["status"] == status)


# --- GET /task ---------------------------------------------------------------------------------


def test_get_task_shows_a_task_running_its_first_attempt(
    make_client: Callable[..., falcon.testing.TestClient], gate: Gate
) -> None:
    client = make_client(gate, workers=1)
    created = enqueue(client, {"id": "t", "payload": [1, 2], "max_retries": 2})

    wait_until(lambda: gate.entered == 1)
    running = task(client, "t")

    assert running["status"] == "running"
    assert running["attempts"] == 1
    assert running["payload"] == [1, 2]
    assert running["max_retries"] == 2
    assert running["created_at"] == created["created_at"]
    assert moment(running["updated_at"]) >= moment(created["updated_at"])
    assert running["next_attempt_at"] is None


def test_get_task_shows_a_succeeded_task_as_done_after_one_attempt(
    make_client: Callable[..., falcon.testing.TestClient], gate: Gate
) -> None:
    client = make_client(gate, workers=1)
    enqueue(client, {"id": "t"})
    wait_until(lambda: gate.entered == 1)

    gate.open()
    done = wait_for_status(client, "t", "done")

    assert done["attempts"] == 1
    assert done["last_error"] is None
    assert done["next_attempt_at"] is None


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_a_task_that_always_fails_ends_failed_after_max_retries_plus_one_attempts(
    make_client: Callable[..., falcon.testing.TestClient], max_retries: int
) -> None:
    client = make_client(always_fail, workers=2, retry_base_ms=1, retry_max_ms=5)
    enqueue(client, {"id": "doomed", "max_retries": max_retries})

    failed = wait_for_status(client, "doomed", "failed")

    assert failed["attempts"] == max_retries + 1
    assert failed["last_error"] == f"HandlerFailure: {ALWAYS_FAILS_MESSAGE}"
    assert failed["next_attempt_at"] is None


def test_a_task_waiting_for_its_next_attempt_is_queued_with_next_attempt_at(
    make_client: Callable[..., falcon.testing.TestClient],
) -> None:
    client = make_client(fail_times, workers=1, retry_base_ms=60_000, retry_max_ms=60_000)
    enqueue(client, {"id": "later", "payload": {"failures": 1}})

    waiting = wait_for_task(
        client, "later", lambda current: (current["status"], current["attempts"]) == ("queued", 1)
    )

    assert waiting["last_error"] == "HandlerFailure: failure 1 of 1"
    assert waiting["next_attempt_at"] is not None
    # The first retry is due base_ms after the failure, plus up to base_ms / 2 of jitter.
    delay_s = moment(waiting["next_attempt_at"]) - moment(waiting["updated_at"])
    assert 60.0 - 0.01 <= delay_s <= 90.0 + 0.01
    assert waiting["next_attempt_at"].endswith(("Z", "+00:00"))


def test_a_task_that_fails_twice_is_done_on_its_third_attempt(
    make_client: Callable[..., falcon.testing.TestClient],
) -> None:
    client = make_client(fail_times, workers=1, retry_base_ms=1, retry_max_ms=5)
    enqueue(client, {"id": "persistent", "payload": {"failures": 2}, "max_retries": 2})

    done = wait_for_status(client, "persistent", "done")

    assert done["attempts"] == 3
    assert done["next_attempt_at"] is None


@pytest.mark.parametrize("task_id", ["a b", "a/b?c=d&e#f", "%41", "é😀", "+plus+", " "])
def test_get_task_finds_ids_that_need_url_encoding(
    make_client: Callable[..., falcon.testing.TestClient], task_id: str
) -> None:
    client = make_client(noop)
    enqueue(client, {"id": task_id})
    enqueue(client, {"id": "decoy"})

    assert task(client, task_id)["id"] == task_id


def test_get_task_does_not_confuse_ids_that_differ_only_in_case(
    make_client: Callable[..., falcon.testing.TestClient],
) -> None:
    client = make_client(noop)
    enqueue(client, {"id": "Task", "payload": "upper"})

    assert client.simulate_get("/task", params={"id": "task"}).status_code == 404
    assert task(client, "Task")["payload"] == "upper"


# --- GET /tasks --------------------------------------------------------------------------------


def test_get_tasks_is_an_empty_array_before_anything_is_enqueued(
    make_client: Callable[..., falcon.testing.TestClient],
) -> None:
    client = make_client(noop)

    assert tasks(client) == []


def test_get_tasks_lists_every_task_in_creation_order_after_they_all_ran(
    make_client: Callable[..., falcon.testing.TestClient],
) -> None:
    client = make_client(fail_times, workers=4, retry_base_ms=1, retry_max_ms=5)
    ids = [f"task-{number}" for number in range(60)]
    random.Random(7).shuffle(ids)  # creation order is not id order
    for index, task_id in enumerate(ids):
        # Some fail first, so their stored state changes several times, out of creation order.
        enqueue(client, {"id": task_id, "payload": {"failures": index % 3}})

    wait_until(lambda: all(t["status"] == "done" for t in tasks(client)))
    listed = tasks(client)

    assert [t["id"] for t in listed] == ids
    assert [t["attempts"] for t in listed] == [index % 3 + 1 for index in range(len(ids))]


def test_get_tasks_shows_each_task_as_get_task_does(
    make_client: Callable[..., falcon.testing.TestClient], gate: Gate
) -> None:
    client = make_client(gate, workers=1)
    for task_id in ("running", "queued-1", "queued-2"):
        enqueue(client, {"id": task_id, "payload": {"name": task_id}})
    wait_until(lambda: gate.entered == 1)

    listed = tasks(client)

    assert [t["id"] for t in listed] == ["running", "queued-1", "queued-2"]
    assert [t["status"] for t in listed] == ["running", "queued", "queued"]
    assert listed == [task(client, t["id"]) for t in listed]


def test_get_tasks_leaves_out_refused_tasks(
    make_client: Callable[..., falcon.testing.TestClient], gate: Gate
) -> None:
    client = make_client(gate, workers=1, queue_size=1)
    enqueue(client, {"id": "running"})
    wait_until(lambda: gate.entered == 1)
    enqueue(client, {"id": "waiting"})

    assert client.simulate_post("/enqueue", body='{"id": "full"}').status_code == 503
    assert client.simulate_post("/enqueue", body='{"id": "waiting"}').status_code == 409
    assert client.simulate_post("/enqueue", body='{"id": ""}').status_code == 400

    assert [t["id"] for t in tasks(client)] == ["running", "waiting"]


# --- GET /healthz ------------------------------------------------------------------------------


def test_healthz_is_200_status_ok(make_client: Callable[..., falcon.testing.TestClient]) -> None:
    client = make_client(noop)

    result = client.simulate_get("/healthz")

    assert result.status_code == 200
    assert result.headers["content-type"] == "application/json"
    assert result.json == {"status": "ok"}


def test_healthz_answers_while_every_worker_is_busy_and_the_line_is_full(
    make_client: Callable[..., falcon.testing.TestClient], gate: Gate
) -> None:
    client = make_client(gate, workers=1, queue_size=1)
    enqueue(client, {"id": "running"})
    wait_until(lambda: gate.entered == 1)
    enqueue(client, {"id": "waiting"})

    result = client.simulate_get("/healthz")

    assert result.status_code == 200
    assert result.json == {"status": "ok"}
