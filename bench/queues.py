"""Queues: intake and engine figures with four queues against one, paired in the same run.

    python bench/queues.py [--tasks 20000] [--rounds 3] [--bursts 6] [--burst 3] [--cluster]

Engine (in-process, thread mode, no HTTP): N no-op tasks through a TaskSystem with one queue of
four workers, and through one with four queues of one worker each, the tasks dealt round-robin
over the queues; the two alternate, round after round, so each pair runs under the same load of
this shared machine. Reported: tasks/s, how long enqueueing alone took, and this process's CPU
per task (medians), and the median of the per-round ratios.

Intake (HTTP): two services started once, ``WORKERS=4`` and ``QUEUES=q0:1,q1:1,q2:1,q3:1``,
loaded in turn with short wrk bursts of POST /enqueue (bench/paired.py; the bodies of the second
name its queues in turn, bench/queue_ids.lua). Reported: the median of the per-pair ratios, and
each server's CPU per request.

``--cluster``: the intake alone, both services in cluster mode, each on a fresh database of a
private PostgreSQL 15 server (bench/pg_common.py: fsync on), as one instance of a cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from common import BENCH_DIR, free_port, median, start_service, stop, table, wait_ready, write_json
from paired import Target, describe, paired_bursts

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

WORKERS: Final = 4
FOUR: Final = tuple(f"q{n}" for n in range(WORKERS))
COMPLETION_TIMEOUT_S: Final = 300.0
SCRIPT: Final = BENCH_DIR / "queue_ids.lua"
BIG_QUEUE: Final = 10_000_000


def run_engine(n: int, queues: Sequence[str]) -> dict[str, Any]:
    """N no-op tasks dealt round-robin over ``queues`` (one: ``default`` with every worker)."""
    from actors import Admission, TaskSystem, new_task
    from actors.queues import QueueSpec

    done = threading.Event()
    count = [0]
    lock = threading.Lock()

    def noop(task: object) -> None:
        with lock:
            count[0] += 1
            if count[0] == n:
                done.set()

    per_queue = WORKERS // len(queues)
    specs = tuple(QueueSpec(name, per_queue) for name in queues)
    system = TaskSystem.start(noop, queue_size=n, queues=specs)
    try:
        tasks = [new_task(f"t-{i}", b'"x"', 3, queue=queues[i % len(queues)]) for i in range(n)]
        cpu_before = time.process_time()
        started = time.perf_counter()
        replies = [system.submit_async(task) for task in tasks]
        enqueued = time.perf_counter()
        if not done.wait(COMPLETION_TIMEOUT_S):
            raise RuntimeError(f"only {count[0]} of {n} tasks completed")
        finished = time.perf_counter()
        cpu_s = time.process_time() - cpu_before
        refused = sum(1 for reply in replies if reply.get(timeout=10) is not Admission.ACCEPTED)
    finally:
        summary = system.stop(time.monotonic() + 10)
    return {
        "tasks_per_s": n / (finished - started),
        "enqueue_s": enqueued - started,
        # This process's CPU (every thread's), per task: less moved by other processes than
        # the rate is, on a shared machine.
        "cpu_us_per_task": cpu_s / n * 1e6,
        "ok": refused == 0 and summary.counts.get("done") == n,
    }


def engine(n: int, rounds: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"one queue": [], "four queues": []}
    for number in range(rounds):
        order = [("one queue", ("default",)), ("four queues", FOUR)]
        for name, queues in order if number % 2 == 0 else order[::-1]:
            row = run_engine(n, queues)
            runs[name].append(row)
            print(
                f"  engine round {number + 1} {name:11} {row['tasks_per_s']:8,.0f} tasks/s "
                f"(enqueue {row['enqueue_s']:.2f} s, CPU {row['cpu_us_per_task']:.0f} µs/task, "
                f"ok {row['ok']})"
            )
    ratios = [
        four["tasks_per_s"] / one["tasks_per_s"]
        for one, four in zip(runs["one queue"], runs["four queues"], strict=True)
    ]

    def medians(field: str) -> dict[str, float]:
        return {name: median([row[field] for row in rows]) for name, rows in runs.items()}

    return {
        "runs": runs,
        "tasks_per_s": medians("tasks_per_s"),
        "enqueue_s": medians("enqueue_s"),
        "cpu_us_per_task": medians("cpu_us_per_task"),
        "median_pair_ratio_four_over_one": median(ratios),
        "all_ok": all(r["ok"] for rows in runs.values() for r in rows),
    }


@contextlib.contextmanager
def databases(cluster: bool) -> Iterator[dict[str, dict[str, str]]]:
    """With ``cluster``, each service's DATABASE_URL on a private server; else nothing."""
    if not cluster:
        yield {"one queue": {}, "four queues": {}}
        return
    from pg_common import bench_server

    with bench_server() as server:
        yield {
            name: {"DATABASE_URL": server.url(server.create_database(f"queues{n}"))}
            for n, name in enumerate(("one queue", "four queues"))
        }


def intake(
    connections: int, burst_s: float, bursts: int, stores: dict[str, dict[str, str]]
) -> dict[str, Any]:
    ports = {"one queue": free_port(), "four queues": free_port()}
    settings = {
        "one queue": {"WORKERS": str(WORKERS), **stores["one queue"]},
        "four queues": {
            "QUEUES": ",".join(f"{name}:1" for name in FOUR),
            **stores["four queues"],
        },
    }
    os.environ["BENCH_QUEUES"] = f"{ports['four queues']}={','.join(FOUR)}"
    processes = {}
    try:
        for name, port in ports.items():
            processes[name] = start_service(
                port,
                f"queues-{name.replace(' ', '-')}",
                TASK_HANDLER="actors.handlers:noop",
                QUEUE_SIZE=str(BIG_QUEUE),
                **settings[name],
            )
        for name, port in ports.items():
            wait_ready(port, processes[name])
        four = Target("four queues", ports["four queues"], processes["four queues"].pid)
        one = Target("one queue", ports["one queue"], processes["one queue"].pid)
        outcome = paired_bursts(
            four, one, connections=connections, burst_s=burst_s, bursts=bursts, script=SCRIPT
        )
    finally:
        for process in processes.values():
            stop(process)
    print("  intake " + describe(outcome, "four queues", "one queue"))
    return {
        "rates": outcome["rates"],
        "median_rate": {name: median(rates) for name, rates in outcome["rates"].items()},
        "median_pair_ratio_four_over_one": outcome["median_pair_ratio"],
        "pair_ratios": outcome["pair_ratios"],
        "non_2xx": outcome["non_2xx"],
        "socket_errors": outcome["socket_errors"],
        "cpu_us_per_request": outcome["cpu_us_per_request"],
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Four queues against one: engine and intake")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--burst", type=float, default=3.0, help="seconds per wrk burst")
    parser.add_argument("--bursts", type=int, default=6, help="pairs of bursts")
    parser.add_argument("--engine-only", action="store_true", help="skip the HTTP intake")
    parser.add_argument(
        "--cluster", action="store_true", help="intake only, both services on PostgreSQL"
    )
    parser.add_argument("--json", help="output file (default bench/out/queues.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, Any] = {"workers": WORKERS, "cluster": args.cluster}
    rows: list[list[Any]] = []
    if not args.cluster:
        print(
            f"Queues: engine {args.tasks:,} no-op tasks x {args.rounds} rounds, {WORKERS} workers"
        )
        results["engine"] = engine_results = engine(args.tasks, args.rounds)
        rows += [
            [
                "engine tasks/s",
                engine_results["tasks_per_s"]["one queue"],
                engine_results["tasks_per_s"]["four queues"],
                f"{engine_results['median_pair_ratio_four_over_one']:.3f}",
            ],
            [
                "engine CPU µs/task",
                engine_results["cpu_us_per_task"]["one queue"],
                engine_results["cpu_us_per_task"]["four queues"],
                "",
            ],
        ]
    if not args.engine_only:
        where = "on PostgreSQL (cluster mode)" if args.cluster else "in memory"
        print(f"Queues: intake {where}, {args.bursts} pairs of {args.burst:g} s wrk bursts")
        with databases(args.cluster) as stores:
            intake_results = intake(args.connections, args.burst, args.bursts, stores)
        results["intake"] = intake_results
        rows += [
            [
                "intake req/s",
                intake_results["median_rate"]["one queue"],
                intake_results["median_rate"]["four queues"],
                f"{intake_results['median_pair_ratio_four_over_one']:.3f}",
            ],
            [
                "intake CPU µs/request",
                intake_results["cpu_us_per_request"]["one queue"],
                intake_results["cpu_us_per_request"]["four queues"],
                "",
            ],
        ]
    print()
    print(table(["", "one queue", "four queues", "four / one (median of pairs)"], rows))
    name = "queues-cluster" if args.cluster else "queues"
    print(f"written: {write_json(name, results, args.json)}")
    return results


if __name__ == "__main__":
    main()
