"""End to end: ``python main.py`` scraped over real HTTP, and its JSON log lines read back."""

from __future__ import annotations

import json
import re
import signal
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CONTENT_TYPE_LATEST

from tests.prometheus import Scrape
from tests.support import wait_until
from tests.test_e2e import Service, json_body, launch, task_path

if TYPE_CHECKING:
    from pathlib import Path

TOKEN: Final = "e2e-obs-Token-5d1e0a77c3"
AUTH: Final = {"Authorization": f"Bearer {TOKEN}"}
GENERATED: Final = re.compile(r"[0-9a-f]{32}")
INSANE_ID: Final = "spaces are not allowed " + "x" * 200


def wait_final(service: Service, task_id: str) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        reply = service.request("GET", task_path(task_id), headers=AUTH)
        assert reply.status == 200, reply
        task: dict[str, Any] = reply.json()
        return task if task["status"] in ("done", "failed") else None

    return wait_until(final)


def scrape(service: Service, headers: dict[str, str] | None = None) -> Scrape:
    reply = service.request("GET", "/metrics", headers=headers)
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == CONTENT_TYPE_LATEST
    return Scrape(reply.body.decode())


def test_json_logs_carry_request_and_task_ids_and_metrics_count_the_work(
    tmp_path: Path,
) -> None:
    service = launch(
        tmp_path,
        "fail_times",
        API_TOKEN=TOKEN,
        LOG_FORMAT="json",
        LOG_LEVEL="DEBUG",
        RETRY_BASE_MS=5,
        RETRY_MAX_MS=20,
    )
    try:
        traced = service.request(
            "POST",
            "/enqueue",
            json_body({"id": "e2e-1", "payload": {"failures": 1}, "max_retries": 2}),
            {**AUTH, "X-Request-ID": "e2e-req-1"},
        )
        replaced = service.request(
            "POST",
            "/enqueue",
            json_body({"id": "e2e-2", "payload": {"failures": 0}}),
            {**AUTH, "X-Request-ID": INSANE_ID},
        )
        refused = service.request("GET", "/metrics", headers={"X-Request-ID": "no-token"})
        assert wait_final(service, "e2e-1")["status"] == "done"
        assert wait_final(service, "e2e-2")["status"] == "done"
        metrics = scrape(service, AUTH)
        service.send(signal.SIGTERM)
        assert service.wait_exit() == 0
    finally:
        service.kill()

    assert traced.status == 201, traced
    assert traced.headers["x-request-id"] == "e2e-req-1"
    assert replaced.status == 201, replaced
    generated = replaced.headers["x-request-id"]
    assert GENERATED.fullmatch(generated)
    assert (refused.status, refused.headers["x-request-id"]) == (401, "no-token")

    assert metrics.value("taskqueue_tasks_enqueued_total") == 2
    assert metrics.labelled("taskqueue_attempts_total", "outcome") == {
        "done": 2,
        "retry": 1,
        "failed": 0,
    }
    assert (
        metrics.value("taskqueue_attempt_duration_seconds_count", queue="default", outcome="retry")
        == 1
    )
    assert (
        metrics.value(
            "taskqueue_task_enqueue_to_final_seconds_count", queue="default", status="done"
        )
        == 2
    )
    assert metrics.labelled("taskqueue_tasks", "status")["done"] == 2

    def requests(route: str, method: str, status: str) -> float:
        name = "taskqueue_http_requests_total"
        return metrics.value(name, route=route, method=method, status=status)

    assert requests("/enqueue", "POST", "201") == 2
    assert requests("/metrics", "GET", "401") == 1
    assert requests("/task", "GET", "200") >= 2

    text = service.log()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    assert TOKEN not in text
    assert INSANE_ID not in text

    [config] = [line["config"] for line in lines if "config" in line]
    assert config["API_TOKEN"] == "set"
    assert (config["LOG_FORMAT"], config["WORKERS"], config["METRICS"]) == ("json", 4, True)
    [listening] = [line for line in lines if "address" in line]
    assert listening["address"] == f"http://127.0.0.1:{service.port}"

    def about(task_id: str) -> set[tuple[str, int, str | None, str]]:
        """Each line about the task (request and worker lines interleave), the delay as N."""
        return {
            (
                line["level"],
                line["attempt"],
                line.get("request_id"),
                re.sub(r"retrying in \d+ ms", "retrying in N ms", line["message"]),
            )
            for line in lines
            if line.get("task_id") == task_id
        }

    assert about("e2e-1") == {
        ("DEBUG", 0, "e2e-req-1", "task 'e2e-1' accepted"),
        ("DEBUG", 1, None, "task 'e2e-1' attempt 1 running"),
        (
            "WARNING",
            1,
            None,
            "task 'e2e-1' attempt 1 failed, retrying in N ms: HandlerFailure: failure 1 of 1",
        ),
        ("DEBUG", 2, None, "task 'e2e-1' attempt 2 running"),
        ("DEBUG", 2, None, "task 'e2e-1' attempt 2 done"),
    }
    # The failed attempt's traceback, from the worker process, as the line's "exception".
    [failed] = [line for line in lines if line.get("task_id") == "e2e-1" and "exception" in line]
    assert failed["exception"].startswith("Traceback (most recent call last):")
    assert failed["exception"].endswith("HandlerFailure: failure 1 of 1")
    assert ("DEBUG", 0, generated, "task 'e2e-2' accepted") in about("e2e-2")
    answered = [line["message"] for line in lines if line.get("request_id") == "e2e-req-1"]
    assert answered == ["task 'e2e-1' accepted", "POST /enqueue answered 201 Created"]

    [summary] = [line["summary"] for line in lines if "summary" in line]
    assert summary["counts"]["done"] == 2
    assert (summary["abandoned_in_line"], summary["abandoned_retries"]) == (0, 0)


def test_metrics_public_opens_metrics_only_and_text_logs_are_the_default(
    tmp_path: Path,
) -> None:
    service = launch(tmp_path, "record_run", API_TOKEN=TOKEN, METRICS_PUBLIC=1)
    try:
        metrics = scrape(service)
        stats = service.request("GET", "/stats")
        service.send(signal.SIGTERM)
        assert service.wait_exit() == 0
    finally:
        service.kill()

    assert metrics.value("taskqueue_workers") == 4
    assert stats.status == 401
    text = service.log()
    assert TOKEN not in text
    assert "API_TOKEN='set'" in text
    assert "METRICS_PUBLIC=True" in text
    assert "auth=bearer token metrics=public" in text


def test_with_metrics_off_there_is_no_metrics_route(tmp_path: Path) -> None:
    service = launch(tmp_path, "record_run", METRICS=0)
    try:
        missing = service.request("GET", "/metrics")
        created = service.request("POST", "/enqueue", json_body({"id": "still-works"}))
    finally:
        service.kill()

    assert missing.status == 404
    assert created.status == 201
