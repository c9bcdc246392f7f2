"""``GET /stats`` and ``GET /readyz``: where the queue stands, and whether it takes work now."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final

import falcon
import msgspec

from actors.protocol.answers import Readiness
from actors.reply import SystemStopped
from api.options import JsonOptions
from api.reply import wait_for
from api.schema import encoder

if TYPE_CHECKING:
    from actors.system import TaskSystem


class InvalidCount:
    """How many enqueue bodies were refused with 400, counted by the request threads.

    A lock rather than an actor message: the count is only ever touched on the 400 path and by
    ``GET /stats``, so the 201 path pays nothing, and no actor's inbox takes traffic from bad
    clients. (``itertools.count`` would be atomic too, but cannot be read without counting.)
    """

    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def add(self) -> None:
        with self._lock:
            self._value += 1

    @property
    def value(self) -> int:
        return self._value


class StatsResource(JsonOptions):
    def __init__(self, system: TaskSystem, invalid: InvalidCount, *, timeout_s: float) -> None:
        self._system = system
        self._invalid = invalid
        self._timeout_s = timeout_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        stats = wait_for(self._system.stats_async(), self._timeout_s)
        resp.data = encoder.encode(stats.with_invalid(self._invalid.value))


class ReadinessBody(msgspec.Struct, frozen=True):
    """The body of ``GET /readyz``: ``ready``, ``full``, ``store unavailable`` or
    ``shutting down``."""

    status: str


_READINESS: Final = {
    readiness: encoder.encode(ReadinessBody(status=readiness.value)) for readiness in Readiness
}


class ReadinessResource(JsonOptions):
    """200 while a new task, delayed or not, would be admitted; 503 when the line is full,
    ``scheduled_max`` tasks wait for their time, the store cannot be written, or shutdown
    began."""

    def __init__(self, system: TaskSystem, *, timeout_s: float) -> None:
        self._system = system
        self._timeout_s = timeout_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            readiness = wait_for(self._system.ready_async(), self._timeout_s)
        except SystemStopped:
            readiness = Readiness.SHUTTING_DOWN
        if readiness is not Readiness.READY:
            resp.status = falcon.HTTP_503
        resp.data = _READINESS[readiness]
