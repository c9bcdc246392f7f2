"""``API_TOKEN``: bearer authentication through falcon's TestClient, real actors."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Final

import falcon.testing
import pytest

from actors import TaskSystem, noop
from api import create_app
from api.auth import BearerTokenAuth

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TOKEN: Final = "s3cret-Token_0123456789"
GOOD: Final = {"Authorization": f"Bearer {TOKEN}"}

# (method, path, body): every route and method a client can try, known or not.
PROTECTED: Final = [
    ("POST", "/enqueue", json.dumps({"id": "t"})),
    ("GET", "/task?id=t", None),
    ("GET", "/tasks", None),
    ("GET", "/stats", None),
    ("POST", "/enqueue/batch", json.dumps([{"id": "t"}])),
    ("POST", "/task/cancel?id=t", None),
    ("POST", "/task/retry?id=t", None),
    ("DELETE", "/task?id=t", None),
    ("GET", "/tasks?order=desc&limit=5", None),
    ("GET", "/openapi.json", None),
    ("GET", "/nowhere", None),
    ("POST", "/nowhere", json.dumps({"id": "t"})),
    ("DELETE", "/tasks", None),
    ("PUT", "/enqueue", json.dumps({"id": "t"})),
    ("GET", "/enqueue", None),
    ("OPTIONS", "/enqueue", None),
    ("OPTIONS", "/tasks", None),
    ("OPTIONS", "/nowhere", None),
]

BAD_CREDENTIALS: Final = {
    "no header": {},
    "basic scheme": {"Authorization": "Basic dXNlcjpzM2NyZXQ="},
    "basic scheme with the token": {"Authorization": f"Basic {TOKEN}"},
    "token without a scheme": {"Authorization": TOKEN},
    "wrong token of the same length": {"Authorization": f"Bearer {'x' * len(TOKEN)}"},
    "token one character short": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "token one character long": {"Authorization": f"Bearer {TOKEN}x"},
    "empty bearer": {"Authorization": "Bearer "},
    "bare scheme": {"Authorization": "Bearer"},
    "empty header": {"Authorization": ""},
    "token in another header": {"X-Api-Token": TOKEN},
}


@pytest.fixture
def make_client() -> Iterator[Callable[..., falcon.testing.TestClient]]:
    """Build a TestClient over a fresh TaskSystem with ``api_token``; stop them all at the end."""
    systems: list[TaskSystem] = []

    def make(api_token: str | None = TOKEN) -> falcon.testing.TestClient:
        system = TaskSystem.start(noop)
        systems.append(system)
        return falcon.testing.TestClient(create_app(system, api_token=api_token))

    yield make
    for system in systems:
        system.stop(time.monotonic() + 5)


@pytest.fixture
def client(make_client: Callable[..., falcon.testing.TestClient]) -> falcon.testing.TestClient:
    return make_client()


def simulate(
    client: falcon.testing.TestClient,
    method: str,
    path: str,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> falcon.testing.Result:
    route, _, query = path.partition("?")
    return client.simulate_request(
        method, route, query_string=query or None, body=body, headers=headers
    )


def assert_unauthorized(result: falcon.testing.Result) -> None:
    assert result.status_code == 401, result.text
    assert result.json == {"error": "unauthorized"}
    assert result.headers["content-type"] == "application/json"
    assert result.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_every_route_and_method_without_the_token_is_401_with_a_bearer_challenge(
    client: falcon.testing.TestClient, method: str, path: str, body: str | None
) -> None:
    assert_unauthorized(simulate(client, method, path, body))


@pytest.mark.parametrize("headers", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_anything_but_the_right_bearer_token_is_401(
    client: falcon.testing.TestClient,
    method: str,
    path: str,
    body: str | None,
    headers: dict[str, str],
) -> None:
    assert_unauthorized(simulate(client, method, path, body, headers))


def test_an_enqueue_refused_as_unauthorized_stores_nothing(
    client: falcon.testing.TestClient,
) -> None:
    refused = client.simulate_post("/enqueue", body=json.dumps({"id": "t"}))

    assert_unauthorized(refused)
    assert client.simulate_get("/task", params={"id": "t"}, headers=GOOD).status_code == 404
    assert client.simulate_get("/tasks", headers=GOOD).json == []


def test_the_right_token_reaches_every_endpoint(client: falcon.testing.TestClient) -> None:
    created = client.simulate_post("/enqueue", body=json.dumps({"id": "t"}), headers=GOOD)
    found = client.simulate_get("/task", params={"id": "t"}, headers=GOOD)
    listed = client.simulate_get("/tasks", headers=GOOD)
    options = client.simulate_options("/enqueue", headers=GOOD)

    assert created.status_code == 201, created.text
    assert created.json["id"] == "t"
    assert found.status_code == 200, found.text
    assert found.json["id"] == "t"
    assert listed.status_code == 200, listed.text
    assert [task["id"] for task in listed.json] == ["t"]
    assert options.status_code == 200, options.text


def test_with_the_right_token_unknown_routes_and_wrong_methods_answer_as_usual(
    client: falcon.testing.TestClient,
) -> None:
    unknown = client.simulate_get("/nowhere", headers=GOOD)
    wrong_method = client.simulate_delete("/tasks", headers=GOOD)

    assert unknown.status_code == 404
    assert unknown.json == {"error": "not found"}
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json


def test_the_scheme_is_case_insensitive(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/tasks", headers={"Authorization": f"bearer {TOKEN}"})
    assert result.status_code == 200, result.text


def test_the_token_itself_is_case_sensitive(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/tasks", headers={"Authorization": f"Bearer {TOKEN.upper()}"})
    assert_unauthorized(result)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_healthz_stays_open(client: falcon.testing.TestClient, headers: dict[str, str]) -> None:
    result = client.simulate_get("/healthz", headers=headers)

    assert result.status_code == 200
    assert result.json == {"status": "ok"}


def test_readyz_is_not_behind_the_token(client: falcon.testing.TestClient) -> None:
    # Whether or not the route exists yet, a load balancer's probe is never asked for a token.
    assert client.simulate_get("/readyz").status_code != 401


@pytest.mark.parametrize("api_token", [None, ""])
def test_without_a_token_configured_nothing_is_asked(
    make_client: Callable[..., falcon.testing.TestClient], api_token: str | None
) -> None:
    client = make_client(api_token)

    created = client.simulate_post("/enqueue", body=json.dumps({"id": "t"}))
    listed = client.simulate_get("/tasks", headers={"Authorization": "Bearer anything"})

    assert created.status_code == 201, created.text
    assert listed.status_code == 200, listed.text


def test_the_middleware_refuses_an_empty_token() -> None:
    with pytest.raises(ValueError, match="empty"):
        BearerTokenAuth("")


def test_the_middleware_does_not_show_its_token() -> None:
    assert TOKEN not in repr(BearerTokenAuth(TOKEN))


def test_unauthorized_control_requests_change_nothing(
    client: falcon.testing.TestClient,
) -> None:
    delayed = json.dumps({"id": "kept", "delay_ms": 3_600_000})
    assert client.simulate_post("/enqueue", body=delayed, headers=GOOD).status_code == 201

    for method, route in [("POST", "/task/cancel"), ("DELETE", "/task"), ("POST", "/task/retry")]:
        result = client.simulate_request(method, route, params={"id": "kept"})
        assert_unauthorized(result)
    batch = json.dumps([{"id": "never"}])
    assert_unauthorized(client.simulate_post("/enqueue/batch", body=batch))

    kept = client.simulate_get("/task", params={"id": "kept"}, headers=GOOD).json
    assert kept["status"] == "queued"
    assert client.simulate_get("/task", params={"id": "never"}, headers=GOOD).status_code == 404
