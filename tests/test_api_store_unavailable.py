"""The API while the store cannot be written: new work 503 "store unavailable" at once, with
Retry-After; reads answer; /readyz 503 and /healthz 200; all of it back when the store is."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import falcon.testing
import pytest

from actors import TaskSystem
from actors.handlers import noop
from api import create_app
from api.enqueue import RETRY_AFTER_STORE_S
from tests.support import FlakyStore, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

REFUSED_WITHIN_S = 1.0


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


@pytest.fixture
def client(store: FlakyStore) -> Iterator[falcon.testing.TestClient]:
    system = TaskSystem.start(noop, workers=1, open_store=lambda: store)
    yield falcon.testing.TestClient(create_app(system))
    system.stop(time.monotonic() + 5)


def enqueue(client: falcon.testing.TestClient, task_id: str) -> falcon.testing.Result:
    return client.simulate_post("/enqueue", body=json.dumps({"id": task_id}))


def assert_store_unavailable(result: falcon.testing.Result) -> None:
    assert result.status_code == 503, result.text
    assert result.json == {"error": "store unavailable"}
    assert result.headers["retry-after"] == str(RETRY_AFTER_STORE_S)


def test_while_the_store_is_down_every_write_is_503_store_unavailable_at_once_and_reads_answer(
    client: falcon.testing.TestClient, store: FlakyStore
) -> None:
    assert enqueue(client, "done").status_code == 201
    wait_until(lambda: client.simulate_get("/task", params={"id": "done"}).json["status"] == "done")
    store.full.set()

    for task_id in ["first", "second"]:
        started = time.monotonic()
        assert_store_unavailable(enqueue(client, task_id))
        assert time.monotonic() - started < REFUSED_WITHIN_S
    batch = client.simulate_post("/enqueue/batch", body=json.dumps([{"id": "b1"}]))
    assert_store_unavailable(batch)
    assert_store_unavailable(client.simulate_delete("/task", params={"id": "done"}))

    ready = client.simulate_get("/readyz")
    assert (ready.status_code, ready.json) == (503, {"status": "store unavailable"})
    assert client.simulate_get("/healthz").status_code == 200
    assert client.simulate_get("/task", params={"id": "done"}).json["status"] == "done"
    assert [task["id"] for task in client.simulate_get("/tasks").json] == ["done"]
    assert client.simulate_get("/task", params={"id": "first"}).status_code == 404
    during = client.simulate_get("/stats").json
    assert during["totals"]["rejected"]["store_unavailable"] >= 2
    assert during["store"] == "unavailable"

    store.full.clear()

    wait_until(lambda: client.simulate_get("/readyz").status_code == 200)
    assert enqueue(client, "first").status_code == 201
    assert client.simulate_get("/stats").json["store"] == "available"
