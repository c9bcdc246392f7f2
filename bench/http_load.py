"""Benchmark 2: load held. The service (and the bare app, for the chart) at 16, 64, 256 conns.

    python bench/http_load.py [--connections 16 64 256] [--duration 10] [--http-threads N]

For each connection count, each server starts fresh, is warmed up, then loaded with wrk
(POST /enqueue, unique ids). Reported per run: requests/s, p50/p99, errors (socket errors and
non-2xx), and for the service its throughput relative to its 16-connection figure.
bench/chart.py draws bench/out/http_load.json.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from common import default_http_threads, table, write_json
from servers import KINDS, serving, wait_all_done
from wrkrun import require_wrk, run_wrk, run_wrk_quietly

if TYPE_CHECKING:
    from collections.abc import Sequence

WARMUP_S = 2.0


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Load held: throughput and p99 vs connections")
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument(
        "--http-threads", type=int, help="waitress threads for both (default: the service's)"
    )
    parser.add_argument("--json", help="output file (default bench/out/http_load.json)")
    args = parser.parse_args(argv)
    require_wrk()
    threads = args.http_threads or default_http_threads()
    print(
        f"Load held: {args.connections} connections, {args.duration:g} s per run, "
        f"{threads} waitress threads"
    )
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for connections in args.connections:
        for kind in KINDS:
            with serving(kind, threads, f"load-{kind}-{connections}") as server:
                warmup = run_wrk(server.port, connections, WARMUP_S, server.process.pid)
                row, accepted = run_wrk_quietly(
                    server.port, connections, args.duration, server.process.pid
                )
                figures = row.as_dict()
                if kind == "service":
                    check = wait_all_done(server.port, warmup.accepted + accepted)
                    figures["all_done"] = check.all_done
            runs[kind].append(figures)
            print(
                f"  {kind:7} c={connections:<4} {row.rps:8,.0f} req/s  "
                f"p99 {row.p99_ms:7.2f} ms  non-2xx {row.non_2xx}  "
                f"socket errors {row.socket_errors}  other load {row.foreign_cores:.2f} cores"
            )
    base = runs["service"][0]["rps"]
    for figures in runs["service"]:
        figures["vs_first"] = figures["rps"] / base
    print()
    print(
        table(
            [
                "server",
                "connections",
                "req/s",
                "p50 ms",
                "p99 ms",
                "non-2xx",
                "socket errors",
                "vs first",
            ],
            [
                [
                    kind,
                    r["connections"],
                    r["rps"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["non_2xx"],
                    r["socket_errors"],
                    f"{r['vs_first']:.0%}" if "vs_first" in r else "",
                ]
                for kind in KINDS
                for r in runs[kind]
            ],
        )
    )
    results = {"duration_s": args.duration, "http_threads": threads, "runs": runs}
    print(f"written: {write_json('http_load', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
