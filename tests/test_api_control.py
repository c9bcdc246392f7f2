"""``POST /task/cancel``, ``POST /task/retry`` and ``DELETE /task`` through falcon's TestClient
over real actors: every answer, and what each does to the task, its runs and the stats."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.api_client import (
    Client,
    Recorder,
    Result,
    Systems,
    accept,
    enqueue,
    error_of,
    get_task,
    stats,
    status_of,
    wait_for_status,
)
from tests.support import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HOLD = {"hold": True}
FAIL = {"fail": True}


@pytest.fixture
def make_client(recorder: Recorder) -> Iterator[Callable[..., Client]]:
    """One worker running ``recorder``; retries wait a minute unless a test says otherwise."""
    systems = Systems()

    def make(**options: Any) -> Client:
        settings = {"workers": 1, "queue_size": 4, "retry_base_ms": 60_000, **options}
        return systems.client(recorder, **settings)

    yield make
    recorder.release()
    systems.stop_all()


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


def cancel(client: Client, task_id: str) -> Result:
    return client.simulate_post("/task/cancel", params={"id": task_id})


def retry(client: Client, task_id: str) -> Result:
    return client.simulate_post("/task/retry", params={"id": task_id})


def delete(client: Client, task_id: str) -> Result:
    return client.simulate_delete("/task", params={"id": task_id})


def occupy_the_worker(client: Client, recorder: Recorder) -> None:
    """Hold the only worker in a task, so that later tasks wait in line."""
    accept(client, "occupant", payload=HOLD)
    wait_until(lambda: recorder.ran("occupant") == [1])


def finish_in(client: Client, recorder: Recorder, status: str, task_id: str) -> None:
    """Put ``task_id`` into ``status``: done, failed, cancelled (the worker is free)."""
    if status == "cancelled":
        occupy_the_worker(client, recorder)
        accept(client, task_id)
        assert cancel(client, task_id).status_code == 200
        recorder.release()
        wait_for_status(client, "occupant", "done")
        return
    accept(client, task_id, payload=FAIL if status == "failed" else None, max_retries=0)
    wait_for_status(client, task_id, status)


def put_in(client: Client, recorder: Recorder, status: str, task_id: str) -> None:
    """Put ``task_id`` into any status, the worker held if it is queued or running."""
    if status == "running":
        accept(client, task_id, payload=HOLD)
        wait_for_status(client, task_id, "running")
    elif status == "queued":
        occupy_the_worker(client, recorder)
        accept(client, task_id)
    else:
        finish_in(client, recorder, status, task_id)


# --- cancel -------------------------------------------------------------------------------------


def test_cancelling_a_task_waiting_in_line_answers_it_cancelled_and_it_never_runs(
    client: Client, recorder: Recorder
) -> None:
    occupy_the_worker(client, recorder)
    accept(client, "waiting", payload={"n": 1})

    result = cancel(client, "waiting")

    assert result.status_code == 200
    assert result.headers["content-type"] == "application/json"
    body = result.json
    assert body["id"] == "waiting"
    assert body["status"] == "cancelled"
    assert body["attempts"] == 0
    assert body["payload"] == {"n": 1}
    assert body["next_attempt_at"] is None
    assert get_task(client, "waiting").json == body
    recorder.release()
    accept(client, "later")
    wait_for_status(client, "later", "done")
    assert recorder.ran("waiting") == []
    assert status_of(client, "waiting") == "cancelled"


def test_cancelling_a_delayed_task_stops_it_from_ever_running(
    client: Client, recorder: Recorder
) -> None:
    # The worker held: however slow the test, the task is still queued when cancelled.
    occupy_the_worker(client, recorder)
    accept(client, "delayed", delay_ms=200)

    result = cancel(client, "delayed")

    assert result.status_code == 200
    assert result.json["status"] == "cancelled"
    assert result.json["next_attempt_at"] is None
    assert stats(client)["scheduled"] == 0
    recorder.release()
    accept(client, "after-the-delay", delay_ms=400)
    wait_for_status(client, "after-the-delay", "done")
    assert recorder.ran("delayed") == []
    assert status_of(client, "delayed") == "cancelled"


def test_cancelling_a_task_awaiting_a_retry_keeps_its_attempts_and_last_error(
    client: Client, recorder: Recorder
) -> None:
    accept(client, "flaky", payload=FAIL, max_retries=3)
    wait_until(lambda: get_task(client, "flaky").json["next_attempt_at"] is not None)

    result = cancel(client, "flaky")

    assert result.status_code == 200
    body = result.json
    assert body["status"] == "cancelled"
    assert body["attempts"] == 1
    assert body["last_error"] == "HandlerFailure: told to fail, attempt 1"
    assert body["next_attempt_at"] is None
    assert stats(client)["scheduled"] == 0
    assert recorder.ran("flaky") == [1]


@pytest.mark.parametrize("status", ["running", "done", "failed", "cancelled"])
def test_cancelling_a_task_that_is_not_queued_is_409_task_is_status(
    client: Client, recorder: Recorder, status: str
) -> None:
    put_in(client, recorder, status, "target")
    before = get_task(client, "target").json

    result = cancel(client, "target")

    assert result.status_code == 409
    assert error_of(result) == {"error": f"task is {status}"}
    assert get_task(client, "target").json == before


def test_cancelling_an_unknown_task_is_404(client: Client) -> None:
    result = cancel(client, "nope")

    assert result.status_code == 404
    assert error_of(result) == {"error": "task not found"}


@pytest.mark.parametrize("path", ["/task/cancel", "/task/retry"])
@pytest.mark.parametrize("query", ["", "id="], ids=["no-id", "empty-id"])
def test_cancel_or_retry_without_an_id_is_400(client: Client, path: str, query: str) -> None:
    result = client.simulate_post(path, query_string=query)

    assert result.status_code == 400
    assert error_of(result) == {"error": "missing id parameter"}


def test_a_cancelled_task_is_counted_in_stats(client: Client, recorder: Recorder) -> None:
    occupy_the_worker(client, recorder)
    accept(client, "waiting")
    assert stats(client)["waiting"] == 1

    assert cancel(client, "waiting").status_code == 200

    now = stats(client)
    assert now["tasks"]["cancelled"] == 1
    assert now["tasks"]["queued"] == 0
    assert now["totals"]["cancelled"] == 1
    assert now["waiting"] == 0


def test_a_cancelled_task_frees_its_place_in_a_full_line(
    make_client: Callable[..., Client], recorder: Recorder
) -> None:
    client = make_client(queue_size=1)
    occupy_the_worker(client, recorder)
    accept(client, "waiting")
    assert enqueue(client, "refused").status_code == 503

    assert cancel(client, "waiting").status_code == 200

    assert enqueue(client, "admitted").status_code == 201


# --- retry --------------------------------------------------------------------------------------


def test_retrying_a_failed_task_queues_it_with_attempts_0_and_last_error_kept(
    make_client: Callable[..., Client], recorder: Recorder
) -> None:
    # Two workers: one fails the task, then both are held so the retried task stays queued.
    client = make_client(workers=2)
    occupy_the_worker(client, recorder)
    accept(client, "broken", payload=FAIL, max_retries=0)
    failed = wait_for_status(client, "broken", "failed")
    accept(client, "second-occupant", payload=HOLD)
    wait_until(lambda: recorder.ran("second-occupant") == [1])

    result = retry(client, "broken")

    assert result.status_code == 200
    assert result.headers["content-type"] == "application/json"
    body = result.json
    assert body["id"] == "broken"
    assert body["status"] == "queued"
    assert body["attempts"] == 0
    assert body["last_error"] == failed["last_error"] == "HandlerFailure: told to fail, attempt 1"
    assert body["next_attempt_at"] is None
    assert get_task(client, "broken").json == body
    assert stats(client)["waiting"] == 1


def test_a_retried_failed_task_runs_again_with_attempts_counting_from_1(
    make_client: Callable[..., Client], recorder: Recorder
) -> None:
    client = make_client(retry_base_ms=1, retry_max_ms=5)
    accept(client, "broken", payload=FAIL, max_retries=1)
    wait_for_status(client, "broken", "failed")
    assert recorder.ran("broken") == [1, 2]

    assert retry(client, "broken").status_code == 200

    wait_until(lambda: recorder.ran("broken") == [1, 2, 1, 2])
    final = wait_for_status(client, "broken", "failed")
    assert final["attempts"] == 2
    assert final["last_error"] == "HandlerFailure: told to fail, attempt 2"


def test_a_retried_cancelled_task_runs_and_is_done(client: Client, recorder: Recorder) -> None:
    finish_in(client, recorder, "cancelled", "second-chance")

    result = retry(client, "second-chance")

    assert result.status_code == 200
    assert result.json["attempts"] == 0
    assert result.json["next_attempt_at"] is None
    done = wait_for_status(client, "second-chance", "done")
    assert done["attempts"] == 1
    assert recorder.ran("second-chance") == [1]


@pytest.mark.parametrize("status", ["queued", "running", "done"])
def test_retrying_a_task_that_is_not_failed_or_cancelled_is_409_task_is_status(
    client: Client, recorder: Recorder, status: str
) -> None:
    put_in(client, recorder, status, "target")
    before = get_task(client, "target").json

    result = retry(client, "target")

    assert result.status_code == 409
    assert error_of(result) == {
        "error": f"task is {status}; only a failed or cancelled task can be retried"
    }
    assert get_task(client, "target").json == before


def test_retrying_an_unknown_task_is_404(client: Client) -> None:
    result = retry(client, "nope")

    assert result.status_code == 404
    assert error_of(result) == {"error": "task not found"}


def test_retrying_when_the_line_is_full_is_503_with_retry_after_and_changes_nothing(
    make_client: Callable[..., Client], recorder: Recorder
) -> None:
    client = make_client(queue_size=1)
    occupy_the_worker(client, recorder)
    accept(client, "cancelled-one")
    assert cancel(client, "cancelled-one").status_code == 200
    accept(client, "fills-the-line")
    before = get_task(client, "cancelled-one").json

    result = retry(client, "cancelled-one")

    assert result.status_code == 503
    assert result.headers["retry-after"] == "1"
    assert error_of(result) == {"error": "queue is full"}
    assert get_task(client, "cancelled-one").json == before


def test_a_retried_task_leaves_the_cancelled_count_but_not_the_cancelled_total(
    client: Client, recorder: Recorder
) -> None:
    finish_in(client, recorder, "cancelled", "again")

    assert retry(client, "again").status_code == 200
    wait_for_status(client, "again", "done")

    now = stats(client)
    assert now["tasks"]["cancelled"] == 0
    assert now["totals"]["cancelled"] == 1
    assert now["tasks"]["done"] == 2  # the occupant and the retried task


# --- delete -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["done", "failed", "cancelled"])
def test_deleting_a_finished_task_is_204_with_an_empty_body_and_then_it_is_gone(
    client: Client, recorder: Recorder, status: str
) -> None:
    finish_in(client, recorder, status, "finished")
    counts_before = stats(client)["tasks"]

    result = delete(client, "finished")

    assert result.status_code == 204
    assert result.content == b""
    found = get_task(client, "finished")
    assert found.status_code == 404
    assert error_of(found) == {"error": "task not found"}
    assert stats(client)["tasks"][status] == counts_before[status] - 1


@pytest.mark.parametrize("status", ["queued", "running"])
def test_deleting_an_unfinished_task_is_409_and_keeps_it(
    client: Client, recorder: Recorder, status: str
) -> None:
    put_in(client, recorder, status, "busy")

    result = delete(client, "busy")

    assert result.status_code == 409
    assert error_of(result) == {"error": f"task is {status}; only a finished task can be deleted"}
    assert status_of(client, "busy") == status


def test_deleting_an_unknown_task_is_404(client: Client) -> None:
    result = delete(client, "nope")

    assert result.status_code == 404
    assert error_of(result) == {"error": "task not found"}


def test_deleting_without_an_id_is_400(client: Client) -> None:
    result = client.simulate_delete("/task")

    assert result.status_code == 400
    assert error_of(result) == {"error": "missing id parameter"}


def test_a_deleted_id_can_be_enqueued_again_and_runs_afresh(
    client: Client, recorder: Recorder
) -> None:
    finish_in(client, recorder, "done", "reused")
    assert delete(client, "reused").status_code == 204

    again = accept(client, "reused", payload={"second": True})

    assert again["status"] == "queued"
    assert again["attempts"] == 0
    done = wait_for_status(client, "reused", "done")
    assert done["payload"] == {"second": True}
    assert recorder.ran("reused") == [1, 1]


def test_deleting_twice_is_404_the_second_time(client: Client, recorder: Recorder) -> None:
    finish_in(client, recorder, "done", "once")

    assert delete(client, "once").status_code == 204
    assert delete(client, "once").status_code == 404


# --- the routes stay JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/task/cancel", ["OPTIONS", "POST"]),
        ("/task/retry", ["OPTIONS", "POST"]),
        ("/task", ["DELETE", "GET", "OPTIONS"]),
        ("/enqueue/batch", ["OPTIONS", "POST"]),
    ],
)
def test_options_lists_the_methods_in_json(client: Client, path: str, allowed: list[str]) -> None:
    result = client.simulate_options(path)

    assert result.status_code == 200
    assert result.json == {"allow": allowed}
    assert result.headers["allow"] == ", ".join(allowed)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/task/cancel"),
        ("DELETE", "/task/retry"),
        ("PUT", "/task"),
        ("GET", "/enqueue/batch"),
    ],
)
def test_a_wrong_method_on_a_new_route_is_a_json_405(
    client: Client, method: str, path: str
) -> None:
    result = client.simulate_request(method, path, params={"id": "x"})

    assert result.status_code == 405
    assert error_of(result) == {"error": "method not allowed"}
