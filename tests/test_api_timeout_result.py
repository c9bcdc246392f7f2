"""``timeout_ms`` on ``POST /enqueue`` and ``/enqueue/batch``, and the ``timeout_ms`` and
``result`` every task answer carries, through falcon's TestClient over real actors."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import msgspec
import pytest

from actors.task import DONE, new_task
from api import create_app
from api.schema import encoder, task_body
from tests.api_client import (
    Client,
    Recorder,
    Systems,
    accept,
    enqueue,
    error_of,
    get_task,
    stats,
    stored_ids,
    wait_for_status,
)
from tests.handlers import echo
from tests.support import ANSWER_S

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TIMEOUT_RULE: Final = "timeout_ms must be an integer from 100 to 86400000"
ONE_DAY_MS: Final = 86_400_000


@pytest.fixture
def systems(recorder: Recorder) -> Iterator[Systems]:
    systems = Systems()
    yield systems
    recorder.release()
    systems.stop_all()


@pytest.fixture
def make_client(systems: Systems, recorder: Recorder) -> Callable[..., Client]:
    def make(handler: Any = None, **options: Any) -> Client:
        return systems.client(handler or recorder, **{"workers": 1, "queue_size": 16, **options})

    return make


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


def post_batch(client: Client, items: Any) -> Any:
    return client.simulate_post("/enqueue/batch", body=json.dumps(items))


# --- timeout_ms on intake ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "timeout_ms",
    [99, 0, -1, ONE_DAY_MS + 1, 10**20, 1000.0, 1.5, "1000", True, False, None, [1000], {}],
    ids=repr,
)
def test_a_timeout_that_is_not_an_integer_from_100_to_one_day_is_400_and_not_stored(
    client: Client, timeout_ms: Any
) -> None:
    result = enqueue(client, "t", timeout_ms=timeout_ms)

    assert result.status_code == 400
    assert error_of(result) == {"error": TIMEOUT_RULE}
    assert get_task(client, "t").status_code == 404
    assert stats(client)["totals"]["rejected"]["invalid"] == 1


@pytest.mark.parametrize("number", ["1000.0", "1e3", "1000e0", "1.0e3"])
def test_a_whole_number_written_as_a_float_is_refused(client: Client, number: str) -> None:
    # JSON Schema counts 1000.0 as an integer; the decoder goes by how the number is written.
    result = client.simulate_post("/enqueue", body=f'{{"id": "f", "timeout_ms": {number}}}')

    assert result.status_code == 400
    assert error_of(result) == {"error": TIMEOUT_RULE}
    assert get_task(client, "f").status_code == 404


@pytest.mark.parametrize("timeout_ms", [100, 1000, ONE_DAY_MS])
def test_a_timeout_from_100_to_one_day_is_stored_and_shown(client: Client, timeout_ms: int) -> None:
    body = accept(client, "t", timeout_ms=timeout_ms, delay_ms=60_000)

    assert body["timeout_ms"] == timeout_ms
    assert get_task(client, "t").json == body


def test_the_stored_task_carries_the_timeout_as_an_int(systems: Systems) -> None:
    system = systems.start(echo, workers=1)
    client = Client(create_app(system))

    accept(client, "t", timeout_ms=2500, delay_ms=60_000)

    stored = system.get_async("t").get(timeout=ANSWER_S)
    assert stored is not None
    assert stored.timeout_ms == 2500
    assert type(stored.timeout_ms) is int


def test_without_a_timeout_the_task_shows_null_and_the_service_default_applies(
    client: Client,
) -> None:
    body = accept(client, "plain")

    assert body["timeout_ms"] is None
    assert body["result"] is None


def test_a_batch_passes_each_tasks_timeout(client: Client) -> None:
    items = [
        {"id": "a", "timeout_ms": 100, "delay_ms": 60_000},
        {"id": "b", "delay_ms": 60_000},
        {"id": "c", "timeout_ms": ONE_DAY_MS, "delay_ms": 60_000},
    ]

    result = post_batch(client, items)

    assert result.status_code == 201
    assert [task["timeout_ms"] for task in result.json] == [100, None, ONE_DAY_MS]
    assert [get_task(client, task_id).json["timeout_ms"] for task_id in "abc"] == [
        100,
        None,
        ONE_DAY_MS,
    ]


@pytest.mark.parametrize("timeout_ms", [99, ONE_DAY_MS + 1, 1000.0, "1000", True, None], ids=repr)
def test_a_batch_item_with_a_bad_timeout_is_400_with_its_index_and_nothing_is_stored(
    client: Client, timeout_ms: Any
) -> None:
    items = [{"id": "good-0"}, {"id": "good-1", "timeout_ms": 500}, {"id": "bad", "timeout_ms": 0}]
    items[2]["timeout_ms"] = timeout_ms

    result = post_batch(client, items)

    assert result.status_code == 400
    assert error_of(result) == {"error": TIMEOUT_RULE, "index": 2}
    assert stored_ids(client) == []


# --- the task as every answer shows it ---------------------------------------------------------


def test_the_result_is_written_out_verbatim_as_stored() -> None:
    # The stored text as the handler's result was encoded, spacing and number spelling included.
    stored = b'{"rows": [1, 2.50, null], "note": "\\u00e9"}'
    task = msgspec.structs.replace(new_task("t", b"null", 0), status=DONE, result=stored)

    encoded = encoder.encode(task_body(task))

    assert encoded.endswith(
        b',"timeout_ms":null,"result":' + stored + b',"target":null,"queue":"default"}'
    )


def test_without_a_result_it_is_null_and_the_timeout_is_the_tasks_own() -> None:
    task = new_task("t", b"null", 0, timeout_ms=1500)

    shown = json.loads(encoder.encode(task_body(task)))

    assert (shown["timeout_ms"], shown["result"]) == (1500, None)


@pytest.mark.parametrize("result", [b"0", b"false", b'""', b"[]", b"{}"])
def test_a_falsy_result_is_shown_not_mistaken_for_none(result: bytes) -> None:
    task = msgspec.structs.replace(new_task("t", b"null", 0), status=DONE, result=result)

    assert json.loads(encoder.encode(task_body(task)))["result"] == json.loads(result)


def test_cancel_and_retry_answers_carry_both_fields(client: Client) -> None:
    accept(client, "later", timeout_ms=700, delay_ms=60_000)

    cancelled = client.simulate_post("/task/cancel", params={"id": "later"})
    assert cancelled.status_code == 200
    assert (cancelled.json["timeout_ms"], cancelled.json["result"]) == (700, None)
    retried = client.simulate_post("/task/retry", params={"id": "later"})
    assert retried.status_code == 200
    assert (retried.json["timeout_ms"], retried.json["result"]) == (700, None)


def test_a_page_of_tasks_carries_both_fields(client: Client) -> None:
    accept(client, "a", timeout_ms=300, delay_ms=60_000)
    accept(client, "b", delay_ms=60_000)

    page = client.simulate_get("/tasks", params={"limit": "10"}).json

    assert [(task["timeout_ms"], task["result"]) for task in page] == [(300, None), (None, None)]


# --- results from a real handler (needs the issue 10 runtime) ----------------------------------


@pytest.mark.parametrize(
    "payload", [{"n": [1, 2, {"deep": None}]}, "text", 12.5, [], 0, False], ids=repr
)
def test_what_the_handler_returns_is_the_tasks_result_in_every_answer(
    make_client: Callable[..., Client], payload: Any
) -> None:
    client = make_client(echo)

    accept(client, "echo", payload=payload)
    done = wait_for_status(client, "echo", DONE)

    assert done["result"] == payload
    assert done["last_error"] is None
    listed = client.simulate_get("/tasks").json
    assert [task["result"] for task in listed] == [payload]
