"""``POST /task/cancel``, ``POST /task/retry`` and ``DELETE /task``: acting on one task."""

from __future__ import annotations

from typing import TYPE_CHECKING

import falcon

from actors.protocol.answers import Outcome
from actors.reply import Reply
from api.enqueue import refused
from api.options import JsonOptions
from api.reply import wait_for
from api.schema import encoder, task_body

if TYPE_CHECKING:
    from collections.abc import Callable

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


class TaskActionResource(JsonOptions):
    """``POST`` with ``?id=``: one action on one task, answered with the task after it."""

    def __init__(self, action: Callable[[str], Reply[Outcome]], *, timeout_s: float) -> None:
        self._action = action
        self._timeout_s = timeout_s

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        outcome = wait_for(self._action(task_id_param(req)), self._timeout_s)
        raise_unless_done(outcome)
        assert outcome.task is not None
        resp.data = encoder.encode(task_body(outcome.task))


# The lambdas look the method up per request, as the other resources do: a stand-in system in
# a test need not have every method to build the app.


def cancel_resource(system: TaskSystem, *, timeout_s: float) -> TaskActionResource:
    """``POST /task/cancel``: a queued task (in line, delayed, or awaiting a retry) becomes
    cancelled, for good."""
    return TaskActionResource(lambda task_id: system.cancel_async(task_id), timeout_s=timeout_s)


def retry_resource(system: TaskSystem, *, timeout_s: float) -> TaskActionResource:
    """``POST /task/retry``: a failed or cancelled task is queued again, attempts from 0, in
    its own queue (looked up first: the place is reserved in that queue's line)."""

    def requeue(task_id: str) -> Reply[Outcome]:
        task = wait_for(system.get_async(task_id), timeout_s)
        if task is None:
            unknown: Reply[Outcome] = Reply()
            unknown.set(Outcome(None))
            return unknown
        return system.requeue_async(task_id, task.queue)

    return TaskActionResource(requeue, timeout_s=timeout_s)
