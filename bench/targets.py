"""HTTP targets end to end: tasks delivered to a local receiver, beside as many no-op Python tasks.

    python bench/targets.py [--tasks 10000] [--workers 4] [--mode thread] [--paced 1000]

``python main.py`` as a user starts it (in-memory store, WORKER_MODE as given), and a receiver in
this process: a ThreadingHTTPServer on 127.0.0.1 (HTTP/1.1, keep-alive) that answers 200 at once
and notes when each Task-Id arrived. Three runs, each on a fresh service:

- ``target``: N tasks with a target, enqueued in batches of 1,000 as fast as the API takes
  them; tasks/s from the first batch sent until the N-th request reached the receiver, and the
  latency from the batch's send to each request's arrival (queue wait included).
- ``noop``: the same N tasks without a target, run by ``actors.handlers:noop``; tasks/s from
  the first batch sent until GET /stats counts N done.
- ``paced``: ``--paced`` tasks with a target enqueued one at a time at ``--rate`` per second,
  far below capacity: the latency from each enqueue's send to the request's arrival, which is
  what intake and a delivery add when nothing waits in line.

The receiver shares the machine's cores with the service, as a real one on the same host would.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from common import (
    HOST,
    cpu_seconds,
    free_port,
    http_request,
    own_cpu_seconds,
    percentile,
    start_service,
    stop,
    table,
    wait_ready,
    write_json,
)

BATCH: Final = 1000
DONE_TIMEOUT_S: Final = 600.0
POLL_S: Final = 0.05


class Receiver:
    """Answers 200 with no body to every request; records when each Task-Id arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.count = 0
        self.all_in = threading.Event()
        self.expected = 0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                now = time.monotonic()
                task_id = self.headers["Task-Id"]
                with lock:
                    receiver.arrived.setdefault(task_id, now)
                    receiver.count += 1
                    if receiver.count >= receiver.expected:
                        receiver.all_in.set()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}/hook"

    def expect(self, count: int) -> None:
        self.arrived.clear()
        self.count = 0
        self.expected = count
        self.all_in.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve(name: str, workers: int, mode: str, allow: str) -> tuple[Any, int]:
    port = free_port()
    process = start_service(
        port,
        f"targets-{name}",
        TASK_HANDLER="actors.handlers:noop",
        WORKERS=str(workers),
        WORKER_MODE=mode,
        QUEUE_SIZE="10000000",
        RETENTION_MAX_FINISHED="0",
        TARGET_ALLOW=allow,
        LOG_LEVEL="WARNING",
    )
    wait_ready(port, process)
    return process, port


def enqueue_batches(port: int, tasks: list[dict[str, Any]]) -> dict[str, float]:
    """Send ``tasks`` in batches; returns each id's send time (its batch's)."""
    sent: dict[str, float] = {}
    for start in range(0, len(tasks), BATCH):
        chunk = tasks[start : start + BATCH]
        at = time.monotonic()
        status, body = http_request(
            port, "POST", "/enqueue/batch", json.dumps(chunk).encode(), timeout_s=60.0
        )
        if status != 201:
            raise RuntimeError(f"batch answered {status}: {body[:200]!r}")
        for task in chunk:
            sent[task["id"]] = at
    return sent


def done_count(port: int) -> int:
    status, body = http_request(port, "GET", "/stats")
    if status != 200:
        raise RuntimeError(f"GET /stats answered {status}")
    return int(json.loads(body)["totals"]["done"])


def latency_ms(sent: dict[str, float], arrived: dict[str, float]) -> dict[str, float]:
    values = [(arrived[task_id] - at) * 1000 for task_id, at in sent.items()]
    return {f"p{pct}": percentile(values, pct) for pct in (50, 90, 99, 100)}


def run_targets(receiver: Receiver, count: int, workers: int, mode: str) -> dict[str, Any]:
    process, port = serve("target", workers, mode, receiver.url)
    try:
        receiver.expect(count)
        tasks = [
            {"id": f"t{i}", "payload": {"i": i}, "target": {"url": receiver.url}}
            for i in range(count)
        ]
        cpu_before, own_before = cpu_seconds(process.pid), own_cpu_seconds()
        started = time.monotonic()
        sent = enqueue_batches(port, tasks)
        if not receiver.all_in.wait(DONE_TIMEOUT_S):
            raise RuntimeError(f"only {receiver.count} of {count} deliveries arrived")
        seconds = max(receiver.arrived.values()) - started
        while done_count(port) < count:  # the last answers are being recorded
            time.sleep(POLL_S)
        service_cpu = cpu_seconds(process.pid) - cpu_before
        return {
            "tasks": count,
            "seconds": seconds,
            "tasks_per_s": count / seconds,
            "service_cpu_ms_per_task": service_cpu * 1000 / count,
            # This process: the receiver, plus the client's batches and polls.
            "bench_cpu_ms_per_task": (own_cpu_seconds() - own_before) * 1000 / count,
            "requests_received": receiver.count,
            "latency_ms": latency_ms(sent, receiver.arrived),
        }
    finally:
        stop(process)


def run_noop(count: int, workers: int, mode: str) -> dict[str, Any]:
    process, port = serve("noop", workers, mode, "")
    try:
        tasks = [{"id": f"n{i}", "payload": {"i": i}} for i in range(count)]
        cpu_before = cpu_seconds(process.pid)
        started = time.monotonic()
        enqueue_batches(port, tasks)
        deadline = started + DONE_TIMEOUT_S
        while done_count(port) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("no-op tasks not done in time")
            time.sleep(POLL_S)
        seconds = time.monotonic() - started
        return {
            "tasks": count,
            "seconds": seconds,
            "tasks_per_s": count / seconds,
            "service_cpu_ms_per_task": (cpu_seconds(process.pid) - cpu_before) * 1000 / count,
        }
    finally:
        stop(process)


def run_paced(
    receiver: Receiver, count: int, rate: float, workers: int, mode: str
) -> dict[str, Any]:
    process, port = serve("paced", workers, mode, receiver.url)
    try:
        receiver.expect(count)
        sent: dict[str, float] = {}
        start = time.monotonic()
        for i in range(count):
            due = start + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            body = {"id": f"p{i}", "payload": {"i": i}, "target": {"url": receiver.url}}
            # From the send: a worker may deliver before the client has read its 201.
            sent[f"p{i}"] = time.monotonic()
            status, _ = http_request(port, "POST", "/enqueue", json.dumps(body).encode())
            if status != 201:
                raise RuntimeError(f"enqueue answered {status}")
        if not receiver.all_in.wait(DONE_TIMEOUT_S):
            raise RuntimeError(f"only {receiver.count} of {count} paced deliveries arrived")
        return {
            "tasks": count,
            "rate_per_s": rate,
            "latency_ms": latency_ms(sent, receiver.arrived),
        }
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description="HTTP targets end to end vs no-op tasks")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--mode", choices=["thread", "process"], default="thread")
    parser.add_argument("--paced", type=int, default=1000, help="tasks of the paced run (0: none)")
    parser.add_argument("--rate", type=float, default=200.0, help="paced enqueues per second")
    parser.add_argument("--json", help="output file (default bench/out/targets.json)")
    args = parser.parse_args()

    receiver = Receiver()
    try:
        target = run_targets(receiver, args.tasks, args.workers, args.mode)
        noop = run_noop(args.tasks, args.workers, args.mode)
        paced = (
            run_paced(receiver, args.paced, args.rate, args.workers, args.mode)
            if args.paced
            else None
        )
    finally:
        receiver.close()

    rows = [
        [name, run["tasks"], run["seconds"], run["tasks_per_s"], run["service_cpu_ms_per_task"]]
        for name, run in (("target (batches)", target), ("no-op (batches)", noop))
    ]
    print(f"WORKERS={args.workers} WORKER_MODE={args.mode}")
    print(table(["run", "tasks", "seconds", "tasks/s", "service CPU ms/task"], rows))
    print(f"receiver and client CPU: {target['bench_cpu_ms_per_task']:.2f} ms per delivery")
    lat = [["target (batches): enqueue to arrival", *target["latency_ms"].values()]]
    if paced is not None:
        lat.append([f"paced at {args.rate:.0f}/s: send to arrival", *paced["latency_ms"].values()])
    print(table(["latency (ms)", "p50", "p90", "p99", "max"], lat))
    results = {
        "workers": args.workers,
        "mode": args.mode,
        "target": target,
        "noop": noop,
        "paced": paced,
    }
    print(f"written to {write_json('targets', results, args.json)}")


if __name__ == "__main__":
    main()
