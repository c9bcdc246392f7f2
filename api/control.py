"""``POST /task/cancel``, ``POST /task/retry`` and ``DELETE /task``: acting on one task."""

from __future__ import annotations

from typing import TYPE_CHECKING

import falcon

from api.enqueue import refused
from api.options import JsonOptions
from api.reply import wait_for
from api.schema import encoder, task_body

if TYPE_CHECKING:
    from actors.messages import Outcome
    from actors.system import TaskSystem


def task_id_param(req: falcon.Request) -> str:
    task_id = req.get_param("id")
    if not task_id:
        raise falcon.HTTPBadRequest(description="missing id parameter")
    return task_id


def raise_unless_done(outcome: Outcome) -> None:
    """Turn a refused action into its error: 503 (the line), 409 (the task's state), 404."""
    if outcome.refused is not None:
        raise refused(outcome.refused)
    if outcome.conflict is not None:
        raise falcon.HTTPConflict(description=outcome.conflict)
    if outcome.task is None:
        raise falcon.HTTPNotFound(description="task not found")


class CancelResource(JsonOptions):
    """A queued task (in line, delayed, or awaiting a retry) becomes cancelled, for good."""

    def __init__(self, system: TaskSystem, *, timeout_s: float) -> None:
        self._system = system
        self._timeout_s = timeout_s

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        outcome = wait_for(self._system.cancel_async(task_id_param(req)), self._timeout_s)
        raise_unless_done(outcome)
        assert outcome.task is not None
        resp.data = encoder.encode(task_body(outcome.task))


class RetryResource(JsonOptions):
    """A failed or cancelled task is queued again, attempts from 0."""

    def __init__(self, system: TaskSystem, *, timeout_s: float) -> None:
        self._system = system
        self._timeout_s = timeout_s

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        outcome = wait_for(self._system.requeue_async(task_id_param(req)), self._timeout_s)
        raise_unless_done(outcome)
        assert outcome.task is not None
        resp.data = encoder.encode(task_body(outcome.task))
