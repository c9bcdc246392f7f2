"""End to end: ``python main.py`` with ``API_TOKEN`` set, over real HTTP."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Final

import pytest

from tests.test_e2e import Service, assert_json_error, json_body, launch

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TOKEN: Final = "e2e-Token-7f3a9c41d2b8"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    # DEBUG logs the most: the token must appear in none of it.
    service = launch(tmp_path, "record_run", API_TOKEN=TOKEN, LOG_LEVEL="DEBUG")
    yield service
    service.kill()


def test_with_api_token_set_requests_need_the_token_and_it_is_never_logged(
    service: Service,
) -> None:
    body = json_body({"id": "task-1"})

    refused = service.request("POST", "/enqueue", body)
    wrong = service.request("POST", "/enqueue", body, {"Authorization": "Bearer not-the-token"})
    created = service.request("POST", "/enqueue", body, {"Authorization": f"Bearer {TOKEN}"})
    health = service.request("GET", "/healthz")
    service.send(signal.SIGTERM)

    for reply in (refused, wrong):
        assert reply.status == 401, reply
        assert assert_json_error(reply) == "unauthorized"
        assert reply.headers["www-authenticate"] == "Bearer"
    assert created.status == 201, created
    assert created.json()["id"] == "task-1"
    assert health.status == 200
    assert service.wait_exit() == 0
    log = service.log()
    assert "auth=bearer token" in log
    assert TOKEN not in log
