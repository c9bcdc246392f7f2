"""End to end, HTTP targets: ``python main.py`` delivering tasks to a real local receiver
(tests/receiver.py), as a user would run it.

The services run as in tests/test_e2e.py, in thread mode unless a test says otherwise (a target
task never needs a child process; the side-by-side test runs both modes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import pytest

from actors.signing import verify
from tests.receiver import Answer, Receiver, closed_port
from tests.test_e2e import Service, json_body, launch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

KEY_1: Final = "first-signing-key-0123456789"
KEY_2: Final = "second-signing-key-abcdefghij"
SECRET: Final = "Bearer s3cret-value-never-shown"
FINAL: Final = ("done", "failed")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def start_service(tmp_path: Path, receiver: Receiver) -> Iterator[Callable[..., Service]]:
    """Start services allowed to send to the receiver; each is killed at the end."""
    started: list[Service] = []

    def start(handler: str = "echo", **settings: str | int) -> Service:
        settings = {
            "WORKER_MODE": "thread",
            "TARGET_ALLOW": receiver.url("/"),
            "RETRY_BASE_MS": 10,
            "RETRY_MAX_MS": 50,
            **settings,
        }
        service = launch(tmp_path, handler, **settings)
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


def final(service: Service, task_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
    return service.wait_for_task(task_id, lambda t: t["status"] in FINAL, timeout_s=timeout_s)


def test_a_task_with_a_target_is_delivered_signed_with_every_key(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    url = receiver.answer(
        "/hook", Answer(200, b'{"ok": true}', (("Content-Type", "application/json"),))
    )
    service = start_service(TARGET_SIGNING_KEYS=f"{KEY_1}, {KEY_2}")

    accepted = service.accept(
        {
            "id": "tâche-1",
            "payload": {"n": 1},
            "target": {"url": url, "headers": {"X-Api-Key": "k"}},
        }
    )
    task = final(service, "tâche-1")

    assert accepted["target"] == {"url": url, "method": "POST", "headers": {"X-Api-Key": "***"}}
    assert (task["status"], task["result"]) == ("done", {"status": 200, "body": {"ok": True}})
    (request,) = receiver.requests()
    # The payload exactly as the client wrote it.
    assert (request.method, request.path, request.body) == ("POST", "/hook", b'{"n": 1}')
    headers = request.headers
    assert headers["content-type"] == "application/json"
    assert headers["x-api-key"] == "k"
    # Sent as UTF-8 bytes; the receiver's http.server reads a header as Latin-1.
    task_id = headers["task-id"].encode("latin-1").decode("utf-8")
    assert (task_id, headers["task-attempt"]) == ("tâche-1", "1")
    signature = headers["task-signature"]
    now = time.time()
    for key in (KEY_1, KEY_2):
        assert verify(signature, [key.encode()], task_id, request.body, now=now)
    assert not verify(signature, [b"some-other-key-0123456789"], task_id, request.body, now=now)
    # The recipe the README gives receivers, by hand.
    parts = dict(item.split("=", 1) for item in signature.split(",")[:1])
    signed = f"{parts['t']}.{task_id}.".encode() + request.body
    digests = [item.split("=", 1)[1] for item in signature.split(",")[1:]]
    assert digests == [
        hmac.new(key.encode(), signed, hashlib.sha256).hexdigest() for key in (KEY_1, KEY_2)
    ]


def test_only_targets_under_target_allow_are_accepted(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    port = receiver.port
    service = start_service(TARGET_ALLOW=f"http://127.0.0.1:{port}/hooks")
    allowed = service.enqueue(
        {"id": "ok", "target": {"url": f"http://127.0.0.1:{port}/hooks/a?x=1"}}
    )
    refused = {
        "wrong scheme": f"https://127.0.0.1:{port}/hooks/a",
        "other port": f"http://127.0.0.1:{closed_port()}/hooks/a",
        "other path": f"http://127.0.0.1:{port}/hooksmith",
        "climbing out": f"http://127.0.0.1:{port}/hooks/../admin",
        "other host": f"http://localhost:{port}/hooks/a",
    }
    replies = {
        why: service.enqueue({"id": why, "target": {"url": url}}) for why, url in refused.items()
    }
    # User info naming the allowed host: the URL really names evil.example, so it is refused
    # as invalid before any allow list is read.
    user_info = service.enqueue(
        {"id": "user info", "target": {"url": f"http://127.0.0.1:{port}@evil.example/hooks"}}
    )

    assert allowed.status == 201, allowed
    for why, reply in replies.items():
        assert (why, reply.status, reply.json()) == (why, 400, {"error": "target not allowed"})
    assert user_info.status == 400
    assert "user info" in user_info.json()["error"]
    for task_id in [*refused, "user info"]:
        assert service.request("GET", f"/task?id={task_id.replace(' ', '%20')}").status == 404


def test_with_target_allow_empty_no_target_is_accepted(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    service = start_service(TARGET_ALLOW="")

    reply = service.enqueue({"id": "t", "target": {"url": receiver.url("/hook")}})

    assert (reply.status, reply.json()) == (400, {"error": "target not allowed"})


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ({"url": "http://x/", "extra": 1}, "target has no field 'extra'"),
        ({"method": "POST"}, "target.url is required"),
        ({"url": 5}, "target.url must be a string of 1 to 2048 characters"),
        ({"url": "http://x/", "method": "HEAD"}, "target.method must be one of GET, POST"),
        ({"url": "http://x/", "headers": {"a": 1}}, "target.headers must be an object"),
        ("http://x/", "target must be a JSON object"),
        (None, "target must be a JSON object"),
        ({"url": "ftp://x/"}, "target.url must be an http or https URL"),
    ],
)
def test_a_malformed_target_is_a_400_naming_what_is_wrong(
    start_service: Callable[..., Service], target: object, error: str
) -> None:
    service = start_service()

    reply = service.enqueue({"id": "t", "target": target})
    batch = service.request(
        "POST", "/enqueue/batch", json_body([{"id": "a"}, {"id": "b", "target": target}])
    )

    assert reply.status == 400
    assert reply.json()["error"].startswith(error), reply.json()
    assert batch.status == 400
    assert batch.json()["index"] == 1
    assert batch.json()["error"].startswith(error), batch.json()


def test_5xx_is_retried_until_it_succeeds_with_task_attempt_counting(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    url = receiver.answer_in_turn("/flaky", Answer(503), Answer(500), Answer(200, b"fine"))
    service = start_service()

    service.accept({"id": "t", "max_retries": 3, "target": {"url": url}})
    task = final(service, "t")

    assert (task["status"], task["attempts"]) == ("done", 3)
    assert task["result"] == {"status": 200, "body": "fine"}
    assert [r.headers["task-attempt"] for r in receiver.requests()] == ["1", "2", "3"]


def test_5xx_out_of_retries_fails_saying_so(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    url = receiver.answer("/down", Answer(503))
    service = start_service()

    service.accept({"id": "t", "max_retries": 1, "target": {"url": url}})
    task = final(service, "t")

    assert (task["status"], task["attempts"], task["last_error"]) == (
        "failed",
        2,
        "HTTP 503 from target",
    )


def test_a_4xx_fails_at_once_whatever_retries_are_left(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    service = start_service()

    service.accept({"id": "t", "max_retries": 5, "target": {"url": receiver.url("/missing")}})
    task = final(service, "t")

    assert (task["status"], task["attempts"], task["last_error"]) == (
        "failed",
        1,
        "HTTP 404 from target (not retried)",
    )
    assert len(receiver.requests()) == 1


def test_retry_after_holds_the_next_attempt_back(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    url = receiver.answer_in_turn(
        "/busy", Answer(429, headers=(("Retry-After", "2"),)), Answer(200)
    )
    service = start_service()

    service.accept({"id": "t", "max_retries": 2, "target": {"url": url}})
    waiting = service.wait_for_task("t", lambda t: t["attempts"] == 1 and t["status"] == "queued")
    task = final(service, "t")

    assert waiting["last_error"] == "HTTP 429 from target"
    due = datetime.fromisoformat(waiting["next_attempt_at"])
    failed_at = datetime.fromisoformat(waiting["updated_at"])
    # Backoff alone would be 10 ms; the target asked for 2 s.
    assert (due - failed_at).total_seconds() == pytest.approx(2.0, abs=0.01)
    assert (task["status"], task["attempts"]) == ("done", 2)


def test_a_target_that_does_not_answer_in_time_times_out(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    url = receiver.answer("/slow", Answer(stall="before_head"))
    service = start_service()

    service.accept({"id": "t", "max_retries": 0, "timeout_ms": 500, "target": {"url": url}})
    task = final(service, "t")

    assert (task["status"], task["last_error"]) == ("failed", "target timed out after 500 ms")


def test_an_unreachable_target_fails_its_attempts_saying_why(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    port = closed_port()
    service = start_service(TARGET_ALLOW=f"http://127.0.0.1:{port}")

    service.accept(
        {"id": "t", "max_retries": 1, "target": {"url": f"http://127.0.0.1:{port}/hook"}}
    )
    task = final(service, "t")

    assert (task["status"], task["attempts"]) == ("failed", 2)
    assert task["last_error"] == "target unreachable: Connection refused"


def test_a_get_target_is_sent_without_a_body(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    url = receiver.answer("/poll", Answer(204))
    service = start_service()

    service.accept({"id": "t", "payload": {"big": "x"}, "target": {"url": url, "method": "GET"}})
    task = final(service, "t")

    assert (task["status"], task["result"]) == ("done", {"status": 204, "body": None})
    (request,) = receiver.requests()
    assert (request.method, request.body) == ("GET", b"")
    assert "content-type" not in request.headers
    assert "content-length" not in request.headers


def test_header_values_reach_the_target_and_no_reader_or_log_line(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    url = receiver.answer("/hook", Answer(200))
    service = start_service(LOG_LEVEL="DEBUG", TARGET_SIGNING_KEYS=KEY_1)
    target = {"url": url, "method": "PUT", "headers": {"Authorization": SECRET}}

    single = service.enqueue({"id": "one", "target": target})
    batch = service.request(
        "POST", "/enqueue/batch", json_body([{"id": "two", "target": target}, {"id": "three"}])
    )
    final(service, "one")
    final(service, "two")
    answers = [
        single.body,
        batch.body,
        service.request("GET", "/task?id=one").body,
        service.request("GET", "/tasks").body,
        service.request("GET", "/tasks?limit=10").body,
    ]

    shown = {"url": url, "method": "PUT", "headers": {"Authorization": "***"}}
    assert single.json()["target"] == shown
    assert [t["target"] for t in batch.json()] == [shown, None]
    for answer in answers:
        assert SECRET.encode() not in answer
    assert [r.headers["authorization"] for r in receiver.requests()] == [SECRET, SECRET]
    service.send(signal.SIGTERM)
    service.wait_exit()
    log = service.log()
    assert SECRET not in log
    assert "s3cret" not in log
    assert KEY_1 not in log
    assert "TARGET_SIGNING_KEYS='set'" in log or "TARGET_SIGNING_KEYS=set" in log


def test_a_batch_with_a_target_not_allowed_stores_nothing(
    start_service: Callable[..., Service], receiver: Receiver
) -> None:
    service = start_service()
    batch = [
        {"id": "a", "target": {"url": receiver.url("/hook")}},
        {"id": "b", "target": {"url": "http://elsewhere.example/hook"}},
    ]

    reply = service.request("POST", "/enqueue/batch", json_body(batch))

    assert (reply.status, reply.json()) == (400, {"error": "target not allowed", "index": 1})
    assert service.request("GET", "/task?id=a").status == 404


def test_a_stored_target_survives_a_restart_header_values_and_all(
    start_service: Callable[..., Service], receiver: Receiver, tmp_path: Path
) -> None:
    url = receiver.answer("/hook", Answer(200))
    db_path = str(tmp_path / "tasks.db")
    first = start_service(DB_PATH=db_path)
    target = {"url": url, "method": "PATCH", "headers": {"Authorization": SECRET}}
    first.accept({"id": "t", "payload": [1], "delay_ms": 1500, "target": target})
    first.send(signal.SIGTERM)
    assert first.wait_exit() == 0
    assert receiver.requests() == []

    second = start_service(DB_PATH=db_path)
    task = final(second, "t")

    assert task["status"] == "done"
    assert task["target"] == {**target, "headers": {"Authorization": "***"}}
    (request,) = receiver.requests()
    assert (request.method, request.body) == ("PATCH", b"[1]")
    assert request.headers["authorization"] == SECRET


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_task_with_a_target_and_one_without_run_side_by_side(
    start_service: Callable[..., Service], receiver: Receiver, mode: str
) -> None:
    url = receiver.answer(
        "/hook", Answer(200, b'{"got": 1}', (("Content-Type", "application/json"),))
    )
    service = start_service(WORKER_MODE=mode, WORKERS=2)

    service.accept({"id": "sent", "payload": {"p": 1}, "target": {"url": url}})
    service.accept({"id": "run", "payload": {"p": 2}})
    sent, run = final(service, "sent"), final(service, "run")

    assert (sent["status"], sent["result"]) == ("done", {"status": 200, "body": {"got": 1}})
    assert (run["status"], run["result"]) == ("done", {"p": 2})
    assert [json.loads(r.body) for r in receiver.requests()] == [{"p": 1}]
