"""Benchmark 3: the engine in-process against its peers, no HTTP.

    python bench/engine.py [--tasks 20000] [--rounds 3]

N no-op tasks through actors.TaskSystem (4 workers, a line big enough for all) in thread mode
and in process mode, Huey's MemoryHuey (consumer with 4 worker threads) and Dramatiq's
StubBroker (Worker with 4 worker threads), alternating in the same run. Each engine is started
idle first; the clock runs from the first enqueue to the N-th handler return (every handler
bumps one shared counter, the same for all; in process mode the handler runs in a worker
process, so the counter is bumped as each worker hears its attempt ended, which is later).
Reported: tasks/s (median of the rounds) and how long enqueueing alone took. For the
TaskSystem, the shutdown summary (from the repository) must count all N as done.

Process mode's children import this script's ``__main__`` again (as multiprocessing does), so
the script runs from bench/ (see bench/process_runner.py) before the first child starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from common import BENCH_DIR, CpuWatch, median, quiet_measurement, table, write_json

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

WORKERS: Final = 4
COMPLETION_TIMEOUT_S: Final = 300.0


class Finish:
    """Counts handler returns on any thread; ``event`` is set at the N-th."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.event = threading.Event()
        self.at = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def one_done(self) -> None:
        with self._lock:
            self._count += 1
            if self._count == self.expected:
                self.at = time.perf_counter()
                self.event.set()

    def wait(self) -> None:
        if not self.event.wait(COMPLETION_TIMEOUT_S):
            raise RuntimeError(f"only {self._count} of {self.expected} tasks completed")


def run_actors(n: int) -> dict[str, Any]:
    from actors import Admission, TaskSystem, new_task

    finish = Finish(n)

    def noop(task: object) -> None:
        finish.one_done()

    system = TaskSystem.start(noop, workers=WORKERS, queue_size=n)
    try:
        tasks = [new_task(f"task-{i}", b'"x"', 3) for i in range(n)]
        started = time.perf_counter()
        replies = [system.submit_async(task) for task in tasks]
        enqueued = time.perf_counter()
        finish.wait()
        refused = sum(1 for reply in replies if reply.get(timeout=10) is not Admission.ACCEPTED)
    finally:
        # The shutdown summary's counts come from the repository: all N must be stored done.
        summary = system.stop(time.monotonic() + 10)
    ok = refused == 0 and summary.counts.get("done") == n
    return _row(n, started, enqueued, finish.at, ok=ok)


class FinishedAttempts:
    """An AttemptObserver that counts each attempt's end: process mode's "handler returned",
    heard on the worker's thread in this process."""

    def __init__(self, finish: Finish) -> None:
        self._finish = finish

    def attempt_ended(self, task: object, outcome: object, duration_s: float) -> None:
        self._finish.one_done()


def run_actors_process(n: int) -> dict[str, Any]:
    from actors import Admission, TaskSystem, new_task
    from actors.handlers import HandlerSpec
    from actors.runners import process_runners

    finish = Finish(n)
    runners = process_runners(HandlerSpec("actors.handlers:noop"), result_max_bytes=65_536)
    system = TaskSystem.start(
        runners=runners, workers=WORKERS, queue_size=n, observer=FinishedAttempts(finish)
    )
    try:
        tasks = [new_task(f"task-{i}", b'"x"', 3) for i in range(n)]
        started = time.perf_counter()
        replies = [system.submit_async(task) for task in tasks]
        enqueued = time.perf_counter()
        finish.wait()
        refused = sum(1 for reply in replies if reply.get(timeout=10) is not Admission.ACCEPTED)
    finally:
        summary = system.stop(time.monotonic() + 10)
    ok = refused == 0 and summary.counts.get("done") == n
    return _row(n, started, enqueued, finish.at, ok=ok)


def run_huey(n: int) -> dict[str, Any]:
    from huey import MemoryHuey

    finish = Finish(n)
    huey = MemoryHuey(name="bench", results=False)

    @huey.task()
    def noop() -> None:
        finish.one_done()

    # Short polling delays: an idle Huey worker sleeps 0.1 s+ between polls by default, which
    # would make this comparison measure Huey's sleep instead of its throughput.
    consumer = huey.create_consumer(
        workers=WORKERS,
        worker_type="thread",
        periodic=False,
        initial_delay=0.001,
        max_delay=0.01,
        check_worker_health=False,
    )
    consumer.start()
    try:
        started = time.perf_counter()
        for _ in range(n):
            noop()
        enqueued = time.perf_counter()
        finish.wait()
    finally:
        consumer.stop(graceful=True)
    return _row(n, started, enqueued, finish.at, ok=True)


def run_dramatiq(n: int) -> dict[str, Any]:
    import dramatiq
    from dramatiq.brokers.stub import StubBroker

    finish = Finish(n)
    broker = StubBroker()
    broker.emit_after("process_boot")

    @dramatiq.actor(broker=broker, max_retries=0)
    def noop() -> None:
        finish.one_done()

    worker = dramatiq.Worker(broker, worker_threads=WORKERS, worker_timeout=100)
    worker.start()
    try:
        started = time.perf_counter()
        for _ in range(n):
            noop.send()
        enqueued = time.perf_counter()
        finish.wait()
    finally:
        worker.stop()
        broker.close()
    return _row(n, started, enqueued, finish.at, ok=True)


def _row(n: int, started: float, enqueued: float, finished: float, *, ok: bool) -> dict[str, Any]:
    return {
        "tasks": n,
        "enqueue_s": enqueued - started,
        "total_s": finished - started,
        "tasks_per_s": n / (finished - started),
        "ok": ok,
    }


def watched(run: Callable[[int], dict[str, Any]], n: int) -> dict[str, Any]:
    watch = CpuWatch()
    row = run(n)
    row["foreign_cores"] = watch.foreign_cores()
    return row


def _disturbance(row: dict[str, Any]) -> float:
    return float(row["foreign_cores"])


ENGINES: Final[dict[str, Callable[[int], dict[str, Any]]]] = {
    "task_queue (actors)": run_actors,
    "task_queue process mode": run_actors_process,
    "huey MemoryHuey": run_huey,
    "dramatiq StubBroker": run_dramatiq,
}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Engine in-process vs Huey and Dramatiq")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="output file (default bench/out/engine.json)")
    args = parser.parse_args(argv)
    os.chdir(BENCH_DIR)  # before the forkserver starts (see the docstring)
    # The peers log every start and stop at INFO; the figures are what matters here.
    logging.basicConfig(level=logging.WARNING)
    print(f"Engine: {args.tasks:,} no-op tasks, {WORKERS} workers, {args.rounds} rounds each")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ENGINES}
    for round_number in range(1, args.rounds + 1):
        for name, run in ENGINES.items():
            row, _ = quiet_measurement(partial(watched, run, args.tasks), _disturbance)
            runs[name].append(row)
            print(
                f"  round {round_number} {name:20} {row['tasks_per_s']:8,.0f} tasks/s  "
                f"(enqueue {row['enqueue_s']:.2f} s, total {row['total_s']:.2f} s, "
                f"ok {row['ok']}, other load {row['foreign_cores']:.2f} cores)"
            )
    summary = {
        name: {
            "tasks_per_s": median([r["tasks_per_s"] for r in rows]),
            "enqueue_s": median([r["enqueue_s"] for r in rows]),
            "total_s": median([r["total_s"] for r in rows]),
            "all_ok": all(r["ok"] for r in rows),
        }
        for name, rows in runs.items()
    }
    actors = summary["task_queue (actors)"]["tasks_per_s"]
    print()
    print(
        table(
            ["engine", "tasks/s", "enqueue s", "total s", "task_queue / this"],
            [
                [
                    name,
                    s["tasks_per_s"],
                    f"{s['enqueue_s']:.2f}",
                    f"{s['total_s']:.2f}",
                    f"{actors / s['tasks_per_s']:.2f}",
                ]
                for name, s in summary.items()
            ],
        )
    )
    results = {"tasks": args.tasks, "workers": WORKERS, "runs": runs, "summary": summary}
    print(f"written: {write_json('engine', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
