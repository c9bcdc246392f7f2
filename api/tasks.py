"""``GET /task?id=`` and ``GET /tasks``: looking at tasks, all of them or a page at a time;
``DELETE /task?id=``: forgetting a finished one."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import falcon

from actors.task import STATUSES
from api.control import raise_unless_done, task_id_param
from api.options import JsonOptions
from api.reply import wait_for
from api.schema import encoder, task_body

if TYPE_CHECKING:
    from actors.system import TaskSystem

MAX_LIMIT: Final = 1000
"""The most tasks one page of ``GET /tasks?limit=`` may ask for."""

_DIGITS: Final = re.compile(r"[0-9]{1,9}")
_PAGING_PARAMS: Final = ("status", "limit", "after", "order")
ORDERS: Final = ("asc", "desc")
"""``order=asc``: creation order, oldest first (the default); ``desc``: newest first."""


class TaskResource(JsonOptions):
    def __init__(self, system: TaskSystem, *, timeout_s: float) -> None:
        self._system = system
        self._timeout_s = timeout_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        task = wait_for(self._system.get_async(task_id_param(req)), self._timeout_s)
        if task is None:
            raise falcon.HTTPNotFound(description="task not found")
        resp.data = encoder.encode(task_body(task))

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        outcome = wait_for(self._system.delete_async(task_id_param(req)), self._timeout_s)
        raise_unless_done(outcome)
        resp.status = falcon.HTTP_204


class TaskListResource(JsonOptions):
    """Every task in creation order; ``status``, ``limit`` and ``after`` narrow it to a page,
    and ``order=desc`` reads it newest first.

    With ``limit``, a ``Link: <...>; rel="next"`` header leads to the next page while one
    follows. Other query parameters are ignored, as they always were.
    """

    def __init__(self, system: TaskSystem, *, timeout_s: float) -> None:
        self._system = system
        self._timeout_s = timeout_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = falcon.uri.parse_query_string(req.query_string, keep_blank=True, csv=False)
        if not any(name in params for name in _PAGING_PARAMS):
            # The seed's answer, unchanged: every task.
            tasks = wait_for(self._system.list_async(), self._timeout_s)
            resp.data = encoder.encode([task_body(task) for task in tasks])
            return
        status = _single(params, "status")
        if status is not None and status not in STATUSES:
            raise falcon.HTTPBadRequest(description=f"status must be one of {', '.join(STATUSES)}")
        limit = _limit(_single(params, "limit"))
        after = _single(params, "after")
        if after == "":
            raise falcon.HTTPBadRequest(description="after must be a task id")
        order = _single(params, "order")
        if order is not None and order not in ORDERS:
            raise falcon.HTTPBadRequest(description="order must be asc or desc")
        newest_first = order == "desc"
        page = wait_for(
            self._system.list_page_async(
                status=status, limit=limit, after=after, newest_first=newest_first
            ),
            self._timeout_s,
        )
        if page is None:
            raise falcon.HTTPBadRequest(description="after: no task with that id")
        resp.data = encoder.encode([task_body(task) for task in page.tasks])
        if page.more:
            resp.set_header("Link", _next_link(status, limit, order, page.tasks[-1].id))


def _single(params: dict[str, str | list[str]], name: str) -> str | None:
    value = params.get(name)
    if isinstance(value, list):
        raise falcon.HTTPBadRequest(description=f"{name} may be given only once")
    return value


def _limit(text: str | None) -> int | None:
    if text is None:
        return None
    if _DIGITS.fullmatch(text) is None or not 1 <= int(text) <= MAX_LIMIT:
        raise falcon.HTTPBadRequest(description=f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(text)


def _next_link(status: str | None, limit: int | None, order: str | None, last_id: str) -> str:
    query = [("status", status), ("limit", None if limit is None else str(limit))]
    query += [("order", order), ("after", last_id)]
    encoded = "&".join(f"{name}={quote(value, safe='')}" for name, value in query if value)
    return f'</tasks?{encoded}>; rel="next"'
