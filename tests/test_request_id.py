"""``X-Request-ID`` through falcon's TestClient: taken if sane, else made; always echoed; logged."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any, Final, cast

import falcon.testing
import pykka
import pytest

from actors import TaskSystem, noop
from api import create_app
from api.logs import configure_logging
from api.request_id import MAX_LENGTH, accept_or_generate

if TYPE_CHECKING:
    from collections.abc import Iterator

TOKEN: Final = "request-id-Token_0123456789"
GENERATED: Final = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def system() -> Iterator[TaskSystem]:
    system = TaskSystem.start(noop, workers=1)
    yield system
    with contextlib.suppress(pykka.ActorDeadError):
        system.stop(time.monotonic() + 5)


@pytest.fixture
def client(system: TaskSystem) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(system))


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """JSON log lines at DEBUG into a buffer; the root logger restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream)
    yield stream
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize(
    "given",
    ["abc", "req-2026-11-28.0001", "x" * MAX_LENGTH, "!~{}[]:;/=+", "0f3c" * 8],
    ids=["short", "dotted", "longest", "punctuation", "hex"],
)
def test_a_sane_id_is_taken_as_it_is(given: str) -> None:
    assert accept_or_generate(given) == given


@pytest.mark.parametrize(
    "given",
    [None, "", "x" * (MAX_LENGTH + 1), "two words", "tab\there", "nul\x00", "del\x7f", "caf\xe9"],
    ids=["absent", "empty", "too long", "space", "tab", "nul", "del", "not ascii"],
)
def test_anything_else_is_replaced_by_a_fresh_id(given: str | None) -> None:
    made = accept_or_generate(given)

    assert GENERATED.fullmatch(made)
    assert made != accept_or_generate(given)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/enqueue", 201),
        ("POST", "/enqueue", 400),
        ("GET", "/task", 404),
        ("GET", "/nope", 404),
        ("DELETE", "/tasks", 405),
        ("OPTIONS", "/tasks", 200),
        ("GET", "/metrics", 200),
        ("GET", "/healthz", 200),
    ],
)
def test_every_answer_echoes_the_request_id(
    client: falcon.testing.TestClient, method: str, path: str, status: int
) -> None:
    body = json.dumps({"id": "t"}) if status == 201 else "not json"
    params = {"id": "missing"} if path == "/task" else None

    result = client.simulate_request(
        method, path, body=body, params=params, headers={"X-Request-ID": "echo-me"}
    )

    assert result.status_code == status
    assert result.headers["x-request-id"] == "echo-me"


def test_a_401_echoes_the_request_id_too(system: TaskSystem) -> None:
    client = falcon.testing.TestClient(create_app(system, api_token=TOKEN))

    result = client.simulate_get("/stats", headers={"X-Request-ID": "refused-1"})

    assert result.status_code == 401
    assert result.headers["x-request-id"] == "refused-1"


def test_without_a_sane_id_each_answer_carries_a_fresh_one(
    client: falcon.testing.TestClient,
) -> None:
    plain = client.simulate_get("/healthz").headers["x-request-id"]
    insane = client.simulate_get(
        "/healthz", headers={"X-Request-ID": "y" * (MAX_LENGTH + 1)}
    ).headers["x-request-id"]
    other = client.simulate_get("/healthz").headers["x-request-id"]

    assert GENERATED.fullmatch(plain) and GENERATED.fullmatch(insane) and GENERATED.fullmatch(other)
    assert len({plain, insane, other}) == 3


def test_the_lines_a_request_causes_carry_its_id_and_tie_it_to_the_task(
    client: falcon.testing.TestClient, log_lines: io.StringIO
) -> None:
    result = client.simulate_post(
        "/enqueue", body=json.dumps({"id": "traced"}), headers={"X-Request-ID": "trace-1"}
    )
    logging.getLogger("tests").info("after the request")

    assert result.status_code == 201
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    accepted = [line for line in lines if line["message"] == "task 'traced' accepted"]
    assert accepted == [
        {
            "time": accepted[0]["time"],
            "level": "DEBUG",
            "logger": "api.enqueue",
            "message": "task 'traced' accepted",
            "request_id": "trace-1",
            "task_id": "traced",
            "attempt": 0,
        }
    ]
    answered = [line for line in lines if line["logger"] == "api.request_id"]
    assert [(line["message"], line["request_id"]) for line in answered] == [
        ("POST /enqueue answered 201 Created", "trace-1")
    ]
    # The id belongs to the request: a line logged after it on the same thread has none.
    [after] = [line for line in lines if line["message"] == "after the request"]
    assert "request_id" not in after


class BrokenSystem:
    """A fake task system whose stats question hits a bug."""

    def stats_async(self) -> Any:
        raise RuntimeError("a bug")


def test_an_unexpected_error_is_logged_with_the_request_id(log_lines: io.StringIO) -> None:
    app = create_app(cast("TaskSystem", BrokenSystem()), metrics=False)
    client = falcon.testing.TestClient(app)

    result = client.simulate_get("/stats", headers={"X-Request-ID": "bug-1"})

    assert result.status_code == 500
    assert result.headers["x-request-id"] == "bug-1"
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    [error] = [line for line in lines if line["level"] == "ERROR"]
    assert error["request_id"] == "bug-1"
    assert "RuntimeError: a bug" in error["exception"]
