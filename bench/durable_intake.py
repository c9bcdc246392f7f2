"""Durability's cost: HTTP intake of the service with DB_PATH set against without, same run.

    python bench/durable_intake.py [--rounds 3] [--duration 10] [--connections 16] [--db-dir DIR]

Each round starts ``python main.py`` twice, in memory and with a fresh SQLite file under
``--db-dir`` (a temporary directory by default; put it on the disk you mean to measure), the
order alternating from round to round so a drift of the machine does not favour one. Each is
warmed up and loaded with wrk on POST /enqueue (unique ids, no-op handler, a line too big to
fill), exactly as bench/http_intake.py does. Afterwards every accepted task must be done, and
for the durable runs, after a graceful stop, the file must hold every one of them as done.
Reported: medians over the rounds and the ratio durable / memory (target: at least 0.8).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from common import (
    BIG_QUEUE,
    NOOP_HANDLER,
    default_http_threads,
    free_port,
    median,
    start_service,
    stop,
    table,
    wait_ready,
    write_json,
)
from servers import wait_all_done
from wrkrun import require_wrk, run_wrk, run_wrk_quietly

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator, Sequence

Mode = Literal["memory", "durable"]
MODES: Final[tuple[Mode, Mode]] = ("memory", "durable")
WARMUP_S: Final = 2.0
TARGET: Final = 0.8


@contextmanager
def serving(
    mode: Mode, threads: int, name: str, db_dir: Path
) -> Iterator[tuple[int, subprocess.Popen[bytes], Path | None]]:
    """One fresh service on a free port, with a new DB_PATH when durable; SIGTERM afterwards."""
    port = free_port()
    settings = {"TASK_HANDLER": NOOP_HANDLER, "QUEUE_SIZE": str(BIG_QUEUE)}
    settings["HTTP_THREADS"] = str(threads)
    db = db_dir / f"{name}.db" if mode == "durable" else None
    if db is not None:
        settings["DB_PATH"] = str(db)
    process = start_service(port, name, **settings)
    try:
        wait_ready(port, process)
        yield port, process, db
    finally:
        code = stop(process)
        if code != 0:
            print(f"  warning: {mode} service exited with {code} (see bench/out/logs/{name}.log)")


def stored_statuses(db: Path) -> dict[str, int]:
    """What the file holds once the service has stopped: tasks per status."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status")
        return {status: count for status, count in rows}
    finally:
        connection.close()


def measure(
    mode: Mode, connections: int, duration_s: float, threads: int, name: str, db_dir: Path
) -> dict[str, Any]:
    """Warmup, measured run, the done check, and (durable) the check of the file after stop."""
    with serving(mode, threads, name, db_dir) as (port, process, db):
        warmup = run_wrk(port, connections, WARMUP_S, process.pid)
        result, accepted = run_wrk_quietly(port, connections, duration_s, process.pid)
        accepted += warmup.accepted
        check = wait_all_done(port, accepted)
    row = result.as_dict()
    row["done_check"] = {
        "accepted_by_wrk": accepted,
        "stored": check.stored,
        "all_done": check.all_done and check.stored >= accepted,
    }
    if db is not None:
        on_disk = stored_statuses(db)
        row["done_check"]["on_disk_after_stop"] = on_disk
        # A few requests wrk gave up on may still land after the check: at least as many.
        row["done_check"]["all_done"] &= (
            set(on_disk) == {"done"} and on_disk["done"] >= check.stored
        )
        db.unlink()
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
    parser = argparse.ArgumentParser(description="HTTP intake: DB_PATH set vs memory only")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--db-dir", help="where the SQLite files go (default: a temporary dir)")
    parser.add_argument("--json", help="output file (default bench/out/durable_intake.json)")
    args = parser.parse_args(argv)
    require_wrk()
    threads = default_http_threads()
    with tempfile.TemporaryDirectory(prefix="durable_intake-", dir=args.db_dir) as db_dir:
        print(
            f"durable intake: {args.connections} connections, {args.rounds} x {args.duration:g} s "
            f"per mode, {threads} waitress threads, SQLite files in {db_dir}"
        )
        runs: dict[Mode, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        for round_number in range(1, args.rounds + 1):
            order = MODES if round_number % 2 else MODES[::-1]
            for mode in order:
                name = f"durable-intake-{mode}-{round_number}"
                row = measure(mode, args.connections, args.duration, threads, name, Path(db_dir))
                runs[mode].append(row)
                print(
                    f"  round {round_number} {mode:7}: {row['rps']:8,.0f} req/s  "
                    f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
                    f"non-2xx {row['non_2xx']}  other load {row['foreign_cores']:.2f} cores  "
                    f"all done: {row['done_check']['all_done']} "
                    f"({row['done_check']['stored']:,} tasks)"
                )
    summary = {mode: summarize(runs[mode]) for mode in MODES}
    ratio = summary["durable"]["rps"] / summary["memory"]["rps"]
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
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"\nratio durable / memory: {ratio:.2f} ({verdict} the {TARGET} target)")
    results = {
        "connections": args.connections,
        "duration_s": args.duration,
        "http_threads": threads,
        "runs": runs,
        "summary": summary,
        "ratio": ratio,
        "target": TARGET,
    }
    print(f"written: {write_json('durable_intake', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
