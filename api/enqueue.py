"""``POST /enqueue`` and ``POST /enqueue/batch``: accept one task, or many all together."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

import falcon
from msgspec import UNSET

from actors.protocol.answers import Admission
from actors.target import InvalidTarget, target_of
from actors.task import log_fields, new_task
from api.errors import ItemError, service_unavailable
from api.options import JsonOptions
from api.reply import wait_for
from api.schema import (
    UNKNOWN_QUEUE,
    InvalidBody,
    decode_batch,
    decode_enqueue,
    encoder,
    task_body,
)

if TYPE_CHECKING:
    from collections.abc import Collection

    from actors.allow_list import AllowList
    from actors.system import TaskSystem
    from actors.target import Target, TargetBody
    from actors.task import Task
    from api.schema import EnqueueRequest, TaskFields
    from api.stats import InvalidCount

logger = logging.getLogger(__name__)

RETRY_AFTER_FULL_S: Final = 1
"""What ``Retry-After`` tells a client refused because the line is full, or because too many
tasks wait for their time."""
TOO_MANY_SCHEDULED: Final = "too many scheduled tasks"
TARGET_NOT_ALLOWED: Final = "target not allowed"
"""The 400 for a target outside TARGET_ALLOW: it says no more, so the list cannot be probed
for what it holds."""

RETRY_AFTER_STORE_S: Final = 5
"""What ``Retry-After`` tells a client refused because the store cannot be written: a full disk
or a failing device is seldom fixed within a second."""


class _Intake(JsonOptions):
    """What both intake routes share: the body limit, the wait, and counting refused bodies."""

    def __init__(
        self,
        system: TaskSystem,
        *,
        max_body_bytes: int,
        timeout_s: float,
        invalid: InvalidCount | None = None,
        allow: AllowList | None = None,
    ) -> None:
        self._system = system
        self._allow = allow
        self._invalid = invalid
        self._max_body_bytes = max_body_bytes
        self._timeout_s = timeout_s

    def _invalid_body(self, exc: InvalidBody) -> falcon.HTTPError:
        """The 400 for a refused body, counted for GET /stats."""
        if self._invalid is not None:
            self._invalid.add()
        if exc.index is None:
            return falcon.HTTPBadRequest(description=str(exc))
        return ItemError(falcon.HTTP_400, str(exc), exc.index)


class EnqueueResource(_Intake):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        # The body is JSON whatever Content-Type says: `curl -d` sends a form type.
        body = read_body(req, self._max_body_bytes)
        try:
            request = decode_enqueue(body)
        except InvalidBody as exc:
            raise self._invalid_body(exc) from None
        try:
            task = task_of(request, allow=self._allow, queues=self._system.queue_names)
        except InvalidBody as exc:
            raise self._invalid_body(exc) from None
        admission = wait_for(self._system.submit_async(task), self._timeout_s)
        if admission is Admission.ACCEPTED:
            # Logged on the request's thread: the line that ties its request id to the task id.
            if logger.isEnabledFor(logging.DEBUG):  # else the fields cost a dict per request
                logger.debug("task %r accepted", task.id, extra=log_fields(task))
            resp.status = falcon.HTTP_201
            resp.data = encoder.encode(task_body(task))
        elif admission is Admission.DUPLICATE:
            raise falcon.HTTPConflict(description="task already exists")
        else:
            raise refused(admission)


class BatchEnqueueResource(_Intake):
    """All the tasks of the array, in order, or none of them."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_body(req, self._max_body_bytes)
        try:
            requests = decode_batch(body)
        except InvalidBody as exc:
            raise self._invalid_body(exc) from None
        # One clock reading for the batch: its tasks are created together, in input order.
        now = time.time()
        tasks: list[Task] = []
        queues = self._system.queue_names
        for index, request in enumerate(requests):
            try:
                tasks.append(task_of(request, now, allow=self._allow, queues=queues))
            except InvalidBody as exc:
                raise self._invalid_body(InvalidBody(str(exc), index)) from None
        answer = wait_for(self._system.submit_batch_async(tasks), self._timeout_s)
        if answer.admission is Admission.ACCEPTED:
            resp.status = falcon.HTTP_201
            resp.data = encoder.encode([task_body(task) for task in tasks])
        elif answer.admission is Admission.DUPLICATE:
            assert answer.position is not None
            raise ItemError(falcon.HTTP_409, "task already exists", answer.position)
        else:
            raise refused(answer.admission, "queue cannot hold the whole batch")


def task_of(
    request: EnqueueRequest,
    now: float | None = None,
    *,
    allow: AllowList | None = None,
    queues: Collection[str] | None = None,
) -> Task:
    """The new task ``request`` asks for; InvalidBody when its target is invalid or not under
    ``allow`` (None allows no target), or its queue is not one of ``queues`` (None: any)."""
    return task_from(
        request.id,
        request,
        now,
        delay_s=request.delay_ms / 1000,
        allow=allow,
        queues=queues,
    )


def task_from(
    task_id: str,
    fields: TaskFields,
    now: float | None = None,
    *,
    delay_s: float = 0.0,
    allow: AllowList | None = None,
    queues: Collection[str] | None = None,
) -> Task:
    """A new task ``task_id`` made of ``fields`` (an enqueue body, or a schedule's task), due
    ``delay_s`` from now; InvalidBody as ``task_of`` says."""
    if queues is not None and fields.queue not in queues:
        raise InvalidBody(UNKNOWN_QUEUE)
    target = None if fields.target is UNSET else _target(fields.target, allow)
    return new_task(
        task_id,
        bytes(fields.payload),
        fields.max_retries,
        now,
        priority=fields.priority,
        delay_s=delay_s,
        timeout_ms=None if fields.timeout_ms is UNSET else fields.timeout_ms,
        target=target,
        queue=fields.queue,
    )


def _target(body: TargetBody, allow: AllowList | None) -> Target:
    try:
        target = target_of(body)
    except InvalidTarget as exc:
        raise InvalidBody(str(exc)) from None
    # The canonical URL is the one checked, and the one that will be sent.
    if allow is None or not allow.allows(target.url):
        raise InvalidBody(TARGET_NOT_ALLOWED)
    return target


def refused(admission: Admission, full: str = "queue is full") -> falcon.HTTPError:
    """The 503 for a line that is full or too many tasks scheduled (come back in a second), a
    store that cannot be written (come back later), or shutting down."""
    if admission is Admission.QUEUE_FULL:
        return service_unavailable(full, retry_after_s=RETRY_AFTER_FULL_S)
    if admission is Admission.TOO_MANY_SCHEDULED:
        return service_unavailable(TOO_MANY_SCHEDULED, retry_after_s=RETRY_AFTER_FULL_S)
    if admission is Admission.STORE_UNAVAILABLE:
        return service_unavailable("store unavailable", retry_after_s=RETRY_AFTER_STORE_S)
    return service_unavailable("shutting down")


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The whole body, or 413 if it is longer than ``limit`` bytes, declared or not."""
    if req.content_length is not None and req.content_length > limit:
        raise _too_large(limit)
    body = req.bounded_stream.read(limit + 1)
    if len(body) > limit:
        raise _too_large(limit)
    return body


def _too_large(limit: int) -> falcon.HTTPError:
    return falcon.HTTPContentTooLarge(description=f"request body is larger than {limit} bytes")
