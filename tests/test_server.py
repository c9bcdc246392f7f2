"""HttpServer (api/server.py) over real sockets: starting, stopping gracefully or by a deadline,
keeping connections alive, and making room at the connection limit. Tiny WSGI apps where the
service is not the point."""

from __future__ import annotations

import http.client
import json
import time
from typing import TYPE_CHECKING, Any, Final

import pytest

from actors import TaskSystem, noop
from api import create_app
from api.server import HttpServer
from tests.support import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

HOST: Final = "127.0.0.1"
TIMEOUT_S: Final = 5.0


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def serve() -> Iterator[Callable[..., HttpServer]]:
    """Start HttpServers on free ports; each one still running at the end is stopped."""
    servers: list[HttpServer] = []

    def start(app: Any, **options: Any) -> HttpServer:
        options = {"host": HOST, "port": 0, "threads": 4, "max_body_bytes": 1024, **options}
        server = HttpServer(app, **options)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(time.monotonic() + TIMEOUT_S)


def connect(server: HttpServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT_S)


def exchange(
    connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes]:
    connection.request(method, path, body=body)
    response = connection.getresponse()
    return response.status, response.read()


# --- keep-alive -------------------------------------------------------------------------------


def test_a_204_keeps_its_keep_alive_connection(serve: Callable[..., HttpServer]) -> None:
    system = TaskSystem.start(noop, workers=1)
    try:
        server = serve(create_app(system))
        connection = connect(server)
        try:
            body = json.dumps({"id": "t"}).encode()
            assert exchange(connection, "POST", "/enqueue", body)[0] == 201
            wait_until(
                lambda: json.loads(exchange(connection, "GET", "/task?id=t")[1])["status"] == "done"
            )
            first_socket = connection.sock
            assert first_socket is not None

            deleted = exchange(connection, "DELETE", "/task?id=t")
            # http.client closes its socket when the server says it will close; a reconnect
            # for the next request would go unnoticed, so the socket is checked at each step.
            assert connection.sock is first_socket, "closed after the 204"
            after = exchange(connection, "GET", "/healthz")
            assert connection.sock is first_socket
        finally:
            connection.close()
    finally:
        system.stop(time.monotonic() + TIMEOUT_S)

    assert deleted == (204, b"")
    assert after[0] == 200
