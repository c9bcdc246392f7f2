"""End to end: ``python main.py`` as a user starts it, real HTTP, real signals.

Every service runs as a child process on a free port with its output going to a file (so no pipe
ever fills), and the fixture that starts it kills it at the end whatever happened.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from api.config import CONFIG_VARIABLES
from tests.handlers import ALWAYS_FAILS_MESSAGE, read_runs
from tests.support import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT: Final = Path(__file__).resolve().parent.parent
HOST: Final = "127.0.0.1"
STARTUP_TIMEOUT_S: Final = 10.0
EXIT_TIMEOUT_S: Final = 10.0
HTTP_TIMEOUT_S: Final = 5.0
NESTING: Final = 200_000
HOLD_S: Final = 0.5
"""How long a service must be seen to stay up while one of its attempts is still running."""

# --- talking to the service --------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)


def json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a fresh socket and return everything the server sends until it closes."""
    received = b""
    with socket.create_connection((HOST, port), timeout=HTTP_TIMEOUT_S) as sock:
        sock.sendall(data)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    return received


def parse_response(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3}) ", status_line)
    assert match, raw[:200]
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(match.group(1)), headers, body)


def dechunk(body: bytes) -> bytes:
    """A chunked response body decoded; fails unless it ends with the last, empty chunk."""
    decoded = bytearray()
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n", body[:100]
            return bytes(decoded)
        decoded += body[:size]
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]


def task_path(task_id: str) -> str:
    return f"/task?{urllib.parse.urlencode({'id': task_id})}"


def assert_json_error(reply: Reply) -> str:
    assert reply.headers.get("content-type") == "application/json", reply
    body = reply.json()
    assert isinstance(body, dict)
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str)
    assert body["error"]
    return body["error"]


class Service:
    """One running ``python main.py`` and the ways a test talks to it."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=HTTP_TIMEOUT_S)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One request on a connection of its own."""
        connection = self.connect()
        try:
            return exchange(connection, method, path, body, headers)
        finally:
            connection.close()

    def enqueue(self, body: Any) -> Reply:
        return self.request("POST", "/enqueue", json_body(body))

    def accept(self, body: Any) -> dict[str, Any]:
        reply = self.enqueue(body)
        assert reply.status == 201, reply
        return reply.json()

    def task(self, task_id: str) -> dict[str, Any]:
        reply = self.request("GET", task_path(task_id))
        assert reply.status == 200, reply
        return reply.json()

    def wait_for_task(
        self, task_id: str, condition: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Poll ``GET /task`` on one keep-alive connection until ``condition`` holds."""
        connection = self.connect()

        def check() -> dict[str, Any] | None:
            reply = exchange(connection, "GET", task_path(task_id))
            assert reply.status == 200, reply
            current: dict[str, Any] = reply.json()
            return current if condition(current) else None

        try:
            found = wait_until(check, timeout_s=timeout_s)
        finally:
            connection.close()
        assert found is not None
        return found

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def send(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait_exit(self, timeout_s: float = EXIT_TIMEOUT_S) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout_s} s:\n{self.log()}") from None

    def intake_closed(self, probe_id: str) -> bool:
        """Whether a new enqueue is now refused: no connection, or 503 "shutting down".

        ``probe_id`` names a task the service already has, so that a probe answered before
        shutdown (409) changes nothing.
        """
        try:
            reply = self.enqueue({"id": probe_id})
        except ConnectionError:  # refused, reset, or closed before an answer
            return True
        assert reply.status in (409, 503), reply
        return reply.status == 503 and reply.json() == {"error": "shutting down"}

    def summary_lines(self) -> list[str]:
        return [line for line in self.log().splitlines() if "abandoned" in line]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=EXIT_TIMEOUT_S)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def service_environment(**settings: str | int) -> dict[str, str]:
    """The test runner's environment without any of the service's variables, plus ``settings``."""
    environ = {name: value for name, value in os.environ.items() if name not in CONFIG_VARIABLES}
    environ.update({name: str(value) for name, value in settings.items()})
    return environ


def launch(log_dir: Path, handler: str, **settings: str | int) -> Service:
    """Start ``python main.py`` running ``tests.handlers:<handler>``; wait for /healthz."""
    port = free_port()
    environ = service_environment(
        **{"HOST": HOST, "PORT": port, "TASK_HANDLER": f"tests.handlers:{handler}", **settings}
    )
    log_path = log_dir / f"service-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "main.py"],
            cwd=ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    service = Service(process, port, log_path)
    try:
        wait_until(lambda: healthy(service), timeout_s=STARTUP_TIMEOUT_S, interval_s=0.02)
    except BaseException:
        service.kill()
        raise
    return service


def healthy(service: Service) -> bool:
    if service.process.poll() is not None:
        raise AssertionError(f"exited with {service.process.returncode}:\n{service.log()}")
    try:
        reply = service.request("GET", "/healthz")
    except OSError:
        return False
    return reply.status == 200 and reply.json() == {"status": "ok"}


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


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for the tests that only send it bad input: it must keep serving throughout."""
    service = launch(tmp_path_factory.mktemp("shared"), "record_run", MAX_BODY_BYTES=1_048_576)
    yield service
    service.kill()


def run_main(**settings: str | int) -> subprocess.CompletedProcess[str]:
    """Run ``python main.py`` to its exit (it is expected to refuse to start)."""
    return subprocess.run(
        [sys.executable, "main.py"],
        cwd=ROOT,
        env=service_environment(**{"HOST": HOST, "PORT": free_port(), **settings}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S,
        check=False,
    )


# --- tasks run to their end --------------------------------------------------------------------


def test_an_enqueued_task_runs_once_and_is_done(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service("record_run")
    runs = tmp_path / "runs.jsonl"
    payload = {"log": str(runs), "data": ["some", "data", 1]}

    created = service.accept({"id": "task-123", "payload": payload})
    done = service.wait_for_task("task-123", lambda task: task["status"] == "done")

    assert created["status"] == "queued"
    assert created["attempts"] == 0
    assert done["attempts"] == 1
    assert done["last_error"] is None
    assert done["payload"] == payload
    assert read_runs(runs) == [{"id": "task-123", "attempt": 1, "payload": payload}]
    listed = service.request("GET", "/tasks")
    assert listed.status == 200
    assert [task["id"] for task in listed.json()] == ["task-123"]


def test_one_keep_alive_connection_serves_many_requests(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service("record_run")
    connection = service.connect()
    try:
        replies = []
        for number in range(20):
            body = json_body({"id": f"k{number}", "payload": {"log": str(tmp_path / "runs")}})
            replies.append(exchange(connection, "POST", "/enqueue", body))
            if number == 0:
                first_socket = connection.sock
            # http.client reconnects silently if the server closed: the socket must be the same.
            assert connection.sock is first_socket
        replies.append(exchange(connection, "GET", "/tasks"))
    finally:
        connection.close()

    assert [reply.status for reply in replies] == [201] * 20 + [200]
    assert len(replies[-1].json()) == 20


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_d_enqueues_although_it_sends_a_form_content_type(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = start_service("record_run")
    runs = tmp_path / "runs.jsonl"
    body = json.dumps({"id": "curl-1", "payload": {"log": str(runs), "from": "curl"}})

    curl = subprocess.run(
        [
            "curl",
            "-sS",
            "-v",
            "-d",
            body,
            "-w",
            "\n%{http_code}",
            f"http://{HOST}:{service.port}/enqueue",
        ],
        capture_output=True,
        text=True,
        timeout=HTTP_TIMEOUT_S,
        check=False,
    )

    assert curl.returncode == 0, curl.stderr
    assert "> Content-Type: application/x-www-form-urlencoded" in curl.stderr
    assert "< Content-Type: application/json" in curl.stderr
    response, _, status = curl.stdout.rpartition("\n")
    assert status == "201"
    created = json.loads(response)
    assert created["id"] == "curl-1"
    assert created["status"] == "queued"
    assert created["payload"] == {"log": str(runs), "from": "curl"}
    service.wait_for_task("curl-1", lambda task: task["status"] == "done")
    assert read_runs(runs) == [{"id": "curl-1", "attempt": 1, "payload": created["payload"]}]


@pytest.fixture(scope="module")
def fail_times_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = launch(
        tmp_path_factory.mktemp("retries"), "fail_times", RETRY_BASE_MS=5, RETRY_MAX_MS=20
    )
    yield service
    service.kill()


@pytest.mark.parametrize(
    ("failures", "max_retries", "status", "attempts"),
    [
        (0, 0, "done", 1),
        (2, 3, "done", 3),
        (2, 2, "done", 3),
        (2, 1, "failed", 2),
        (3, 0, "failed", 1),
    ],
)
def test_a_failing_task_is_retried_until_done_or_out_of_retries(
    fail_times_service: Service,
    failures: int,
    max_retries: int,
    status: str,
    attempts: int,
) -> None:
    task_id = f"fails-{failures}-retries-{max_retries}"
    body = {"id": task_id, "payload": {"failures": failures}, "max_retries": max_retries}
    fail_times_service.accept(body)

    final = fail_times_service.wait_for_task(
        task_id, lambda task: task["status"] in ("done", "failed")
    )

    assert final["status"] == status
    assert final["attempts"] == attempts
    assert final["next_attempt_at"] is None
    if status == "failed":
        assert final["last_error"] == f"HandlerFailure: failure {attempts} of {failures}"


def test_an_always_failing_task_ends_failed_after_max_retries_plus_one_attempts(
    start_service: Callable[..., Service],
) -> None:
    service = start_service("always_fail", WORKERS=4, RETRY_BASE_MS=5, RETRY_MAX_MS=20)
    for max_retries in range(5):
        service.accept({"id": f"doomed-{max_retries}", "max_retries": max_retries})

    for max_retries in range(5):
        failed = service.wait_for_task(
            f"doomed-{max_retries}", lambda task: task["status"] == "failed"
        )
        assert failed["attempts"] == max_retries + 1
        assert failed["last_error"] == f"HandlerFailure: {ALWAYS_FAILS_MESSAGE}"
        assert failed["next_attempt_at"] is None


# --- graceful shutdown -------------------------------------------------------------------------

SUMMARY: Final = re.compile(r"abandoned (\d+) queued and (\d+) waiting for their time")


COUNT: Final = re.compile(r"\b(queued|running|done|failed)=(\d+)")


def status_counts(line: str) -> dict[str, int]:
    return {status: int(count) for status, count in COUNT.findall(line)}


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_closes_intake_at_once_lets_the_running_attempt_finish_and_exits_0(
    start_service: Callable[..., Service], tmp_path: Path, stop_signal: signal.Signals
) -> None:
    service = start_service("wait_for_file", WORKERS=1, RETRY_BASE_MS=60_000)
    released, release = tmp_path / "released", tmp_path / "release"
    released.touch()
    # One task waits for its retry, one runs until the test releases it, two wait in line.
    service.accept({"id": "retry", "payload": {"release": str(released), "fail": True}})
    service.wait_for_task("retry", lambda task: task["next_attempt_at"] is not None)
    service.accept({"id": "running", "payload": {"release": str(release)}})
    service.wait_for_task("running", lambda task: task["status"] == "running")
    for task_id in ("line-1", "line-2"):
        service.accept({"id": task_id, "payload": {"release": str(release)}})

    service.send(stop_signal)
    wait_until(lambda: service.intake_closed("running"), timeout_s=2.0)

    with contextlib.suppress(ConnectionError):
        late = service.enqueue({"id": "late", "payload": {"release": str(released)}})
        assert late.status == 503, late
        assert late.json() == {"error": "shutting down"}
    with pytest.raises(subprocess.TimeoutExpired):
        # Not a wait for something to happen: the service must not exit during this window.
        service.process.wait(timeout=HOLD_S)
    release.touch()
    assert service.wait_exit() == 0

    log = service.log()
    [summary] = service.summary_lines()
    assert status_counts(summary) == {"queued": 3, "running": 0, "done": 1, "failed": 0}, log
    match = SUMMARY.search(summary)
    assert match, summary
    assert (int(match.group(1)), int(match.group(2))) == (2, 1)
    # The failed attempt's, logged with it; nothing else went wrong.
    assert log.count("Traceback") == 1, log


def test_a_response_still_being_sent_when_the_signal_arrives_is_sent_whole(
    start_service: Callable[..., Service],
) -> None:
    service = start_service("fail_times")
    blob = "x" * 1_000_000
    for number in range(20):
        service.accept({"id": f"big-{number}", "payload": {"failures": 0, "blob": blob}})
    with socket.socket() as sock:
        # A small receive window keeps most of the 20 MB answer waiting on the server's side.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(HTTP_TIMEOUT_S)
        sock.connect((HOST, service.port))
        sock.sendall(f"GET /tasks HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        assert sock.recv(1, socket.MSG_PEEK) == b"H"  # the answer has started to arrive

        service.send(signal.SIGTERM)
        wait_until(lambda: service.intake_closed("big-0"), timeout_s=2.0)
        received = bytearray()
        while chunk := sock.recv(1 << 20):
            received += chunk

    reply = parse_response(bytes(received))
    assert reply.status == 200
    # Streamed in pieces (chunked): whole means every chunk and the last, empty one.
    assert reply.headers["transfer-encoding"] == "chunked"
    listed = json.loads(dechunk(reply.body))
    assert [task["id"] for task in listed] == [f"big-{number}" for number in range(20)]
    assert all(task["payload"]["blob"] == blob for task in listed)
    assert service.wait_exit() == 0


def test_idle_keep_alive_connections_do_not_delay_exit(
    start_service: Callable[..., Service],
) -> None:
    service = start_service("record_run")
    connections = [service.connect() for _ in range(3)]
    try:
        for connection in connections:
            assert exchange(connection, "GET", "/healthz").status == 200

        started = time.monotonic()
        service.send(signal.SIGTERM)
        code = service.wait_exit()
        elapsed_s = time.monotonic() - started

        assert code == 0
        assert elapsed_s < 2.0, f"took {elapsed_s:.2f} s to exit"
        assert len(service.summary_lines()) == 1
    finally:
        for connection in connections:
            connection.close()


def test_a_thread_the_handler_module_starts_at_import_cannot_take_a_stop_signal(
    start_service: Callable[..., Service], tmp_path: Path
) -> None:
    # A signal the main thread does not wait for at that moment goes to any thread that has it
    # unblocked, and SIGTERM's default action there ends the process with no shutdown at all.
    mask_file = tmp_path / "mask"
    service = start_service(
        "record_run",
        TASK_HANDLER="tests.import_thread_handler:run",
        WORKER_MODE="thread",
        IMPORT_THREAD_MASK_FILE=str(mask_file),
    )
    blocked = wait_until(lambda: mask_file.exists() and mask_file.read_text().split(","))

    assert {"SIGTERM", "SIGINT"} <= set(blocked)
    service.send(signal.SIGTERM)
    assert service.wait_exit() == 0
    assert len(service.summary_lines()) == 1


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_during_shutdown_exits_at_once_with_a_non_zero_code(
    start_service: Callable[..., Service], tmp_path: Path, second: signal.Signals
) -> None:
    service = start_service("wait_for_file", WORKERS=1)
    service.accept({"id": "stuck", "payload": {"release": str(tmp_path / "never")}})
    service.wait_for_task("stuck", lambda task: task["status"] == "running")
    service.send(signal.SIGTERM)
    wait_until(lambda: service.intake_closed("stuck"), timeout_s=2.0)
    assert service.process.poll() is None

    started = time.monotonic()
    service.send(second)
    code = service.wait_exit(timeout_s=5.0)

    assert time.monotonic() - started < 2.0
    assert code not in (0, None)
    assert service.summary_lines() == []


# --- startup errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("WORKERS", "0"),
        ("QUEUE_SIZE", "-1"),
        ("RETRY_BASE_MS", "1.5"),
        ("RETRY_MAX_MS", "soon"),
        ("MAX_BODY_BYTES", "huge"),
        ("HTTP_THREADS", "0"),
        ("SHUTDOWN_TIMEOUT_S", "-1"),
        ("SIM_FAILURE_RATE", "2"),
        ("LOG_LEVEL", "loud"),
        ("TARGET_ALLOW", "hooks.example"),
        ("TARGET_SIGNING_KEYS", "too-short"),
    ],
)
def test_a_bad_configuration_value_exits_2_naming_the_variable(variable: str, value: str) -> None:
    result = run_main(**{variable: value})

    assert result.returncode == 2, result
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "spec",
    ["tests.no_such_module:run", "tests.handlers:no_such_function", "no-colon", "tests.handlers:"],
)
def test_an_unusable_task_handler_exits_2_naming_task_handler(spec: str) -> None:
    result = run_main(TASK_HANDLER=spec)

    assert result.returncode == 2, result
    assert "TASK_HANDLER" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_already_in_use_exits_2_naming_the_address() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = subprocess.run(
            [sys.executable, "main.py"],
            cwd=ROOT,
            env=service_environment(HOST=HOST, PORT=port, TASK_HANDLER="tests.handlers:record_run"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=EXIT_TIMEOUT_S,
            check=False,
        )

    assert result.returncode == 2, result
    assert str(port) in result.stderr
    assert "Traceback" not in result.stderr


# --- bad input never breaks the server ---------------------------------------------------------


def assert_still_serving(service: Service, task_id: str) -> None:
    assert service.process.poll() is None, service.log()
    health = service.request("GET", "/healthz")
    assert health.status == 200
    assert health.json() == {"status": "ok"}
    assert service.enqueue({"id": task_id, "payload": {"log": os.devnull}}).status == 201


GARBAGE = {
    "binary": b"\x00\xff\xfe\xfd\r\n\r\n",
    "random bytes": random.Random(20).randbytes(4096) + b"\r\n\r\n",
    "blank lines then garbage": b"\r\n\r\n\r\n\x01\x02\r\n\r\n",
    "unknown http version": b"GET /healthz HTTP/7.0\r\nHost: x\r\nConnection: close\r\n\r\n",
    "bad header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    "negative length": b"POST /enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "bad chunk": (
        b"POST /enqueue HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n"
    ),
    "surrogate in the query": (
        b"GET /task?id=%ED%A0%80 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ),
    "invalid utf-8 in the path": b"GET /%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
}


@pytest.mark.parametrize(("name", "garbage"), GARBAGE.items(), ids=GARBAGE)
def test_garbage_on_the_socket_never_gets_a_5xx_and_the_server_keeps_serving(
    shared_service: Service, name: str, garbage: bytes
) -> None:
    received = raw_exchange(shared_service.port, garbage)

    if received:  # closing the connection without a word would be fine too
        reply = parse_response(received)
        assert reply.status < 500, received
        assert reply.headers.get("content-type") == "application/json", received
        if reply.status >= 400:
            assert assert_json_error(reply)
    assert_still_serving(shared_service, f"after {name}")


HOSTILE_BODIES = {
    "200000 nested brackets in the payload": (
        b'{"id": "deep", "payload": ' + b"[" * NESTING + b"]" * NESTING + b"}"
    ),
    "200000 nested brackets as the body": b"[" * NESTING + b"]" * NESTING,
    "200000 unclosed brackets": b'{"id": "deep", "payload": ' + b"[" * NESTING,
    "lone surrogate in the id": b'{"id": "\\ud800"}',
    "lone surrogate in the payload": b'{"id": "s", "payload": ["\\udfff"]}',
    "lone surrogate as the body": b'"\\udbff"',
    "utf-8 encoded surrogate": b'{"id": "\xed\xa0\x80"}',
}


@pytest.mark.parametrize(("name", "body"), HOSTILE_BODIES.items(), ids=HOSTILE_BODIES)
def test_hostile_json_is_a_400_and_the_server_keeps_serving(
    shared_service: Service, name: str, body: bytes
) -> None:
    reply = shared_service.request("POST", "/enqueue", body)

    assert reply.status == 400, reply
    assert assert_json_error(reply)
    assert_still_serving(shared_service, f"after {name}")


def test_a_200000_deep_payload_is_refused_as_nesting_too_deep(shared_service: Service) -> None:
    body = HOSTILE_BODIES["200000 nested brackets in the payload"]

    reply = shared_service.request("POST", "/enqueue", body)

    assert reply.status == 400
    assert assert_json_error(reply) == "nesting too deep"


# --- waitress's own errors are JSON too ---------------------------------------------------------


@pytest.fixture(scope="module")
def small_body_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = launch(tmp_path_factory.mktemp("small"), "record_run", MAX_BODY_BYTES=1024)
    yield service
    service.kill()


WAITRESS_ERRORS = {
    "malformed request line": (b"THIS IS NOT HTTP\r\n\r\n", 400),
    "request line without a version": (b"GET\r\n\r\n", 400),
    "invalid Content-Length": (
        b"POST /enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        400,
    ),
    "declared Content-Length over MAX_BODY_BYTES": (
        b"POST /enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n" + b"x" * 2048,
        413,
    ),
    "declared Content-Length over MAX_BODY_BYTES, no body sent": (
        b"POST /enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n",
        413,
    ),
    "chunked body over MAX_BODY_BYTES": (
        b"POST /enqueue HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"800\r\n"
        + b"x" * 2048
        + b"\r\n0\r\n\r\n",
        413,
    ),
}


@pytest.mark.parametrize(("request_bytes", "status"), WAITRESS_ERRORS.values(), ids=WAITRESS_ERRORS)
def test_errors_waitress_answers_itself_are_json(
    small_body_service: Service, request_bytes: bytes, status: int
) -> None:
    reply = parse_response(raw_exchange(small_body_service.port, request_bytes))

    assert reply.status == status
    assert assert_json_error(reply)
    assert int(reply.headers["content-length"]) == len(reply.body)
    assert small_body_service.request("GET", "/healthz").status == 200


def test_a_body_at_max_body_bytes_is_accepted_over_http(small_body_service: Service) -> None:
    frame = b'{"id": "full-size", "payload": ""}'
    body = frame[:-2] + b"x" * (1024 - len(frame)) + frame[-2:]
    assert len(body) == 1024

    reply = small_body_service.request("POST", "/enqueue", body)

    assert reply.status == 201, reply


def test_unknown_routes_and_wrong_methods_are_json_over_http(shared_service: Service) -> None:
    missing = shared_service.request("GET", "/nope")
    wrong = shared_service.request("DELETE", "/tasks")

    assert missing.status == 404
    assert assert_json_error(missing)
    assert wrong.status == 405
    assert assert_json_error(wrong)
