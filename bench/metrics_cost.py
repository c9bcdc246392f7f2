"""What metrics cost: HTTP intake of the service with metrics on against the same with them off.

    python bench/metrics_cost.py [--rounds 3] [--duration 10] [--connections 16]

Each round starts ``python main.py`` (no-op handler, a line too big to ever fill) once with
``METRICS=1`` and once with ``METRICS=0``, fresh on a free port, warms it up and loads
POST /enqueue with wrk (unique ids), as bench/http_intake.py does. The order alternates from
round to round, so that a drift in the machine's load does not favour one side. Before stopping,
the metrics-on service is scraped (its enqueue counter must have seen every 201) and the other
must have no /metrics. Reported: medians over the rounds and the ratio on / off (issue 6 asks for
at least 0.95).
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, Literal

from common import (
    BIG_QUEUE,
    NOOP_HANDLER,
    default_http_threads,
    free_port,
    http_request,
    median,
    start_service,
    stop,
    table,
    wait_ready,
    write_json,
)
from wrkrun import require_wrk, run_wrk, run_wrk_quietly

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator, Sequence

Mode = Literal["on", "off"]
MODES: Final[tuple[Mode, Mode]] = ("on", "off")
WARMUP_S: Final = 2.0
TARGET_RATIO: Final = 0.95
"""Issue 6: intake with metrics on within 5% of the same run with them off."""


@contextmanager
def serving(mode: Mode, threads: int, name: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    process = start_service(
        port,
        name,
        TASK_HANDLER=NOOP_HANDLER,
        QUEUE_SIZE=str(BIG_QUEUE),
        HTTP_THREADS=str(threads),
        METRICS="1" if mode == "on" else "0",
    )
    try:
        wait_ready(port, process)
        yield port, process
    finally:
        code = stop(process)
        if code != 0:
            print(f"  warning: exited with code {code} (see bench/out/logs/{name}.log)")


def enqueued_per_metrics(port: int) -> int | None:
    """The service's own count of accepted tasks, from /metrics; None without /metrics."""
    status, body = http_request(port, "GET", "/metrics", timeout_s=30.0)
    if status == 404:
        return None
    if status != 200:
        raise RuntimeError(f"GET /metrics answered {status}")
    for line in body.decode().splitlines():
        if line.startswith("taskqueue_tasks_enqueued_total "):
            return int(float(line.split()[1]))
    raise RuntimeError("no taskqueue_tasks_enqueued_total in /metrics")


def measure(
    mode: Mode, connections: int, duration_s: float, threads: int, name: str
) -> dict[str, Any]:
    with serving(mode, threads, name) as (port, process):
        warmup = run_wrk(port, connections, WARMUP_S, process.pid)
        result, accepted = run_wrk_quietly(port, connections, duration_s, process.pid)
        counted = enqueued_per_metrics(port)
    row = result.as_dict()
    accepted += warmup.accepted
    # wrk may stop reading just as a few more 201s go out: the service can count a few more.
    row["metrics_check"] = (counted is None) if mode == "off" else (counted or 0) >= accepted
    row["enqueued_per_metrics"] = counted
    row["accepted_by_wrk"] = accepted
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
        "metrics_checks_passed": all(run["metrics_check"] for run in runs),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="HTTP intake with metrics on vs off")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", help="output file (default bench/out/metrics_cost.json)")
    args = parser.parse_args(argv)
    require_wrk()
    threads = default_http_threads()
    print(
        f"Metrics cost: {args.connections} connections, {args.rounds} x {args.duration:g} s "
        f"per mode, {threads} waitress threads, order alternating by round"
    )
    runs: dict[Mode, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for round_number in range(1, args.rounds + 1):
        order = MODES if round_number % 2 else MODES[::-1]
        for mode in order:
            name = f"metrics-{mode}-{round_number}"
            row = measure(mode, args.connections, args.duration, threads, name)
            runs[mode].append(row)
            print(
                f"  round {round_number} metrics {mode:3}: {row['rps']:8,.0f} req/s  "
                f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
                f"CPU {row['cpu_us_per_request']:.0f} µs/req  non-2xx {row['non_2xx']}  "
                f"other load {row['foreign_cores']:.2f} cores  "
                f"metrics check: {'ok' if row['metrics_check'] else 'FAILED'}"
            )
    summary = {mode: summarize(runs[mode]) for mode in MODES}
    ratio = summary["on"]["rps"] / summary["off"]["rps"]
    # Per round too: both modes of a round ran back to back, under the most similar load.
    round_ratios = [on["rps"] / off["rps"] for on, off in zip(runs["on"], runs["off"], strict=True)]
    print()
    print(
        table(
            ["metrics", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors", "CPU µs/req"],
            [
                [
                    mode,
                    s["rps"],
                    s["p50_ms"],
                    s["p99_ms"],
                    s["non_2xx"],
                    s["socket_errors"],
                    s["cpu_us_per_request"],
                ]
                for mode, s in summary.items()
            ],
        )
    )
    print(
        f"\nratio metrics on / off: {ratio:.3f} (per round: "
        f"{', '.join(f'{r:.3f}' for r in round_ratios)}); "
        f"within {1 - TARGET_RATIO:.0%}: {'yes' if ratio >= TARGET_RATIO else 'NO'}"
    )
    results = {
        "connections": args.connections,
        "duration_s": args.duration,
        "http_threads": threads,
        "runs": runs,
        "summary": summary,
        "ratio": ratio,
        "round_ratios": round_ratios,
        "within_target": ratio >= TARGET_RATIO,
    }
    print(f"written: {write_json('metrics_cost', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
