"""``create_app``: the Falcon application, built from the actor system it talks to."""

from __future__ import annotations

from typing import TYPE_CHECKING

import falcon

from actors.reply import SystemStopped
from actors.store import StoreError
from api.auth import OPEN_PATHS, BearerTokenAuth
from api.control import cancel_resource, retry_resource
from api.dashboard import DASHBOARD_PATHS, add_dashboard_routes
from api.enqueue import BatchEnqueueResource, EnqueueResource
from api.errors import (
    handle_store_error,
    handle_system_stopped,
    handle_unexpected,
    serialize_error,
)
from api.health import HealthResource
from api.metrics import METRICS_PATH, Metrics, MetricsResource
from api.openapi import OPENAPI_PATH, OpenApiResource
from api.queues import add_queue_routes
from api.reply import REQUEST_TIMEOUT_S
from api.request_id import RequestIds
from api.schedules import add_schedule_routes
from api.stats import InvalidCount, ReadinessResource, StatsResource
from api.tasks import DEFAULT_LISTINGS_MAX, TaskListResource, TaskResource

if TYPE_CHECKING:
    from actors.allow_list import AllowList
    from actors.system import TaskSystem

DEFAULT_MAX_BODY_BYTES = 1_048_576


def create_app(
    system: TaskSystem,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
    api_token: str | None = None,
    metrics: Metrics | bool = True,
    metrics_public: bool = False,
    listings_max: int = DEFAULT_LISTINGS_MAX,
    target_allow: AllowList | None = None,
) -> RequestIds:
    """The REST API over ``system``; every response, errors included, is JSON (but /metrics and
    the dashboard's page and assets).

    ``metrics``: a Metrics whose ``tasks`` the system's workers observe, True for a fresh one
    (its attempt histograms then stay empty), or False for no /metrics and no measuring at all.
    ``metrics_public`` opens /metrics to scrapers without ``api_token``. ``listings_max``
    bounds the unpaged ``GET /tasks`` answers streamed at once. ``target_allow``: the URL
    prefixes a task's target may point at (TARGET_ALLOW); None allows none.
    """
    if metrics is True:
        metrics = Metrics()
    # The app's router, named: HTTP metrics look up the route of a request refused before routing.
    router = falcon.routing.CompiledRouter()
    app = falcon.App(media_type=falcon.MEDIA_JSON, router=router)
    app.set_error_serializer(serialize_error)
    # Before authentication, so that HTTP metrics see the 401s it raises.
    if metrics:
        metrics.http.route_with(router)
        app.add_middleware(metrics.http)
    open_paths = OPEN_PATHS | {METRICS_PATH} if metrics and metrics_public else OPEN_PATHS
    if api_token:
        # Not installed without a token: an open service pays nothing per request.
        # The dashboard's page and assets hold no data: its script asks for the token.
        app.add_middleware(BearerTokenAuth(api_token, open_paths=open_paths | DASHBOARD_PATHS))
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(SystemStopped, handle_system_stopped)
    app.add_error_handler(StoreError, handle_store_error)
    invalid = InvalidCount()
    app.add_route(
        "/enqueue",
        EnqueueResource(
            system,
            max_body_bytes=max_body_bytes,
            timeout_s=request_timeout_s,
            invalid=invalid,
            allow=target_allow,
        ),
    )
    app.add_route(
        "/enqueue/batch",
        BatchEnqueueResource(
            system,
            max_body_bytes=max_body_bytes,
            timeout_s=request_timeout_s,
            invalid=invalid,
            allow=target_allow,
        ),
    )
    app.add_route("/task", TaskResource(system, timeout_s=request_timeout_s))
    app.add_route("/task/cancel", cancel_resource(system, timeout_s=request_timeout_s))
    app.add_route("/task/retry", retry_resource(system, timeout_s=request_timeout_s))
    app.add_route(
        "/tasks",
        TaskListResource(system, timeout_s=request_timeout_s, listings_max=listings_max),
    )
    add_queue_routes(app, system, timeout_s=request_timeout_s)
    add_schedule_routes(
        app,
        system,
        max_body_bytes=max_body_bytes,
        timeout_s=request_timeout_s,
        allow=target_allow,
    )
    app.add_route("/healthz", HealthResource())
    app.add_route("/stats", StatsResource(system, invalid, timeout_s=request_timeout_s))
    app.add_route("/readyz", ReadinessResource(system, timeout_s=request_timeout_s))
    if metrics:
        metrics.watch(system, invalid, timeout_s=request_timeout_s)
        app.add_route(METRICS_PATH, MetricsResource(metrics.registry))
    app.add_route(
        OPENAPI_PATH,
        OpenApiResource(bearer_auth=bool(api_token), metrics=bool(metrics), open_paths=open_paths),
    )
    add_dashboard_routes(app)
    return RequestIds(app)
