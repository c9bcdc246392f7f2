"""``POST /enqueue`` through falcon's TestClient over real actors: what is accepted, and how."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import falcon.testing
import pytest

from actors import TaskSystem, noop
from api import create_app
from tests.handlers import Gate
from tests.support import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

QUEUE_SIZE = 2
TASK_FIELDS = {
    "id",
    "payload",
    "max_retries",
    "status",
    "attempts",
    "last_error",
    "created_at",
    "updated_at",
    "next_attempt_at",
    "priority",
    "timeout_ms",
    "result",
}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$")


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.open()


@pytest.fixture
def system(gate: Gate) -> Iterator[TaskSystem]:
    """One worker behind a closed gate: the first task runs and stays running, later ones wait."""
    system = TaskSystem.start(gate, workers=1, queue_size=QUEUE_SIZE)
    yield system
    gate.open()
    system.stop(time.monotonic() + 5)


@pytest.fixture
def client(system: TaskSystem) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(system))


def enqueue(client: falcon.testing.TestClient, body: Any, **kwargs: Any) -> falcon.testing.Result:
    return client.simulate_post("/enqueue", body=json.dumps(body), **kwargs)


def get_task(client: falcon.testing.TestClient, task_id: str) -> falcon.testing.Result:
    return client.simulate_get("/task", params={"id": task_id})


def error_of(result: falcon.testing.Result) -> str:
    """The message of an ``{"error": ...}`` JSON response."""
    assert result.headers["content-type"] == "application/json"
    body = result.json
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str)
    assert body["error"]
    return body["error"]


def occupy_the_worker(client: falcon.testing.TestClient, gate: Gate) -> None:
    """Start one task and wait until the only worker is inside it, so later tasks wait in line."""
    assert enqueue(client, {"id": "occupant"}).status_code == 201
    wait_until(lambda: gate.entered == 1)


def parse_time(text: str) -> datetime:
    assert RFC3339_UTC.match(text), text
    moment = datetime.fromisoformat(text)
    offset = moment.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 0
    return moment


# --- 201 ---------------------------------------------------------------------------------------


def test_an_accepted_task_comes_back_queued_with_no_attempts_and_every_field(
    client: falcon.testing.TestClient,
) -> None:
    before = time.time()
    result = enqueue(client, {"id": "task-123", "payload": "some data", "max_retries": 5})
    after = time.time()

    assert result.status_code == 201
    assert result.headers["content-type"] == "application/json"
    body = result.json
    assert set(body) >= TASK_FIELDS
    assert body["id"] == "task-123"
    assert body["payload"] == "some data"
    assert body["max_retries"] == 5
    assert body["status"] == "queued"
    assert body["attempts"] == 0
    assert body["last_error"] is None
    assert body["next_attempt_at"] is None
    assert (body["timeout_ms"], body["result"]) == (None, None)
    created_at = parse_time(body["created_at"]).timestamp()
    assert before - 0.01 <= created_at <= after + 0.01
    assert parse_time(body["updated_at"]).timestamp() == created_at


def test_the_201_body_is_exactly_the_task_as_stored(
    client: falcon.testing.TestClient, gate: Gate
) -> None:
    occupy_the_worker(client, gate)
    created = enqueue(client, {"id": "waiting", "payload": {"n": [1, 2]}, "max_retries": 7})

    assert created.status_code == 201
    stored = get_task(client, "waiting")
    assert stored.status_code == 200
    assert stored.json == created.json


def test_payload_and_max_retries_default_to_null_and_3(
    client: falcon.testing.TestClient,
) -> None:
    result = enqueue(client, {"id": "bare"})

    assert result.status_code == 201
    assert result.json["payload"] is None
    assert result.json["max_retries"] == 3


@pytest.mark.parametrize(
    "payload",
    [
        "some data",
        "",
        42,
        -1.5,
        0,
        12345678901234567890123456789,
        True,
        False,
        None,
        {},
        {"nested": {"list": [1, "two", None, 3.25], "flag": True}},
        [],
        [1, "two", None, {"three": [4]}],
        "unicode: é 😀 \u2028",
    ],
    ids=repr,
)
def test_any_json_payload_is_echoed_back_unchanged(
    client: falcon.testing.TestClient, payload: Any
) -> None:
    result = enqueue(client, {"id": "p", "payload": payload})

    assert result.status_code == 201
    assert result.json["payload"] == payload
    assert get_task(client, "p").json["payload"] == payload


@pytest.mark.parametrize("max_retries", [0, 1, 100])
def test_max_retries_at_the_bounds_is_accepted(
    client: falcon.testing.TestClient, max_retries: int
) -> None:
    result = enqueue(client, {"id": "r", "max_retries": max_retries})

    assert result.status_code == 201
    assert result.json["max_retries"] == max_retries


@pytest.mark.parametrize(
    "task_id",
    [
        "x",
        "a" * 256,
        "é" * 256,
        "😀" * 256,
        "task 123 / ü ? & = # %20",
        "\u0080\u009f\u00a0",  # C1 characters are not among the refused controls
    ],
    ids=["one-char", "256-ascii", "256-two-byte", "256-astral", "punctuation", "c1-range"],
)
def test_ids_of_1_to_256_characters_without_controls_are_accepted_and_found(
    client: falcon.testing.TestClient, task_id: str
) -> None:
    result = enqueue(client, {"id": task_id})

    assert result.status_code == 201
    assert result.json["id"] == task_id
    found = get_task(client, task_id)
    assert found.status_code == 200
    assert found.json["id"] == task_id


def test_an_id_sent_as_surrogate_pair_escapes_is_one_character(
    client: falcon.testing.TestClient,
) -> None:
    # json.dumps writes each 😀 as "\ud83d\ude00": 256 characters, 512 escapes.
    body = json.dumps({"id": "😀" * 256}, ensure_ascii=True)
    assert "\\ud83d\\ude00" in body

    result = client.simulate_post("/enqueue", body=body)

    assert result.status_code == 201
    assert result.json["id"] == "😀" * 256


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=xyz",
        "application/octet-stream",
    ],
)
def test_the_body_is_read_as_json_whatever_the_content_type(
    client: falcon.testing.TestClient, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}

    result = enqueue(client, {"id": "typed", "payload": {"a": 1}}, headers=headers)

    assert result.status_code == 201
    assert result.json["payload"] == {"a": 1}


def test_a_task_is_found_at_once_after_its_201() -> None:
    system = TaskSystem.start(noop, workers=4, queue_size=1000)
    client = falcon.testing.TestClient(create_app(system))
    try:
        for number in range(200):
            task_id = f"task-{number}"
            assert enqueue(client, {"id": task_id}).status_code == 201
            found = get_task(client, task_id)
            assert found.status_code == 200, (task_id, found.json)
            assert found.json["id"] == task_id
    finally:
        system.stop(time.monotonic() + 5)


# --- 409 ---------------------------------------------------------------------------------------


def test_a_known_id_is_409_and_the_stored_task_is_unchanged(
    client: falcon.testing.TestClient, gate: Gate
) -> None:
    occupy_the_worker(client, gate)
    original = enqueue(client, {"id": "dup", "payload": "first", "max_retries": 1})
    assert original.status_code == 201

    again = enqueue(client, {"id": "dup", "payload": "second", "max_retries": 9})

    assert again.status_code == 409
    assert error_of(again) == "task already exists"
    assert get_task(client, "dup").json == original.json
    assert [task["id"] for task in client.simulate_get("/tasks").json] == ["occupant", "dup"]


def test_an_id_that_is_running_or_done_is_409_too(
    client: falcon.testing.TestClient, gate: Gate
) -> None:
    occupy_the_worker(client, gate)
    assert enqueue(client, {"id": "occupant"}).status_code == 409
    gate.open()
    wait_until(lambda: get_task(client, "occupant").json["status"] == "done")

    again = enqueue(client, {"id": "occupant", "payload": "new"})

    assert again.status_code == 409
    assert error_of(again) == "task already exists"
    assert get_task(client, "occupant").json["payload"] is None


# --- 413 ---------------------------------------------------------------------------------------

LIMIT = 100


@pytest.fixture
def small_client(system: TaskSystem) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(system, max_body_bytes=LIMIT))


def body_of_length(length: int) -> bytes:
    """A valid enqueue body exactly ``length`` bytes long."""
    frame = b'{"id":"sized","payload":""}'
    body = frame[:-2] + b"x" * (length - len(frame)) + frame[-2:]
    assert len(body) == length
    json.loads(body)
    return body


def test_a_body_of_exactly_max_body_bytes_is_accepted(
    small_client: falcon.testing.TestClient,
) -> None:
    result = small_client.simulate_post("/enqueue", body=body_of_length(LIMIT))

    assert result.status_code == 201


def test_a_body_one_byte_over_max_body_bytes_is_413_and_not_stored(
    small_client: falcon.testing.TestClient,
) -> None:
    result = small_client.simulate_post("/enqueue", body=body_of_length(LIMIT + 1))

    assert result.status_code == 413
    assert error_of(result)
    assert get_task(small_client, "sized").status_code == 404


def test_a_declared_content_length_over_max_body_bytes_is_413(
    small_client: falcon.testing.TestClient,
) -> None:
    result = small_client.simulate_post(
        "/enqueue", body=b'{"id":"liar"}', headers={"Content-Length": str(LIMIT + 1)}
    )

    assert result.status_code == 413
    assert error_of(result)
    assert get_task(small_client, "liar").status_code == 404


# --- 503 ---------------------------------------------------------------------------------------


def test_a_full_line_is_503_queue_is_full_with_retry_after_and_the_task_is_not_stored(
    client: falcon.testing.TestClient, gate: Gate
) -> None:
    occupy_the_worker(client, gate)
    for number in range(QUEUE_SIZE):
        assert enqueue(client, {"id": f"waiting-{number}"}).status_code == 201

    refused = enqueue(client, {"id": "one-too-many"})

    assert refused.status_code == 503
    assert error_of(refused) == "queue is full"
    retry_after = refused.headers.get("retry-after")
    assert retry_after is not None
    assert retry_after.isdigit()
    assert int(retry_after) >= 1
    assert get_task(client, "one-too-many").status_code == 404
    assert "one-too-many" not in [task["id"] for task in client.simulate_get("/tasks").json]


def test_the_line_takes_tasks_again_once_it_has_room(
    client: falcon.testing.TestClient, gate: Gate
) -> None:
    occupy_the_worker(client, gate)
    for number in range(QUEUE_SIZE):
        assert enqueue(client, {"id": f"waiting-{number}"}).status_code == 201
    assert enqueue(client, {"id": "late"}).status_code == 503

    gate.open()
    wait_until(lambda: all(task["status"] == "done" for task in client.simulate_get("/tasks").json))

    assert enqueue(client, {"id": "late"}).status_code == 201


def test_a_known_id_is_409_even_when_the_line_is_full(
    client: falcon.testing.TestClient, gate: Gate
) -> None:
    occupy_the_worker(client, gate)
    for number in range(QUEUE_SIZE):
        assert enqueue(client, {"id": f"waiting-{number}"}).status_code == 201

    again = enqueue(client, {"id": "waiting-0"})

    assert again.status_code == 409
    assert error_of(again) == "task already exists"


def test_after_begin_shutdown_enqueue_is_503_shutting_down_and_the_task_is_not_stored(
    client: falcon.testing.TestClient, system: TaskSystem
) -> None:
    system.begin_shutdown()

    refused = enqueue(client, {"id": "too-late"})

    assert refused.status_code == 503
    assert error_of(refused) == "shutting down"
    assert get_task(client, "too-late").status_code == 404


def test_after_the_actors_have_stopped_enqueue_is_503_task_system_stopped() -> None:
    system = TaskSystem.start(noop, workers=1)
    client = falcon.testing.TestClient(create_app(system))
    system.stop(time.monotonic() + 5)

    refused = enqueue(client, {"id": "after-stop"})

    assert refused.status_code == 503
    assert error_of(refused) == "task system stopped"
    assert refused.headers["retry-after"] == "5"
