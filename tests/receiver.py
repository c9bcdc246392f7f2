"""A real HTTP receiver for delivery tests: a ThreadingHTTPServer on 127.0.0.1 that answers each
path as scripted and records every request it gets."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal, NamedTuple

HOLD_S = 10.0
"""The longest a stalling answer holds its connection; closing the receiver ends it sooner."""
DRIP_INTERVAL_S = 0.05

Stall = Literal["before_head", "after_head", "drip", "hang_up"]


class Answer(NamedTuple):
    """What the receiver answers on one path."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    stall: Stall | None = None
    """``before_head``: answer nothing until released; ``after_head``: send the head and one
    byte, then nothing; ``drip``: one body byte every DRIP_INTERVAL_S; ``hang_up``: close the
    connection without an answer."""
    head_after_s: float = 0.0
    """Wait this long (or until released) before sending the head."""
    body_after_s: float = 0.0
    """Then this long before sending the body."""


class Received(NamedTuple):
    """One request as the receiver got it."""

    method: str
    path: str
    headers: dict[str, str]
    """Names lower-cased; values as read, Latin-1 (so UTF-8 bytes arrive one char each)."""
    body: bytes
    client_port: int


class Receiver:
    """Serves plain HTTP, or HTTPS with ``tls`` (a server-side context holding its
    certificate)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.answers: dict[str, Answer] = {}
        # Per path, answers given one per request before ``answers`` takes over.
        self._turns: dict[str, list[Answer]] = {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse can be seen

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test output is no place for an access log

            def do_GET(self) -> None:
                receiver._handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        # A client that gave up mid-answer is expected here: no tracebacks on stderr.
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        # A short poll: shutdown() waits for the loop to notice, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, answer: Answer) -> str:
        """Script ``path``'s answer; returns its URL."""
        self.answers[path] = answer
        return self.url(path)

    def answer_in_turn(self, path: str, *answers: Answer) -> str:
        """Script ``path`` to answer its requests with ``answers`` in order, the last one for
        every request after; returns its URL."""
        with self._lock:
            self._turns[path] = list(answers[:-1])
            self.answers[path] = answers[-1]
        return self.url(path)

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.received.append(
                Received(
                    method=handler.command,
                    path=handler.path,
                    headers={name.lower(): value for name, value in handler.headers.items()},
                    body=body,
                    client_port=handler.client_address[1],
                )
            )
            turns = self._turns.get(handler.path)
            answer = turns.pop(0) if turns else self.answers.get(handler.path, Answer(status=404))
        with contextlib.suppress(OSError):  # the client hung up: nothing left to answer
            self._respond(handler, answer)

    def _respond(self, handler: BaseHTTPRequestHandler, answer: Answer) -> None:
        if answer.stall == "hang_up":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if answer.stall == "before_head":
            self._release.wait(HOLD_S)
            handler.close_connection = True
            return
        if answer.head_after_s:
            self._release.wait(answer.head_after_s)
        handler.send_response(answer.status)
        for name, value in answer.headers:
            handler.send_header(name, value)
        if answer.stall is None:
            handler.send_header("Content-Length", str(len(answer.body)))
            handler.end_headers()
            if answer.body_after_s:
                handler.wfile.flush()
                self._release.wait(answer.body_after_s)
            handler.wfile.write(answer.body)
            return
        handler.send_header("Content-Length", "1000000")
        handler.end_headers()
        handler.wfile.write(b"{")
        handler.wfile.flush()
        handler.close_connection = True
        if answer.stall == "after_head":
            self._release.wait(HOLD_S)
            return
        while not self._release.wait(DRIP_INTERVAL_S):
            handler.wfile.write(b" ")
            handler.wfile.flush()


def closed_port() -> int:
    """A local port nothing listens on: bound, then let go."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
