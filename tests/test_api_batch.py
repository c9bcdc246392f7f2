"""``POST /enqueue/batch`` through falcon's TestClient over real actors: all the tasks, in order,
or none of them, and which one was the reason."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.api_client import (
    Client,
    Recorder,
    Result,
    Systems,
    accept,
    error_of,
    get_task,
    stats,
    stored_ids,
)
from tests.support import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

BATCH_SHAPE = "the body must be a JSON array of 1 to 1000 task objects"


@pytest.fixture
def make_client(recorder: Recorder) -> Iterator[Callable[..., Client]]:
    systems = Systems()

    def make(**options: Any) -> Client:
        return systems.client(recorder, **{"workers": 1, "queue_size": 64, **options})

    yield make
    recorder.release()
    systems.stop_all()


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


def post_batch(client: Client, items: Any) -> Result:
    return client.simulate_post("/enqueue/batch", body=json.dumps(items))


def occupy_the_worker(client: Client, recorder: Recorder) -> None:
    accept(client, "occupant", payload={"hold": True})
    wait_until(lambda: recorder.ran("occupant") == [1])


def assert_nothing_stored(client: Client, before: list[str], enqueued_before: int) -> None:
    assert stored_ids(client) == before
    assert stats(client)["totals"]["enqueued"] == enqueued_before


# --- 201 ---------------------------------------------------------------------------------------


def test_a_batch_is_201_with_every_task_in_input_order_as_stored(client: Client) -> None:
    items = [
        {"id": "b-3", "payload": {"n": 3}},
        {"id": "b-1", "max_retries": 0, "priority": 9},
        {"id": "b-2", "payload": "two", "delay_ms": 60_000},
    ]

    result = post_batch(client, items)

    assert result.status_code == 201
    assert result.headers["content-type"] == "application/json"
    body = result.json
    assert [task["id"] for task in body] == ["b-3", "b-1", "b-2"]
    assert [task["status"] for task in body] == ["queued"] * 3
    assert [task["attempts"] for task in body] == [0, 0, 0]
    assert [task["payload"] for task in body] == [{"n": 3}, None, "two"]
    assert [task["max_retries"] for task in body] == [3, 0, 3]
    assert [task["priority"] for task in body] == [0, 9, 0]
    assert body[0]["next_attempt_at"] is None
    assert body[2]["next_attempt_at"] is not None
    # Created together: one clock reading for the whole batch.
    assert len({task["created_at"] for task in body}) == 1
    assert stored_ids(client) == ["b-3", "b-1", "b-2"]
    assert stats(client)["totals"]["enqueued"] == 3


def test_every_task_of_a_batch_runs(make_client: Callable[..., Client], recorder: Recorder) -> None:
    client = make_client(workers=2)

    result = post_batch(client, [{"id": f"run-{n}"} for n in range(20)])

    assert result.status_code == 201
    wait_until(lambda: stats(client)["totals"]["done"] == 20)
    assert sorted(run_id for run_id, _ in recorder.runs) == sorted(f"run-{n}" for n in range(20))


def test_a_batch_of_1000_is_accepted(make_client: Callable[..., Client]) -> None:
    client = make_client(queue_size=1000)

    result = post_batch(client, [{"id": f"t-{n}", "delay_ms": 60_000} for n in range(1000)])

    assert result.status_code == 201
    assert len(result.json) == 1000


def test_the_201_tasks_are_the_ones_get_task_returns(client: Client, recorder: Recorder) -> None:
    occupy_the_worker(client, recorder)

    result = post_batch(client, [{"id": "x", "payload": [1]}, {"id": "y", "priority": 5}])

    assert result.status_code == 201
    for task in result.json:
        assert get_task(client, task["id"]).json == task


# --- 400 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_item", "message"),
    [
        (
            {"id": ""},
            "id must be a string of 1 to 256 characters without control characters",
        ),
        ({"id": 7}, "id must be a string of 1 to 256 characters without control characters"),
        (
            {"id": "a\nb"},
            "id must be a string of 1 to 256 characters without control characters",
        ),
        ({"id": "r", "max_retries": 101}, "max_retries must be an integer from 0 to 100"),
        ({"id": "r", "max_retries": -1}, "max_retries must be an integer from 0 to 100"),
        ({"id": "p", "priority": 10}, "priority must be an integer from 0 to 9"),
        ({"id": "p", "priority": "high"}, "priority must be an integer from 0 to 9"),
        (
            {"id": "d", "delay_ms": -1},
            "delay_ms must be an integer from 0 to 2592000000 (30 days)",
        ),
        ({"id": "u", "status": "done"}, "Object contains unknown field `status`"),
        ({"payload": 1}, "Object missing required field `id`"),
        ("not-an-object", "each task must be a JSON object"),
        ([{"id": "nested"}], "each task must be a JSON object"),
        (None, "each task must be a JSON object"),
    ],
    ids=[
        "empty-id",
        "numeric-id",
        "control-in-id",
        "max-retries-101",
        "max-retries-negative",
        "priority-10",
        "priority-string",
        "delay-negative",
        "unknown-field",
        "missing-id",
        "string-item",
        "array-item",
        "null-item",
    ],
)
def test_an_invalid_item_is_400_with_its_message_and_index_and_nothing_is_stored(
    client: Client, bad_item: Any, message: str
) -> None:
    items = [{"id": "good-0"}, {"id": "good-1"}, bad_item, {"id": "good-3"}]

    result = post_batch(client, items)

    assert result.status_code == 400
    assert error_of(result) == {"error": message, "index": 2}
    assert_nothing_stored(client, [], 0)
    assert stats(client)["totals"]["rejected"]["invalid"] == 1


def test_only_the_first_invalid_item_is_named(client: Client) -> None:
    items = [{"id": "ok"}, {"id": "p", "priority": 11}, {"id": ""}]

    result = post_batch(client, items)

    assert result.status_code == 400
    assert error_of(result) == {"error": "priority must be an integer from 0 to 9", "index": 1}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (json.dumps({"id": "single"}), BATCH_SHAPE),
        (json.dumps("tasks"), BATCH_SHAPE),
        (json.dumps([]), BATCH_SHAPE),
        (json.dumps([{"id": f"t-{n}"} for n in range(1001)]), BATCH_SHAPE),
        ('[{"id": "a"}, ', "invalid JSON"),
        ("id=a", "invalid JSON"),
        ("", "invalid JSON"),
    ],
    ids=["object", "string", "empty-array", "1001-items", "truncated", "form", "empty-body"],
)
def test_a_body_that_is_not_a_batch_is_400_without_an_index(
    client: Client, body: str, message: str
) -> None:
    result = client.simulate_post("/enqueue/batch", body=body)

    assert result.status_code == 400
    assert error_of(result) == {"error": message}
    assert_nothing_stored(client, [], 0)


# --- 409 ---------------------------------------------------------------------------------------


def test_an_id_already_stored_is_409_with_its_index_and_nothing_new_is_stored(
    client: Client,
) -> None:
    accept(client, "old")
    enqueued = stats(client)["totals"]["enqueued"]

    result = post_batch(client, [{"id": "new-0"}, {"id": "new-1"}, {"id": "old"}])

    assert result.status_code == 409
    assert error_of(result) == {"error": "task already exists", "index": 2}
    assert_nothing_stored(client, ["old"], enqueued)


def test_an_id_repeated_within_the_batch_is_409_at_its_second_place(client: Client) -> None:
    result = post_batch(client, [{"id": "a"}, {"id": "b"}, {"id": "a"}, {"id": "c"}])

    assert result.status_code == 409
    assert error_of(result) == {"error": "task already exists", "index": 2}
    assert_nothing_stored(client, [], 0)


@pytest.mark.parametrize(
    ("items", "index"),
    [
        ([{"id": "x"}, {"id": "x"}, {"id": "old"}], 1),
        ([{"id": "x"}, {"id": "old"}, {"id": "x"}], 1),
        ([{"id": "old"}, {"id": "x"}, {"id": "x"}], 0),
    ],
    ids=["repeat-first", "stored-first", "stored-at-0"],
)
def test_with_both_kinds_of_duplicate_the_first_position_is_named(
    client: Client, items: list[dict[str, str]], index: int
) -> None:
    accept(client, "old")

    result = post_batch(client, items)

    assert result.status_code == 409
    assert error_of(result) == {"error": "task already exists", "index": index}
    assert_nothing_stored(client, ["old"], 1)


# --- 503 ---------------------------------------------------------------------------------------


def test_a_batch_the_line_cannot_hold_is_503_with_retry_after_and_nothing_is_stored(
    make_client: Callable[..., Client], recorder: Recorder
) -> None:
    client = make_client(queue_size=3)
    occupy_the_worker(client, recorder)
    accept(client, "waiting")

    result = post_batch(client, [{"id": f"t-{n}"} for n in range(3)])

    assert result.status_code == 503
    assert result.headers["retry-after"] == "1"
    assert error_of(result) == {"error": "queue cannot hold the whole batch"}
    assert_nothing_stored(client, ["occupant", "waiting"], 2)
    # What is left fits.
    assert post_batch(client, [{"id": f"t-{n}"} for n in range(2)]).status_code == 201


def test_a_batch_bigger_than_the_line_is_503_even_when_the_line_is_empty(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(queue_size=3, workers=1)

    result = post_batch(client, [{"id": f"t-{n}"} for n in range(5)])

    assert result.status_code == 503
    assert error_of(result) == {"error": "queue cannot hold the whole batch"}
    assert_nothing_stored(client, [], 0)


def test_delayed_tasks_of_a_batch_need_no_room_in_the_line_but_a_full_line_refuses_them(
    make_client: Callable[..., Client], recorder: Recorder
) -> None:
    client = make_client(queue_size=1)
    occupy_the_worker(client, recorder)
    delayed = [{"id": f"later-{n}", "delay_ms": 60_000} for n in range(3)]

    assert post_batch(client, [*delayed, {"id": "now"}]).status_code == 201

    refused = post_batch(client, [{"id": "more-later", "delay_ms": 60_000}])
    assert refused.status_code == 503
    assert error_of(refused) == {"error": "queue cannot hold the whole batch"}
    assert "more-later" not in stored_ids(client)


def test_a_batch_as_big_as_the_line_plus_the_idle_workers_fits(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(queue_size=3, workers=1)

    result = post_batch(client, [{"id": f"t-{n}"} for n in range(4)])

    assert result.status_code == 201


def test_a_refused_batch_counts_as_one_rejection(make_client: Callable[..., Client]) -> None:
    client = make_client(queue_size=1)
    accept(client, "old")

    assert post_batch(client, [{"id": "a"}, {"id": "b"}, {"id": "c"}]).status_code == 503
    assert post_batch(client, [{"id": "a"}, {"id": "old"}]).status_code == 409

    rejected = stats(client)["totals"]["rejected"]
    assert (rejected["full"], rejected["duplicate"]) == (1, 1)
