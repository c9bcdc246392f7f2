"""End to end: the dashboard in real headless Chromium against ``python main.py``.

One browser serves the whole module (starting it is the slow part); each test starts its own
service, so each page has an origin, and a ``sessionStorage``, of its own. Every wait is on a
condition with a deadline: the page polls every 1.5 s, so a few seconds is plenty.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import psycopg
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select

from tests.handlers import read_runs
from tests.support import wait_until
from tests.test_e2e import HOST, launch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from selenium.webdriver.remote.webdriver import WebDriver

    from tests.test_e2e import Service

CHROMIUM: Final = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER: Final = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PAGE_TIMEOUT_S: Final = 10.0
TITLE: Final = "task_queue dashboard"
TOKEN: Final = "dash-Token-0c7e51a9"
NOT_YET: Final = "\N{EN DASH}"
"""What a counter shows before the first answer from /stats."""

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    # An explicit driver path: selenium never tries to download one.
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    yield driver
    driver.quit()


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start services for one test (as in test_e2e); all are killed at the end."""
    started: list[Service] = []

    def start(handler: str, **settings: str | int) -> Service:
        service = launch(tmp_path, handler, **settings)
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


def open_dashboard(browser: WebDriver, service: Service) -> None:
    browser.get(f"http://{HOST}:{service.port}/")
    assert browser.title == TITLE


# --- reading the page ---------------------------------------------------------------------------


def page_counters(browser: WebDriver) -> dict[str, str]:
    """Every ``data-stat`` element's text, read in one round trip."""
    counters: dict[str, str] = browser.execute_script(
        "const counters = {};"
        "for (const node of document.querySelectorAll('[data-stat]'))"
        "  counters[node.dataset.stat] = node.textContent;"
        "return counters;"
    )
    return counters


def lookup(stats: dict[str, Any], key: str) -> Any:
    value: Any = stats
    for name in key.split("."):
        value = value[name]
    return value


def counters_match_stats(
    browser: WebDriver, service: Service, headers: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """The current ``/stats`` if every counter on the page shows its value, else None."""
    shown = page_counters(browser)
    shown.pop("uptime")  # it moves on between the two reads; it is formatted, not compared
    reply = service.request("GET", "/stats", headers=headers)
    assert reply.status == 200, reply
    stats: dict[str, Any] = reply.json()
    return stats if shown == {key: str(lookup(stats, key)) for key in shown} else None


def wait_for_counters(
    browser: WebDriver, service: Service, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Wait until the page's counters show ``/stats``; return what it said."""
    stats = wait_until(
        lambda: counters_match_stats(browser, service, headers), timeout_s=PAGE_TIMEOUT_S
    )
    assert stats is not None
    return stats


def click(browser: WebDriver, selector: str) -> bool:
    """Click the element if it is there; the table is rebuilt when its data changes, so an
    element found a moment ago may be gone: the caller's ``wait_until`` tries again."""
    try:
        browser.find_element(By.CSS_SELECTOR, selector).click()
    except (NoSuchElementException, StaleElementReferenceException):
        return False
    return True


def row_status(browser: WebDriver, task_id: str) -> str | None:
    status: str | None = browser.execute_script(
        "const row = [...document.querySelectorAll('#task-rows tr')]"
        "  .find((row) => row.dataset.id === arguments[0]);"
        "return row ? row.dataset.status : null;",
        task_id,
    )
    return status


# --- the tests ----------------------------------------------------------------------------------


def test_the_counters_show_what_stats_says_and_follow_it(
    start_service: Callable[..., Service], browser: WebDriver, tmp_path: Path
) -> None:
    service = start_service("wait_for_file", WORKERS=2, RETRY_BASE_MS=60_000)
    released, hold = tmp_path / "released", tmp_path / "hold"
    released.touch()
    for number in range(3):
        service.accept({"id": f"done-{number}", "payload": {"release": str(released)}})
    for number in range(2):
        failing = {"release": str(released), "fail": True}
        service.accept({"id": f"failed-{number}", "payload": failing, "max_retries": 0})
    retrying = {"release": str(released), "fail": True}
    service.accept({"id": "retrying", "payload": retrying, "max_retries": 1})
    service.wait_for_task("retrying", lambda task: task["next_attempt_at"] is not None)
    for number in range(4):  # two hold both workers, two wait in line behind them
        service.accept({"id": f"held-{number}", "payload": {"release": str(hold)}})
    service.wait_for_task("held-1", lambda task: task["status"] == "running")
    service.wait_for_task("failed-1", lambda task: task["status"] == "failed")

    open_dashboard(browser, service)
    stats = wait_for_counters(browser, service)

    assert stats["tasks"] == {"queued": 3, "running": 2, "done": 3, "failed": 2, "cancelled": 0}
    assert (stats["waiting"], stats["scheduled"]) == (2, 1)
    assert stats["workers"] == {"total": 2, "busy": 2}
    assert (stats["totals"]["enqueued"], stats["totals"]["retries"]) == (10, 1)
    assert page_counters(browser)["tasks.done"] == "3"

    # Live: the held tasks finish, and the counters and the throughput chart follow.
    hold.touch()
    service.wait_for_task("held-3", lambda task: task["status"] == "done")
    stats = wait_for_counters(browser, service)
    assert stats["tasks"]["done"] == 7
    assert page_counters(browser)["tasks.done"] == "7"
    wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#chart rect.bar.done"),
        timeout_s=PAGE_TIMEOUT_S,
    )
    # Nothing failed while the page was open: the failures before it are not throughput.
    assert browser.find_elements(By.CSS_SELECTOR, "#chart rect.bar.failed") == []


def test_clicking_retry_on_a_failed_task_runs_it_again(
    start_service: Callable[..., Service], browser: WebDriver, tmp_path: Path
) -> None:
    service = start_service("fail_unless_file")
    ok, runs = tmp_path / "ok", tmp_path / "runs.jsonl"
    service.accept({"id": "flaky", "payload": {"ok": str(ok), "log": str(runs)}, "max_retries": 0})
    failed = service.wait_for_task("flaky", lambda task: task["status"] == "failed")
    assert failed["attempts"] == 1
    ok.touch()  # the next run will succeed

    open_dashboard(browser, service)
    wait_until(lambda: row_status(browser, "flaky") == "failed", timeout_s=PAGE_TIMEOUT_S)
    wait_until(
        lambda: click(browser, 'button[aria-label="retry task flaky"]'), timeout_s=PAGE_TIMEOUT_S
    )

    message = wait_until(
        lambda: browser.find_element(By.ID, "message").text, timeout_s=PAGE_TIMEOUT_S
    )
    assert message == "retried task flaky"
    done = service.wait_for_task("flaky", lambda task: task["status"] == "done")
    assert done["attempts"] == 1  # a retry starts the count again
    assert done["last_error"] is None or "does not exist" in done["last_error"]
    assert [run["attempt"] for run in read_runs(runs)] == [1, 1]
    wait_until(lambda: row_status(browser, "flaky") == "done", timeout_s=PAGE_TIMEOUT_S)


HOSTILE_ID: Final = "<script>window.__pwned = 'id'</script>"
HOSTILE_IMG: Final = "<img src=x onerror=\"window.__pwned = 'img'; document.title = 'pwned'\">"


def test_a_task_full_of_markup_renders_as_text_and_runs_nothing(
    start_service: Callable[..., Service], browser: WebDriver, tmp_path: Path
) -> None:
    service = start_service("fail_unless_file")
    payload = {
        "html": HOSTILE_IMG,
        "script": "<script>window.__pwned = 'payload'</script>",
        # The handler's error names this path: last_error carries markup too.
        "ok": f"/nonexistent/{HOSTILE_IMG}",
        "log": str(tmp_path / "runs.jsonl"),
    }
    service.accept({"id": HOSTILE_ID, "payload": payload, "max_retries": 0})
    service.wait_for_task(HOSTILE_ID, lambda task: task["status"] == "failed")

    open_dashboard(browser, service)
    wait_until(lambda: row_status(browser, HOSTILE_ID) == "failed", timeout_s=PAGE_TIMEOUT_S)
    wait_until(lambda: click(browser, "#task-rows button.link"), timeout_s=PAGE_TIMEOUT_S)
    # The payload is shown as JSON: the quotes inside the markup come escaped.
    wait_until(
        lambda: json.dumps(HOSTILE_IMG) in browser.find_element(By.ID, "detail-payload").text,
        timeout_s=PAGE_TIMEOUT_S,
    )

    assert browser.find_element(By.CSS_SELECTOR, "#task-rows button.link").text == HOSTILE_ID
    assert browser.find_element(By.ID, "detail-id").text == HOSTILE_ID
    assert (
        "<script>window.__pwned = 'payload'</script>"
        in browser.find_element(By.ID, "detail-payload").text
    )
    assert HOSTILE_IMG in browser.find_element(By.CSS_SELECTOR, ".field-last_error").text
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    assert browser.title == TITLE
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert browser.execute_script("return document.scripts.length") == 1


def test_with_api_token_the_page_asks_for_it_once_then_shows_the_counters(
    start_service: Callable[..., Service], browser: WebDriver
) -> None:
    service = start_service("record_run", API_TOKEN=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    created = service.request(
        "POST", "/enqueue", b'{"id": "t", "payload": {"log": "/dev/null"}}', auth
    )
    assert created.status == 201, created

    def asking(refused: bool) -> bool:
        return bool(
            browser.execute_script(
                "return document.getElementById('token-dialog').open"
                " && document.getElementById('token-error').hidden === arguments[0];",
                not refused,
            )
        )

    def give_token(token: str) -> None:
        field = browser.find_element(By.ID, "token-input")
        field.clear()
        field.send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()

    open_dashboard(browser, service)
    wait_until(lambda: asking(refused=False), timeout_s=PAGE_TIMEOUT_S)
    assert page_counters(browser)["tasks.done"] == NOT_YET
    give_token("not-the-token")
    wait_until(lambda: asking(refused=True), timeout_s=PAGE_TIMEOUT_S)
    give_token(TOKEN)

    stats = wait_for_counters(browser, service, auth)
    assert stats["totals"]["enqueued"] == 1
    assert browser.execute_script("return sessionStorage.getItem('task_queue.token')") == TOKEN

    # Kept for the tab: a reload does not ask again.
    browser.refresh()
    wait_for_counters(browser, service, auth)
    assert browser.execute_script("return document.getElementById('token-dialog').open") is False


def test_the_form_enqueues_newest_first_and_the_buttons_cancel_and_delete(
    start_service: Callable[..., Service], browser: WebDriver
) -> None:
    service = start_service("record_run")
    for task_id in ("first", "second"):
        service.accept({"id": task_id, "payload": {"log": os.devnull}})
    service.wait_for_task("second", lambda task: task["status"] == "done")

    open_dashboard(browser, service)
    fields = {
        "enqueue-id": "from the form",
        "enqueue-payload": '{"log": "/dev/null", "note": "typed in"}',
        "enqueue-retries": "2",
        "enqueue-priority": "7",
        "enqueue-delay": "600000",  # ten minutes: it stays queued while the test runs
        "enqueue-timeout": "5000",
    }
    for field, value in fields.items():
        browser.find_element(By.ID, field).send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "#enqueue button[type=submit]").click()

    wait_until(lambda: row_status(browser, "from the form") == "queued", timeout_s=PAGE_TIMEOUT_S)
    created = service.task("from the form")
    assert created["payload"] == {"log": "/dev/null", "note": "typed in"}
    assert (created["max_retries"], created["priority"], created["timeout_ms"]) == (2, 7, 5000)
    assert created["next_attempt_at"] is not None
    rows = browser.find_elements(By.CSS_SELECTOR, "#task-rows tr")
    assert [row.get_attribute("data-id") for row in rows] == ["from the form", "second", "first"]

    wait_until(
        lambda: click(browser, 'button[aria-label="cancel task from the form"]'),
        timeout_s=PAGE_TIMEOUT_S,
    )
    service.wait_for_task("from the form", lambda task: task["status"] == "cancelled")
    wait_until(
        lambda: click(browser, 'button[aria-label="delete task from the form"]'),
        timeout_s=PAGE_TIMEOUT_S,
    )
    browser.switch_to.alert.accept()  # "delete task from the form?"
    wait_until(lambda: row_status(browser, "from the form") is None, timeout_s=PAGE_TIMEOUT_S)
    assert service.request("GET", "/task?id=from%20the%20form").status == 404


def test_the_table_pages_newest_first_and_filters_by_status(
    start_service: Callable[..., Service], browser: WebDriver
) -> None:
    service = start_service("fail_times")
    # 25 tasks, every fifth failing for good: more than one page of 20.
    for number in range(25):
        failures = 1 if number % 5 == 0 else 0
        body = {"id": f"t{number:02d}", "payload": {"failures": failures}, "max_retries": 0}
        service.accept(body)
    service.wait_for_task("t24", lambda task: task["status"] == "done")

    def shown() -> list[str | None]:
        rows = browser.find_elements(By.CSS_SELECTOR, "#task-rows tr")
        return [row.get_attribute("data-id") for row in rows]

    def shows(ids: list[str]) -> bool:
        try:
            return shown() == ids
        except StaleElementReferenceException:
            return False

    open_dashboard(browser, service)
    newest = [f"t{number:02d}" for number in range(24, -1, -1)]
    wait_until(lambda: shows(newest[:20]), timeout_s=PAGE_TIMEOUT_S)
    browser.find_element(By.ID, "older").click()
    wait_until(lambda: shows(newest[20:]), timeout_s=PAGE_TIMEOUT_S)
    assert browser.find_element(By.ID, "older").get_attribute("disabled") is not None
    browser.find_element(By.ID, "newer").click()
    wait_until(lambda: shows(newest[:20]), timeout_s=PAGE_TIMEOUT_S)

    Select(browser.find_element(By.ID, "status-filter")).select_by_value("failed")
    wait_until(lambda: shows(["t20", "t15", "t10", "t05", "t00"]), timeout_s=PAGE_TIMEOUT_S)


def shown_age_s(browser: WebDriver, selector: str) -> int | None:
    """The seconds an age element shows (``"3s"``; under a minute in these tests), or None."""
    try:
        text = browser.find_element(By.CSS_SELECTOR, selector).text
    except (NoSuchElementException, StaleElementReferenceException):
        return None
    match = re.fullmatch(r"(\d+)s", text)
    assert match, f"{selector} shows {text!r}"
    return int(match.group(1))


def test_a_running_task_shows_how_long_its_attempt_has_run_and_the_age_moves_on(
    start_service: Callable[..., Service], browser: WebDriver, tmp_path: Path
) -> None:
    service = start_service("wait_for_file", WORKERS=1)
    release = tmp_path / "release"
    service.accept({"id": "before", "payload": {"release": str(tmp_path)}})  # exists: done at once
    service.wait_for_task("before", lambda task: task["status"] == "done")
    service.accept({"id": "slow", "payload": {"release": str(release)}, "timeout_ms": 60_000})
    running = service.wait_for_task("slow", lambda task: task["status"] == "running")
    started = datetime.fromisoformat(running["updated_at"]).timestamp()

    open_dashboard(browser, service)
    wait_until(lambda: row_status(browser, "slow") == "running", timeout_s=PAGE_TIMEOUT_S)
    row_age = 'tr[data-status="running"] .age'
    wait_until(lambda: shown_age_s(browser, row_age) is not None, timeout_s=PAGE_TIMEOUT_S)
    # Only the running task has an age.
    assert len(browser.find_elements(By.CSS_SELECTOR, "#task-rows .age")) == 1
    # It is now minus when the attempt started, on a clock the browser shares with the service.
    age = shown_age_s(browser, row_age)
    assert age is not None
    assert abs(age - (time.time() - started)) <= 2
    # Live: it moves on by itself, not only when a poll rebuilds the row (the mark stays).
    browser.execute_script("document.querySelector(arguments[0]).dataset.mark = 'kept';", row_age)
    wait_until(lambda: (shown_age_s(browser, row_age) or 0) > age, timeout_s=PAGE_TIMEOUT_S)
    mark = browser.execute_script(
        "return document.querySelector(arguments[0]).dataset.mark;", row_age
    )
    assert mark == "kept"

    wait_until(
        lambda: click(browser, 'button[aria-label="show task slow"]'), timeout_s=PAGE_TIMEOUT_S
    )
    detail_age = ".field-running_for"
    wait_until(lambda: shown_age_s(browser, detail_age) is not None, timeout_s=PAGE_TIMEOUT_S)
    assert browser.find_element(By.CSS_SELECTOR, ".field-timeout_ms").text == "60000 ms"
    shown = shown_age_s(browser, detail_age)
    assert shown is not None
    wait_until(lambda: (shown_age_s(browser, detail_age) or 0) > shown, timeout_s=PAGE_TIMEOUT_S)

    release.touch()
    service.wait_for_task("slow", lambda task: task["status"] == "done")
    wait_until(lambda: row_status(browser, "slow") == "done", timeout_s=PAGE_TIMEOUT_S)
    wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#detail .field-running_for") == [],
        timeout_s=PAGE_TIMEOUT_S,
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#task-rows .age") == []
    assert browser.find_element(By.CSS_SELECTOR, ".field-timeout_ms").text == "60000 ms"


def test_the_detail_view_shows_the_result_as_text(
    start_service: Callable[..., Service], browser: WebDriver
) -> None:
    # Needs the issue 10 runtime: before it, a handler's return value is not kept.
    service = start_service("echo")
    result = {
        "html": HOSTILE_IMG,
        "rows": [1, 2.5, None],
        "script": "<script>window.__pwned = 'result'</script>",
    }
    service.accept({"id": "echoed", "payload": result})
    service.accept({"id": "nothing", "payload": None})
    done = service.wait_for_task("echoed", lambda task: task["status"] == "done")
    assert done["result"] == result
    service.wait_for_task("nothing", lambda task: task["status"] == "done")

    open_dashboard(browser, service)
    wait_until(
        lambda: click(browser, 'button[aria-label="show task echoed"]'), timeout_s=PAGE_TIMEOUT_S
    )
    wait_until(
        lambda: json.dumps(HOSTILE_IMG) in browser.find_element(By.ID, "detail-result").text,
        timeout_s=PAGE_TIMEOUT_S,
    )
    assert json.loads(browser.find_element(By.ID, "detail-result").text) == result
    assert browser.find_element(By.CSS_SELECTOR, ".field-timeout_ms").text == (
        "service default (TASK_TIMEOUT_MS)"
    )
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert browser.execute_script("return document.scripts.length") == 1

    # A handler that returned None has no result.
    wait_until(
        lambda: click(browser, 'button[aria-label="show task nothing"]'), timeout_s=PAGE_TIMEOUT_S
    )
    wait_until(
        lambda: browser.find_element(By.ID, "detail-id").text == "nothing", timeout_s=PAGE_TIMEOUT_S
    )
    assert browser.find_element(By.ID, "detail-result").text == NOT_YET


def test_the_form_enqueues_a_task_with_a_target_and_the_detail_shows_only_header_names(
    start_service: Callable[..., Service], browser: WebDriver
) -> None:
    service = start_service("record_run", TARGET_ALLOW="https://hooks.example/in")
    secret = "Bearer form-s3cret"

    open_dashboard(browser, service)
    fields = {
        "enqueue-id": "to a target",
        "enqueue-payload": '{"n": 1}',
        "enqueue-delay": "600000",  # ten minutes: nothing is sent while the test runs
        "enqueue-target-url": "https://hooks.example/in/a",
        "enqueue-target-headers": json.dumps({"Authorization": secret}),
    }
    for field, value in fields.items():
        browser.find_element(By.ID, field).send_keys(value)
    Select(browser.find_element(By.ID, "enqueue-target-method")).select_by_visible_text("PUT")
    browser.find_element(By.CSS_SELECTOR, "#enqueue button[type=submit]").click()

    wait_until(lambda: row_status(browser, "to a target") == "queued", timeout_s=PAGE_TIMEOUT_S)
    created = service.task("to a target")
    assert created["target"] == {
        "url": "https://hooks.example/in/a",
        "method": "PUT",
        "headers": {"Authorization": "***"},
    }
    wait_until(
        lambda: click(browser, 'button[aria-label="show task to a target"]'),
        timeout_s=PAGE_TIMEOUT_S,
    )

    def target_shown() -> str | None:
        # The detail is redrawn as the page refreshes: an element found may be gone when read.
        try:
            return browser.find_element(By.CSS_SELECTOR, ".field-target").text
        except (NoSuchElementException, StaleElementReferenceException):
            return None

    shown = wait_until(target_shown, timeout_s=PAGE_TIMEOUT_S)
    assert shown == "PUT https://hooks.example/in/a (headers: Authorization)"
    assert "s3cret" not in browser.page_source


def queue_row(browser: WebDriver, name: str) -> dict[str, str] | None:
    """The row of queue ``name``: its ``data-paused`` and cells' text, or None if not there."""
    row: dict[str, str] | None = browser.execute_script(
        "const row = [...document.querySelectorAll('#queue-rows tr')]"
        "  .find((row) => row.dataset.queue === arguments[0]);"
        "return row ? {paused: row.dataset.paused, text: row.textContent} : null;",
        name,
    )
    return row


def test_a_row_per_queue_whose_button_pauses_and_resumes_it_and_the_form_names_a_queue(
    start_service: Callable[..., Service], browser: WebDriver
) -> None:
    service = start_service("record_run", QUEUES="default:1,emails:2:5", WORKER_MODE="thread")
    open_dashboard(browser, service)
    wait_until(lambda: queue_row(browser, "emails"), timeout_s=PAGE_TIMEOUT_S)
    names = browser.execute_script(
        "return [...document.querySelectorAll('#queue-rows tr')].map((row) => row.dataset.queue);"
    )
    assert names == ["default", "emails"]

    wait_until(
        lambda: click(browser, 'button[aria-label="pause queue emails"]'), timeout_s=PAGE_TIMEOUT_S
    )
    wait_until(lambda: (queue_row(browser, "emails") or {}).get("paused") == "true")
    paused = {queue["name"]: queue["paused"] for queue in service.request("GET", "/queues").json()}
    assert paused == {"default": False, "emails": True}

    fields = {
        "enqueue-id": "for emails",
        "enqueue-payload": '{"log": "/dev/null"}',
        "enqueue-queue": "emails",
    }
    for field, value in fields.items():
        browser.find_element(By.ID, field).send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "#enqueue button[type=submit]").click()
    wait_until(lambda: row_status(browser, "for emails") == "queued", timeout_s=PAGE_TIMEOUT_S)
    assert service.task("for emails")["queue"] == "emails"
    # Held: the paused queue's row counts it as waiting.
    wait_until(lambda: "paused0 / 21" in (queue_row(browser, "emails") or {}).get("text", ""))

    wait_until(
        lambda: click(browser, 'button[aria-label="resume queue emails"]'), timeout_s=PAGE_TIMEOUT_S
    )
    service.wait_for_task("for emails", lambda task: task["status"] == "done")
    wait_until(lambda: (queue_row(browser, "emails") or {}).get("paused") == "false")


def schedule_row(browser: WebDriver, schedule_id: str) -> dict[str, str] | None:
    """The row of schedule ``schedule_id``: its ``data-paused`` and cells' text, or None."""
    row: dict[str, str] | None = browser.execute_script(
        "const row = [...document.querySelectorAll('#schedule-rows tr')]"
        "  .find((row) => row.dataset.schedule === arguments[0]);"
        "return row ? {paused: row.dataset.paused, text: row.textContent} : null;",
        schedule_id,
    )
    return row


def test_a_row_per_schedule_as_text_whose_button_pauses_and_resumes_it(
    start_service: Callable[..., Service], browser: WebDriver
) -> None:
    service = start_service("record_run", WORKER_MODE="thread")
    markup = "<img src=x onerror=alert(1)>"
    for body in (
        {"id": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Berlin", "task": {}},
        {"id": markup, "cron": "0 3 * * *", "task": {}},
    ):
        reply = service.request("POST", "/schedules", json.dumps(body).encode())
        assert reply.status == 201, reply
    open_dashboard(browser, service)
    row = wait_until(lambda: schedule_row(browser, "nightly"), timeout_s=PAGE_TIMEOUT_S)
    assert row["paused"] == "false"
    assert "0 3 * * * (Europe/Berlin)" in row["text"]
    assert markup in (schedule_row(browser, markup) or {}).get("text", "")
    assert browser.find_elements(By.CSS_SELECTOR, "#schedule-rows img") == []

    wait_until(
        lambda: click(browser, 'button[aria-label="pause schedule nightly"]'),
        timeout_s=PAGE_TIMEOUT_S,
    )
    wait_until(lambda: (schedule_row(browser, "nightly") or {}).get("paused") == "true")
    assert service.request("GET", "/schedule?id=nightly").json()["paused"] is True
    wait_until(
        lambda: click(browser, 'button[aria-label="resume schedule nightly"]'),
        timeout_s=PAGE_TIMEOUT_S,
    )
    wait_until(lambda: (schedule_row(browser, "nightly") or {}).get("paused") == "false")
    assert service.request("GET", "/schedule?id=nightly").json()["paused"] is False


def test_a_cluster_instance_shows_its_schedules_and_its_queues_whose_buttons_pause_them(
    start_service: Callable[..., Service], browser: WebDriver, pg_database: str
) -> None:
    service = start_service(
        "fail_times", DATABASE_URL=pg_database, INSTANCE_ID="node-a", QUEUES="default:1,emails:1"
    )
    service.accept({"id": "in-a-cluster", "payload": {"failures": 0}})
    open_dashboard(browser, service)

    stats = wait_for_counters(browser, service)

    assert [queue["name"] for queue in stats["queues"]] == ["default", "emails"]
    assert browser.find_element(By.ID, "connection-state").text == "live"
    wait_until(lambda: queue_row(browser, "emails"), timeout_s=PAGE_TIMEOUT_S)
    wait_until(
        lambda: click(browser, 'button[aria-label="pause queue emails"]'), timeout_s=PAGE_TIMEOUT_S
    )
    wait_until(lambda: (queue_row(browser, "emails") or {}).get("paused") == "true")
    with psycopg.connect(pg_database) as connection:
        paused = connection.execute("SELECT name FROM task_queue_queues WHERE paused").fetchall()
    assert paused == [("emails",)]
    # The cluster's schedules are shown as one process's are.
    assert browser.find_elements(By.CSS_SELECTOR, "#schedule-rows tr") == []
    body = {"id": "poll", "every_ms": 60_000, "task": {"payload": {"failures": 0}}}
    reply = service.request("POST", "/schedules", json.dumps(body).encode())
    assert reply.status == 201, reply
    wait_until(lambda: schedule_row(browser, "poll"), timeout_s=PAGE_TIMEOUT_S)
