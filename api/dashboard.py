"""``GET /``: the dashboard, one static page whose script uses only the public JSON API.

The page, its stylesheet and its script live in ``api/static/`` (package data) and are read into
memory once, at import: serving them is a dictionary lookup, and a missing file fails at startup
rather than on the first visit. They hold no data, so they are served without the token; the
script asks for it when the API answers 401.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Final, NamedTuple

import falcon

from api.options import JsonOptions

if TYPE_CHECKING:
    from collections.abc import Mapping

PAGE_PATH: Final = "/"
STATIC_PREFIX: Final = "/static/"
STATIC_ROUTE: Final = STATIC_PREFIX + "{name}"
DASHBOARD_ROUTES: Final = frozenset({PAGE_PATH, STATIC_ROUTE})
"""The dashboard's route templates: a page for people, so not in the API's OpenAPI document."""

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        # Everything from this origin only, and no inline script or style: if a task field ever
        # reached the DOM as markup, the browser would still refuse to run it.
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


class Asset(NamedTuple):
    content_type: str
    data: bytes


_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _load(name: str) -> Asset:
    data = resources.files(__package__).joinpath("static", name).read_bytes()
    return Asset(_TYPES[name[name.rindex(".") :]], data)


PAGE: Final = _load("index.html")
ASSETS: Final[Mapping[str, Asset]] = {
    name: _load(name) for name in ("dashboard.css", "dashboard.js", "favicon.svg")
}

DASHBOARD_PATHS: Final = frozenset({PAGE_PATH, *(STATIC_PREFIX + name for name in ASSETS)})
"""Every path the dashboard serves: public even with ``API_TOKEN`` (they hold no data)."""


def _serve(resp: falcon.Response, asset: Asset) -> None:
    resp.content_type = asset.content_type
    resp.data = asset.data
    # Revalidate on every load, so an upgraded service never runs against a stale script.
    resp.cache_control = ["no-cache"]
    resp.set_header("X-Content-Type-Options", "nosniff")


class DashboardPage(JsonOptions):
    """``GET /``: the page, with a Content-Security-Policy that allows no inline script."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _serve(resp, PAGE)
        resp.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        resp.set_header("Referrer-Policy", "no-referrer")


class StaticAsset(JsonOptions):
    """``GET /static/{name}``: the page's stylesheet and script; anything else is a JSON 404."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        asset = ASSETS.get(name)
        if asset is None:
            raise falcon.HTTPNotFound()
        _serve(resp, asset)

    def on_options(self, req: falcon.Request, resp: falcon.Response, name: str = "") -> None:
        super().on_options(req, resp)


def add_dashboard_routes(app: falcon.App) -> None:
    """Mount the page and its assets on ``app``."""
    app.add_route(PAGE_PATH, DashboardPage())
    app.add_route(STATIC_ROUTE, StaticAsset())
