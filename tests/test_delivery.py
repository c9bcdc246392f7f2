"""Delivery against a real local HTTP receiver: what is sent, and what each kind of answer (or
its absence) means for the task."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
import urllib3

from actors.allow_list import AllowList
from actors.attempt import AttemptReport
from actors.delivery import (
    MAX_RETRY_AFTER_S,
    DeliveryOutcome,
    answer_body,
    attempt_report,
    deliver,
    new_pool,
    retry_after_s,
)
from actors.signing import verify
from actors.target import Target
from tests.receiver import Answer, Receiver, closed_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

NOW = 1_800_000_000.0
KEYS = (b"old-key-0123456789abcdef", b"new-key-fedcba9876543210")
SECRET = "Bearer s3cret-t0ken"
PAYLOAD = b'{"invoice": 42, "lines": [1, 2]}'


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def pool() -> Iterator[urllib3.PoolManager]:
    pool = new_pool(2)
    yield pool
    pool.clear()


def send(
    pool: urllib3.PoolManager,
    url: str,
    *,
    method: Any = "POST",
    headers: tuple[tuple[str, str], ...] = (),
    task_id: str = "task-1",
    attempt: int = 1,
    timeout_ms: int = 5000,
    result_max_bytes: int = 65_536,
    **options: Any,
) -> DeliveryOutcome:
    return deliver(
        pool,
        Target(url=url, method=method, headers=headers),
        task_id,
        attempt,
        PAYLOAD,
        timeout_ms=timeout_ms,
        result_max_bytes=result_max_bytes,
        clock=lambda: NOW,
        **options,
    )


def result_of(outcome: DeliveryOutcome) -> object:
    assert outcome.result is not None
    return msgspec.json.decode(outcome.result)


# What is sent


def test_a_post_carries_the_payload_the_task_s_headers_and_its_id_and_attempt(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    url = receiver.answer("/hooks/invoice", Answer(201))

    send(pool, url, headers=(("Authorization", SECRET), ("X-Tenant", "7")), attempt=3)

    [got] = receiver.requests()
    assert (got.method, got.path, got.body) == ("POST", "/hooks/invoice", PAYLOAD)
    assert got.headers["content-type"] == "application/json"
    assert got.headers["content-length"] == str(len(PAYLOAD))
    assert got.headers["authorization"] == SECRET
    assert got.headers["x-tenant"] == "7"
    assert got.headers["task-id"] == "task-1"
    assert got.headers["task-attempt"] == "3"
    assert "task-signature" not in got.headers


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_every_method_but_get_sends_the_payload(
    pool: urllib3.PoolManager, receiver: Receiver, method: str
) -> None:
    send(pool, receiver.answer("/x", Answer(200)), method=method)

    [got] = receiver.requests()
    assert (got.method, got.body) == (method, PAYLOAD)


def test_a_get_sends_no_body_and_no_content_type(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    send(pool, receiver.answer("/x?since=1", Answer(200)), method="GET")

    [got] = receiver.requests()
    assert (got.method, got.path, got.body) == ("GET", "/x?since=1", b"")
    assert "content-type" not in got.headers
    assert got.headers.get("content-length", "0") == "0"


def test_the_signature_received_verifies_with_either_of_two_keys(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    send(pool, receiver.answer("/x", Answer(200)), signing_keys=KEYS)

    [got] = receiver.requests()
    header = got.headers["task-signature"]
    assert header.startswith(f"t={int(NOW)},v1=")
    assert header.count("v1=") == 2
    for key in KEYS:
        assert verify(header, [key], got.headers["task-id"], got.body, now=NOW)
    assert not verify(header, [b"some-other-key-0123"], "task-1", got.body, now=NOW)


def test_a_get_s_signature_covers_the_empty_body(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    send(pool, receiver.answer("/x", Answer(200)), method="GET", signing_keys=KEYS[:1])

    [got] = receiver.requests()
    assert verify(got.headers["task-signature"], KEYS[:1], "task-1", b"", now=NOW)


def test_a_non_ascii_task_id_arrives_as_its_utf_8_bytes_and_verifies(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    send(pool, receiver.answer("/x", Answer(200)), task_id="tâche-ü", signing_keys=KEYS)

    [got] = receiver.requests()
    task_id = got.headers["task-id"].encode("latin-1").decode("utf-8")
    assert task_id == "tâche-ü"
    assert verify(got.headers["task-signature"], KEYS, task_id, got.body, now=NOW)


def test_one_connection_serves_deliveries_one_after_another(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    ok = receiver.answer("/ok", Answer(200, b'{"a": 1}', (("Content-Type", "application/json"),)))
    busy = receiver.answer("/busy", Answer(503, b"try later"))

    for url in (ok, busy, ok):
        send(pool, url)

    assert len({got.client_port for got in receiver.requests()}) == 1


def test_a_target_no_longer_allowed_is_not_sent_to(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    url = receiver.answer("/hooks/x", Answer(200))
    narrowed = AllowList.parse(receiver.url("/other"))

    outcome = send(pool, url, allow=narrowed)

    assert outcome == DeliveryOutcome("fail", error="target not allowed")
    assert receiver.requests() == []
    assert send(pool, url, allow=AllowList.parse(receiver.url("/hooks"))).kind == "done"


def test_no_header_value_reaches_the_log(
    pool: urllib3.PoolManager, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    url = receiver.answer("/x", Answer(503))
    with caplog.at_level(logging.DEBUG):
        send(pool, url, headers=(("Authorization", SECRET),), signing_keys=KEYS)
        send(pool, f"http://127.0.0.1:{closed_port()}/x", headers=(("Authorization", SECRET),))

    assert caplog.records  # the deliveries were logged...
    assert SECRET not in caplog.text  # ...without their secrets
    assert KEYS[0].decode() not in caplog.text


# What an answer means


def test_a_json_answer_is_done_with_its_status_and_parsed_body(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    answer = Answer(200, b'{"paid": true,\n "id": 7}', (("Content-Type", "application/json"),))

    outcome = send(pool, receiver.answer("/x", answer))

    assert (outcome.kind, outcome.status, outcome.error) == ("done", 200, None)
    assert result_of(outcome) == {"status": 200, "body": {"paid": True, "id": 7}}


def test_a_text_answer_is_done_with_its_text(pool: urllib3.PoolManager, receiver: Receiver) -> None:
    answer = Answer(202, b"queued: 7", (("Content-Type", "text/plain; charset=utf-8"),))

    outcome = send(pool, receiver.answer("/x", answer))

    assert result_of(outcome) == {"status": 202, "body": "queued: 7"}


def test_an_empty_answer_is_done_with_a_null_body(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    outcome = send(pool, receiver.answer("/x", Answer(204)))

    assert result_of(outcome) == {"status": 204, "body": None}


def test_an_answer_too_big_to_keep_is_done_without_a_result(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    json = (("Content-Type", "application/json"),)
    big = b'"' + b"x" * 600 + b'"'
    huge = b'"' + b"x" * 5000 + b'"'

    over = send(pool, receiver.answer("/big", Answer(200, big, json)), result_max_bytes=100)
    # Past twice the limit (and a margin for JSON whitespace) the rest is not even read.
    far_over = send(pool, receiver.answer("/huge", Answer(200, huge, json)), result_max_bytes=100)

    encoded = len(b'{"status":200,"body":' + big + b"}")
    assert over == DeliveryOutcome(
        "done", status=200, error=f"result dropped: {encoded} bytes encoded, over 100"
    )
    assert far_over == DeliveryOutcome(
        "done", status=200, error="result dropped: answer body over 1224 bytes"
    )


def test_pretty_printed_json_is_kept_when_its_encoding_fits(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    pretty = b"[\n" + b",\n".join(b"    1" for _ in range(40)) + b"\n]"
    url = receiver.answer("/x", Answer(200, pretty, (("Content-Type", "application/json"),)))

    outcome = send(pool, url, result_max_bytes=120)

    assert len(pretty) > 120
    assert result_of(outcome) == {"status": 200, "body": [1] * 40}


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_a_server_error_timeout_or_throttle_status_is_retried(
    pool: urllib3.PoolManager, receiver: Receiver, status: int
) -> None:
    outcome = send(pool, receiver.answer("/x", Answer(status, b"busy")))

    assert outcome == DeliveryOutcome("retry", status=status, error=f"HTTP {status} from target")


def test_retry_after_in_seconds_is_reported(pool: urllib3.PoolManager, receiver: Receiver) -> None:
    outcome = send(pool, receiver.answer("/x", Answer(503, headers=(("Retry-After", "120"),))))

    assert (outcome.kind, outcome.retry_after_s) == ("retry", 120.0)


def test_retry_after_as_an_http_date_is_reported_from_the_clock(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    when = format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True)

    outcome = send(pool, receiver.answer("/x", Answer(429, headers=(("Retry-After", when),))))

    assert (outcome.kind, outcome.retry_after_s) == ("retry", 90.0)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_fails_at_once(
    pool: urllib3.PoolManager, receiver: Receiver, status: int
) -> None:
    elsewhere = receiver.answer("/elsewhere", Answer(200))
    url = receiver.answer("/x", Answer(status, headers=(("Location", elsewhere),)))

    outcome = send(pool, url)

    assert outcome == DeliveryOutcome(
        "fail", status=status, error=f"HTTP {status} from target (not retried)"
    )
    assert [got.path for got in receiver.requests()] == ["/x"]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
def test_a_client_error_fails_at_once_even_with_retry_after(
    pool: urllib3.PoolManager, receiver: Receiver, status: int
) -> None:
    url = receiver.answer("/x", Answer(status, b"no", (("Retry-After", "5"),)))

    outcome = send(pool, url)

    assert outcome == DeliveryOutcome(
        "fail", status=status, error=f"HTTP {status} from target (not retried)"
    )


# When no answer comes in time, or at all


def test_an_answer_slower_than_the_time_limit_is_a_timeout_retried(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    url = receiver.answer("/x", Answer(stall="before_head"))

    started = time.monotonic()
    outcome = send(pool, url, timeout_ms=300)
    elapsed = time.monotonic() - started

    assert outcome == DeliveryOutcome("retry", error="target timed out after 300 ms")
    assert 0.29 <= elapsed < 2.0


def test_a_body_that_stalls_after_a_late_head_is_cut_at_the_deadline(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    # The head comes at 1.2 s of 2 s: urllib3 alone would then let the body's read wait its
    # full 2 s again (ending near 3.2 s); the delivery's deadline ends it at 2 s.
    url = receiver.answer("/x", Answer(200, stall="after_head", head_after_s=1.2))

    started = time.monotonic()
    outcome = send(pool, url, timeout_ms=2000)
    elapsed = time.monotonic() - started

    assert outcome == DeliveryOutcome(
        "done", status=200, error="result dropped: answer body not read within 2000 ms"
    )
    assert 1.95 <= elapsed < 2.9


def test_a_deadline_nearly_spent_on_one_answer_does_not_shorten_the_next_on_its_connection(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    # The first body ends with about 0.3 s of its 1 s left, the socket's timeout shortened to
    # match; the next delivery on that connection must get its own full time limit back.
    first = receiver.answer("/first", Answer(200, b"[1]", body_after_s=0.7))
    second = receiver.answer("/second", Answer(200, b"[2]", head_after_s=0.6))

    outcomes = [send(pool, first, timeout_ms=1000), send(pool, second, timeout_ms=5000)]

    assert [result_of(outcome) for outcome in outcomes] == [
        {"status": 200, "body": [1]},
        {"status": 200, "body": [2]},
    ]
    assert len({got.client_port for got in receiver.requests()}) == 1


@pytest.mark.parametrize(("status", "kind"), [(200, "done"), (503, "retry")])
def test_a_body_dripping_past_the_deadline_is_cut_there(
    pool: urllib3.PoolManager, receiver: Receiver, status: int, kind: str
) -> None:
    url = receiver.answer("/x", Answer(status, stall="drip"))

    started = time.monotonic()
    outcome = send(pool, url, timeout_ms=500)
    elapsed = time.monotonic() - started

    assert (outcome.kind, outcome.status) == (kind, status)
    assert 0.49 <= elapsed < 2.0


def test_a_closed_port_is_unreachable_and_retried(pool: urllib3.PoolManager) -> None:
    outcome = send(pool, f"http://127.0.0.1:{closed_port()}/x")

    assert outcome == DeliveryOutcome("retry", error="target unreachable: Connection refused")


def test_a_connection_closed_without_an_answer_is_unreachable_and_retried(
    pool: urllib3.PoolManager, receiver: Receiver
) -> None:
    outcome = send(pool, receiver.answer("/x", Answer(stall="hang_up")))

    assert outcome.kind == "retry"
    assert outcome.error is not None
    assert outcome.error.startswith("target unreachable: ")
    assert "object at 0x" not in outcome.error


def test_an_unresolvable_host_is_unreachable_and_retried(pool: urllib3.PoolManager) -> None:
    # .invalid never resolves (RFC 6761), so no network is needed to see the failure.
    outcome = send(pool, "http://no-such-host.invalid/x", timeout_ms=2000)

    assert outcome.kind == "retry"
    assert outcome.error is not None
    assert outcome.error.startswith("target unreachable: cannot resolve no-such-host.invalid (")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with the openssl tool."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
    subprocess.run(
        [
            *command.split(),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_receiver(certificate: tuple[Path, Path]) -> Iterator[Receiver]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    receiver = Receiver(tls=context)
    yield receiver
    receiver.close()


def test_an_https_target_s_certificate_is_verified(
    pool: urllib3.PoolManager, tls_receiver: Receiver
) -> None:
    outcome = send(pool, tls_receiver.answer("/x", Answer(200, b"[1]")))

    assert outcome.kind == "retry"
    assert outcome.error is not None
    assert outcome.error.startswith("target unreachable: ")
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.error
    assert tls_receiver.requests() == []


def test_an_https_target_with_a_trusted_certificate_is_delivered_to(
    certificate: tuple[Path, Path], tls_receiver: Receiver
) -> None:
    trusting = urllib3.PoolManager(ca_certs=str(certificate[0]), retries=False)

    outcome = send(trusting, tls_receiver.answer("/x", Answer(200, b"[1]")), signing_keys=KEYS)

    assert result_of(outcome) == {"status": 200, "body": [1]}
    [got] = tls_receiver.requests()
    assert verify(got.headers["task-signature"], KEYS, "task-1", got.body, now=NOW)
    trusting.clear()


# The pure parts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("30", 30.0),
        (" 30 ", 30.0),
        ("86400", 86_400.0),
        ("86401", MAX_RETRY_AFTER_S),
        ("9" * 5000, MAX_RETRY_AFTER_S),
        (format_datetime(datetime.fromtimestamp(NOW + 60, UTC), usegmt=True), 60.0),
        (format_datetime(datetime.fromtimestamp(NOW - 60, UTC), usegmt=True), 0.0),
        (format_datetime(datetime.fromtimestamp(NOW + 10 * 86_400, UTC), usegmt=True), 86_400.0),
        ("Wed, 15 Jan 2027 08:00:00 -0000", datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp() - NOW),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        ("\uff13\uff10", None),  # fullwidth "30"
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date_and_kept_within_a_day(
    value: str | None, expected: float | None
) -> None:
    assert retry_after_s(value, NOW) == expected


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        (b'{"a": 1}', "application/json", {"a": 1}),
        (b'{"a": 1}', "application/problem+json", {"a": 1}),
        (b'{"a": 1}', None, {"a": 1}),
        (b"[1, 2]", "Application/JSON; charset=utf-8", [1, 2]),
        (b"not json", "application/json", "not json"),
        (b"not json", None, "not json"),
        (b'{"a": 1}', "text/plain", '{"a": 1}'),
        ("café".encode("latin-1"), "text/plain; charset=ISO-8859-1", "café"),
        ("café".encode("latin-1"), "text/plain", "caf\ufffd"),
        (b"ok", "text/plain; charset=no-such-charset", "ok"),
        (b"", "application/json", None),
    ],
)
def test_an_answer_body_is_json_when_it_is_json_and_text_otherwise(
    data: bytes, content_type: str | None, expected: object
) -> None:
    assert answer_body(data, content_type) == expected


@pytest.mark.parametrize(
    ("outcome", "report"),
    [
        (
            DeliveryOutcome("done", status=200, result=b'{"status":200,"body":null}'),
            AttemptReport("returned", result=b'{"status":200,"body":null}'),
        ),
        (
            DeliveryOutcome("done", status=200, error="result dropped: x"),
            AttemptReport("returned", error="result dropped: x"),
        ),
        (
            DeliveryOutcome("retry", status=503, error="HTTP 503 from target", retry_after_s=5),
            AttemptReport("raised", error="HTTP 503 from target", retry_after_s=5),
        ),
        (
            DeliveryOutcome("retry", error="target timed out after 500 ms"),
            AttemptReport("raised", error="target timed out after 500 ms"),
        ),
        (
            DeliveryOutcome("fail", status=404, error="HTTP 404 from target (not retried)"),
            AttemptReport("permanent", error="HTTP 404 from target (not retried)"),
        ),
    ],
)
def test_an_outcome_becomes_the_attempt_report_a_worker_reads(
    outcome: DeliveryOutcome, report: AttemptReport
) -> None:
    assert attempt_report(outcome) == report
