"""``GET /task?id=`` and ``GET /tasks``: looking at tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import falcon

from api.options import JsonOptions
from api.reply import wait_for
from api.schema import encoder, task_body

if TYPE_CHECKING:
    from actors.system import TaskSystem


class TaskResource(JsonOptions):
    def __init__(self, system: TaskSystem, *, timeout_s: float) -> None:
        self._system = system
        self._timeout_s = timeout_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        task_id = req.get_param("id")
        if not task_id:
            raise falcon.HTTPBadRequest(description="missing id parameter")
        task = wait_for(self._system.get_async(task_id), self._timeout_s)
        if task is None:
            raise falcon.HTTPNotFound(description="task not found")
        resp.data = encoder.encode(task_body(task))


class TaskListResource(JsonOptions):
    def __init__(self, system: TaskSystem, *, timeout_s: float) -> None:
        self._system = system
        self._timeout_s = timeout_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        tasks = wait_for(self._system.list_async(), self._timeout_s)
        resp.data = encoder.encode([task_body(task) for task in tasks])
