"""A full disk under the service: how soon new work is refused, how soon the service is back.

    python bench/store_outage.py [--rounds 5] [--outages 0.5,5,30]   (as root: it mounts a tmpfs)

Each round mounts a 2 MB tmpfs, starts ``python main.py`` with DB_PATH on it (no-op handler),
enqueues a few tasks, then fills the disk with a file, for real. Measured:

- **first refusal**: from the moment the disk is full to the answer of the enqueue sent then
  (it must be ``503 store unavailable``; the commit fails and the held answer is withdrawn);
- **later refusals**: the median latency of the next 50 enqueues, refused by the dispatcher
  without reaching the store;
- **recovery**: the filler is removed after ``--outage`` seconds of outage, while a client
  enqueues every 5 ms; from the removal to the first 201. The store is retried with a backoff
  capped at STORE_RETRY_MAX_MS, so a long outage is noticed over within about that.

Afterwards the service is stopped (SIGTERM, exit 0) and started again on the file: every task
that got a 201 must be there and done, and none that got a 503.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    free_port,
    http_request,
    median,
    start_service,
    stop,
    table,
    wait_ready,
    write_json,
)

HANDLER = "actors.handlers:noop"
POLL_S = 0.005


def fill(path: Path) -> None:
    block = b"\0" * 65536
    with path.open("wb", buffering=0) as filler:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    filler.write(block[:size])


def enqueue(port: int, task_id: str) -> tuple[int, bytes, float]:
    started = time.monotonic()
    status, body = http_request(port, "POST", "/enqueue", json.dumps({"id": task_id}).encode())
    return status, body, time.monotonic() - started


def one_round(number: int, outage_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        disk = Path(scratch)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", scratch], check=True)
        try:
            return measure(number, disk, outage_s)
        finally:
            subprocess.run(["umount", "-l", scratch], check=False)


def measure(number: int, disk: Path, outage_s: float) -> dict[str, Any]:
    db = disk / "tasks.db"
    settings = {"DB_PATH": str(db), "TASK_HANDLER": HANDLER, "SHUTDOWN_TIMEOUT_S": "5"}
    port = free_port()
    process = start_service(port, f"store-outage-{number}", **settings)
    accepted: list[str] = []
    refused: list[str] = []
    try:
        wait_ready(port, process)
        for n in range(5):
            task_id = f"before-{n}"
            assert enqueue(port, task_id)[0] == 201
            accepted.append(task_id)

        fill(disk / "filler")
        full_at = time.monotonic()
        status, body, _ = enqueue(port, "refused-0")
        first_refusal_s = time.monotonic() - full_at
        assert (status, json.loads(body)) == (503, {"error": "store unavailable"}), body
        refused.append("refused-0")
        later = []
        for n in range(1, 51):
            status, _, elapsed = enqueue(port, f"refused-{n}")
            assert status == 503
            refused.append(f"refused-{n}")
            later.append(elapsed)

        time.sleep(max(0.0, outage_s - (time.monotonic() - full_at)))
        (disk / "filler").unlink()
        freed_at = time.monotonic()
        n = 0
        while True:
            task_id = f"probe-{n}"
            status, _, _ = enqueue(port, task_id)
            if status == 201:
                accepted.append(task_id)
                break
            refused.append(task_id)
            n += 1
            time.sleep(POLL_S)
        recovery_s = time.monotonic() - freed_at
        exit_code = stop(process)
        assert exit_code == 0, exit_code
    finally:
        stop(process)

    # Again on the same file: every 201 there and done, no 503.
    port = free_port()
    process = start_service(port, f"store-outage-{number}-again", **settings)
    try:
        wait_ready(port, process)
        deadline = time.monotonic() + 10
        while True:
            _, body = http_request(port, "GET", "/tasks")
            tasks = {task["id"]: task["status"] for task in json.loads(body)}
            if all(tasks.get(task_id) == "done" for task_id in accepted):
                break
            assert time.monotonic() < deadline, tasks
            time.sleep(0.05)
        assert not set(tasks) - set(accepted), set(tasks) - set(accepted)
    finally:
        stop(process)
    return {
        "outage_s": outage_s,
        "first_refusal_ms": first_refusal_s * 1000,
        "later_refusal_median_ms": median(later) * 1000,
        "recovery_ms": recovery_s * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--outages", default="0.5,5,30", help="seconds, comma-separated")
    args = parser.parse_args()
    outages = [float(value) for value in args.outages.split(",")]
    results: dict[str, Any] = {}
    rows = []
    for outage_s in outages:
        rounds = [one_round(n, outage_s) for n in range(args.rounds)]
        summary = {
            key: median([r[key] for r in rounds])
            for key in ("first_refusal_ms", "later_refusal_median_ms", "recovery_ms")
        }
        results[f"outage_{outage_s:g}s"] = {"rounds": rounds, "median": summary}
        rows.append(
            [
                f"{outage_s:g} s",
                f"{summary['first_refusal_ms']:.1f}",
                f"{summary['later_refusal_median_ms']:.2f}",
                f"{summary['recovery_ms']:.0f}",
                f"{max(r['recovery_ms'] for r in rounds):.0f}",
            ]
        )
    headers = [
        "outage",
        "first 503 (ms)",
        "later 503s, median (ms)",
        "back after space returns, median (ms)",
        "max (ms)",
    ]
    print(table(headers, rows))
    print(f"written to {write_json('store_outage', results)}")


if __name__ == "__main__":
    main()
