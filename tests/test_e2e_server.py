"""End to end: what the HTTP server does about hostile clients (issue 11): clients that send
slowly, requests that could smuggle another, listings nobody reads, and delayed tasks without
end. Each against ``python main.py``, over real sockets."""

from __future__ import annotations

import contextlib
import re
import resource
import select
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from tests.support import wait_until
from tests.test_e2e import (
    HOST,
    HTTP_TIMEOUT_S,
    Service,
    assert_json_error,
    exchange,
    json_body,
    launch,
    parse_response,
    raw_exchange,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

SLOW_CLIENTS: Final = 1100
"""More than waitress's connection limit (1024): the number that locked everyone out."""
CLIENT_TIMEOUT_S: Final = 2


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start services for one test; every one of them is killed at the end, whatever happened."""
    started: list[Service] = []

    def start(handler: str, **settings: str | int) -> Service:
        service = launch(tmp_path, handler, **settings)
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


def answers_on(sock: socket.socket, timeout_s: float = HTTP_TIMEOUT_S) -> bytes:
    """Everything the server sends on ``sock`` until it closes it."""
    sock.settimeout(timeout_s)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


# --- request smuggling ------------------------------------------------------------------------

SMUGGLED: Final = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

AMBIGUOUS_FRAMING = {
    "Transfer-Encoding and Content-Length": (
        b"POST /enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"12\r\n" + b'{"id": "smuggle"}\n' + b"\r\n0\r\n\r\n" + SMUGGLED
    ),
    "Content-Length before Transfer-Encoding": (
        b"POST /enqueue HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 4\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED
    ),
    "chunked twice": (
        b"POST /enqueue HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED
    ),
    "chunked in two headers": (
        b"POST /enqueue HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "gzip then chunked": (
        b"POST /enqueue HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED
    ),
    "identity": (
        b"POST /enqueue HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n"
        b"Content-Length: 0\r\n\r\n" + SMUGGLED
    ),
    "Transfer-Encoding in HTTP/1.0": (
        b"POST /enqueue HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED
    ),
}


@pytest.fixture(scope="module")
def plain_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = launch(tmp_path_factory.mktemp("plain"), "record_run")
    yield service
    service.kill()


@pytest.mark.parametrize("request_bytes", AMBIGUOUS_FRAMING.values(), ids=AMBIGUOUS_FRAMING)
def test_ambiguous_framing_is_a_400_the_connection_closes_and_nothing_after_it_is_answered(
    plain_service: Service, request_bytes: bytes
) -> None:
    received = raw_exchange(plain_service.port, request_bytes)

    reply = parse_response(received)
    assert reply.status == 400, received
    assert assert_json_error(reply)
    assert reply.headers.get("connection") == "close", received
    assert int(reply.headers["content-length"]) == len(reply.body), received
    # One answer only: the bytes after the first request were never read as a second one.
    assert len(re.findall(rb"HTTP/1\.[01] \d{3} ", received)) == 1, received
    assert plain_service.request("GET", "/task?id=smuggle").status == 404


def test_a_plain_chunked_request_is_still_served_and_keeps_its_connection(
    plain_service: Service,
) -> None:
    body = b'{"id": "chunked-ok"}'
    with socket.create_connection((HOST, plain_service.port), timeout=HTTP_TIMEOUT_S) as sock:
        sock.sendall(
            b"POST /enqueue HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(body):x}\r\n".encode()
            + body
            + b"\r\n0\r\n\r\n"
            + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        received = answers_on(sock)

    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", received)
    assert statuses == [b"201", b"200"], received


# --- slow clients ------------------------------------------------------------------------------


def raise_open_files_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"needs {wanted} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def timed_health(service: Service) -> float:
    """Seconds a fresh client takes to get 200 from /healthz."""
    started = time.monotonic()
    reply = service.request("GET", "/healthz")
    elapsed_s = time.monotonic() - started
    assert reply.status == 200, reply
    return elapsed_s


def readable_among(socks: dict[int, socket.socket]) -> list[int]:
    """The keys of ``socks`` with something to read, or closed (poll: select stops at 1024)."""
    poller = select.poll()
    for sock in socks.values():
        poller.register(sock, select.POLLIN)
    ready = {fd for fd, _ in poller.poll(0)}
    return [key for key, sock in socks.items() if sock.fileno() in ready]


def test_slow_clients_are_cut_off_after_client_timeout_s_and_never_lock_out_a_probe(
    start_service: Callable[..., Service],
) -> None:
    raise_open_files_limit(SLOW_CLIENTS + 512)
    service = start_service("record_run", CLIENT_TIMEOUT_S=CLIENT_TIMEOUT_S)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 64
    trickling: dict[int, socket.socket] = {}
    answers: list[bytes] = []
    try:
        for number in range(SLOW_CLIENTS):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect((HOST, service.port))
            trickling[number] = sock
        started = time.monotonic()
        worst_s = 0.0
        position = 0
        # One byte a second on each connection, as the slow clients did, until the server has
        # closed them all: the probe must get through all the while.
        while trickling:
            round_started = time.monotonic()
            elapsed_s = round_started - started
            assert elapsed_s < CLIENT_TIMEOUT_S + 8, f"{len(trickling)} still open"
            if position % 2 == 0:
                for number, sock in list(trickling.items()):
                    try:
                        sock.send(head[position // 2 : position // 2 + 1] or b"s")
                    except (BlockingIOError, InterruptedError):
                        pass  # not connected yet: still in the server's backlog
                    except OSError:
                        del trickling[number]
            position += 1
            for number in readable_among(trickling):
                data = b""
                with contextlib.suppress(OSError):
                    data = trickling[number].recv(65536)
                if data:
                    trickling[number].setblocking(True)
                    answers.append(data + answers_on(trickling[number]))
                    assert elapsed_s >= CLIENT_TIMEOUT_S - 0.5, f"cut off too early: {data!r}"
                del trickling[number]
            worst_s = max(worst_s, timed_health(service))
            # The clients' own pace, not a wait for the server: a round every half second.
            time.sleep(max(0.0, 0.5 - (time.monotonic() - round_started)))

        assert worst_s < 1.0, f"/healthz took {worst_s:.2f} s among slow clients"
        # Those that got an answer got a JSON 408 (those closed to make room got none).
        assert len(answers) > SLOW_CLIENTS // 2
        for data in answers:
            reply = parse_response(data)
            assert reply.status == 408, data
            assert assert_json_error(reply)
        assert service.process.poll() is None
    finally:
        for sock in trickling.values():
            sock.close()


def test_a_request_that_arrives_whole_in_time_is_served_however_slowly_it_came(
    start_service: Callable[..., Service],
) -> None:
    service = start_service("record_run", CLIENT_TIMEOUT_S=CLIENT_TIMEOUT_S)
    body = json_body({"id": "slow-but-in-time"})
    request = (
        b"POST /enqueue HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with socket.create_connection((HOST, service.port), timeout=HTTP_TIMEOUT_S) as sock:
        for piece in (request[:20], request[20:60], request[60:]):
            sock.sendall(piece)
            # Not a wait for something to happen: the pieces must be spread over the timeout.
            time.sleep(CLIENT_TIMEOUT_S / 4)
        reply = parse_response(answers_on(sock))

    assert reply.status == 201, reply


# --- listings nobody reads ---------------------------------------------------------------------

STORED: Final = 100_000
UNREAD_LISTINGS: Final = 30
GROWTH_LIMIT_MB: Final = 150


def rss_mb(service: Service) -> float:
    status = Path(f"/proc/{service.process.pid}/status").read_text(encoding="ascii")
    match = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) / 1024


def store_delayed_tasks(service: Service, count: int) -> None:
    """``count`` tasks waiting a day for their time: stored, and never run during the test."""
    connection = service.connect()
    try:
        for start in range(0, count, 1000):
            batch = [{"id": f"t{n}", "delay_ms": 86_400_000} for n in range(start, start + 1000)]
            reply = exchange(connection, "POST", "/enqueue/batch", json_body(batch))
            assert reply.status == 201, reply
    finally:
        connection.close()


def test_listings_nobody_reads_cost_little_memory_and_never_stall_the_probe(
    start_service: Callable[..., Service],
) -> None:
    service = start_service("record_run", SCHEDULED_MAX=STORED, QUEUE_SIZE=64)
    store_delayed_tasks(service, STORED)
    before_mb = rss_mb(service)
    readers: list[socket.socket] = []
    try:
        for _ in range(UNREAD_LISTINGS):
            sock = socket.socket()
            # A small window: the answer waits on the server's side, as for a client that
            # stopped reading.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(HTTP_TIMEOUT_S)
            sock.connect((HOST, service.port))
            sock.sendall(b"GET /tasks HTTP/1.1\r\nHost: x\r\n\r\n")
            readers.append(sock)
        worst_s, peak_mb = 0.0, before_mb

        def all_answered() -> bool:
            nonlocal worst_s, peak_mb
            worst_s = max(worst_s, timed_health(service))
            peak_mb = max(peak_mb, rss_mb(service))
            return all(sock.recv(1, socket.MSG_PEEK) for sock in readers)

        wait_until(all_answered, timeout_s=30)
        for _ in range(10):  # and while the answers stay unread
            all_answered()
        statuses = [parse_response(sock.recv(4096)).status for sock in readers]
    finally:
        for sock in readers:
            sock.close()

    growth_mb = peak_mb - before_mb
    assert growth_mb < GROWTH_LIMIT_MB, f"{before_mb:.0f} MB -> {peak_mb:.0f} MB"
    assert worst_s < 1.0, f"/healthz took {worst_s:.2f} s while listings went unread"
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses


def test_a_listing_its_client_stopped_reading_is_cut_off_and_frees_its_place(
    start_service: Callable[..., Service],
) -> None:
    service = start_service("record_run", CLIENT_TIMEOUT_S=1, LISTINGS_MAX=1)
    blob = "x" * 1_000_000
    for number in range(20):  # 20 MB: more than the server buffers before the thread waits
        reply = service.enqueue({"id": f"big-{number}", "payload": blob, "delay_ms": 86_400_000})
        assert reply.status == 201, reply
    with socket.socket() as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.settimeout(HTTP_TIMEOUT_S)
        stalled.connect((HOST, service.port))
        stalled.sendall(b"GET /tasks HTTP/1.1\r\nHost: x\r\n\r\n")
        assert stalled.recv(1, socket.MSG_PEEK) == b"H"
        started = time.monotonic()
        refused = service.request("GET", "/tasks?x=1")
        assert refused.status == 503, refused

        def listed() -> bool:
            with contextlib.suppress(TimeoutError):
                return service.request("GET", "/tasks").status == 200
            return False

        wait_until(listed, timeout_s=10)
        assert time.monotonic() - started >= 0.5
        assert "1 answer(s) not read as long (closed)" in service.log()


# --- delayed tasks without end -----------------------------------------------------------------


def test_scheduled_max_refuses_new_delayed_tasks_never_retries_and_says_so(
    start_service: Callable[..., Service],
) -> None:
    service = start_service("always_fail", SCHEDULED_MAX=2, RETRY_BASE_MS=20, RETRY_MAX_MS=20)
    for number in range(2):
        service.accept({"id": f"later-{number}", "delay_ms": 86_400_000})

    single = service.enqueue({"id": "one-more", "delay_ms": 1000})
    batch = service.request(
        "POST", "/enqueue/batch", json_body([{"id": "b1"}, {"id": "b2", "delay_ms": 1000}])
    )
    ready = service.request("GET", "/readyz")
    stats = service.request("GET", "/stats").json()
    service.accept({"id": "failing", "max_retries": 2})
    failed = service.wait_for_task("failing", lambda task: task["status"] == "failed")

    for refused in (single, batch):
        assert refused.status == 503, refused
        assert refused.json() == {"error": "too many scheduled tasks"}
        assert refused.headers["retry-after"] == "1"
    assert ready.status == 503
    assert ready.json() == {"status": "too many scheduled tasks"}
    assert (stats["scheduled"], stats["scheduled_max"]) == (2, 2)
    assert failed["attempts"] == 3  # both retries waited beyond the bound
    assert service.request("GET", "/task?id=b1").status == 404
