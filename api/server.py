"""HttpServer: waitress on its own event-loop thread, with a graceful stop.

What it needs of waitress beyond the public API lives in api/waitress_internals.py.
"""

from __future__ import annotations

import logging
import queue
import resource
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from api.waitress_internals import create_server

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

logger = logging.getLogger(__name__)

CONNECTION_LIMIT: Final = 1024
"""Open connections waitress serves at once (its default, 100, starves a 256-connection load).
At the limit, a new client still gets in: the connections that have waited longest for a
request make room (``ServiceServer._make_room`` in api/waitress_internals.py)."""

OPEN_FILES_HEADROOM: Final = 256
"""Descriptors beyond the connections: the store, the workers' pipes, logs, temp buffers."""

DEFAULT_CLIENT_TIMEOUT_S: Final = 30.0
"""CLIENT_TIMEOUT_S: seconds a request has from its first byte to arrive whole."""

DRAIN_POLL_S: Final = 0.01
"""How often the stop checks whether requests in flight have finished."""

LOOP_CALL_TIMEOUT_S: Final = 2.0
"""How long to wait for the event loop thread to run something for us."""


class HttpServer:
    """Serves a WSGI app with waitress on its own event-loop thread.

    ``stop`` is the graceful part: refuse new connections, stop reading from open ones, let
    requests already received run to completion and be sent, close every connection as soon as
    it has nothing in flight (idle keep-alive connections at once), then end the loop.
    Everything that touches waitress's connections runs on the loop thread (through waitress's
    trigger), because that thread owns them.
    """

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        *,
        host: str,
        port: int,
        threads: int,
        max_body_bytes: int,
        client_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S,
        connection_limit: int = CONNECTION_LIMIT,
    ) -> None:
        _raise_open_files_limit(connection_limit + OPEN_FILES_HEADROOM)
        listener = _listen(host, port)
        self._server = create_server(
            app,
            listener,
            threads=threads,
            connection_limit=connection_limit,
            max_body_bytes=max_body_bytes,
            client_timeout_s=client_timeout_s,
        )
        self.host, self.port = listener.getsockname()[:2]
        self._loop = threading.Thread(target=self._server.run, name="http-loop", daemon=True)

    def start(self) -> None:
        self._loop.start()

    def stop(self, deadline: float) -> bool:
        """Stop serving by ``deadline`` (a ``time.monotonic()`` value).

        Returns False if requests were still in flight at the deadline and got cut off.
        """
        server = self._server
        try:
            self._on_loop(server.start_draining)
            drained = True
            while self._on_loop(server.close_idle_connections) > 0:
                if time.monotonic() >= deadline:
                    drained = False
                    break
                time.sleep(DRAIN_POLL_S)
            # With no connection, no listener and no trigger left in its map, the loop returns.
            self._on_loop(server.close_all)
        except queue.Empty:
            logger.error("the HTTP event loop did not answer; stopping without draining")
            drained = False
        if self._loop.ident is not None:
            self._loop.join(LOOP_CALL_TIMEOUT_S)
        server.stop_threads(LOOP_CALL_TIMEOUT_S)
        return drained

    def _on_loop(self, call: Callable[[], Any]) -> Any:
        """Run ``call`` on the loop thread and return its result."""
        if not self._loop.is_alive():
            return call()
        # queue.Queue, not SimpleQueue: SimpleQueue.get(timeout=) can wait for ever when its
        # thread is paused past the deadline (actors/alarm.py says how).
        result: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

        def thunk() -> None:
            try:
                result.put((True, call()))
            except BaseException as exc:
                result.put((False, exc))

        self._server.call_soon(thunk)
        ok, value = result.get(timeout=LOOP_CALL_TIMEOUT_S)
        if not ok:
            raise value
        return value


def _raise_open_files_limit(wanted: int) -> None:
    """Let the process hold ``wanted`` descriptors if the hard limit allows: a soft limit of
    1024, common, would make accept() fail before the connection limit is reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        logger.warning(
            "open files limited to %d: fewer than %d connections can be served", target, wanted
        )


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on the first address ``host`` resolves to."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address[:2], family=family, backlog=1024)
