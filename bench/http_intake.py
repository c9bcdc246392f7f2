"""Benchmark 1: HTTP intake of the service against the framework limit (the bare app).

    python bench/http_intake.py [--rounds 3] [--duration 10] [--connections 16]

Each round starts ``python main.py`` (no-op handler, a line too big to ever fill) and then the
bare app, each fresh on a free port with the same waitress thread count, warms it up, and loads
POST /enqueue with wrk (unique ids). After each service run, GET /tasks must show every accepted
task done. Reported: medians over the rounds, and the ratio service / bare.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from common import default_http_threads, median, table, write_json
from servers import KINDS, Kind, serving, wait_all_done
from wrkrun import require_wrk, run_wrk, run_wrk_quietly

if TYPE_CHECKING:
    from collections.abc import Sequence

WARMUP_S = 2.0


def measure(
    kind: Kind, connections: int, duration_s: float, threads: int, name: str
) -> dict[str, Any]:
    """One fresh server: warmup, measured run, and (for the service) the done check."""
    with serving(kind, threads, name) as server:
        warmup = run_wrk(server.port, connections, WARMUP_S, server.process.pid)
        result, accepted = run_wrk_quietly(server.port, connections, duration_s, server.process.pid)
        row = result.as_dict()
        if kind == "service":
            accepted += warmup.accepted
            check = wait_all_done(server.port, accepted)
            row["done_check"] = {
                "accepted_by_wrk": accepted,
                "stored": check.stored,
                "statuses": check.statuses,
                "all_done": check.all_done and check.stored >= accepted,
                "seconds_to_done": check.seconds,
            }
    return row


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps": median([run["rps"] for run in runs]),
        "p50_ms": median([run["p50_ms"] for run in runs]),
        "p99_ms": median([run["p99_ms"] for run in runs]),
        "cpu_us_per_request": median([run["cpu_us_per_request"] for run in runs]),
        "non_2xx": sum(run["non_2xx"] for run in runs),
        "socket_errors": sum(run["socket_errors"] for run in runs),
        "rounds": len(runs),
        "max_foreign_cores": max(run["foreign_cores"] for run in runs),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="HTTP intake: service vs bare Falcon+waitress")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", help="output file (default bench/out/http_intake.json)")
    args = parser.parse_args(argv)
    require_wrk()
    threads = default_http_threads()
    print(
        f"HTTP intake: {args.connections} connections, {args.rounds} x {args.duration:g} s "
        f"per server, {threads} waitress threads each"
    )
    runs: dict[Kind, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for round_number in range(1, args.rounds + 1):
        for kind in KINDS:
            name = f"intake-{kind}-{round_number}"
            row = measure(kind, args.connections, args.duration, threads, name)
            runs[kind].append(row)
            done = row.get("done_check")
            print(
                f"  round {round_number} {kind:7}: {row['rps']:8,.0f} req/s  "
                f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
                f"non-2xx {row['non_2xx']}  socket errors {row['socket_errors']}  "
                f"other load {row['foreign_cores']:.2f} cores"
                + (f"  all done: {done['all_done']} ({done['stored']:,} tasks)" if done else "")
            )
    summary = {kind: summarize(runs[kind]) for kind in KINDS}
    ratio = summary["service"]["rps"] / summary["bare"]["rps"]
    all_done = all(run["done_check"]["all_done"] for run in runs["service"])
    print()
    print(
        table(
            ["server", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors", "CPU µs/req"],
            [
                [
                    kind,
                    s["rps"],
                    s["p50_ms"],
                    s["p99_ms"],
                    s["non_2xx"],
                    s["socket_errors"],
                    s["cpu_us_per_request"],
                ]
                for kind, s in summary.items()
            ],
        )
    )
    print(f"\nratio service / bare: {ratio:.2f}   every accepted task done: {all_done}")
    results = {
        "connections": args.connections,
        "duration_s": args.duration,
        "http_threads": threads,
        "runs": runs,
        "summary": summary,
        "ratio": ratio,
        "all_accepted_done": all_done,
    }
    print(f"written: {write_json('http_intake', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
