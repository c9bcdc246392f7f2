"""Make the README's picture of the dashboard: ``docs/dashboard.png``.

    python scripts/screenshot.py [--out docs/dashboard.png] [--width 1280] [--seconds 25]

Starts ``python main.py`` (the built-in simulation, some attempts failing) on a free port, sends
it a varying stream of demo tasks while headless Chromium watches the dashboard, ends with a
burst that leaves some waiting, opens a failed task's detail view and saves a full-page
screenshot. Needs the ``test`` extra (selenium) and Debian's ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select

if TYPE_CHECKING:
    from collections.abc import Callable

    from selenium.webdriver.remote.webdriver import WebDriver

ROOT: Final = Path(__file__).resolve().parent.parent
HOST: Final = "127.0.0.1"
STARTUP_TIMEOUT_S: Final = 10.0
PAGE_TIMEOUT_S: Final = 10.0
LISTENING: Final = re.compile(r"listening on http://[\d.]+:(\d+)")
SERVICE_ENV: Final = {
    "HOST": HOST,
    "PORT": "0",  # a free port; the startup line says which
    "WORKERS": "4",
    "QUEUE_SIZE": "64",
    "SIM_MIN_MS": "50",
    "SIM_MAX_MS": "400",
    "SIM_FAILURE_RATE": "0.25",
}
KINDS: Final = ("email", "thumbnail", "report", "webhook", "invoice")

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() >= deadline:
            raise SystemExit(f"screenshot: gave up waiting for {what}")
        time.sleep(0.05)
    return value


def start_service(log: Path) -> tuple[subprocess.Popen[bytes], int]:
    environ = {k: v for k, v in os.environ.items() if k != "API_TOKEN"} | SERVICE_ENV
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "main.py"], cwd=ROOT, env=environ, stdout=out, stderr=out
        )

    def port() -> int | None:
        if process.poll() is not None:
            raise SystemExit(f"screenshot: the service exited:\n{log.read_text()}")
        match = LISTENING.search(log.read_text(errors="replace"))
        return int(match.group(1)) if match else None

    found = wait_until(port, STARTUP_TIMEOUT_S, "the service to listen")
    assert found is not None  # wait_until returns only a truthy value
    return process, found


def post(base: str, path: str, body: Any) -> int:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def demo_task(rng: random.Random, number: int, with_priority: bool) -> dict[str, Any]:
    kind = rng.choice(KINDS)
    task: dict[str, Any] = {
        "id": f"{kind}-{number:04d}",
        "payload": {"kind": kind, "to": f"user{rng.randrange(1000)}@example.com"},
        "max_retries": rng.choice((0, 1, 3)),
    }
    if with_priority:
        task["priority"] = rng.choice((0, 0, 0, 5, 9))
    return task


def send_traffic(base: str, seconds: float, with_priority: bool) -> None:
    """A rate that rises and falls, so the throughput chart has a shape."""
    rng = random.Random(6)
    number = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        per_tick = 1 + int(6 * abs(((elapsed / seconds) * 2) % 2 - 1)) + rng.randrange(3)
        for _ in range(per_tick):
            number += 1
            post(base, "/enqueue", demo_task(rng, number, with_priority))
        time.sleep(0.25)
    for _ in range(24):  # a final burst: some are still waiting in the picture
        number += 1
        post(base, "/enqueue", demo_task(rng, number, with_priority))


def open_browser(width: int) -> WebDriver:
    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={width},900")
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--seconds", type=float, default=25.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        process, port = start_service(Path(scratch) / "service.log")
        base = f"http://{HOST}:{port}"
        browser = open_browser(args.width)
        try:
            with urllib.request.urlopen(base + "/openapi.json", timeout=5) as response:
                schemas = json.load(response)["components"]["schemas"]
            with_priority = "priority" in schemas["EnqueueRequest"]["properties"]
            browser.get(base + "/")
            traffic = threading.Thread(
                target=send_traffic, args=(base, args.seconds, with_priority)
            )
            traffic.start()
            traffic.join()

            def counter(key: str) -> str:
                text: str = browser.find_element(By.CSS_SELECTOR, f'[data-stat="{key}"]').text
                return text

            wait_until(
                lambda: counter("waiting") not in ("0", "\N{EN DASH}"), PAGE_TIMEOUT_S, "a line"
            )
            # The detail view of a failed task: found through the filter, which then goes back
            # to all tasks (the open detail stays).
            status = Select(browser.find_element(By.ID, "status-filter"))
            status.select_by_value("failed")
            failed = 'tr[data-status="failed"] button.link'
            wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, failed), 5, "a failure")
            browser.find_element(By.CSS_SELECTOR, failed).click()
            wait_until(lambda: browser.find_element(By.ID, "detail-payload").text, 5, "detail")
            status.select_by_value("")
            wait_until(
                lambda: browser.find_elements(By.CSS_SELECTOR, 'tr:not([data-status="failed"])'),
                5,
                "all tasks",
            )
            # The whole page, from the top, without a focus ring left on the filter.
            browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0);")
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(args.width, int(height) + 120)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(args.out))
        finally:
            browser.quit()
            process.terminate()
            process.wait(timeout=15)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
