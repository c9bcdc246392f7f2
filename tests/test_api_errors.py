"""Every error the API answers, through falcon's TestClient: always JSON ``{"error": ...}``."""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any, cast

import falcon.testing
import pykka
import pytest

from actors import MemoryStore, TaskSystem
from actors.repository import RepositoryActor
from api import create_app
from tests.handlers import Gate

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Sequence

    from actors import Task
    from actors.protocol.answers import Admission

NESTING = 200_000


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.open()


@pytest.fixture
def system(gate: Gate) -> Iterator[TaskSystem]:
    system = TaskSystem.start(gate, workers=1, queue_size=1000)
    yield system
    gate.open()
    system.stop(time.monotonic() + 5)


@pytest.fixture
def client(system: TaskSystem) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(system))


def error_of(result: falcon.testing.Result) -> str:
    """The message of an ``{"error": ...}`` JSON response."""
    assert result.headers["content-type"] == "application/json"
    body = json.loads(result.content)
    assert isinstance(body, dict)
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str)
    assert body["error"]
    return body["error"]


def post(client: falcon.testing.TestClient, body: bytes) -> falcon.testing.Result:
    return client.simulate_post("/enqueue", body=body)


def assert_nothing_stored(client: falcon.testing.TestClient) -> None:
    assert client.simulate_get("/tasks").json == []


# --- 400 "invalid JSON" ------------------------------------------------------------------------

NOT_JSON = {
    "plain text": b"not json",
    "invalid utf-8": b"\xff\xfe\xfd",
    "invalid utf-8 inside a string": b'{"id": "\xc3\x28"}',
    "utf-8 encoded surrogate": b'{"id": "\xed\xa0\x80"}',
    "empty body": b"",
    "only whitespace": b"  \r\n\t ",
    "truncated object": b'{"id": "a"',
    "truncated after a comma": b'{"id": "a",',
    "truncated payload": b'{"id": "a", "payload": [1, 2',
    "truncated string": b'{"id": "a',
    "truncated array": b"[1, 2",
    "lone surrogate as the body": b'"\\ud800"',
    "lone high surrogate in the id": b'{"id": "\\ud800"}',
    "lone low surrogate in the payload": b'{"id": "a", "payload": "\\udc00"}',
    "reversed surrogate pair": b'{"id": "\\ude00\\ud83d"}',
    "trailing garbage": b'{"id": "a"} trailing',
    "a second object": b'{"id": "a"} {"id": "b"}',
    "an extra closing brace": b'{"id": "a"}}',
    "trailing garbage after an array": b"[] x",
    "NaN": b'{"id": "a", "payload": NaN}',
    "Infinity": b'{"id": "a", "payload": Infinity}',
    "-Infinity": b'{"id": "a", "payload": -Infinity}',
    "single quotes": b"{'id': 'a'}",
    "trailing comma": b'{"id": "a",}',
    "unquoted key": b'{id: "a"}',
    "raw control character in a string": b'{"id": "a\nb"}',
    "form encoding": b"id=a&payload=b",
}


@pytest.mark.parametrize("body", NOT_JSON.values(), ids=NOT_JSON.keys())
def test_a_body_that_is_not_json_is_400_invalid_json(
    client: falcon.testing.TestClient, body: bytes
) -> None:
    result = post(client, body)

    assert result.status_code == 400
    assert error_of(result) == "invalid JSON"
    assert_nothing_stored(client)


# --- 400 with a specific message: valid JSON of the wrong shape ---------------------------------

NOT_AN_OBJECT = {
    "array": [],
    "array of an object": [{"id": "a"}],
    "string": "task-123",
    "number": 42,
    "true": True,
    "null": None,
}


@pytest.mark.parametrize("body", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT.keys())
def test_json_that_is_not_an_object_is_400_saying_so(
    client: falcon.testing.TestClient, body: Any
) -> None:
    result = post(client, json.dumps(body).encode())

    assert result.status_code == 400
    message = error_of(result)
    assert message != "invalid JSON"
    assert "object" in message


@pytest.mark.parametrize("body", [{}, {"payload": "x"}, {"max_retries": 1}], ids=repr)
def test_a_missing_id_is_400_naming_id(client: falcon.testing.TestClient, body: Any) -> None:
    result = post(client, json.dumps(body).encode())

    assert result.status_code == 400
    message = error_of(result)
    assert message != "invalid JSON"
    assert re.search(r"\bid\b", message), message
    assert_nothing_stored(client)


CONTROL_CHARACTERS = [chr(code) for code in range(0x20)] + ["\x7f"]

BAD_IDS = {
    "empty": "",
    "257 characters": "a" * 257,
    "257 two-byte characters": "é" * 257,
    "257 astral characters": "😀" * 257,
    **{f"U+{ord(char):04X} inside": f"task{char}1" for char in CONTROL_CHARACTERS},
    "U+0000 alone": "\x00",
    "U+007F at the end": "task\x7f",
    "a number": 123,
    "null": None,
    "true": True,
    "an array": ["a"],
    "an object": {"id": "a"},
}


@pytest.mark.parametrize("task_id", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_an_invalid_id_is_400_naming_id(client: falcon.testing.TestClient, task_id: Any) -> None:
    # json.dumps escapes U+0000-U+001F as \u00XX and sends U+007F raw: both are valid JSON.
    result = post(client, json.dumps({"id": task_id}).encode())

    assert result.status_code == 400
    message = error_of(result)
    assert message != "invalid JSON"
    assert re.search(r"\bid\b", message), message
    assert_nothing_stored(client)


BAD_MAX_RETRIES = {
    "true": True,
    "false": False,
    "float": 1.5,
    "whole float": 3.0,
    "exponent": 1e1,
    "string": "3",
    "negative": -1,
    "over 100": 101,
    "huge": 10**30,
    "null": None,
    "array": [3],
}


@pytest.mark.parametrize("max_retries", BAD_MAX_RETRIES.values(), ids=BAD_MAX_RETRIES.keys())
def test_an_invalid_max_retries_is_400_naming_max_retries(
    client: falcon.testing.TestClient, max_retries: Any
) -> None:
    result = post(client, json.dumps({"id": "a", "max_retries": max_retries}).encode())

    assert result.status_code == 400
    message = error_of(result)
    assert "max_retries" in message
    assert_nothing_stored(client)


@pytest.mark.parametrize("field", ["status", "attempts", "last_error", "priority", "ID"])
def test_an_unknown_field_is_400_naming_it(client: falcon.testing.TestClient, field: str) -> None:
    result = post(client, json.dumps({"id": "a", field: "x"}).encode())

    assert result.status_code == 400
    message = error_of(result)
    assert re.search(rf"\b{field}\b", message), message
    assert_nothing_stored(client)


def test_status_and_attempts_together_are_400_naming_one_of_them(
    client: falcon.testing.TestClient,
) -> None:
    body = {"id": "a", "status": "done", "attempts": 5}

    result = post(client, json.dumps(body).encode())

    assert result.status_code == 400
    assert re.search(r"\b(status|attempts)\b", error_of(result))
    assert_nothing_stored(client)


def test_a_payload_200000_brackets_deep_is_400_nesting_too_deep(
    client: falcon.testing.TestClient,
) -> None:
    body = b'{"id": "deep", "payload": ' + b"[" * NESTING + b"]" * NESTING + b"}"

    result = post(client, body)

    assert result.status_code == 400
    assert error_of(result) == "nesting too deep"
    assert_nothing_stored(client)


def test_a_payload_of_deeply_nested_objects_is_400_nesting_too_deep(
    client: falcon.testing.TestClient,
) -> None:
    depth = 20_000
    body = b'{"id": "deep", "payload": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"

    result = post(client, body)

    assert result.status_code == 400
    assert error_of(result) == "nesting too deep"


def test_a_body_of_200000_nested_brackets_is_400_with_a_specific_message(
    client: falcon.testing.TestClient,
) -> None:
    # Valid JSON that is both too deep and not an object: either message is true.
    result = post(client, b"[" * NESTING + b"]" * NESTING)

    assert result.status_code == 400
    assert error_of(result) in {"nesting too deep", "the body must be a JSON object"}


def test_200000_unclosed_brackets_are_400(client: falcon.testing.TestClient) -> None:
    result = post(client, b'{"id": "deep", "payload": ' + b"[" * NESTING)

    assert result.status_code == 400
    assert error_of(result) in {"invalid JSON", "nesting too deep"}


def test_a_payload_nested_500_deep_is_accepted(client: falcon.testing.TestClient) -> None:
    payload: Any = "bottom"
    for _ in range(500):
        payload = [payload]

    result = post(client, json.dumps({"id": "deep-enough", "payload": payload}).encode())

    assert result.status_code == 201
    assert result.json["payload"] == payload


# --- GET /task errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "id=", "other=x", "id"], ids=repr)
def test_get_task_without_an_id_is_400_missing_id_parameter(
    client: falcon.testing.TestClient, query: str
) -> None:
    result = client.simulate_get("/task", query_string=query)

    assert result.status_code == 400
    assert error_of(result) == "missing id parameter"


def test_get_task_for_an_unknown_id_is_404_task_not_found(
    client: falcon.testing.TestClient,
) -> None:
    result = client.simulate_get("/task", params={"id": "nobody"})

    assert result.status_code == 404
    assert error_of(result) == "task not found"


# --- routes and methods -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/index.html", "/nope", "/enqueue/extra", "/tasks/1", "/task/abc", "/healthz/", "/ENQUEUE"],
)
def test_an_unknown_route_is_404_json(client: falcon.testing.TestClient, path: str) -> None:
    for method in ("GET", "POST"):
        result = client.simulate_request(method, path)

        assert result.status_code == 404, (method, path)
        assert error_of(result)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/enqueue"),
        ("PUT", "/enqueue"),
        ("DELETE", "/enqueue"),
        ("POST", "/task"),
        ("PUT", "/task"),
        ("GET", "/task/cancel"),
        ("DELETE", "/task/retry"),
        ("GET", "/enqueue/batch"),
        ("POST", "/tasks"),
        ("PATCH", "/tasks"),
        ("POST", "/healthz"),
        ("PUT", "/healthz"),
    ],
)
def test_a_wrong_method_is_405_json_with_an_allow_header(
    client: falcon.testing.TestClient, method: str, path: str
) -> None:
    result = client.simulate_request(method, path)

    assert result.status_code == 405
    assert error_of(result)
    assert result.headers.get("allow")
    assert method not in result.headers["allow"]


# --- 503 when an actor does not answer ----------------------------------------------------------


class SilentSystem:
    """Looks like a TaskSystem to the API, but no answer ever comes."""

    queue_names = frozenset({"default"})

    def __init__(self) -> None:
        self.asked = 0

    def _never(self) -> pykka.Future[Any]:
        self.asked += 1
        return pykka.ThreadingFuture()

    def submit_async(self, task: Task) -> pykka.Future[Admission]:
        return self._never()

    def get_async(self, task_id: str) -> pykka.Future[Task | None]:
        return self._never()

    def list_page_async(self, **query: Any) -> pykka.Future[Any]:
        return self._never()

    def submit_batch_async(self, tasks: Any) -> pykka.Future[Any]:
        return self._never()

    def cancel_async(self, task_id: str) -> pykka.Future[Any]:
        return self._never()

    def requeue_async(self, task_id: str) -> pykka.Future[Any]:
        return self._never()

    def delete_async(self, task_id: str) -> pykka.Future[Any]:
        return self._never()


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/enqueue", {"body": b'{"id": "a"}'}),
        ("GET", "/task", {"params": {"id": "a"}}),
        ("GET", "/tasks", {}),
        ("GET", "/tasks", {"params": {"limit": "5", "order": "desc"}}),
        ("POST", "/enqueue/batch", {"body": b'[{"id": "a"}]'}),
        ("POST", "/task/cancel", {"params": {"id": "a"}}),
        ("POST", "/task/retry", {"params": {"id": "a"}}),
        ("DELETE", "/task", {"params": {"id": "a"}}),
    ],
    ids=["enqueue", "task", "tasks", "tasks-page", "batch", "cancel", "retry", "delete"],
)
def test_an_actor_that_does_not_answer_in_time_is_503_not_a_hang(
    method: str, path: str, kwargs: dict[str, Any]
) -> None:
    silent = SilentSystem()
    client = falcon.testing.TestClient(create_app(cast(TaskSystem, silent), request_timeout_s=0.05))
    started = time.monotonic()

    result = client.simulate_request(method, path, **kwargs)

    assert time.monotonic() - started < 2.0
    assert silent.asked == 1
    assert result.status_code == 503
    assert error_of(result)


def test_reads_after_the_actors_have_stopped_are_503_task_system_stopped() -> None:
    gate = Gate()
    gate.open()
    system = TaskSystem.start(gate, workers=1)
    client = falcon.testing.TestClient(create_app(system))
    system.stop(time.monotonic() + 5)

    for result in (client.simulate_get("/task", params={"id": "a"}), client.simulate_get("/tasks")):
        assert result.status_code == 503
        assert error_of(result) == "task system stopped"
        assert result.headers["retry-after"] == "5"


ROUTES = [
    ("POST", "/enqueue", {"body": b'{"id": "a"}'}),
    ("POST", "/enqueue/batch", {"body": b'[{"id": "a"}]'}),
    ("GET", "/task", {"params": {"id": "a"}}),
    ("GET", "/tasks", {}),
    ("GET", "/tasks", {"params": {"limit": "5", "order": "desc"}}),
    ("POST", "/task/cancel", {"params": {"id": "a"}}),
    ("POST", "/task/retry", {"params": {"id": "a"}}),
    ("DELETE", "/task", {"params": {"id": "a"}}),
    ("GET", "/stats", {}),
]
ROUTE_IDS = [
    "enqueue",
    "batch",
    "task",
    "tasks",
    "tasks-page",
    "cancel",
    "retry",
    "delete",
    "stats",
]


@pytest.mark.parametrize(("method", "path", "kwargs"), ROUTES, ids=ROUTE_IDS)
def test_a_question_to_a_stopped_repository_is_503_at_once_not_a_timeout(
    method: str, path: str, kwargs: dict[str, Any], system: TaskSystem
) -> None:
    # The requests would wait a minute for an answer; the message says they did not time out.
    client = falcon.testing.TestClient(create_app(system, request_timeout_s=60))
    (repository,) = pykka.ActorRegistry.get_by_class(RepositoryActor)
    repository.stop(timeout=5)

    result = client.simulate_request(method, path, **kwargs)

    assert result.status_code == 503
    assert error_of(result) == "task system stopped"
    assert result.headers["retry-after"] == "5"


class CrashingStore(MemoryStore):
    """A store in memory whose commits raise, once ``crash`` is set, an error that is not a
    StoreError: a bug, which stops the repository."""

    def __init__(self) -> None:
        super().__init__()
        self.crash = False

    def commit(self, tasks: Sequence[Task], deleted: Collection[str] = ()) -> None:
        if self.crash:
            raise RuntimeError("a bug in the store")
        super().commit(tasks, deleted)


def test_an_enqueue_whose_commit_crashes_the_repository_is_503_at_once(gate: Gate) -> None:
    store = CrashingStore()
    system = TaskSystem.start(gate, workers=1, open_store=lambda: store)
    client = falcon.testing.TestClient(create_app(system, request_timeout_s=60))
    store.crash = True

    result = client.simulate_post("/enqueue", body=b'{"id": "a"}')

    assert result.status_code == 503
    assert error_of(result) == "task system stopped"
    later = client.simulate_get("/task", params={"id": "a"})
    assert later.status_code == 503
    assert error_of(later) == "task system stopped"
    system.stop(time.monotonic() + 5)


# --- every response is JSON ---------------------------------------------------------------------


def test_every_status_the_api_answers_comes_as_application_json(
    client: falcon.testing.TestClient, gate: Gate, system: TaskSystem
) -> None:
    seen: dict[int, str] = {}

    def record(result: falcon.testing.Result) -> None:
        seen[result.status_code] = result.headers.get("content-type", "")
        json.loads(result.content)  # the body is JSON too

    record(client.simulate_post("/enqueue", body=b'{"id": "a"}'))
    record(client.simulate_post("/enqueue", body=b'{"id": "a"}'))
    record(client.simulate_post("/enqueue", body=b"{"))
    record(client.simulate_get("/task", params={"id": "a"}))
    record(client.simulate_get("/task", params={"id": "b"}))
    record(client.simulate_get("/tasks"))
    record(client.simulate_get("/healthz"))
    record(client.simulate_get("/nope"))
    record(client.simulate_delete("/tasks"))
    small = falcon.testing.TestClient(create_app(system, max_body_bytes=64))
    record(small.simulate_post("/enqueue", body=b"x" * 65))
    system.begin_shutdown()
    record(client.simulate_post("/enqueue", body=b'{"id": "c"}'))

    assert set(seen) == {200, 201, 400, 404, 405, 409, 413, 503}
    assert all(content_type == "application/json" for content_type in seen.values()), seen
