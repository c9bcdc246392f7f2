"""Same-run A/B: single-enqueue intake of this tree against an earlier commit.

    python bench/ab_intake.py --base 37e2bcf [--head REV] [--bursts 16] [--burst-s 3]
                              [--connections 16] [--set METRICS=0 ...]

Checks the base commit out into a temporary git worktree and starts both services side by
side, each as ``python main.py`` with a no-op handler and a line too big to fill, then loads
POST /enqueue (wrk, unique ids) on them in turn with short bursts, the order flipping each pair
(bench/paired.py). Reports the median of the per-pair ratios this tree / base: how much a change
costs intake, measured side by side on a noisy shared machine rather than against figures from
another day. ``--set`` adds a
setting to both services (one the base does not know is ignored by it): ``METRICS=0`` leaves
the metrics out of the comparison.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import (
    BIG_QUEUE,
    NOOP_HANDLER,
    ROOT,
    default_http_threads,
    free_port,
    start_service,
    stop,
    wait_ready,
    write_json,
)
from paired import Target, describe, paired_bursts
from wrkrun import require_wrk

if TYPE_CHECKING:
    from collections.abc import Sequence


def start(root: Path, name: str, threads: int, settings: dict[str, str]) -> tuple[int, Any]:
    port = free_port()
    process = start_service(
        port,
        name,
        root=root,
        **{
            "TASK_HANDLER": NOOP_HANDLER,
            "QUEUE_SIZE": str(BIG_QUEUE),
            "HTTP_THREADS": str(threads),
            **settings,
        },
    )
    wait_ready(port, process)
    return port, process


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Intake A/B: this tree against a base commit")
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--head", help="a commit to measure instead of this tree")
    parser.add_argument("--bursts", type=int, default=16, help="pairs of bursts")
    parser.add_argument("--burst-s", type=float, default=3.0, help="seconds per burst")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE for both")
    parser.add_argument("--json", help="output file (default bench/out/ab_intake.json)")
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    require_wrk()
    threads = default_http_threads()
    with tempfile.TemporaryDirectory(prefix="ab-base-") as scratch:
        base_root = Path(scratch) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_root), args.base],
            check=True,
            capture_output=True,
        )
        head_root = ROOT
        if args.head:
            head_root = Path(scratch) / "head"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(head_root), args.head],
                check=True,
                capture_output=True,
            )
        processes: list[Any] = []
        try:
            head_port, head_process = start(head_root, "ab-head", threads, settings)
            processes.append(head_process)
            base_port, base_process = start(base_root, "ab-base", threads, settings)
            processes.append(base_process)
            outcome = paired_bursts(
                Target("head", head_port, head_process.pid),
                Target("base", base_port, base_process.pid),
                connections=args.connections,
                burst_s=args.burst_s,
                bursts=args.bursts,
            )
        finally:
            for process in processes:
                stop(process)
            for root in {base_root, head_root} - {ROOT}:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(root)],
                    check=False,
                    capture_output=True,
                )
    result = {
        "base": args.base,
        "head": args.head or "working tree",
        "settings": settings,
        "connections": args.connections,
        "burst_s": args.burst_s,
        "bursts": args.bursts,
        "rates": outcome["rates"],
        "pair_ratios": outcome["pair_ratios"],
        "median_pair_ratio": outcome["median_pair_ratio"],
        "ratio_of_totals": outcome["ratio_of_totals"],
        "cpu_us_per_request": outcome["cpu_us_per_request"],
        "non_2xx": outcome["non_2xx"],
    }
    print(f"head = {args.head or 'this tree'}, base = {args.base}")
    print(describe(outcome, "head", "base"))
    print(f"non-2xx {outcome['non_2xx']}, socket errors {outcome['socket_errors']}")
    write_json("ab_intake", result, args.json)
    return result


if __name__ == "__main__":
    main()
