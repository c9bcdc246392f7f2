"""Everything that reaches into waitress's internals, in one place.

waitress has no graceful stop (Pylons/waitress#10), no deadline for a request to arrive whole,
and no way to make room at its connection limit; its parser keeps the connection of a request
framed two ways, and it closes an HTTP/1.1 connection after a 204. What follows extends its
server, connection, parser and task classes to do all that, and gives HttpServer (api/server.py)
the few operations it needs, so that nothing else in the service knows waitress's insides.

These internals are not waitress's public API: pyproject.toml pins waitress to the minor
version below, and tests/test_waitress_internals.py fails, naming what changed, when any of
them changes shape.
"""

from __future__ import annotations

import heapq
import logging
import select
import socket
import time
from typing import TYPE_CHECKING, Any, Final

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import (
    HTTPRequestParser,
    ParsingError,
    TransferEncodingNotImplemented,
    get_header_lines,
)
from waitress.rfc7230 import HEADER_FIELD_RE
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask
from waitress.utilities import Error

from api.errors import error_json

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

# The name operators know the server's warnings by (README, "Slow clients").
logger = logging.getLogger("api.server")

CHECKED_AGAINST: Final = "3.0"
"""The waitress minor version whose internals this module was checked against."""

SWEEP_INTERVAL_S: Final = 1
"""How often the loop looks for requests past CLIENT_TIMEOUT_S (waitress's cleanup_interval)."""

ACCEPTS_PER_PASS: Final = 64
"""Connections accepted per pass of the event loop, at most."""

EVICTIONS_PER_PASS: Final = 8
"""Connections closed per pass of the loop to make room at the connection limit, at most: a
pass over a thousand connections takes milliseconds, and a burst may wait to be accepted."""


def create_server(
    app: Callable[..., Iterable[bytes]],
    listener: socket.socket,
    *,
    threads: int,
    connection_limit: int,
    max_body_bytes: int,
    client_timeout_s: float,
) -> ServiceServer:
    """What ``waitress.create_server`` does for one listening socket, with our server class."""
    adjustments = Adjustments(
        sockets=[listener],
        threads=threads,
        connection_limit=connection_limit,
        # select() cannot watch descriptors above 1024; poll() can.
        asyncore_use_poll=True,
        # waitress refuses a body of this size or more; MAX_BODY_BYTES itself is allowed.
        max_request_body_size=max_body_bytes + 1,
        ident="task_queue",
        cleanup_interval=SWEEP_INTERVAL_S,
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(threads)
    # One warning per queued request under load: costly, and says nothing a metric doesn't.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    return ServiceServer(
        app,
        map={},
        _sock=listener,
        dispatcher=dispatcher,
        adj=adjustments,
        bind_socket=False,
        sockinfo=(listener.family, listener.type, listener.proto, listener.getsockname()),
        client_timeout_s=client_timeout_s,
    )


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
        # The connection closes after an error: waitress would still say Keep-Alive to an
        # HTTP/1.0 client that asked for it.
        self.request.headers.pop("CONNECTION", None)
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class ServiceTask(WSGITask):
    """waitress's WSGI task, keeping an HTTP/1.1 connection after a response without a body.

    waitress closes every HTTP/1.1 response that has no Content-Length, because a client
    could not tell where its body ends. A 204 or 304 has no body (RFC 9110 §6.4.1) and may
    not carry Content-Length (§8.6), so its end is known: closing it only makes a keep-alive
    client reconnect after each DELETE /task.
    """

    _building_header = False

    def build_response_header(self) -> bytes:
        self._building_header = True
        try:
            header: bytes = super().build_response_header()
        finally:
            self._building_header = False
        return header

    def set_close_on_finish(self) -> None:
        if (
            self._building_header
            and self.version == "1.1"
            and not self.has_body
            and self.request.headers.get("CONNECTION", "").lower() != "close"
        ):
            # The one close waitress asks for while building an HTTP/1.1 header of a request
            # that did not ask to close: for the missing Content-Length.
            return
        super().set_close_on_finish()


class RequestTimeout(Error):
    """waitress's error for a request that did not arrive whole in time (answered by
    JsonErrorTask, like waitress's own)."""

    code = 408
    reason = "Request Timeout"


class ServiceRequestParser(HTTPRequestParser):
    """waitress's parser, refusing any framing that two readers could take two ways.

    RFC 9112 §6.1 and §6.3: a request with both Transfer-Encoding and Content-Length, or with a
    Transfer-Encoding other than exactly ``chunked`` (or any in HTTP/1.0), must be refused and
    its connection closed. waitress 3 reads such a request by Transfer-Encoding and keeps the
    connection, so what a proxy in front took for the body is answered as a second request.
    """

    def parse_header(self, header_plus: bytes) -> None:
        try:
            super().parse_header(header_plus)
        except TransferEncodingNotImplemented:
            raise ParsingError("Transfer-Encoding must be exactly chunked") from None
        if "TRANSFER_ENCODING" in self.headers:
            # Kept only in HTTP/1.0, which waitress then frames by Content-Length.
            raise ParsingError("Transfer-Encoding is not allowed in HTTP/1.0")
        if self.chunked:
            if "CONTENT_LENGTH" in self.headers:
                raise ParsingError(
                    "a request may not have both Transfer-Encoding and Content-Length"
                )
            if _transfer_codings(header_plus) != [b"chunked"]:
                raise ParsingError("Transfer-Encoding must be exactly chunked")

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        if self.error is not None:
            # The connection closes after the error's answer: nothing after the refused request
            # is read, so nothing after it can be taken for a request of its own.
            return len(data)
        return consumed


def _transfer_codings(header_plus: bytes) -> list[bytes]:
    """Every coding the request's Transfer-Encoding fields name, in order (waitress has
    consumed the fields by now; read only for the rare chunked request)."""
    codings: list[bytes] = []
    for line in get_header_lines(header_plus.partition(b"\r\n")[2]):
        field = HEADER_FIELD_RE.match(line)
        if field is not None and field.group("name").lower() == b"transfer-encoding":
            value = field.group("value")
            codings += [coding.strip(b" \t").lower() for coding in value.split(b",") if coding]
    return codings


class ServiceChannel(HTTPChannel):
    """A connection that answers waitress's own errors in JSON, refuses ambiguous framing,
    stays open after a response without a body, stops reading when draining, and remembers
    when its current request began to arrive."""

    task_class = ServiceTask
    error_task_class = JsonErrorTask
    parser_class = ServiceRequestParser
    request: HTTPRequestParser | None  # waitress's, typed: the request still arriving
    request_started = 0.0
    """``time.time()`` when the first byte of the request now arriving was read."""

    def received(self, data: bytes) -> bool:
        if self.request is None:
            self.request_started = time.time()
        return bool(super().received(data))

    def waits_for_request(self) -> bool:
        """Whether nothing is in flight but a request still arriving (or none: idle)."""
        return not (
            self.requests or self.total_outbufs_len or self.will_close or self.close_when_flushed
        )

    def time_out(self, timeout_s: float) -> None:
        """Answer the request still arriving with 408 and close (loop thread only).

        The request becomes an error request, served in turn by an error task as waitress
        serves its own errors; the answer closes the connection.
        """
        with self.requests_lock:
            request = self.request
            if request is None:
                return
            self.request = None
            request.error = RequestTimeout(
                f"the request did not arrive whole within {timeout_s:g} s"
            )
            request.completed = True
            self.requests.append(request)
            if len(self.requests) == 1:
                self.server.add_task(self)

    def readable(self) -> bool:
        # While the server drains, a request partly received is read to its end and served, but
        # nothing new is started: a keep-alive client cannot begin more work on its connection.
        if self.server.draining and self.request is None:
            return False
        return bool(super().readable())

    def writable(self) -> bool:
        # waitress says "writable" whenever output is buffered, but while a request is still
        # being serviced its handle_write sends nothing until send_bytes have piled up. Polled
        # for writes then, a small response written before its thread finishes the request
        # makes the loop spin on an always-ready socket, holding the GIL that thread needs to
        # finish. Asking for writes only when handle_write would send keeps the loop asleep
        # until then; the thread wakes it (pull_trigger) when the request is done.
        if self.will_close or self.close_when_flushed:
            return True
        if not self.total_outbufs_len:
            return False
        return not self.requests or self.total_outbufs_len >= self.adj.send_bytes


class ServiceServer(TcpWSGIServer):
    """waitress's TCP server, with a deadline for each request to arrive and room made at the
    connection limit.

    waitress closes only connections idle for ``channel_timeout`` with nothing in flight: a
    client that sends one byte a second is never idle, so enough of them would hold every
    connection for ever. Here a request must arrive whole within ``client_timeout_s`` of its
    first byte (408, then close), a response its client stops reading for as long is cut off
    (its request thread is blocked until then), and when the limit is reached while someone
    waits to connect, the connection that has waited longest for a request makes room.
    """

    channel_class = ServiceChannel
    draining = False
    next_channel_cleanup: float  # waitress's, typed

    def __init__(self, *args: Any, client_timeout_s: float, **kwargs: Any) -> None:
        self.client_timeout_s = client_timeout_s
        self._evicted = 0
        super().__init__(*args, **kwargs)

    def readable(self) -> bool:
        # waitress's own, but for the sweep and what it does at the limit (where it would log
        # two lines for each newcomer). Connections are closed here, while the loop builds its
        # poll set, and never accepted in the same pass: accept would reuse a closed
        # descriptor at once, and the new connection would get the events polled for the old
        # one (a reset, for the very newcomer room was made for).
        now = time.time()
        closed = 0
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            closed = self.maintenance(now)
        if not self.accepting or closed:
            return False
        if len(self._map) < self.adj.connection_limit:
            return True
        if _someone_waits(self.socket):
            self._make_room()
        return False

    def handle_accept(self) -> None:
        # waitress accepts one connection per pass of its loop, and a pass over a thousand
        # connections takes milliseconds: a burst of connections then overflows the kernel's
        # accept queue.
        for _ in range(ACCEPTS_PER_PASS):
            if len(self._map) >= self.adj.connection_limit or not _someone_waits(self.socket):
                return
            super().handle_accept()

    def maintenance(self, now: float) -> int:
        """waitress's sweep (idle connections past ``channel_timeout``), and ours: requests
        past ``client_timeout_s`` since their first byte get a 408, answers unread as long are
        cut off. Returns how many connections it closed."""
        super().maintenance(now)
        cutoff = now - self.client_timeout_s
        timed_out = closed = 0
        for channel in list(self.active_channels.values()):
            if channel.request is not None and channel.waits_for_request():
                if channel.request_started < cutoff:
                    channel.time_out(self.client_timeout_s)
                    timed_out += 1
            elif (
                channel.requests
                and channel.total_outbufs_len > self.adj.outbuf_high_watermark
                and channel.last_activity < cutoff
            ):
                # Its request thread waits for the client to read, and its socket takes no
                # more: closing it (nothing else will, the socket never becomes writable) ends
                # the wait.
                channel.handle_close()
                closed += 1
        if timed_out or closed or self._evicted:
            logger.warning(
                "client timeouts: %d request(s) not whole within CLIENT_TIMEOUT_S=%g (408), "
                "%d answer(s) not read as long (closed); %d idle or incomplete connection(s) "
                "closed to make room at the connection limit (%d)",
                timed_out,
                self.client_timeout_s,
                closed,
                self._evicted,
                self.adj.connection_limit,
            )
            self._evicted = 0
        return closed

    def _make_room(self) -> None:
        """Close the few connections that have waited longest for a request (idle, or partly
        sent): a newcomer takes a freed place in the next pass of the loop."""
        waiting = [
            channel for channel in self.active_channels.values() if channel.waits_for_request()
        ]
        oldest = heapq.nsmallest(
            EVICTIONS_PER_PASS,
            waiting,
            key=lambda c: c.request_started if c.request is not None else c.last_activity,
        )
        # None waiting: every connection has work in flight, and the newcomer waits in the
        # kernel's backlog as it would without us.
        for channel in oldest:
            channel.handle_close()
        self._evicted += len(oldest)

    # --- what HttpServer asks of it (loop thread only, but call_soon and stop_threads) --------

    def call_soon(self, thunk: Callable[[], None]) -> None:
        """Have the loop thread run ``thunk`` (any thread)."""
        self.trigger.pull_trigger(thunk)

    def start_draining(self) -> None:
        """Stop listening, and stop reading new requests from open connections."""
        self.draining = True
        wasyncore.dispatcher.close(self)

    def connections(self) -> int:
        """How many connections are open."""
        return len(self.active_channels)

    def close_idle_connections(self) -> int:
        """Close connections with nothing in flight; return how many still have something.

        In flight means partly received, received and not yet answered, or answered and not
        yet sent. A client that never finishes sending its request holds the stop until the
        deadline, no longer.
        """
        busy = 0
        for channel in list(self.active_channels.values()):
            if channel.request is not None or channel.requests or channel.total_outbufs_len:
                busy += 1
            else:
                channel.handle_close()
        return busy

    def close_all(self) -> None:
        """Close every connection and the trigger: with its map empty, the loop (``run``)
        returns."""
        for channel in list(self.active_channels.values()):
            channel.handle_close()
        self.trigger.close()

    def stop_threads(self, timeout_s: float) -> None:
        """End the request threads, waiting up to ``timeout_s`` for those still running."""
        self.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout_s)


def _someone_waits(listener: socket.socket) -> bool:
    """Whether a connection waits to be accepted (poll: descriptors may exceed select's 1024)."""
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    return bool(poller.poll(0))
