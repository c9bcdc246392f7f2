"""``GET /task?id=`` and ``GET /tasks``: looking at tasks, all of them or a page at a time;
``DELETE /task?id=``: forgetting a finished one."""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import falcon

from actors.task import STATUSES
from api.control import raise_unless_done, task_id_param
from api.errors import service_unavailable
from api.options import JsonOptions
from api.reply import wait_for
from api.schema import UNKNOWN_QUEUE, encoder, task_body

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from actors.system import TaskSystem
    from actors.task import Task

MAX_LIMIT: Final = 1000
"""The most tasks one page of ``GET /tasks?limit=`` may ask for."""

_DIGITS: Final = re.compile(r"[0-9]{1,9}")
_PAGING_PARAMS: Final = ("status", "limit", "after", "order", "queue")
ORDERS: Final = ("asc", "desc")
"""``order=asc``: creation order, oldest first (the default); ``desc``: newest first."""
DEFAULT_LISTINGS_MAX: Final = 4
"""Unpaged listings streamed at once (LISTINGS_MAX)."""
LISTING_PIECE_BYTES: Final = 65_536
"""An unpaged listing is handed to the server in pieces of about this size (one task more)."""
RETRY_AFTER_LISTINGS_S: Final = 1
TOO_MANY_LISTINGS: Final = "too many listings in progress; try again, or page with limit"


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
    follows. Other query parameters are ignored: without a paging parameter the answer is the
    whole listing, whatever else the query says.

    Without them the answer is every task (the contract), streamed from a snapshot of the
    task references (8 bytes a task) in pieces of LISTING_PIECE_BYTES, so that what a listing
    holds is the snapshot and what the server has buffered, not the whole body; and at most
    ``listings_max`` are in flight at once, each holding a request thread while its client
    reads (503 beyond).
    """

    def __init__(
        self, system: TaskSystem, *, timeout_s: float, listings_max: int = DEFAULT_LISTINGS_MAX
    ) -> None:
        self._system = system
        self._timeout_s = timeout_s
        self._listings = threading.BoundedSemaphore(listings_max)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = falcon.uri.parse_query_string(req.query_string, keep_blank=True, csv=False)
        if not any(name in params for name in _PAGING_PARAMS):
            self._list_all(resp)
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
        queue = _single(params, "queue")
        if queue is not None and queue not in self._system.queue_names:
            raise falcon.HTTPBadRequest(description=UNKNOWN_QUEUE)
        page = wait_for(
            self._system.list_page_async(
                status=status, limit=limit, after=after, newest_first=newest_first, queue=queue
            ),
            self._timeout_s,
        )
        if page is None:
            raise falcon.HTTPBadRequest(description="after: no task with that id")
        resp.data = encoder.encode([task_body(task) for task in page.tasks])
        if page.more:
            link = _next_link(status, limit, order, page.tasks[-1].id, queue)
            resp.set_header("Link", link)

    def _list_all(self, resp: falcon.Response) -> None:
        if not self._listings.acquire(blocking=False):
            raise service_unavailable(TOO_MANY_LISTINGS, retry_after_s=RETRY_AFTER_LISTINGS_S)
        try:
            page = wait_for(self._system.list_page_async(), self._timeout_s)
        except BaseException:
            self._listings.release()
            raise
        assert page is not None  # None only answers a page after an unknown id
        resp.stream = Listing(page.tasks, self._listings.release)


class Listing:
    """The body of an unpaged listing: the tasks as one JSON array, encoded a piece at a time
    as the server asks for the next; ``release`` is called once when it ends, however it ends.

    A class rather than a generator: the server closes the body it was given, and a generator
    closed before its first piece would never run its ``finally``.
    """

    __slots__ = ("_pieces", "_release")

    def __init__(self, tasks: list[Task], release: Callable[[], object]) -> None:
        self._pieces = _pieces(tasks)
        self._release: Callable[[], object] | None = release

    def __iter__(self) -> Iterator[bytes]:
        return self._pieces

    def close(self) -> None:
        self._pieces.close()
        release, self._release = self._release, None
        if release is not None:
            release()

    # A body dropped without being closed (a HEAD, say) still gives its place back.
    __del__ = close


def _pieces(tasks: list[Task]) -> Generator[bytes]:
    piece = bytearray(b"[")
    for index, task in enumerate(tasks):
        if index:
            piece += b","
        encoder.encode_into(task_body(task), piece, -1)
        if len(piece) >= LISTING_PIECE_BYTES:
            yield bytes(piece)
            piece.clear()
    piece += b"]"
    yield bytes(piece)


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


def _next_link(
    status: str | None,
    limit: int | None,
    order: str | None,
    last_id: str,
    queue: str | None = None,
) -> str:
    query = [("status", status), ("queue", queue), ("limit", None if limit is None else str(limit))]
    query += [("order", order), ("after", last_id)]
    encoded = "&".join(f"{name}={quote(value, safe='')}" for name, value in query if value)
    return f'</tasks?{encoded}>; rel="next"'
