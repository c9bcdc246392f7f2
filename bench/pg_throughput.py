"""End-to-end tasks/s with 1, 2 and 3 instances on one PostgreSQL database.

    python bench/pg_throughput.py [--rounds 3] [--tasks 10000] [--clients 16] [--workers 4]
                                  [--worker-mode process]

Each round, for each instance count (the order turning from round to round), a fresh database on
a private PostgreSQL 15 (bench/pg_common.py: fsync on), that many ``python main.py`` on it with
the no-op handler, and ``--tasks`` tasks sent to them by ``--clients`` HTTP clients spread over
the instances while they run. Reported: tasks/s end to end (from the first enqueue to the last
task's end, its ``updated_at``), the intake rate, and how many attempts each instance made.

On a 2-core machine the instances, their worker processes, PostgreSQL and the clients share two
cores: more instances bring more workers, not more cores, so the figure says what the
coordination costs (claims, leases, wake-ups), not how far the cluster scales on real machines.
"Other load" counts everything but this script and the instances' own processes: their worker
processes and PostgreSQL are in it too, so it reads high even on a quiet machine.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from common import median, table, write_json
from pg_common import bench_server, run_service

if TYPE_CHECKING:
    from collections.abc import Sequence

COUNTS = (1, 2, 3)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="tasks/s with 1, 2 and 3 instances on one DB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="WORKERS of each instance")
    parser.add_argument("--worker-mode", default="process", choices=("process", "thread"))
    parser.add_argument("--json", help="output file (default bench/out/pg_throughput.json)")
    args = parser.parse_args(argv)
    settings = {"WORKERS": str(args.workers), "WORKER_MODE": args.worker_mode}
    runs: dict[int, list[dict[str, Any]]] = {count: [] for count in COUNTS}
    with bench_server() as server:
        print(
            f"PostgreSQL throughput: {args.tasks:,} no-op tasks, {args.clients} clients, "
            f"WORKERS={args.workers} WORKER_MODE={args.worker_mode} per instance, "
            f"{args.rounds} round(s), fsync on"
        )
        for round_number in range(1, args.rounds + 1):
            turn = (round_number - 1) % len(COUNTS)
            for count in COUNTS[turn:] + COUNTS[:turn]:
                name = f"pg-throughput-{count}x-{round_number}"
                row = run_service(server, count, args.tasks, args.clients, name, **settings)
                runs[count].append(row)
                print(
                    f"  round {round_number} {count} instance(s): "
                    f"{row['tasks_per_s']:7,.0f} tasks/s end to end  "
                    f"intake {row['intake_per_s']:7,.0f}/s  refused {row['refused'] or 0}  "
                    f"attempts by instance {row['attempts_by_instance']}  "
                    f"other load {row['foreign_cores']:.2f} cores"
                )
    summary = {
        count: {
            "tasks_per_s": median([run["tasks_per_s"] for run in runs[count]]),
            "intake_per_s": median([run["intake_per_s"] for run in runs[count]]),
            "end_to_end_s": median([run["end_to_end_s"] for run in runs[count]]),
            "refused": sum(sum(run["refused"].values()) for run in runs[count]),
        }
        for count in COUNTS
    }
    print()
    print(
        table(
            ["instances", "tasks/s end to end", "intake/s", "seconds", "refused"],
            [
                [count, s["tasks_per_s"], s["intake_per_s"], s["end_to_end_s"], s["refused"]]
                for count, s in summary.items()
            ],
        )
    )
    results = {"settings": vars(args), "runs": runs, "summary": summary}
    print(f"written: {write_json('pg_throughput', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
