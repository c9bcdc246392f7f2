"""Benchmark: what a worker process costs (WORKER_MODE=process), through ProcessRunner alone.

    python bench/process_runner.py [--attempts 20000] [--starts 20]

- Round trip of a no-op attempt through one runner: wall time, the parent's CPU (the worker
  thread's, time.thread_time) and the child's CPU, per attempt.
- Throughput: 4 runners driven by 4 threads, no-op attempts back to back (tasks/s), the ceiling
  the process mode puts on the service's no-op rate.
- Child start: from asking to the child's "handler loaded", with forkserver (what the runner
  uses; the first start also starts the forkserver) and with spawn; and 4 and 32 runners made
  at once, then waited for (a service's start).

A child runs its parent's ``__main__`` again; the runner has the forkserver import it first
(the service's main.py, as ``main``), so a child finds its imports done. This script stands in
for main.py: it imports main, and runs from bench/ so that the forkserver (which, on Python
3.11, looks for modules from its working directory, not the parent's sys.path) finds it too.
A spawn child imports it all afresh, as the service's would.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from common import BENCH_DIR, CpuWatch, quiet_measurement, table, write_json

import main as _service  # noqa: F401  (see the docstring: the children pay for its imports)
from actors import child, new_task
from actors.handlers import HandlerSpec
from actors.process_runner import ProcessRunner

if TYPE_CHECKING:
    from collections.abc import Sequence

NOOP: Final = HandlerSpec("actors.handlers:noop")
THREADS: Final = 4
TIMEOUT_MS: Final = 10_000
WARMUP: Final = 500


def runner() -> ProcessRunner:
    made = ProcessRunner(NOOP, result_max_bytes=65_536)
    made.wait_ready()
    return made


def round_trip(attempts: int) -> dict[str, Any]:
    one = runner()
    task = new_task("bench", b'{"n": 1}', 3)
    try:
        for _ in range(WARMUP):
            one.run(task, TIMEOUT_MS)
        assert one.pid is not None
        watch = CpuWatch([one.pid])
        started, cpu = time.perf_counter(), time.thread_time()
        for _ in range(attempts):
            one.run(task, TIMEOUT_MS)
        wall_s, parent_s = time.perf_counter() - started, time.thread_time() - cpu
        child_s = watch.pid_seconds(one.pid)
        return {
            "attempts": attempts,
            "wall_us": wall_s / attempts * 1e6,
            "parent_cpu_us": parent_s / attempts * 1e6,
            "child_cpu_us": child_s / attempts * 1e6,
            "foreign_cores": watch.foreign_cores(),
        }
    finally:
        one.close(5)


def throughput(attempts: int) -> dict[str, Any]:
    runners = [runner() for _ in range(THREADS)]
    task = new_task("bench", b'{"n": 1}', 3)
    each = attempts // THREADS
    go = threading.Barrier(THREADS + 1)

    def drive(one: ProcessRunner) -> None:
        for _ in range(WARMUP):
            one.run(task, TIMEOUT_MS)
        go.wait()
        for _ in range(each):
            one.run(task, TIMEOUT_MS)

    threads = [threading.Thread(target=drive, args=(one,)) for one in runners]
    for thread in threads:
        thread.start()
    go.wait()
    watch = CpuWatch([one.pid or 0 for one in runners])
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall_s = time.perf_counter() - started
    children_s = sum(watch.pid_seconds(one.pid or 0) for one in runners)
    foreign = watch.foreign_cores()
    for one in runners:
        one.close(5)
    return {
        "runners": THREADS,
        "attempts": each * THREADS,
        "tasks_per_s": each * THREADS / wall_s,
        "children_cpu_us_per_attempt": children_s / (each * THREADS) * 1e6,
        "foreign_cores": foreign,
    }


def forkserver_starts(starts: int) -> list[float]:
    times = []
    for _ in range(starts):
        started = time.perf_counter()
        one = runner()
        times.append(time.perf_counter() - started)
        one.close(5)
    return times


def spawn_starts(starts: int) -> list[float]:
    """Children started the way the runner would with spawn: same entry point, same message."""
    context = multiprocessing.get_context("spawn")
    times = []
    for _ in range(starts):
        started = time.perf_counter()
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=child.main, args=(child_end, NOOP, os.getpid(), 65_536, False, None)
        )
        process.start()
        child_end.close()
        parent_end.recv_bytes()  # Started
        times.append(time.perf_counter() - started)
        parent_end.close()
        process.join(5)
    return times


def many_at_once(count: int) -> float:
    started = time.perf_counter()
    runners = [ProcessRunner(NOOP, result_max_bytes=65_536) for _ in range(count)]
    for one in runners:
        one.wait_ready()
    took = time.perf_counter() - started
    for one in runners:
        one.close(5)
    return took


def measure_starts(starts: int) -> dict[str, Any]:
    first_s = forkserver_starts(1)[0]  # the forkserver starts with it (unless running already)
    forkserver = forkserver_starts(starts)
    spawn = spawn_starts(max(3, starts // 4))
    return {
        "forkserver_first_ms": first_s * 1000,
        "forkserver_median_ms": statistics.median(forkserver) * 1000,
        "spawn_median_ms": statistics.median(spawn) * 1000,
        "runners_4_ready_s": many_at_once(4),
        "runners_32_ready_s": many_at_once(32),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="ProcessRunner: round trip, rate, child start")
    parser.add_argument("--attempts", type=int, default=20_000)
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--json", help="output file (default bench/out/process_runner.json)")
    args = parser.parse_args(argv)
    os.chdir(BENCH_DIR)  # before the forkserver starts (see the docstring)
    print(f"ProcessRunner: no-op attempts ({args.attempts:,}), child starts ({args.starts})")
    starts = measure_starts(args.starts)  # first: the first start includes the forkserver's
    trip, _ = quiet_measurement(
        lambda: round_trip(args.attempts), lambda row: float(row["foreign_cores"])
    )
    rate, _ = quiet_measurement(
        lambda: throughput(args.attempts), lambda row: float(row["foreign_cores"])
    )
    print(
        table(
            ["round trip µs", "parent CPU µs", "child CPU µs", "other load (cores)"],
            [
                [
                    f"{trip['wall_us']:.1f}",
                    f"{trip['parent_cpu_us']:.1f}",
                    f"{trip['child_cpu_us']:.1f}",
                    f"{trip['foreign_cores']:.2f}",
                ]
            ],
        )
    )
    print(
        table(
            ["runners (threads)", "no-op tasks/s", "child CPU µs/attempt", "other load (cores)"],
            [
                [
                    rate["runners"],
                    f"{rate['tasks_per_s']:,.0f}",
                    f"{rate['children_cpu_us_per_attempt']:.1f}",
                    f"{rate['foreign_cores']:.2f}",
                ]
            ],
        )
    )
    print(
        table(
            [
                "first start (+forkserver) ms",
                "forkserver start ms",
                "spawn start ms",
                "4 runners ready s",
                "32 runners ready s",
            ],
            [
                [
                    f"{starts['forkserver_first_ms']:.0f}",
                    f"{starts['forkserver_median_ms']:.1f}",
                    f"{starts['spawn_median_ms']:.0f}",
                    f"{starts['runners_4_ready_s']:.2f}",
                    f"{starts['runners_32_ready_s']:.2f}",
                ]
            ],
        )
    )
    results = {"round_trip": trip, "throughput": rate, "starts": starts}
    print(f"written to {write_json('process_runner', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
