"""``/schedules`` and ``/schedule``: tasks enqueued on a clock, by cron expression or period."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Final, TypeVar

import falcon
import msgspec
from msgspec import UNSET, Meta, Raw, UnsetType

from actors.schedule import (
    FIRE_ID_SUFFIX_LENGTH,
    MAX_EVERY_MS,
    MIN_EVERY_MS,
    InvalidTiming,
    timing_of,
)
from actors.store import StoreError
from actors.target import TargetBody, redacted
from api.enqueue import RETRY_AFTER_STORE_S, read_body, task_from
from api.errors import service_unavailable
from api.options import JsonOptions
from api.reply import wait_for
from api.schema import MAX_ID_LENGTH, InvalidBody, TaskFields, _describe, encoder

if TYPE_CHECKING:
    from actors.allow_list import AllowList
    from actors.reply import Reply
    from actors.schedule import Schedule
    from actors.system import TaskSystem

MAX_SCHEDULE_ID_LENGTH: Final = MAX_ID_LENGTH - FIRE_ID_SUFFIX_LENGTH
"""235: a firing's task id, the schedule's id and ``@<time>``, stays within a task id's 256."""

T = TypeVar("T")

SCHEDULE_NOT_FOUND: Final = "schedule not found"

ScheduleId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_SCHEDULE_ID_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="1 to 235 characters, no control characters (U+0000-U+001F, U+007F).",
    ),
]


class ScheduleRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The body of ``POST /schedules``. Any field not named here is refused."""

    id: ScheduleId
    # Checked as TaskFields on its own, so that its errors read as an enqueue body's do.
    task: Raw
    cron: (
        Annotated[
            str,
            Meta(
                description=(
                    "Five fields (minute hour day-of-month month day-of-week), as Debian cron reads"
                    " them, in `timezone`. Exactly one of `cron` and `every_ms`."
                )
            ),
        ]
        | UnsetType
    ) = UNSET
    every_ms: (
        Annotated[
            int,
            Meta(
                ge=MIN_EVERY_MS,
                le=MAX_EVERY_MS,
                description=(
                    "The period in milliseconds, at least 1000; the first firing is one period"
                    " after the schedule's creation. Exactly one of `cron` and `every_ms`."
                ),
            ),
        ]
        | UnsetType
    ) = UNSET
    timezone: (
        Annotated[str, Meta(description="The IANA time zone `cron` is read in; default `UTC`.")]
        | UnsetType
    ) = UNSET


class ScheduledTaskBody(msgspec.Struct, frozen=True):
    """What each firing's task is made of, as the API shows it."""

    payload: Raw
    max_retries: int
    priority: int
    queue: str
    timeout_ms: int | None
    target: TargetBody | None


class ScheduleBody(msgspec.Struct, frozen=True):
    """A schedule as the API shows it."""

    id: str
    cron: Annotated[str | None, Meta(description="Five fields; null for a period.")]
    every_ms: Annotated[int | None, Meta(description="The period; null for a cron schedule.")]
    timezone: str
    task: ScheduledTaskBody
    paused: bool
    created_at: datetime
    next_run_at: Annotated[
        datetime | None, Meta(description="The next firing's time; null while paused.")
    ]
    last_task_id: Annotated[
        str | None, Meta(description="The task of the last firing let through, if any.")
    ]
    fired: Annotated[int, Meta(description="Firings whose task was enqueued.")]
    skipped: Annotated[
        int, Meta(description="Firings skipped: the last task was still queued or running.")
    ]


_request_decoder: Final = msgspec.json.Decoder(ScheduleRequest)
_task_decoder: Final = msgspec.json.Decoder(TaskFields)
_AT_FIELD: Final = re.compile(r" - at `\$\.(\w+)`$")
_EVERY_RULE: Final = f"every_ms must be an integer from {MIN_EVERY_MS} to {MAX_EVERY_MS}"
_ID_RULE: Final = (
    f"id must be a string of 1 to {MAX_SCHEDULE_ID_LENGTH} characters without control characters"
)


def schedule_body(schedule: Schedule) -> ScheduleBody:
    task = schedule.task
    timing = schedule.timing
    return ScheduleBody(
        id=schedule.id,
        cron=timing.cron,
        every_ms=timing.every_ms,
        timezone=timing.timezone,
        task=ScheduledTaskBody(
            payload=Raw(task.payload),
            max_retries=task.max_retries,
            priority=task.priority,
            queue=task.queue,
            timeout_ms=task.timeout_ms,
            target=None if task.target is None else redacted(task.target),
        ),
        paused=schedule.paused,
        created_at=datetime.fromtimestamp(schedule.created_at, UTC),
        next_run_at=(
            None
            if schedule.next_run_at is None
            else datetime.fromtimestamp(schedule.next_run_at, UTC)
        ),
        last_task_id=schedule.last_task_id,
        fired=schedule.fired,
        skipped=schedule.skipped,
    )


def decode_schedule(body: bytes) -> ScheduleRequest:
    """Decode a ``POST /schedules`` body, or raise InvalidBody saying what is wrong."""
    try:
        return _request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        message = str(exc)
        # A wrong type stops msgspec before it has read the rest: JSON errors matter more.
        try:
            msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError):
            raise InvalidBody("invalid JSON") from None
        except RecursionError:
            raise InvalidBody("nesting too deep") from None
        match = _AT_FIELD.search(message)
        field = None if match is None else match.group(1)
        if field == "id":
            raise InvalidBody(_ID_RULE) from None
        if field == "every_ms":
            raise InvalidBody(_EVERY_RULE) from None
        if field in ("cron", "timezone"):
            raise InvalidBody(f"{field} must be a string") from None
        if message.startswith("Expected `object`") and field is None:
            raise InvalidBody("the body must be a JSON object") from None
        raise InvalidBody(message) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidBody("invalid JSON") from None
    except RecursionError:
        raise InvalidBody("nesting too deep") from None


def task_fields(raw: Raw) -> TaskFields:
    """The schedule's ``task``, checked as an enqueue body without ``id`` and ``delay_ms``."""
    try:
        return _task_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if message.startswith("Expected `object`") and _AT_FIELD.search(message) is None:
            raise InvalidBody("task must be a JSON object") from None
        raise InvalidBody(f"task: {_describe(message)}") from None


class SchedulesResource(JsonOptions):
    """``POST /schedules`` creates a schedule; ``GET /schedules`` lists them all."""

    def __init__(
        self,
        system: TaskSystem,
        *,
        max_body_bytes: int,
        timeout_s: float,
        allow: AllowList | None = None,
    ) -> None:
        self._system = system
        self._max_body_bytes = max_body_bytes
        self._timeout_s = timeout_s
        self._allow = allow

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req, self._max_body_bytes)
        try:
            request = decode_schedule(body)
            fields = task_fields(request.task)
            timing = timing_of(
                None if request.cron is UNSET else request.cron,
                None if request.every_ms is UNSET else request.every_ms,
                None if request.timezone is UNSET else request.timezone,
            )
            # The template of every firing's task, checked as an enqueued task is (its
            # queue, its target); each firing gives it its own id and times.
            template = task_from(
                request.id, fields, 0.0, allow=self._allow, queues=self._system.queue_names
            )
        except (InvalidBody, InvalidTiming) as exc:
            raise falcon.HTTPBadRequest(description=str(exc)) from None
        reply = self._system.add_schedule_async(request.id, timing, template)
        schedule = _answer(reply, self._timeout_s)
        if schedule is None:
            raise falcon.HTTPConflict(description="schedule already exists")
        resp.status = falcon.HTTP_201
        resp.data = encoder.encode(schedule_body(schedule))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        schedules = wait_for(self._system.list_schedules_async(), self._timeout_s)
        resp.data = encoder.encode([schedule_body(schedule) for schedule in schedules])


class ScheduleResource(JsonOptions):
    """``GET /schedule?id=`` shows one schedule; ``DELETE /schedule?id=`` forgets it."""

    def __init__(self, system: TaskSystem, *, timeout_s: float) -> None:
        self._system = system
        self._timeout_s = timeout_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        schedule = wait_for(self._system.get_schedule_async(_id_param(req)), self._timeout_s)
        if schedule is None:
            raise falcon.HTTPNotFound(description=SCHEDULE_NOT_FOUND)
        resp.data = encoder.encode(schedule_body(schedule))

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        known = _answer(self._system.delete_schedule_async(_id_param(req)), self._timeout_s)
        if not known:
            raise falcon.HTTPNotFound(description=SCHEDULE_NOT_FOUND)
        resp.status = falcon.HTTP_204


class SchedulePauseResource(JsonOptions):
    """``POST /schedule/pause?id=`` (or ``/schedule/resume``): answered with the schedule."""

    def __init__(self, system: TaskSystem, *, paused: bool, timeout_s: float) -> None:
        self._system = system
        self._paused = paused
        self._timeout_s = timeout_s

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        reply = self._system.pause_schedule_async(_id_param(req), paused=self._paused)
        schedule = _answer(reply, self._timeout_s)
        if schedule is None:
            raise falcon.HTTPNotFound(description=SCHEDULE_NOT_FOUND)
        resp.data = encoder.encode(schedule_body(schedule))


def add_schedule_routes(
    app: falcon.App,
    system: TaskSystem,
    *,
    max_body_bytes: int,
    timeout_s: float,
    allow: AllowList | None,
) -> None:
    """The schedules' five routes."""
    app.add_route(
        "/schedules",
        SchedulesResource(system, max_body_bytes=max_body_bytes, timeout_s=timeout_s, allow=allow),
    )
    app.add_route("/schedule", ScheduleResource(system, timeout_s=timeout_s))
    app.add_route(
        "/schedule/pause", SchedulePauseResource(system, paused=True, timeout_s=timeout_s)
    )
    app.add_route(
        "/schedule/resume", SchedulePauseResource(system, paused=False, timeout_s=timeout_s)
    )


def _id_param(req: falcon.Request) -> str:
    schedule_id = req.get_param("id")
    if not schedule_id:
        raise falcon.HTTPBadRequest(description="missing id parameter")
    return schedule_id


def _answer(reply: Reply[T], timeout_s: float) -> T:
    """The schedule actor's answer; a store that cannot be written is 503, as for a task."""
    try:
        return wait_for(reply, timeout_s)
    except StoreError:
        raise service_unavailable("store unavailable", retry_after_s=RETRY_AFTER_STORE_S) from None
