"""``GET /openapi.json``: a valid OpenAPI 3.1 document, and the app true to it (schemathesis)."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Final

import falcon.inspect
import falcon.testing
import jsonschema_rs
import pykka
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from actors import TaskSystem, noop
from api import create_app
from api.dashboard import DASHBOARD_ROUTES
from api.openapi import openapi_document
from api.schema import MAX_ID_LENGTH, MAX_RETRIES_LIMIT, MAX_TIMEOUT_MS, MIN_TIMEOUT_MS
from api.tasks import MAX_LIMIT

if TYPE_CHECKING:
    from collections.abc import Iterator

TOKEN: Final = "s3cret-Token_0123456789"
SEED_PAYLOADS: Final = [None, "text", 12.5, [1, {"a": None}], {"to": "ada@example.com"}]
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def system() -> Iterator[TaskSystem]:
    system = TaskSystem.start(noop, workers=2, queue_size=8)
    yield system
    with contextlib.suppress(pykka.ActorDeadError):
        system.stop(time.monotonic() + 5)


@pytest.fixture(params=[None, TOKEN], ids=["open", "with API_TOKEN"])
def api_schema(request: pytest.FixtureRequest, system: TaskSystem) -> schemathesis.BaseSchema:
    app = create_app(system, api_token=request.param)
    headers = {"Authorization": f"Bearer {TOKEN}"} if request.param else {}
    # Short ids hypothesis likes to try, so that /task finds tasks, /tasks pages hold some and
    # `after` names stored ones, and small limits get a Link header.
    client = falcon.testing.TestClient(app, headers=headers)
    for number, payload in enumerate(SEED_PAYLOADS):
        body = {"id": str(number), "payload": payload, "max_retries": number}
        assert client.simulate_post("/enqueue", json=body).status_code == 201
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, headers=headers)
    # The token is sent with every generated request too, not only to fetch the document.
    schema.config.update(headers=headers)
    return schema


def test_the_document_is_served_as_json(system: TaskSystem) -> None:
    result = falcon.testing.TestClient(create_app(system)).simulate_get("/openapi.json")
    assert result.status_code == 200
    assert result.headers["content-type"] == "application/json"
    assert result.json == openapi_document(bearer_auth=False)


def test_the_document_is_protected_like_every_other_endpoint(system: TaskSystem) -> None:
    client = falcon.testing.TestClient(create_app(system, api_token=TOKEN))
    assert client.simulate_get("/openapi.json").status_code == 401
    result = client.simulate_get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert result.json == openapi_document(bearer_auth=True)


@pytest.mark.parametrize("bearer_auth", [False, True])
def test_every_component_schema_is_valid_json_schema(bearer_auth: bool) -> None:
    document = openapi_document(bearer_auth=bearer_auth)
    assert document["openapi"].startswith("3.1.")
    for name, schema in document["components"]["schemas"].items():
        # OpenAPI 3.1 schemas are JSON Schema 2020-12.
        assert jsonschema_rs.meta.is_valid(
            {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        ), name


def test_the_bounds_are_the_decoders_own() -> None:
    schemas = openapi_document(bearer_auth=False)["components"]["schemas"]
    enqueue = schemas["EnqueueRequest"]
    assert enqueue["required"] == ["id"]
    assert enqueue["additionalProperties"] is False
    assert enqueue["properties"]["id"]["minLength"] == 1
    assert enqueue["properties"]["id"]["maxLength"] == MAX_ID_LENGTH == 256
    assert enqueue["properties"]["max_retries"]["minimum"] == 0
    assert enqueue["properties"]["max_retries"]["maximum"] == MAX_RETRIES_LIMIT == 100
    assert enqueue["properties"]["payload"] == {"default": None}  # any JSON value
    # The target's schema is a component of its own: resolved from the document's components.
    validator = jsonschema_rs.Draft202012Validator({**enqueue, "components": {"schemas": schemas}})
    assert validator.is_valid({"id": "x" * 256, "payload": [1, {"a": None}], "max_retries": 100})
    assert not validator.is_valid({"id": "x" * 257})
    assert not validator.is_valid({"id": "a\x1fb"})
    assert not validator.is_valid({"id": "a\x7fb"})
    assert not validator.is_valid({"id": ""})
    assert not validator.is_valid({"id": "a", "max_retries": 101})
    assert not validator.is_valid({"id": "a", "status": "done"})
    assert enqueue["properties"]["timeout_ms"]["minimum"] == MIN_TIMEOUT_MS == 100
    assert enqueue["properties"]["timeout_ms"]["maximum"] == MAX_TIMEOUT_MS == 86_400_000
    assert validator.is_valid({"id": "a", "timeout_ms": 100})
    assert validator.is_valid({"id": "a", "timeout_ms": 86_400_000})
    target = {"url": "https://h.example/in", "method": "PUT", "headers": {"X-A": "b"}}
    assert validator.is_valid({"id": "a", "target": target})
    assert not validator.is_valid({"id": "a", "target": {**target, "method": "HEAD"}})
    assert not validator.is_valid({"id": "a", "target": {**target, "extra": 1}})
    assert not validator.is_valid({"id": "a", "target": {"method": "GET"}})
    assert not validator.is_valid({"id": "a", "target": {"url": "x" * 2049}})
    assert not validator.is_valid({"id": "a", "timeout_ms": 99})
    assert not validator.is_valid({"id": "a", "timeout_ms": 86_400_001})
    assert not validator.is_valid({"id": "a", "timeout_ms": None})
    assert not validator.is_valid({"id": "a", "timeout_ms": "1000"})
    limit = next(
        p
        for p in openapi_document(bearer_auth=False)["paths"]["/tasks"]["get"]["parameters"]
        if p["name"] == "limit"
    )
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}


def test_a_task_always_has_a_timeout_and_a_result_each_an_integer_or_any_json_or_null() -> None:
    schemas = openapi_document(bearer_auth=False)["components"]["schemas"]
    task = schemas["TaskBody"]
    assert {"timeout_ms", "result", "target"} <= set(task["required"])
    base = {
        "id": "t",
        "payload": None,
        "max_retries": 3,
        "status": "done",
        "attempts": 1,
        "last_error": None,
        "created_at": "2026-11-28T03:55:34.616802Z",
        "updated_at": "2026-11-28T03:55:34.616802Z",
        "next_attempt_at": None,
        "priority": 0,
        "target": None,
    }
    validator = jsonschema_rs.Draft202012Validator({**task, "components": {"schemas": schemas}})
    for timeout_ms, result in [(None, None), (1000, {"rows": [1, 2]}), (100, "text"), (None, 0)]:
        assert validator.is_valid({**base, "timeout_ms": timeout_ms, "result": result})
    assert not validator.is_valid({**base, "timeout_ms": "1000", "result": None})
    assert not validator.is_valid({**base, "result": None})
    shown = {"url": "https://h.example/", "method": "POST", "headers": {"X-Key": "***"}}
    assert validator.is_valid({**base, "timeout_ms": None, "result": None, "target": shown})


def test_every_route_of_the_app_is_in_the_document(system: TaskSystem) -> None:
    app = create_app(system)
    routes = {
        route.path: {method.method.lower() for method in route.methods if not method.internal}
        for route in falcon.inspect.inspect_routes(app.app)
        # The dashboard is a page for people, not part of the JSON API the document describes.
        if route.path not in DASHBOARD_ROUTES
    }
    paths = openapi_document(bearer_auth=False)["paths"]
    assert set(paths) == set(routes)
    for path, methods in routes.items():
        # OPTIONS is the same on every route: the document's description says it once.
        assert set(paths[path]) == methods - {"options"}, path


def test_with_a_token_every_protected_operation_answers_401_and_the_probes_are_open() -> None:
    document = openapi_document(bearer_auth=True)
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path in ("/healthz", "/readyz"):
                assert operation["security"] == []
                assert "401" not in operation["responses"]
            else:
                assert "401" in operation["responses"]


OPERATIONS: Final = [
    (method.upper(), path)
    for path, operations in openapi_document(bearer_auth=False)["paths"].items()
    for method in operations
]


# schemathesis's own pytest integration (`from_fixture` + `parametrize`) breaks on pytest 9's
# nodes; driving hypothesis directly over each operation's strategy needs nothing from it.
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_the_app_answers_as_the_document_says(
    api_schema: schemathesis.BaseSchema, method: str, path: str
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=50,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    conforms()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_without_the_token_the_answer_is_the_documented_one(
    system: TaskSystem, method: str, path: str
) -> None:
    app = create_app(system, api_token=TOKEN)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    # The token fetches the document only: the case below is sent without it.
    operation = schemathesis.openapi.from_wsgi("/openapi.json", app, headers=headers)[path][method]
    inputs = {"/enqueue": {"body": {"id": "t"}}, "/task": {"query": {"id": "t"}}}
    case = operation.Case(**inputs.get(path, {}))
    response = case.call()
    assert response.status_code == (200 if path in ("/healthz", "/readyz") else 401)
    case.validate_response(response, checks=CHECKS)
