"""Rescue: the time from SIGKILL of an instance to its attempts running on another.

    python bench/pg_rescue.py [--rounds 3] [--lease-ms 1000,15000] [--workers 4]

For each LEASE_MS and round: a fresh database on a private PostgreSQL 15 (bench/pg_common.py),
one instance alone with ``--workers`` attempts held running (bench/pg_handlers.py records each
attempt's start), a second instance started and idle, then ``SIGKILL`` of the first. Measured
for every one of the killed instance's attempts: from the kill to its next attempt's start on
the survivor (recorded by the handler, on this machine's clock). The contract is at most
2 x LEASE_MS (issue 14): a lease the victim had just renewed lasts LEASE_MS, and the survivor's
rescuer looks at least once more within the second one.

For comparison, the peers' defaults (issue 14): River rescues after an hour, Oban's Lifeline
after an hour, graphile-worker after four hours; procrastinate leaves it to the user.
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from common import http_request, median, table, write_json
from pg_common import bench_server, instances

if TYPE_CHECKING:
    from tests.pg_server import PgServer

HANDLER: Final = "bench.pg_handlers:record_and_hold"
WAIT_S: Final = 60.0
"""How long a step (attempts starting, being rescued) may take before the run gives up."""


def read_runs(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def wait_for(condition: Any, what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not within {timeout_s} s")
        time.sleep(0.005)


def measure(server: PgServer, lease_ms: int, workers: int, name: str) -> dict[str, Any]:
    database = server.create_database(name.replace("-", "_"))
    url = server.url(database)
    settings = {
        "TASK_HANDLER": HANDLER,
        "WORKERS": str(workers),
        "LEASE_MS": str(lease_ms),
        "RETRY_BASE_MS": "1",
        "RETRY_MAX_MS": "10",
    }
    try:
        with tempfile.TemporaryDirectory(prefix="pg-rescue-") as scratch:
            log, release = Path(scratch) / "runs.jsonl", Path(scratch) / "release"
            payload = json.dumps({"log": str(log), "release": str(release)})
            with instances(1, url, f"{name}-victim", **settings) as [victim]:
                for n in range(workers):
                    body = f'{{"id":"held-{n}","payload":{payload}}}'.encode()
                    status, answer = http_request(victim.port, "POST", "/enqueue", body)
                    if status != 201:
                        raise RuntimeError(f"enqueue answered {status}: {answer!r}")
                wait_for(lambda: len(read_runs(log)) == workers, "the held attempts starting")
                with instances(1, url, f"{name}-survivor", **settings) as [survivor]:
                    victim.process.send_signal(signal.SIGKILL)
                    killed_at = time.time()
                    victim.process.wait()
                    release.touch()

                    def rescued() -> list[dict[str, Any]]:
                        later = [run for run in read_runs(log) if run["attempt"] >= 2]
                        return later if len(later) >= workers else []

                    second = wait_for(rescued, "the rescue", timeout_s=2 * lease_ms / 1000 + 30)
                    tasks = json.loads(http_request(survivor.port, "GET", "/tasks")[1])
        delays = sorted(run["at"] - killed_at for run in second)
        return {
            "lease_ms": lease_ms,
            "attempts_rescued": len(second),
            "delays_s": delays,
            "first_s": delays[0],
            "last_s": delays[-1],
            "within_two_leases": delays[-1] <= 2 * lease_ms / 1000,
            "last_errors": sorted({task["last_error"] for task in tasks}, key=str),
        }
    finally:
        server.drop_database(database)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="from SIGKILL of an instance to its rescue")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lease-ms", default="1000,15000", help="comma-separated LEASE_MS")
    parser.add_argument("--workers", type=int, default=4, help="attempts held by the victim")
    parser.add_argument("--json", help="output file (default bench/out/pg_rescue.json)")
    args = parser.parse_args(argv)
    leases = [int(value) for value in args.lease_ms.split(",")]
    runs: dict[int, list[dict[str, Any]]] = {lease: [] for lease in leases}
    with bench_server() as server:
        print(f"rescue after SIGKILL: {args.workers} attempts held, {args.rounds} round(s)")
        for round_number in range(1, args.rounds + 1):
            for lease in leases:
                row = measure(server, lease, args.workers, f"pg-rescue-{lease}-{round_number}")
                runs[lease].append(row)
                print(
                    f"  round {round_number} LEASE_MS={lease}: {row['attempts_rescued']} "
                    f"rescued after {row['first_s']:.2f} to {row['last_s']:.2f} s "
                    f"(2 x LEASE_MS = {2 * lease / 1000:g} s; last_error {row['last_errors']})"
                )
    summary = {
        lease: {
            "median_last_s": median([run["last_s"] for run in runs[lease]]),
            "max_last_s": max(run["last_s"] for run in runs[lease]),
            "min_first_s": min(run["first_s"] for run in runs[lease]),
            "all_within": all(run["within_two_leases"] for run in runs[lease]),
        }
        for lease in leases
    }
    print()
    print(
        table(
            ["LEASE_MS", "first rescued s", "all rescued s (median)", "worst s", "in 2 x LEASE"],
            [
                [lease, s["min_first_s"], s["median_last_s"], s["max_last_s"], s["all_within"]]
                for lease, s in summary.items()
            ],
        )
    )
    results = {"settings": vars(args), "runs": runs, "summary": summary}
    print(f"written: {write_json('pg_rescue', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
