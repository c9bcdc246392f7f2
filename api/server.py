"""HttpServer: waitress, plus the graceful stop that waitress does not offer."""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Final

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from api.errors import error_json

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from waitress.server import BaseWSGIServer

logger = logging.getLogger(__name__)

CONNECTION_LIMIT: Final = 1024
"""Open connections waitress serves at once (its default, 100, starves a 256-connection load)."""

DRAIN_POLL_S: Final = 0.01
"""How often the stop checks whether requests in flight have finished."""

LOOP_CALL_TIMEOUT_S: Final = 2.0
"""How long to wait for the event loop thread to run something for us."""


class JsonErrorTask(ErrorTask):
    """waitress's own error responses (malformed HTTP, body over the limit) in our JSON shape."""

    def execute(self) -> None:
        error = self.request.error
        if error.code == 413:
            # waitress refuses bodies of its limit and more; ours is the largest accepted.
            limit = self.channel.adj.max_request_body_size - 1
            message = f"request body is larger than {limit} bytes"
        else:
            detail = str(error.body).strip()
            message = error.reason.lower() + (f": {detail}" if detail else "")
        body = error_json(message)
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class ServiceChannel(HTTPChannel):
    """A connection that answers waitress's own errors in JSON and stops reading when draining."""

    error_task_class = JsonErrorTask

    def readable(self) -> bool:
        # While the server drains, a request partly received is read to its end and served, but
        # nothing new is started: a keep-alive client cannot begin more work on its connection.
        if self.server.draining and self.request is None:
            return False
        return bool(super().readable())

    def writable(self) -> bool:
        # waitress says "writable" whenever output is buffered, but while a request is still
        # being serviced its handle_write sends nothing until send_bytes have piled up. A small
        # response written before its thread finishes the request therefore made the event loop
        # spin on an always-ready socket, holding the GIL the request thread needed to finish:
        # under 64+ connections throughput collapsed to a few hundred requests/s. Asking for
        # writes only when handle_write would send keeps the loop asleep until then; the thread
        # wakes it (pull_trigger) when the request is done.
        if self.will_close or self.close_when_flushed:
            return True
        if not self.total_outbufs_len:
            return False
        return not self.requests or self.total_outbufs_len >= self.adj.send_bytes


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
    ) -> None:
        listener = _listen(host, port)
        self._server: BaseWSGIServer = waitress.create_server(
            app,
            sockets=[listener],
            threads=threads,
            connection_limit=CONNECTION_LIMIT,
            # select() cannot watch descriptors above 1024; poll() can.
            asyncore_use_poll=True,
            # waitress refuses a body of this size or more; MAX_BODY_BYTES itself is allowed.
            max_request_body_size=max_body_bytes + 1,
            ident="task_queue",
        )
        self._server.channel_class = ServiceChannel
        self._server.draining = False
        # One warning per queued request under load: costly, and says nothing a metric doesn't.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self.host, self.port = listener.getsockname()[:2]
        self._loop = threading.Thread(target=self._server.run, name="http-loop", daemon=True)

    def start(self) -> None:
        self._loop.start()

    def stop(self, deadline: float) -> bool:
        """Stop serving by ``deadline`` (a ``time.monotonic()`` value).

        Returns False if requests were still in flight at the deadline and got cut off.
        """
        try:
            self._on_loop(self._start_draining)
            drained = True
            while self._on_loop(self._close_idle_connections) > 0:
                if time.monotonic() >= deadline:
                    drained = False
                    break
                time.sleep(DRAIN_POLL_S)
            # With no connection, no listener and no trigger left in its map, the loop returns.
            self._on_loop(self._close_all)
        except queue.Empty:
            logger.error("the HTTP event loop did not answer; stopping without draining")
            drained = False
        self._loop.join(LOOP_CALL_TIMEOUT_S)
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=LOOP_CALL_TIMEOUT_S)
        return drained

    # --- run on the loop thread ----------------------------------------------------------------

    def _start_draining(self) -> None:
        self._server.draining = True
        wasyncore.dispatcher.close(self._server)

    def _close_idle_connections(self) -> int:
        """Close connections with nothing in flight; return how many still have something.

        In flight means partly received, received and not yet answered, or answered and not
        yet sent. A client that never finishes sending its request holds the stop until the
        deadline, no longer.
        """
        busy = 0
        for channel in list(self._server.active_channels.values()):
            if channel.request is not None or channel.requests or channel.total_outbufs_len:
                busy += 1
            else:
                channel.handle_close()
        return busy

    def _close_all(self) -> None:
        for channel in list(self._server.active_channels.values()):
            channel.handle_close()
        self._server.trigger.close()

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

        self._server.trigger.pull_trigger(thunk)
        ok, value = result.get(timeout=LOOP_CALL_TIMEOUT_S)
        if not ok:
            raise value
        return value


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on the first address ``host`` resolves to."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address[:2], family=family, backlog=1024)
