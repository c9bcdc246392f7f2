"""``POST /enqueue``: accept one task."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import falcon

from actors.messages import Admission
from actors.task import new_task
from api.errors import service_unavailable
from api.options import JsonOptions
from api.reply import wait_for
from api.schema import InvalidBody, decode_enqueue, encoder, task_body

if TYPE_CHECKING:
    from actors.system import TaskSystem
    from api.stats import InvalidCount

logger = logging.getLogger(__name__)

RETRY_AFTER_FULL_S: Final = 1
"""What ``Retry-After`` tells a client refused because the line is full."""


class EnqueueResource(JsonOptions):
    def __init__(
        self,
        system: TaskSystem,
        *,
        max_body_bytes: int,
        timeout_s: float,
        invalid: InvalidCount | None = None,
    ) -> None:
        self._system = system
        self._invalid = invalid
        self._max_body_bytes = max_body_bytes
        self._timeout_s = timeout_s

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        # The body is JSON whatever Content-Type says: `curl -d` sends a form type.
        body = read_body(req, self._max_body_bytes)
        try:
            request = decode_enqueue(body)
        except InvalidBody as exc:
            if self._invalid is not None:
                self._invalid.add()
            raise falcon.HTTPBadRequest(description=str(exc)) from None
        task = new_task(request.id, bytes(request.payload), request.max_retries)
        admission = wait_for(self._system.submit_async(task), self._timeout_s)
        if admission is Admission.ACCEPTED:
            # Logged on the request's thread: the line that ties its request id to the task id.
            logger.debug("task %r accepted", task.id, extra={"task_id": task.id, "attempt": 0})
            resp.status = falcon.HTTP_201
            resp.data = encoder.encode(task_body(task))
        elif admission is Admission.DUPLICATE:
            raise falcon.HTTPConflict(description="task already exists")
        elif admission is Admission.QUEUE_FULL:
            raise service_unavailable("queue is full", retry_after_s=RETRY_AFTER_FULL_S)
        else:
            raise service_unavailable("shutting down")


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
