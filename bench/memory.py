"""Benchmark 5: memory per stored task, and GET-by-id latency as the store grows.

    python bench/memory.py [--sizes 1000 100000 1000000] [--lookups 20000]

Each size runs in a fresh subprocess: start actors.TaskSystem (no-op handler, 4 workers),
settle memory and read RSS, push N small tasks through it (id "task-0000042", a distinct
payload like "data-42"; at most 10,000 outstanding, so the transient line stays small), wait
until all are finished, settle memory (gc + malloc_trim) and read RSS again: (delta / N) is the
resident cost of one stored finished task. Then ``--lookups`` sequential lookups of random ids
through ``TaskSystem.get`` (in-process: the actor round trip GET /task makes, without HTTP)
give the latency percentiles. The run ends with the shutdown summary confirming N done.
Retention keeps every task (no count limit; the age rule on but a day long, so its
per-task bookkeeping is in the figure).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from common import (
    BENCH_DIR,
    CpuWatch,
    percentile,
    rss_bytes,
    settle_memory,
    table,
    wait_for_quiet,
    write_json,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

WORKERS: Final = 4
OUTSTANDING: Final = 10_000
"""Tasks submitted but not yet finished, at most: bounds the line while filling."""
REPLY_WINDOW: Final = 1_000
FILL_TIMEOUT_S: Final = 600.0


class Counter:
    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def __call__(self, task: object) -> None:
        with self._lock:
            self.value += 1


def child(n: int, lookups: int) -> dict[str, Any]:
    """Runs in its own process: fill, measure, look up, stop."""
    from actors import Admission, Retention, TaskSystem, new_task

    finished = Counter()
    # Every task must stay to be measured, so no count limit; the age rule stays on (a day, as
    # the service's default), so the retention bookkeeping kept per finished task is counted.
    retention = Retention(max_finished=0, ttl_s=86_400)
    system = TaskSystem.start(
        finished, workers=WORKERS, queue_size=2 * OUTSTANDING, retention=retention
    )
    settle_memory()
    rss_before = rss_bytes()
    started = time.perf_counter()
    replies: deque[Any] = deque()
    for i in range(n):
        while i - finished.value >= OUTSTANDING:
            time.sleep(0.001)
        task = new_task(f"task-{i:07d}", f'"data-{i}"'.encode(), 3)
        replies.append(system.submit_async(task))
        if len(replies) > REPLY_WINDOW:
            _expect_accepted(replies.popleft(), Admission.ACCEPTED)
    while replies:
        _expect_accepted(replies.popleft(), Admission.ACCEPTED)
    deadline = time.monotonic() + FILL_TIMEOUT_S
    while finished.value < n and time.monotonic() < deadline:
        time.sleep(0.01)
    if not system.wait_idle(30):
        raise RuntimeError("workers still busy after the fill")
    fill_s = time.perf_counter() - started
    # Sent after every save, so answered after them: the store is complete from here on.
    system.get_async(f"task-{n - 1:07d}").get(timeout=30)
    settle_memory()
    rss_after = rss_bytes()

    ids = [f"task-{random.randrange(n):07d}" for _ in range(lookups)]
    latencies_us: list[float] = []
    watch = CpuWatch()
    for task_id in ids:
        before = time.perf_counter_ns()
        found = system.get_async(task_id).get(timeout=5)
        latencies_us.append((time.perf_counter_ns() - before) / 1000)
        if found is None:
            raise RuntimeError(f"{task_id} not found")
    foreign_cores = watch.foreign_cores()
    summary = system.stop(time.monotonic() + 30)
    return {
        "tasks": n,
        "fill_s": fill_s,
        "rss_before_mb": rss_before / 2**20,
        "rss_after_mb": rss_after / 2**20,
        "bytes_per_task": (rss_after - rss_before) / n,
        "lookups": lookups,
        "get_p50_us": percentile(latencies_us, 50),
        "get_p99_us": percentile(latencies_us, 99),
        "get_mean_us": sum(latencies_us) / len(latencies_us),
        "all_done": summary.counts.get("done") == n,
        "foreign_cores_during_lookups": foreign_cores,
    }


def _expect_accepted(reply: Any, accepted: object) -> None:
    admission = reply.get(timeout=30)
    if admission is not accepted:
        raise RuntimeError(f"submission refused: {admission}")


def run_child(n: int, lookups: int) -> dict[str, Any]:
    command = [sys.executable, str(BENCH_DIR / "memory.py"), "--child", str(n)]
    done = subprocess.run(
        [*command, "--lookups", str(lookups)],
        capture_output=True,
        text=True,
        timeout=FILL_TIMEOUT_S + 120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child for {n} tasks failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Memory per stored task and GET latency")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="output file (default bench/out/memory.json)")
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.lookups)))
        return {}
    print(
        f"Memory and scale: sizes {args.sizes}, {args.lookups:,} lookups each, "
        "one fresh process per size; GET measured in-process (TaskSystem.get, no HTTP)"
    )
    rows = []
    for n in args.sizes:
        wait_for_quiet()
        row = run_child(n, args.lookups)
        rows.append(row)
        print(
            f"  {n:>9,} tasks: {row['bytes_per_task']:6.0f} B/task, get p50 "
            f"{row['get_p50_us']:.0f} µs p99 {row['get_p99_us']:.0f} µs, "
            f"fill {row['fill_s']:.1f} s, all done {row['all_done']}, "
            f"other load {row['foreign_cores_during_lookups']:.2f} cores"
        )
    smallest, largest = rows[0], rows[-1]
    p99_ratio = largest["get_p99_us"] / smallest["get_p99_us"]
    print()
    print(
        table(
            [
                "stored tasks",
                "RSS delta MB",
                "bytes/task",
                "get p50 µs",
                "get p99 µs",
                "fill s",
                "all done",
            ],
            [
                [
                    r["tasks"],
                    f"{r['rss_after_mb'] - r['rss_before_mb']:.1f}",
                    r["bytes_per_task"],
                    r["get_p50_us"],
                    r["get_p99_us"],
                    f"{r['fill_s']:.1f}",
                    r["all_done"],
                ]
                for r in rows
            ],
        )
    )
    print(f"\nGET p99 at {largest['tasks']:,} / at {smallest['tasks']:,}: {p99_ratio:.2f}")
    results = {"lookups": args.lookups, "rows": rows, "get_p99_ratio": p99_ratio}
    print(f"written: {write_json('memory', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
