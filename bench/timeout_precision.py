"""Benchmark: how soon past its time limit a hung attempt is reported, in both worker modes.

    python bench/timeout_precision.py [--attempts 20] [--timeout-ms 200] [--workers 2]

Through actors.TaskSystem (no HTTP): ``--attempts`` tasks whose handler never returns
(bench/handlers.py ``hang``), each with ``timeout_ms`` and no retries, on ``--workers``
workers. The workers' observer hears how long each attempt took on its worker, from handing it
to the runner to the runner's report (in process mode that includes killing the child and
starting its successor). Reported per mode: the overshoot past the time limit, p50, p90 and max
(target: every one within 250 ms), and the replacements counted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from common import BENCH_DIR, ROOT, CpuWatch, median, percentile, table, write_json

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors.task import Task

MODES: Final = ("process", "thread")
TARGET_MS: Final = 250.0
DONE_TIMEOUT_S: Final = 120.0


class Durations:
    """An AttemptObserver keeping each attempt's duration; ``all_in`` once ``expected`` ended."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.durations_s: list[float] = []
        self.all_in = threading.Event()
        self._lock = threading.Lock()

    def attempt_ended(self, task: Task, outcome: object, duration_s: float) -> None:
        with self._lock:
            self.durations_s.append(duration_s)
            if len(self.durations_s) == self.expected:
                self.all_in.set()


def measure(mode: str, attempts: int, timeout_ms: int, workers: int) -> dict[str, Any]:
    from actors import TaskSystem, new_task
    from actors.handlers import HandlerSpec
    from actors.runners import process_runners, thread_runners

    if mode == "process":
        runners = process_runners(HandlerSpec("bench.handlers:hang"), result_max_bytes=65_536)
    else:
        from bench.handlers import hang

        runners = thread_runners(hang, 65_536)
    heard = Durations(attempts)
    system = TaskSystem.start(runners=runners, workers=workers, queue_size=attempts, observer=heard)
    watch = CpuWatch()
    try:
        for n in range(attempts):
            system.submit_async(new_task(f"hang-{n}", b"null", 0, timeout_ms=timeout_ms)).get(
                timeout=5
            )
        if not heard.all_in.wait(DONE_TIMEOUT_S):
            raise RuntimeError(f"only {len(heard.durations_s)} of {attempts} attempts ended")
        stats = system.stats_async().get(timeout=5)
    finally:
        system.stop(time.monotonic() + 5)
    over_ms = [duration * 1000 - timeout_ms for duration in heard.durations_s]
    return {
        "mode": mode,
        "attempts": attempts,
        "overshoot_p50_ms": percentile(over_ms, 50),
        "overshoot_p90_ms": percentile(over_ms, 90),
        "overshoot_max_ms": max(over_ms),
        "processes_replaced": stats.totals.processes_replaced.timeout,
        "threads_abandoned": stats.totals.threads_abandoned,
        "foreign_cores": watch.foreign_cores(),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Timeout precision in both worker modes")
    parser.add_argument("--attempts", type=int, default=20)
    parser.add_argument("--timeout-ms", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="output file (default bench/out/timeout_precision.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # every attempt fails on purpose: figures only
    # The handler is bench.handlers:hang, and a worker process imports this script again
    # through the forkserver, which looks for it from its working directory (see
    # bench/process_runner.py).
    sys.path.insert(0, str(ROOT))
    os.chdir(BENCH_DIR)
    print(
        f"Timeout precision: {args.attempts} hung attempts of {args.timeout_ms} ms, "
        f"WORKERS={args.workers}"
    )
    rows = [measure(mode, args.attempts, args.timeout_ms, args.workers) for mode in MODES]
    print(
        table(
            [
                "mode",
                "p50 ms over",
                "p90 ms over",
                "max ms over",
                "replaced",
                "abandoned",
                "other load",
            ],
            [
                [
                    row["mode"],
                    f"{row['overshoot_p50_ms']:.1f}",
                    f"{row['overshoot_p90_ms']:.1f}",
                    f"{row['overshoot_max_ms']:.1f}",
                    row["processes_replaced"],
                    row["threads_abandoned"],
                    f"{row['foreign_cores']:.2f}",
                ]
                for row in rows
            ],
        )
    )
    worst = max(row["overshoot_max_ms"] for row in rows)
    verdict = "meets" if worst <= TARGET_MS else "misses"
    print(f"worst overshoot {worst:.1f} ms ({verdict} the {TARGET_MS:.0f} ms target)")
    results = {
        "timeout_ms": args.timeout_ms,
        "rows": rows,
        "median_p50": median([r["overshoot_p50_ms"] for r in rows]),
    }
    print(f"written: {write_json('timeout_precision', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
