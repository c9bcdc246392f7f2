"""An unpaged ``GET /tasks``: every task, streamed in bounded pieces from a snapshot, and only
``listings_max`` of them in flight at once."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import falcon.testing
import pytest

from actors import TaskSystem, noop
from api import create_app
from api.tasks import LISTING_PIECE_BYTES

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator


@pytest.fixture
def system() -> Iterator[TaskSystem]:
    system = TaskSystem.start(noop, workers=1, queue_size=10)
    yield system
    system.stop(time.monotonic() + 5)


def store_delayed(client: falcon.testing.TestClient, count: int, payload: Any = None) -> None:
    for start in range(0, count, 1000):
        batch = [
            {"id": f"t{n:06d}", "delay_ms": 86_400_000, "payload": payload}
            for n in range(start, min(count, start + 1000))
        ]
        result = client.simulate_post("/enqueue/batch", body=json.dumps(batch))
        assert result.status_code == 201, result.text


def start_listing(app: Any) -> tuple[str, Iterable[bytes]]:
    """Begin an unpaged GET /tasks as a WSGI server would, without reading its body."""
    started: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started.append(status)

    body = app(falcon.testing.create_environ("/tasks"), start_response)
    return started[0], body


def test_an_unpaged_listing_is_every_task_in_pieces_of_bounded_size(system: TaskSystem) -> None:
    client = falcon.testing.TestClient(create_app(system))
    store_delayed(client, 3000, payload="x" * 100)

    status, body = start_listing(client.app)
    pieces = list(body)
    body.close()  # type: ignore[attr-defined]

    assert status == "200 OK"
    assert len(pieces) > 3
    assert all(len(piece) < LISTING_PIECE_BYTES + 2048 for piece in pieces)
    listed = json.loads(b"".join(pieces))
    assert [task["id"] for task in listed] == [f"t{n:06d}" for n in range(3000)]
    assert listed == client.simulate_get("/tasks").json


def test_an_empty_listing_is_an_empty_array(system: TaskSystem) -> None:
    client = falcon.testing.TestClient(create_app(system))

    result = client.simulate_get("/tasks")

    assert result.status_code == 200
    assert result.headers["content-type"] == "application/json"
    assert result.json == []


def test_listings_beyond_listings_max_in_flight_are_503_until_one_ends(
    system: TaskSystem,
) -> None:
    client = falcon.testing.TestClient(create_app(system, listings_max=2))
    store_delayed(client, 10)
    first, second = start_listing(client.app), start_listing(client.app)

    refused = client.simulate_get("/tasks")
    paged = client.simulate_get("/tasks", params={"limit": "5"})
    second[1].close()  # type: ignore[attr-defined]
    after_one_ended = client.simulate_get("/tasks")
    first[1].close()  # type: ignore[attr-defined]

    assert [first[0], second[0]] == ["200 OK", "200 OK"]
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json == {"error": "too many listings in progress; try again, or page with limit"}
    assert paged.status_code == 200  # pages are never refused: each is small
    assert after_one_ended.status_code == 200
    assert len(after_one_ended.json) == 10


def test_a_listing_dropped_unread_gives_its_place_back(system: TaskSystem) -> None:
    client = falcon.testing.TestClient(create_app(system, listings_max=1))
    status, body = start_listing(client.app)
    del body  # never iterated nor closed: a client gone before the first byte

    assert status == "200 OK"
    assert client.simulate_get("/tasks").status_code == 200
