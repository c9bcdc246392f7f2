"""Benchmark: CPU-bound handlers, WORKER_MODE=process against WORKER_MODE=thread, same run.

    python bench/cpu_bound.py [--rounds 3] [--tasks 8] [--cpu-ms 400] [--workers 2]

Each round starts ``python main.py`` once per mode (the order alternating from round to round),
with ``--workers`` workers and a handler that spends ``--cpu-ms`` of CPU time in pure Python
(bench/handlers.py). It enqueues ``--tasks`` such tasks in one batch and measures the wall
time until all are done, while another thread asks ``GET /healthz`` every 20 ms: its latency
is what a client of the service sees while handlers hold the CPU (in thread mode, the GIL).
Each measurement waits for a quiet machine first (within a budget) and reports the cores other
processes kept busy meanwhile: on a shared machine they take the cores process mode needs.
Reported: medians over the rounds, and process / thread for both (targets: wall at most 0.6,
/healthz p90 at most 0.3).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from common import (
    CpuWatch,
    free_port,
    http_request,
    median,
    percentile,
    start_service,
    stop,
    table,
    wait_for_quiet,
    wait_ready,
    write_json,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

MODES: Final = ("process", "thread")
HANDLER: Final = "bench.handlers:burn"
POLL_S: Final = 0.01
"""How often the done count is read while the work runs."""
PROBE_EVERY_S: Final = 0.02
"""How often /healthz is asked (or right after the last answer, if that took longer): a
client's steady pace, the same in both modes, so the probing itself takes no more CPU from the
handlers in one mode than in the other."""
WALL_TARGET: Final = 0.6
HEALTHZ_TARGET: Final = 0.3


class Prober:
    """Asks GET /healthz every PROBE_EVERY_S on its own thread, keeping each latency."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._stop = threading.Event()
        self.latencies_s: list[float] = []
        self._thread = threading.Thread(target=self._run, name="healthz-prober", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            started = time.perf_counter()
            status, _ = http_request(self._port, "GET", "/healthz", timeout_s=30.0)
            answered = time.perf_counter()
            self.latencies_s.append(answered - started)
            if status != 200:
                raise RuntimeError(f"GET /healthz answered {status}")
            if self._stop.wait(max(0.0, started + PROBE_EVERY_S - answered)):
                return

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return self.latencies_s


def family(pid: int) -> list[int]:
    """``pid`` and every process below it (in process mode: the forkserver, the workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found = [pid]
    for each in found:
        found.extend(children.get(each, []))
    return found


def done_count(port: int) -> int:
    status, body = http_request(port, "GET", "/stats")
    if status != 200:
        raise RuntimeError(f"GET /stats answered {status}")
    return int(json.loads(body)["tasks"]["done"])


def measure(mode: str, tasks: int, cpu_ms: int, workers: int, name: str) -> dict[str, Any]:
    port = free_port()
    process = start_service(
        port, name, TASK_HANDLER=HANDLER, WORKER_MODE=mode, WORKERS=str(workers)
    )
    try:
        wait_ready(port, process)
        wait_for_quiet()
        batch = [{"id": f"cpu-{n}", "payload": {"cpu_ms": cpu_ms}} for n in range(tasks)]
        idle_probe = Prober(port)
        time.sleep(0.5)  # a baseline: /healthz with nothing running
        idle = idle_probe.stop()
        # The workers' CPU is the service's own, not other load.
        watch = CpuWatch(family(process.pid))
        prober = Prober(port)
        started = time.perf_counter()
        status, body = http_request(port, "POST", "/enqueue/batch", json.dumps(batch).encode())
        if status != 201:
            raise RuntimeError(f"POST /enqueue/batch answered {status}: {body[:200]!r}")
        while done_count(port) < tasks:
            time.sleep(POLL_S)
        wall_s = time.perf_counter() - started
        busy = prober.stop()
        foreign = watch.foreign_cores()
    finally:
        code = stop(process)
        if code != 0:
            print(f"  warning: {mode} service exited with {code} (bench/out/logs/{name}.log)")
    return {
        "mode": mode,
        "wall_s": wall_s,
        "healthz_requests": len(busy),
        "healthz_p50_ms": percentile(busy, 50) * 1000,
        "healthz_p90_ms": percentile(busy, 90) * 1000,
        "healthz_max_ms": max(busy) * 1000,
        "idle_healthz_p90_ms": percentile(idle, 90) * 1000,
        "foreign_cores": foreign,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="CPU-bound handlers: process vs thread mode")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--cpu-ms", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="output file (default bench/out/cpu_bound.json)")
    args = parser.parse_args(argv)
    print(
        f"CPU-bound: {args.tasks} tasks of {args.cpu_ms} ms CPU, WORKERS={args.workers}, "
        f"{args.rounds} rounds"
    )
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for round_number in range(1, args.rounds + 1):
        order = MODES if round_number % 2 else MODES[::-1]
        for mode in order:
            row = measure(mode, args.tasks, args.cpu_ms, args.workers, f"cpu-{mode}-{round_number}")
            runs[mode].append(row)
            print(
                f"  round {round_number} {mode:8} wall {row['wall_s']:.2f} s, /healthz p50 "
                f"{row['healthz_p50_ms']:.1f} ms p90 {row['healthz_p90_ms']:.1f} ms max "
                f"{row['healthz_max_ms']:.1f} ms ({row['healthz_requests']} requests; idle p90 "
                f"{row['idle_healthz_p90_ms']:.1f} ms), other load {row['foreign_cores']:.2f} cores"
            )
    summary = {
        mode: {
            key: median([row[key] for row in rows])
            for key in ("wall_s", "healthz_p50_ms", "healthz_p90_ms", "idle_healthz_p90_ms")
        }
        for mode, rows in runs.items()
    }
    wall_ratio = summary["process"]["wall_s"] / summary["thread"]["wall_s"]
    healthz_ratio = summary["process"]["healthz_p90_ms"] / summary["thread"]["healthz_p90_ms"]
    print()
    print(
        table(
            ["mode", "wall s", "/healthz p50 ms", "/healthz p90 ms", "idle p90 ms"],
            [
                [
                    mode,
                    f"{s['wall_s']:.2f}",
                    f"{s['healthz_p50_ms']:.1f}",
                    f"{s['healthz_p90_ms']:.1f}",
                    f"{s['idle_healthz_p90_ms']:.1f}",
                ]
                for mode, s in summary.items()
            ],
        )
    )
    print(
        f"process / thread: wall {wall_ratio:.2f} (target <= {WALL_TARGET}), "
        f"/healthz p90 {healthz_ratio:.2f} (target <= {HEALTHZ_TARGET})"
    )
    results = {
        "tasks": args.tasks,
        "cpu_ms": args.cpu_ms,
        "workers": args.workers,
        "runs": runs,
        "summary": summary,
        "wall_ratio": wall_ratio,
        "healthz_p90_ratio": healthz_ratio,
    }
    print(f"written: {write_json('cpu_bound', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
