"""Benchmark 6: shutdown latency of ``python main.py``, from SIGTERM to process exit.

    python bench/shutdown.py [--repeats 3] [--attempt-ms 2000]

Three cases, each on a fresh process: nothing running; nothing running but an idle keep-alive
connection open; one attempt running, of known length (the built-in simulation with
SIM_MIN_MS = SIM_MAX_MS = --attempt-ms and no failures), signalled while it runs. For the
last, the attempt's own end is known (its ``updated_at`` when it turned running, plus its
length), so the figure that matters is how long after that end the process exited. Every exit
must be code 0, and the running task must be reported done in the shutdown summary.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from common import (
    HOST,
    NOOP_HANDLER,
    OUT_DIR,
    free_port,
    http_request,
    median,
    start_service,
    table,
    wait_for_quiet,
    wait_ready,
    write_json,
)

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Sequence

EXIT_TIMEOUT_S: Final = 60.0


def sigterm_to_exit(process: subprocess.Popen[bytes]) -> tuple[float, float, int]:
    """Send SIGTERM; return (monotonic time sent, wall time of exit, seconds taken) with code."""
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(EXIT_TIMEOUT_S)
    taken = time.monotonic() - sent
    return taken, time.time(), code


def idle_case(name: str, keep_alive: bool) -> dict[str, Any]:
    port = free_port()
    process = start_service(port, name, TASK_HANDLER=NOOP_HANDLER)
    wait_ready(port, process)
    connection = None
    if keep_alive:
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        connection.request("GET", "/healthz")
        connection.getresponse().read()  # the connection stays open, idle
    taken, _, code = sigterm_to_exit(process)
    if connection is not None:
        connection.close()
    return {"seconds": taken, "exit_code": code}


def running_case(name: str, attempt_ms: int) -> dict[str, Any]:
    port = free_port()
    process = start_service(
        port, name, SIM_MIN_MS=str(attempt_ms), SIM_MAX_MS=str(attempt_ms), SIM_FAILURE_RATE="0"
    )
    wait_ready(port, process)
    body = json.dumps({"id": "long-one", "payload": None}).encode()
    status, _ = http_request(port, "POST", "/enqueue", body)
    if status != 201:
        raise RuntimeError(f"enqueue answered {status}")
    attempt_started = _wait_running(port)
    # Signal mid-attempt, so the exit has to wait for the rest of it.
    time.sleep(attempt_ms / 4000)
    taken, exited_wall, code = sigterm_to_exit(process)
    log = (OUT_DIR / "logs" / f"{name}.log").read_text()
    return {
        "seconds": taken,
        "exit_code": code,
        "after_attempt_end_s": exited_wall - (attempt_started + attempt_ms / 1000),
        "task_done": "done=1" in log,
    }


def _wait_running(port: int) -> float:
    """Poll GET /task until the task runs; return the wall time its attempt started."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, body = http_request(port, "GET", "/task?id=long-one")
        task = json.loads(body)
        if status == 200 and task["status"] == "running":
            return datetime.fromisoformat(task["updated_at"]).timestamp()
        time.sleep(0.01)
    raise RuntimeError("the task never started running")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Shutdown latency: SIGTERM to exit")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attempt-ms", type=int, default=2000)
    parser.add_argument("--json", help="output file (default bench/out/shutdown.json)")
    args = parser.parse_args(argv)
    print(f"Shutdown: {args.repeats} repeats per case, running attempt {args.attempt_ms} ms")
    cases: dict[str, list[dict[str, Any]]] = {"idle": [], "idle keep-alive": [], "running": []}
    wait_for_quiet()
    for repeat in range(args.repeats):
        cases["idle"].append(idle_case(f"shutdown-idle-{repeat}", keep_alive=False))
        cases["idle keep-alive"].append(idle_case(f"shutdown-keepalive-{repeat}", keep_alive=True))
        cases["running"].append(running_case(f"shutdown-running-{repeat}", args.attempt_ms))
    rows = []
    for case, runs in cases.items():
        after_end = [run["after_attempt_end_s"] for run in runs if "after_attempt_end_s" in run]
        rows.append(
            [
                case,
                f"{median([run['seconds'] for run in runs]):.3f}",
                f"{max(run['seconds'] for run in runs):.3f}",
                f"{median(after_end):.3f}" if after_end else "",
                all(run["exit_code"] == 0 for run in runs),
                ("yes" if all(run["task_done"] for run in runs) else "NO")
                if "task_done" in runs[0]
                else "",
            ]
        )
    print(
        table(
            [
                "case",
                "SIGTERM→exit median s",
                "max s",
                "exit after attempt end s",
                "exit 0",
                "task done",
            ],
            rows,
        )
    )
    results = {"attempt_ms": args.attempt_ms, "cases": cases}
    print(f"written: {write_json('shutdown', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
