"""PostgreSQL's cost on intake: the service with DATABASE_URL against memory only, same run.

    python bench/pg_intake.py [--rounds 3] [--duration 10] [--connections 16]

Each round starts ``python main.py`` twice, memory only and on a fresh database of a private
PostgreSQL 15 server (bench/pg_common.py: fsync on), the order alternating from round to round
so a drift of the machine does not favour one. Each is warmed up and loaded with wrk on
POST /enqueue (unique ids, no-op handler, a line too big to fill) exactly as
bench/durable_intake.py does with SQLite. Afterwards every accepted task must be done, and for
PostgreSQL, after a graceful stop, the table must hold every one of them as done. Reported:
medians over the rounds and the ratio PostgreSQL / memory (target: at least 0.5, with no answer
but 201). The "other load" of a PostgreSQL run counts the server's own processes too (wrk's
watch knows only the service's pid), so a run there is repeated more readily for quiet.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Final, Literal

from common import BIG_QUEUE, NOOP_HANDLER, default_http_threads, median, table, write_json
from pg_common import bench_server, instances, task_counts
from servers import wait_all_done
from wrkrun import require_wrk, run_wrk, run_wrk_quietly

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tests.pg_server import PgServer

Mode = Literal["memory", "postgres"]
MODES: Final[tuple[Mode, Mode]] = ("memory", "postgres")
WARMUP_S: Final = 2.0
TARGET: Final = 0.5


def measure(
    mode: Mode, server: PgServer, connections: int, duration_s: float, threads: int, name: str
) -> dict[str, Any]:
    """Warmup, measured run, the done check, and (postgres) the table after a graceful stop."""
    database = server.create_database("intake") if mode == "postgres" else None
    url = server.url(database) if database is not None else None
    settings = {"TASK_HANDLER": NOOP_HANDLER, "QUEUE_SIZE": str(BIG_QUEUE)}
    with instances(1, url, name, HTTP_THREADS=str(threads), **settings) as [instance]:
        warmup = run_wrk(instance.port, connections, WARMUP_S, instance.process.pid)
        result, accepted = run_wrk_quietly(
            instance.port, connections, duration_s, instance.process.pid
        )
        accepted += warmup.accepted
        check = wait_all_done(instance.port, accepted)
    row = result.as_dict()
    row["done_check"] = {
        "accepted_by_wrk": accepted,
        "stored": check.stored,
        "all_done": check.all_done and check.stored >= accepted,
    }
    if url is not None and database is not None:
        in_table = task_counts(url)
        row["done_check"]["in_table_after_stop"] = in_table
        # A few requests wrk gave up on may still land after the check: at least as many.
        row["done_check"]["all_done"] &= (
            set(in_table) == {"done"} and in_table["done"] >= check.stored
        )
        server.drop_database(database)
    return row


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps": median([run["rps"] for run in runs]),
        "p50_ms": median([run["p50_ms"] for run in runs]),
        "p99_ms": median([run["p99_ms"] for run in runs]),
        "cpu_us_per_request": median([run["cpu_us_per_request"] for run in runs]),
        "non_2xx": sum(run["non_2xx"] for run in runs),
        "socket_errors": sum(run["socket_errors"] for run in runs),
        "all_done": all(run["done_check"]["all_done"] for run in runs),
        "rounds": len(runs),
        "max_foreign_cores": max(run["foreign_cores"] for run in runs),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="HTTP intake: DATABASE_URL set vs memory only")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", help="output file (default bench/out/pg_intake.json)")
    args = parser.parse_args(argv)
    require_wrk()
    threads = default_http_threads()
    runs: dict[Mode, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with bench_server() as server:
        print(
            f"PostgreSQL intake: {args.connections} connections, {args.rounds} x "
            f"{args.duration:g} s per mode, {threads} waitress threads, "
            f"{server.sql('SELECT version()').split(' on ')[0]} on port {server.port}, fsync on"
        )
        for round_number in range(1, args.rounds + 1):
            order = MODES if round_number % 2 else MODES[::-1]
            for mode in order:
                name = f"pg-intake-{mode}-{round_number}"
                row = measure(mode, server, args.connections, args.duration, threads, name)
                runs[mode].append(row)
                print(
                    f"  round {round_number} {mode:8}: {row['rps']:8,.0f} req/s  "
                    f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
                    f"non-2xx {row['non_2xx']}  other load {row['foreign_cores']:.2f} cores  "
                    f"all done: {row['done_check']['all_done']} "
                    f"({row['done_check']['stored']:,} tasks)"
                )
    summary = {mode: summarize(runs[mode]) for mode in MODES}
    ratio = summary["postgres"]["rps"] / summary["memory"]["rps"]
    print()
    print(
        table(
            ["mode", "req/s", "p50 ms", "p99 ms", "non-2xx", "CPU µs/req", "all done"],
            [
                [
                    mode,
                    s["rps"],
                    s["p50_ms"],
                    s["p99_ms"],
                    s["non_2xx"],
                    s["cpu_us_per_request"],
                    s["all_done"],
                ]
                for mode, s in summary.items()
            ],
        )
    )
    met = ratio >= TARGET and summary["postgres"]["non_2xx"] == 0
    print(f"\nratio postgres / memory: {ratio:.2f} ({'meets' if met else 'MISSES'} the target:")
    print(f"at least {TARGET}, no answer but 201)")
    results = {
        "connections": args.connections,
        "duration_s": args.duration,
        "http_threads": threads,
        "runs": runs,
        "summary": summary,
        "ratio": ratio,
        "target": TARGET,
    }
    print(f"written: {write_json('pg_intake', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
