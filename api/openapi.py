"""``GET /openapi.json``: the API's OpenAPI 3.1 contract, built once from the structs it uses.

The request and response schemas are generated from the msgspec structs the decoders and encoders
use (``api/schema.py``, ``api/stats.py``), so the validation bounds in the document are the ones
the service enforces. ``tests/test_openapi.py`` keeps the rest (paths, status codes, headers) true
by running schemathesis against the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final, get_args

import msgspec

from actors.protocol.answers import Readiness
from actors.stats import StatsBody
from actors.task import STATUSES
from api.auth import OPEN_PATHS
from api.metrics import METRICS_PATH
from api.options import JsonOptions
from api.schedules import MAX_SCHEDULE_ID_LENGTH, ScheduleBody, ScheduleRequest
from api.schema import (
    BatchRequest,
    EnqueueRequest,
    ErrorBody,
    ItemErrorBody,
    TaskBody,
    TaskFields,
    encoder,
)
from api.stats import ReadinessBody
from api.tasks import MAX_LIMIT, ORDERS

if TYPE_CHECKING:
    import falcon

OPENAPI_PATH: Final = "/openapi.json"

_REF: Final = "#/components/schemas/{name}"


def _schema_twin(struct: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """``struct`` with each ``Raw`` default (which msgspec cannot put in a schema) as its JSON
    value; every field's type, and so every bound, is the decoder's own."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for field in msgspec.structs.fields(struct):
        if isinstance(field.default, msgspec.Raw):
            fields.append((field.name, Any, msgspec.json.decode(field.default)))
        elif field.required:
            fields.append((field.name, field.type))
        else:
            fields.append((field.name, field.type, field.default))
    return msgspec.defstruct(
        struct.__name__,
        fields,
        forbid_unknown_fields=struct.__struct_config__.forbid_unknown_fields,
        frozen=True,
        kw_only=True,  # a required field (an enqueue's id) may follow optional inherited ones
        namespace={"__doc__": struct.__doc__},
    )


_ENQUEUE_TWIN: Final = _schema_twin(EnqueueRequest)
(_ENQUEUE, _BATCH, _TASK, _ERROR, _ITEM_ERROR, _STATS, _READINESS), _COMPONENTS = (
    msgspec.json.schema_components(
        (
            _ENQUEUE_TWIN,
            # The batch's own bounds (1 to 1000 items) around the same item schema.
            Annotated[list[_ENQUEUE_TWIN], *get_args(BatchRequest)[1:]],  # type: ignore[valid-type]
            TaskBody,
            ErrorBody,
            ItemErrorBody,
            StatsBody,
            ReadinessBody,
        ),
        ref_template=_REF,
    )
)
# The structs keep `status` a plain string; the values it takes are known here.
_COMPONENTS["TaskBody"]["properties"]["status"]["enum"] = list(STATUSES)
_COMPONENTS["ReadinessBody"]["properties"]["status"]["enum"] = [r.value for r in Readiness]

_TARGET_TEXT: Final = (
    "With `target`, each attempt is one HTTP request to `target.url` instead of a call of"
    " `TASK_HANDLER`: allowed only under a prefix of `TARGET_ALLOW` (else 400"
    ' `"target not allowed"`). The request carries the payload as its JSON body (none for'
    " `GET`), `Content-Type: application/json`, the target's headers, `Task-Id` (the id's"
    " UTF-8 bytes), `Task-Attempt` (1 on the first) and, with `TARGET_SIGNING_KEYS`,"
    " `Task-Signature: t=<unix seconds>,v1=<hex>[,v1=...]`: per key, the hex HMAC-SHA256 of"
    " `<t>.<task id>.` followed by the exact body bytes. A 2xx answer makes the task done"
    ' with the result `{"status": <code>, "body": <JSON or text>}`; 408, 429, 5xx, a timeout'
    " or a connection failure is a failed attempt, retried with backoff and never sooner than"
    " its `Retry-After` (at most a day); any other status fails the task at once. Redirects are"
    ' not followed. Answers show the header names with every value `"***"`.'
)

_HEALTH: Final = {
    "type": "object",
    "properties": {"status": {"const": "ok"}},
    "required": ["status"],
}
_RETRY_AFTER: Final = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "integer", "minimum": 0},
}
_LINK: Final = {
    "description": 'With `limit`, while another page follows: `</tasks?...>; rel="next"`.',
    "schema": {"type": "string", "pattern": r'^</tasks\?[^>]*>; rel="next"$'},
}
_BUSY: Final = (
    "The task system did not answer in time (with `Retry-After`), is shutting down, has"
    " stopped (`task system stopped`, with `Retry-After`), or (for a change) the store cannot"
    " be written (`store unavailable`, with `Retry-After`)."
)


def _json(schema: dict[str, Any], description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = {name.replace("_", "-"): header for name, header in headers.items()}
    return response


def _error(description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    return _json(_ERROR, description, **headers)


def _query(
    name: str, schema: dict[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


_ID: Final = _query("id", {"type": "string", "minLength": 1}, "The task's id.", required=True)


def _task_action(operation_id: str, summary: str, conflict: str, **more: Any) -> dict[str, Any]:
    """An action on one task named by ``id``: cancel, retry, delete."""
    responses: dict[str, Any] = {
        "200": _json(_TASK, "The task after the action."),
        "400": _error("`id` is missing or empty."),
        "404": _error("No task with this id."),
        "409": _error(conflict),
        "503": _error(_BUSY, Retry_After=_RETRY_AFTER),
    }
    responses.update(more)
    return {
        "operationId": operation_id,
        "summary": summary,
        "parameters": [_ID],
        "responses": responses,
    }


_QUEUE: Final = {"$ref": _REF.format(name="QueueInfo")}
_QUEUE_NAME: Final = _query(
    "name", {"type": "string", "minLength": 1}, "The queue's name.", required=True
)


def _queue_action(operation_id: str, summary: str) -> dict[str, Any]:
    """Pause or resume one queue named by ``name``."""
    return {
        "operationId": operation_id,
        "summary": summary,
        "parameters": [_QUEUE_NAME],
        "responses": {
            "200": _json(_QUEUE, "The queue after the action."),
            "400": _error("`name` is missing or empty."),
            "404": _error('No queue with this name (`"queue not found"`).'),
            "503": _error(_BUSY, Retry_After=_RETRY_AFTER),
        },
    }


_QUEUE_PATHS: Final[dict[str, dict[str, Any]]] = {
    "/queues": {
        "get": {
            "operationId": "listQueues",
            "summary": "Each queue QUEUES declares, in that order, as it is now.",
            "description": (
                "In a cluster (DATABASE_URL) `waiting`, `scheduled` and `paused` are the whole "
                "cluster's; `workers` and `busy` are the answering instance's."
            ),
            "responses": {
                "200": _json({"type": "array", "items": _QUEUE}, "The queues."),
                "503": _error(_BUSY, Retry_After=_RETRY_AFTER),
            },
        }
    },
    "/queues/pause": {
        "post": _queue_action(
            "pauseQueue",
            "Pause a queue: it still accepts tasks and lets running attempts finish, but starts"
            " none until resumed. With `DB_PATH` the pause survives a restart.",
        )
    },
    "/queues/resume": {
        "post": _queue_action("resumeQueue", "Resume a paused queue: its tasks start again.")
    },
}


def _schedule_request_twin() -> type[msgspec.Struct]:
    """ScheduleRequest with its ``task`` (read as Raw, then checked as TaskFields) shown as the
    TaskFields it must be."""
    task = _schema_twin(TaskFields)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for field in msgspec.structs.fields(ScheduleRequest):
        if field.name == "task":
            fields.append((field.name, task))
        elif field.required:
            fields.append((field.name, field.type))
        else:
            fields.append((field.name, field.type, field.default))
    return msgspec.defstruct(
        "ScheduleRequest",
        fields,
        forbid_unknown_fields=True,
        frozen=True,
        namespace={"__doc__": ScheduleRequest.__doc__},
    )


(_SCHEDULE_REQUEST, _SCHEDULE), _SCHEDULE_COMPONENTS = msgspec.json.schema_components(
    (_schedule_request_twin(), ScheduleBody), ref_template=_REF
)
_COMPONENTS.update(_SCHEDULE_COMPONENTS)
_SCHEDULE_ID: Final = _query(
    "id", {"type": "string", "minLength": 1}, "The schedule's id.", required=True
)
_SCHEDULE_NOT_FOUND: Final = 'No schedule with this id (`"schedule not found"`).'


def _schedule_action(operation_id: str, summary: str) -> dict[str, Any]:
    """Pause or resume one schedule named by ``id``."""
    return {
        "operationId": operation_id,
        "summary": summary,
        "parameters": [_SCHEDULE_ID],
        "responses": {
            "200": _json(_SCHEDULE, "The schedule after the action."),
            "400": _error("`id` is missing or empty."),
            "404": _error(_SCHEDULE_NOT_FOUND),
            "503": _error(_BUSY, Retry_After=_RETRY_AFTER),
        },
    }


_SCHEDULE_PATHS: Final[dict[str, dict[str, Any]]] = {
    "/schedules": {
        "post": {
            "operationId": "createSchedule",
            "summary": "Create a schedule: a task enqueued on a clock, by cron or period.",
            "requestBody": {
                "required": True,
                "description": (
                    "Exactly one of `cron` and `every_ms`. `task` holds what an enqueue body"
                    " holds but `id` and `delay_ms`, under the same rules. Each firing enqueues"
                    " a task `<schedule id>@<fire time, RFC 3339 UTC to the second>` (so a"
                    f" schedule's id is at most {MAX_SCHEDULE_ID_LENGTH} characters), admitted"
                    " past the line's bound like a retry; a firing is skipped (counted in"
                    " `skipped`) while the last firing's task is still queued or running."
                ),
                "content": {"application/json": {"schema": _SCHEDULE_REQUEST}},
            },
            "responses": {
                "201": _json(_SCHEDULE, "The schedule, with its first `next_run_at`."),
                "400": _error(
                    "The body is not JSON or not a valid schedule: a bad cron expression, both"
                    " or neither of `cron` and `every_ms`, an unknown field, an unknown"
                    ' `timezone`, or a `task` that is not a valid task (`"unknown queue"`,'
                    ' `"target not allowed"`...).'
                ),
                "409": _error('A schedule with this id exists (`"schedule already exists"`).'),
                "413": _error("The body is larger than `MAX_BODY_BYTES`."),
                "503": _error(_BUSY, Retry_After=_RETRY_AFTER),
            },
        },
        "get": {
            "operationId": "listSchedules",
            "summary": "Every schedule, in creation order.",
            "responses": {
                "200": _json({"type": "array", "items": _SCHEDULE}, "The schedules."),
                "503": _error(_BUSY, Retry_After=_RETRY_AFTER),
            },
        },
    },
    "/schedule": {
        "get": {
            "operationId": "getSchedule",
            "summary": "One schedule.",
            "parameters": [_SCHEDULE_ID],
            "responses": {
                "200": _json(_SCHEDULE, "The schedule."),
                "400": _error("`id` is missing or empty."),
                "404": _error(_SCHEDULE_NOT_FOUND),
                "503": _error(_BUSY, Retry_After=_RETRY_AFTER),
            },
        },
        "delete": {
            "operationId": "deleteSchedule",
            "summary": "Forget a schedule; the tasks it enqueued stay.",
            "parameters": [_SCHEDULE_ID],
            "responses": {
                "204": {"description": "Deleted; no body."},
                "400": _error("`id` is missing or empty."),
                "404": _error(_SCHEDULE_NOT_FOUND),
                "503": _error(_BUSY, Retry_After=_RETRY_AFTER),
            },
        },
    },
    "/schedule/pause": {
        "post": _schedule_action(
            "pauseSchedule", "Pause a schedule: it fires no more until resumed."
        )
    },
    "/schedule/resume": {
        "post": _schedule_action(
            "resumeSchedule",
            "Resume a paused schedule from now on; the firings missed while paused are not"
            " made up.",
        )
    },
}


_PATHS: Final[dict[str, dict[str, Any]]] = {
    "/enqueue": {
        "post": {
            "operationId": "enqueue",
            "summary": "Accept one task.",
            "requestBody": {
                "required": True,
                "description": (
                    "Parsed as JSON whatever the `Content-Type` header says. `payload` is any JSON"
                    " value. Any field not named here is refused. `max_retries`, `priority`,"
                    " `delay_ms` and `timeout_ms` must be written as integers: `3.0` is refused"
                    " with 400, though JSON Schema counts it as an integer.\n\n" + _TARGET_TEXT
                ),
                "content": {"application/json": {"schema": _ENQUEUE}},
            },
            "responses": {
                "201": _json(_TASK, "The task, exactly as accepted."),
                "400": _error(
                    "The body is not JSON, or not a valid task, or its target is outside"
                    ' `TARGET_ALLOW` (`"target not allowed"`), or its `queue` is not one QUEUES'
                    ' declares (`"unknown queue"`); nothing is stored.'
                ),
                "409": _error("A task with this id already exists; it is unchanged."),
                "413": _error("The body is larger than `MAX_BODY_BYTES`."),
                "503": _error(
                    "The task's queue's line is full (`Retry-After`; other queues are not"
                    " affected), the task is delayed and `SCHEDULED_MAX`"
                    ' tasks already wait for their time (`"too many scheduled tasks"`,'
                    " `Retry-After`), the store cannot be written (`store unavailable`,"
                    " `Retry-After`; the task is not stored), shutdown has begun, or the task"
                    " system did not answer in time (`Retry-After`; the task may have been"
                    " accepted).",
                    Retry_After=_RETRY_AFTER,
                ),
            },
        }
    },
    "/enqueue/batch": {
        "post": {
            "operationId": "enqueueBatch",
            "summary": "Accept 1 to 1000 tasks, all together or none of them.",
            "requestBody": {
                "required": True,
                "description": (
                    "A JSON array of tasks, each under the rules of `POST /enqueue`. Nothing is"
                    " stored unless every task is accepted."
                ),
                "content": {"application/json": {"schema": _BATCH}},
            },
            "responses": {
                "201": _json(
                    {"type": "array", "items": _TASK}, "Every task as accepted, in input order."
                ),
                "400": _json(
                    {"anyOf": [_ITEM_ERROR, _ERROR]},
                    "A task is invalid or its target outside `TARGET_ALLOW` (`index` says which,"
                    " from 0), or the body is not a JSON array of 1 to 1000 items (no `index`)."
                    " Nothing is stored.",
                ),
                "409": _json(
                    _ITEM_ERROR,
                    "The task at `index` has an id already stored or repeated earlier in the"
                    " batch. Nothing is stored.",
                ),
                "413": _error("The body is larger than `MAX_BODY_BYTES`."),
                "503": _error(
                    "The line cannot hold the whole batch (`Retry-After`), its delayed tasks"
                    " would take more than `SCHEDULED_MAX` waiting for their time"
                    ' (`"too many scheduled tasks"`, `Retry-After`), the store cannot be written'
                    " (`store unavailable`, `Retry-After`), shutdown has begun, or the task"
                    " system did not answer in time. Nothing is stored (after a timeout, the"
                    " batch may have been accepted: a 409 on re-sending says so).",
                    Retry_After=_RETRY_AFTER,
                ),
            },
        }
    },
    "/task": {
        "get": {
            "operationId": "getTask",
            "summary": "One task.",
            "parameters": [_ID],
            "responses": {
                "200": _json(_TASK, "The task."),
                "400": _error("`id` is missing or empty."),
                "404": _error("No task with this id."),
                "503": _error(_BUSY, Retry_After=_RETRY_AFTER),
            },
        },
        "delete": {
            "operationId": "deleteTask",
            "summary": "Forget a finished task (done, failed or cancelled).",
            "parameters": [_ID],
            "responses": {
                "204": {"description": "Deleted; no body."},
                "400": _error("`id` is missing or empty."),
                "404": _error("No task with this id."),
                "409": _error("The task is queued or running."),
                "503": _error(_BUSY, Retry_After=_RETRY_AFTER),
            },
        },
    },
    "/task/cancel": {
        "post": _task_action(
            "cancelTask",
            "Cancel a queued task (in line, delayed, or awaiting a retry): it never runs again.",
            "The task is running, done, failed or already cancelled.",
        )
    },
    "/task/retry": {
        "post": _task_action(
            "retryTask",
            "Queue a failed or cancelled task again, attempts from 0.",
            "The task is queued, running or done.",
            **{
                "503": _error(
                    "The line is full (`Retry-After`), the store cannot be written (`store"
                    " unavailable`, `Retry-After`), shutdown has begun, or the task system did"
                    " not answer in time.",
                    Retry_After=_RETRY_AFTER,
                )
            },
        )
    },
    "/tasks": {
        "get": {
            "operationId": "listTasks",
            "summary": "Tasks in creation order (or newest first); without parameters, every task.",
            "parameters": [
                _query("status", {"type": "string", "enum": list(STATUSES)}, "Only this status."),
                _query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                    "At most this many tasks (digits only), and a `Link` to the next page.",
                ),
                _query(
                    "after",
                    {"type": "string", "minLength": 1},
                    "Only tasks after this stored task, in the order asked for.",
                ),
                _query(
                    "order",
                    {"type": "string", "enum": list(ORDERS)},
                    "`asc`: creation order (the default); `desc`: newest first.",
                ),
                _query(
                    "queue",
                    {"type": "string", "minLength": 1},
                    'Only the tasks of this queue (400 `"unknown queue"` for one QUEUES does not'
                    " declare).",
                ),
            ],
            "responses": {
                "200": _json({"type": "array", "items": _TASK}, "The tasks.", Link=_LINK),
                "400": _error(
                    "A parameter is invalid, given twice, or `after` names no stored task."
                ),
                "503": _error(
                    "Without parameters: `LISTINGS_MAX` such listings are being sent already"
                    " (`Retry-After`; pages are never refused for it). Or as for any request: "
                    + _BUSY,
                    Retry_After=_RETRY_AFTER,
                ),
            },
        }
    },
    **_QUEUE_PATHS,
    **_SCHEDULE_PATHS,
    "/healthz": {
        "get": {
            "operationId": "health",
            "summary": "Liveness: the process serves HTTP.",
            "responses": {"200": _json(_HEALTH, "Alive.")},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readiness",
            "summary": "Readiness: whether a new task would be accepted now.",
            "responses": {
                "200": _json(_READINESS, "`ready`."),
                "503": _json(
                    _READINESS,
                    "`full` (every queue's line is full), `too many scheduled tasks`, `store"
                    " unavailable` or `shutting down`.",
                ),
            },
        }
    },
    "/stats": {
        "get": {
            "operationId": "stats",
            "summary": "Where the queue stands, and totals since start.",
            "responses": {
                "200": _json(_STATS, "The counts."),
                "503": _error(_BUSY, Retry_After=_RETRY_AFTER),
            },
        }
    },
    METRICS_PATH: {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics, in the text exposition format.",
            "responses": {
                "200": {
                    "description": "The metrics (README.md lists them).",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "503": _error(_BUSY, Retry_After=_RETRY_AFTER),
            },
        }
    },
    OPENAPI_PATH: {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "responses": {"200": _json({"type": "object"}, "The OpenAPI 3.1 document.")},
        }
    },
}

_DESCRIPTION: Final = (
    "Every response is JSON but `/metrics` (Prometheus text). Every error, including unknown"
    ' routes (404) and wrong methods (405, with `Allow`), is `{"error": "<message>"}`.'
    ' `OPTIONS` on a route answers `{"allow": [...]}`. The server itself answers, on any'
    " route, 400 to malformed HTTP and to a request with both `Transfer-Encoding` and"
    " `Content-Length` or a `Transfer-Encoding` other than `chunked`, and 408 to a request"
    " that has not arrived whole `CLIENT_TIMEOUT_S` after its first byte; each closes the"
    " connection."
)
_TIMEOUT: Final = (
    "The request did not arrive whole within `CLIENT_TIMEOUT_S` (the server's own answer; the"
    " connection closes)."
)
_AUTH_DESCRIPTION: Final = (
    " `API_TOKEN` is set: every request except {open} needs"
    " `Authorization: Bearer <token>`, otherwise 401 with `WWW-Authenticate: Bearer`, for unknown"
    " routes too."
)


def openapi_document(
    *, bearer_auth: bool, metrics: bool = True, open_paths: frozenset[str] = OPEN_PATHS
) -> dict[str, Any]:
    """The document for an app with (``bearer_auth``) or without ``API_TOKEN``, with or without
    ``/metrics``; ``open_paths`` need no token."""
    paths: dict[str, dict[str, Any]] = {}
    for path, operations in _PATHS.items():
        if path == METRICS_PATH and not metrics:
            continue
        paths[path] = {}
        for method, operation in operations.items():
            operation = {**operation, "responses": dict(operation["responses"])}
            operation["responses"]["408"] = _error(_TIMEOUT)
            if bearer_auth and path in open_paths:
                operation["security"] = []
            elif bearer_auth:
                operation["responses"]["401"] = _error(
                    "No valid bearer token.",
                    WWW_Authenticate={"schema": {"type": "string", "const": "Bearer"}},
                )
            paths[path][method] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "task_queue",
            "version": "0.1.0",
            "description": _DESCRIPTION + (_auth_description(open_paths) if bearer_auth else ""),
        },
        "paths": paths,
        "components": {"schemas": _COMPONENTS},
    }
    if bearer_auth:
        document["components"]["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer"}
        }
        document["security"] = [{"bearerAuth": []}]
    return document


def _auth_description(open_paths: frozenset[str]) -> str:
    *others, last = sorted(f"`{path}`" for path in open_paths)
    return _AUTH_DESCRIPTION.format(open=f"{', '.join(others)} and {last}" if others else last)


class OpenApiResource(JsonOptions):
    """Serves the document, encoded once when the app is built."""

    def __init__(
        self, *, bearer_auth: bool, metrics: bool = True, open_paths: frozenset[str] = OPEN_PATHS
    ) -> None:
        document = openapi_document(bearer_auth=bearer_auth, metrics=metrics, open_paths=open_paths)
        self._data = encoder.encode(document)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self._data
