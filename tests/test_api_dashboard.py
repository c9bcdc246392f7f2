"""``GET /``: the dashboard's page and assets through falcon's TestClient, real actors.

What the page does in a browser is tested in ``tests/test_e2e_dashboard.py``; these check what
the service sends: content types, the Content-Security-Policy, and that everything around the
page (unknown assets, other methods, OPTIONS) is still the API's JSON.
"""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Final

import falcon.testing
import pytest

from actors import TaskSystem, noop
from api import create_app
from api.dashboard import CONTENT_SECURITY_POLICY, DASHBOARD_PATHS

if TYPE_CHECKING:
    from collections.abc import Iterator

TOKEN: Final = "s3cret-Token_0123456789"

ASSET_TYPES: Final = {
    "/static/dashboard.js": "text/javascript; charset=utf-8",
    "/static/dashboard.css": "text/css; charset=utf-8",
    "/static/favicon.svg": "image/svg+xml",
}


@pytest.fixture
def system() -> Iterator[TaskSystem]:
    system = TaskSystem.start(noop)
    yield system
    system.stop(time.monotonic() + 5)


@pytest.fixture
def client(system: TaskSystem) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(system))


class _References(HTMLParser):
    """Collects every ``src`` and ``href`` and every script element of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.inline_handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self.inline_handlers += [name for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self.scripts.append(attributes)


def test_the_page_is_html_with_a_policy_that_allows_no_inline_script(
    client: falcon.testing.TestClient,
) -> None:
    result = client.simulate_get("/")

    assert result.status_code == 200
    assert result.headers["content-type"] == "text/html; charset=utf-8"
    policy = result.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert "unsafe-inline" not in policy
    assert result.headers["x-content-type-options"] == "nosniff"
    assert result.text.startswith("<!doctype html>")


def test_the_page_loads_only_its_own_assets_and_has_no_inline_script(
    client: falcon.testing.TestClient,
) -> None:
    page = _References()
    page.feed(client.simulate_get("/").text)

    assert page.scripts == [{"src": "/static/dashboard.js", "defer": None}]
    assert page.inline_handlers == []
    assert set(page.urls) == set(ASSET_TYPES)


@pytest.mark.parametrize(("path", "content_type"), ASSET_TYPES.items())
def test_each_asset_is_served_with_its_content_type(
    client: falcon.testing.TestClient, path: str, content_type: str
) -> None:
    result = client.simulate_get(path)

    assert result.status_code == 200
    assert result.headers["content-type"] == content_type
    assert result.headers["x-content-type-options"] == "nosniff"
    assert result.content


def test_the_script_never_writes_markup(client: falcon.testing.TestClient) -> None:
    script = client.simulate_get("/static/dashboard.js")
    # Task fields are user data: the script builds the DOM from text only.
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", script.text)


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/", "/static/../app.py", "/x.html"])
def test_an_unknown_asset_is_a_json_404(client: falcon.testing.TestClient, path: str) -> None:
    result = client.simulate_get(path)

    assert result.status_code == 404
    assert result.headers["content-type"] == "application/json"
    assert result.json == {"error": "not found"}


@pytest.mark.parametrize("path", ["/", "/static/dashboard.js"])
def test_options_and_other_methods_answer_json(
    client: falcon.testing.TestClient, path: str
) -> None:
    options = client.simulate_options(path)
    post = client.simulate_post(path)

    assert options.status_code == 200
    assert options.json == {"allow": ["GET", "OPTIONS"]}
    assert options.headers["allow"] == "GET, OPTIONS"
    assert post.status_code == 405
    assert post.headers["content-type"] == "application/json"
    assert post.json == {"error": "method not allowed"}


def test_with_a_token_the_page_and_assets_are_public_and_the_data_is_not(
    system: TaskSystem,
) -> None:
    client = falcon.testing.TestClient(create_app(system, api_token=TOKEN))

    for path in sorted(DASHBOARD_PATHS):
        assert client.simulate_get(path).status_code == 200, path
    # Only the exact paths: anything else under /static/ says nothing without the token.
    assert client.simulate_get("/static/nope.js").status_code == 401
    assert client.simulate_get("/stats").status_code == 401
    assert client.simulate_get("/tasks").status_code == 401
