"""Benchmark 4: retries at scale, in-process through actors.TaskSystem.

    python bench/retries.py [--tasks 10000] [--base-ms 5]

N tasks whose handler fails on attempts 1 and 2 and succeeds on attempt 3 (max_retries 3),
4 workers, RETRY_BASE_MS small. A sampler thread reads the process's thread count every
millisecond, so the peak shows whether waiting retries cost threads (they must not: one timer).
Reported: total time from first enqueue to the N-th success, peak threads, tasks/s, attempts/s.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from common import CpuWatch, os_thread_count, quiet_measurement, table, write_json

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors import TaskView

WORKERS: Final = 4
FAILURES_BEFORE_SUCCESS: Final = 2
SAMPLE_INTERVAL_S: Final = 0.001
TIMEOUT_S: Final = 300.0


class FlakyHandler:
    """Fails the first two attempts of every task; the N-th success sets ``finished``."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.finished = threading.Event()
        self.finished_at = 0.0
        self.attempts = 0
        self._successes = 0
        self._lock = threading.Lock()

    def __call__(self, task: TaskView) -> None:
        with self._lock:
            self.attempts += 1
        if task.attempts <= FAILURES_BEFORE_SUCCESS:
            raise RuntimeError(f"planned failure on attempt {task.attempts}")
        with self._lock:
            self._successes += 1
            if self._successes == self.expected:
                self.finished_at = time.perf_counter()
                self.finished.set()


class ThreadSampler:
    """Samples the OS thread count of this process until stopped; keeps the peak."""

    def __init__(self) -> None:
        self.peak = os_thread_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thread-sampler", daemon=True)

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.peak = max(self.peak, os_thread_count())


def measure(n: int, base_ms: float) -> dict[str, Any]:
    from actors import TaskSystem, new_task

    handler = FlakyHandler(n)
    threads_before = os_thread_count()
    watch = CpuWatch()
    with ThreadSampler() as sampler:
        system = TaskSystem.start(handler, workers=WORKERS, queue_size=n, retry_base_ms=base_ms)
        threads_started = os_thread_count()
        tasks = [new_task(f"task-{i}", b'"x"', 3) for i in range(n)]
        started = time.perf_counter()
        for task in tasks:
            system.submit_async(task)
        if not handler.finished.wait(TIMEOUT_S):
            raise SystemExit(f"not all tasks succeeded within {TIMEOUT_S:.0f} s")
        summary = system.stop(time.monotonic() + 10)
    total_s = handler.finished_at - started
    return {
        "tasks": n,
        "retry_base_ms": base_ms,
        "total_s": total_s,
        "tasks_per_s": n / total_s,
        "attempts": handler.attempts,
        "attempts_per_s": handler.attempts / total_s,
        # The sampler's own thread is left out of both counts; the main thread is in.
        "threads_before_start": threads_before,
        "threads_idle_system": threads_started - 1,
        "peak_threads": sampler.peak - 1,
        "all_done": summary.counts.get("done") == n,
        "foreign_cores": watch.foreign_cores(),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Retries at scale: fail twice, then succeed")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--base-ms", type=float, default=5.0, help="RETRY_BASE_MS")
    parser.add_argument("--json", help="output file (default bench/out/retries.json)")
    args = parser.parse_args(argv)
    print(
        f"Retries: {args.tasks:,} tasks failing {FAILURES_BEFORE_SUCCESS}x then succeeding, "
        f"{WORKERS} workers, RETRY_BASE_MS={args.base_ms:g}"
    )
    results, _ = quiet_measurement(
        lambda: measure(args.tasks, args.base_ms), lambda row: float(row["foreign_cores"])
    )
    total_s = results["total_s"]
    print(
        table(
            [
                "tasks",
                "attempts",
                "total s",
                "tasks/s",
                "attempts/s",
                "threads: idle system",
                "peak",
                "all done",
            ],
            [
                [
                    args.tasks,
                    results["attempts"],
                    f"{total_s:.2f}",
                    results["tasks_per_s"],
                    results["attempts_per_s"],
                    results["threads_idle_system"],
                    results["peak_threads"],
                    results["all_done"],
                ]
            ],
        )
    )
    print("(thread counts exclude the sampler thread; the main thread is included)")
    print(f"written: {write_json('retries', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
