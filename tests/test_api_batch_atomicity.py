"""Batches racing single enqueues of the same ids, through the API from many threads: each batch
is stored whole or not at all, and no id is ever stored twice."""

from __future__ import annotations

import json
import random
import threading
from typing import TYPE_CHECKING

import pytest

from actors import noop
from tests.api_client import Client, Systems

if TYPE_CHECKING:
    from collections.abc import Iterator

POOL = [f"id-{n}" for n in range(150)]
BATCHES = 24
BATCH_SIZE = 12
SINGLE_THREADS = 4


@pytest.fixture
def client() -> Iterator[Client]:
    systems = Systems()
    yield systems.client(noop, workers=2, queue_size=10_000)
    systems.stop_all()


def test_racing_batches_and_singles_store_each_batch_whole_or_not_at_all(client: Client) -> None:
    rng = random.Random(5)
    batches = [rng.sample(POOL, BATCH_SIZE) for _ in range(BATCHES)]
    singles = [rng.sample(POOL, len(POOL)) for _ in range(SINGLE_THREADS)]
    start = threading.Barrier(BATCHES + SINGLE_THREADS)
    batch_status: dict[int, int] = {}
    single_status: dict[tuple[int, str], int] = {}

    def send_batch(number: int) -> None:
        items = [{"id": task_id, "payload": f"batch-{number}"} for task_id in batches[number]]
        start.wait()
        result = client.simulate_post("/enqueue/batch", body=json.dumps(items))
        batch_status[number] = result.status_code
        if result.status_code == 409:
            index = result.json["index"]
            assert 0 <= index < BATCH_SIZE

    def send_singles(number: int) -> None:
        start.wait()
        for task_id in singles[number]:
            body = json.dumps({"id": task_id, "payload": f"single-{number}"})
            single_status[number, task_id] = client.simulate_post("/enqueue", body=body).status_code

    threads = [threading.Thread(target=send_batch, args=(n,)) for n in range(BATCHES)]
    threads += [threading.Thread(target=send_singles, args=(n,)) for n in range(SINGLE_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()

    listed = client.simulate_get("/tasks").json
    owner = {task["id"]: task["payload"] for task in listed}
    assert len(owner) == len(listed), "an id is stored twice"
    assert set(batch_status.values()) <= {201, 409}
    # 24 batches of 12 among 150 ids must overlap: at least one batch cannot be stored.
    assert 409 in batch_status.values()
    assert set(single_status.values()) <= {201, 409}
    for number, ids in enumerate(batches):
        mine = [owner.get(task_id) == f"batch-{number}" for task_id in ids]
        if batch_status[number] == 201:
            assert all(mine), (number, ids)
        else:
            assert not any(mine), (number, ids)
    for (number, task_id), status in single_status.items():
        assert (owner[task_id] == f"single-{number}") == (status == 201)
    accepted = sum(BATCH_SIZE for status in batch_status.values() if status == 201)
    accepted += sum(1 for status in single_status.values() if status == 201)
    assert len(listed) == accepted == len(POOL)
    assert client.simulate_get("/stats").json["totals"]["enqueued"] == len(POOL)
