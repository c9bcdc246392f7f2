"""``GET /queues``, ``POST /queues/pause`` and ``POST /queues/resume``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import falcon

from api.options import JsonOptions
from api.reply import wait_for
from api.schema import encoder

if TYPE_CHECKING:
    from actors.system import TaskSystem

QUEUE_NOT_FOUND: Final = "queue not found"


class QueueListResource(JsonOptions):
    """Each queue as it is now, in QUEUES order."""

    def __init__(self, system: TaskSystem, *, timeout_s: float) -> None:
        self._system = system
        self._timeout_s = timeout_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = encoder.encode(wait_for(self._system.queues_async(), self._timeout_s))


class QueuePauseResource(JsonOptions):
    """``POST`` with ``?name=``: pause (or resume) a queue, answered with the queue after it.

    A paused queue still takes tasks and lets running attempts finish, but starts none. With a
    store the state is kept before the answer, so it holds across a restart.
    """

    def __init__(self, system: TaskSystem, *, paused: bool, timeout_s: float) -> None:
        self._system = system
        self._paused = paused
        self._timeout_s = timeout_s

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        name = req.get_param("name")
        if not name:
            raise falcon.HTTPBadRequest(description="missing name parameter")
        info = wait_for(self._system.pause_async(name, paused=self._paused), self._timeout_s)
        if info is None:
            raise falcon.HTTPNotFound(description=QUEUE_NOT_FOUND)
        resp.data = encoder.encode(info)


def add_queue_routes(app: falcon.App, system: TaskSystem, *, timeout_s: float) -> None:
    app.add_route("/queues", QueueListResource(system, timeout_s=timeout_s))
    for action, paused in (("pause", True), ("resume", False)):
        resource = QueuePauseResource(system, paused=paused, timeout_s=timeout_s)
        app.add_route(f"/queues/{action}", resource)
