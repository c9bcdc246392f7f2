"""Same-run A/B: single-enqueue intake of this tree against an earlier commit.

    python bench/ab_intake.py --base 37e2bcf [--rounds 5] [--duration 6] [--connections 16]
                              [--set METRICS=0 ...]

Checks the base commit out into a temporary git worktree, then alternates the two services
round by round (the order flips each round, since the second of a pair measured differently
often enough to matter), each started fresh as ``python main.py`` with a no-op handler and a
line too big to fill, warmed up, and loaded with wrk's unique-id POST /enqueue. Reports the
medians and the ratio this tree / base: how much a change costs intake, measured side by side
on a noisy shared machine rather than against figures from another day. ``--set`` adds a
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
    median,
    start_service,
    stop,
    wait_ready,
    write_json,
)
from wrkrun import require_wrk, run_wrk

if TYPE_CHECKING:
    from collections.abc import Sequence

WARMUP_S = 2.0


def measure(
    root: Path,
    name: str,
    connections: int,
    duration_s: float,
    threads: int,
    settings: dict[str, str],
) -> float:
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
    try:
        wait_ready(port, process)
        run_wrk(port, connections, WARMUP_S, process.pid)
        result = run_wrk(port, connections, duration_s, process.pid)
        if result.non_2xx or result.socket_errors:
            print(f"  warning: {name}: {result.non_2xx} non-2xx, {result.socket_errors} errors")
        return result.rps
    finally:
        stop(process)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Intake A/B: this tree against a base commit")
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--head", help="a commit to measure instead of this tree")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per measured run")
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
        try:
            runs: dict[str, list[float]] = {"head": [], "base": []}
            trees = {"head": head_root, "base": base_root}
            for number in range(1, args.rounds + 1):
                order = ("head", "base") if number % 2 else ("base", "head")
                for which in order:
                    rps = measure(
                        trees[which],
                        f"ab-{which}-{number}",
                        args.connections,
                        args.duration,
                        threads,
                        settings,
                    )
                    runs[which].append(rps)
                    print(f"  round {number} {which}: {rps:8,.0f} req/s")
        finally:
            for root in {base_root, head_root} - {ROOT}:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(root)],
                    check=False,
                    capture_output=True,
                )
    head, base = median(runs["head"]), median(runs["base"])
    ratios = [h / b for h, b in zip(runs["head"], runs["base"], strict=True)]
    result = {
        "base": args.base,
        "head": args.head or "working tree",
        "settings": settings,
        "connections": args.connections,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "head_rps": runs["head"],
        "base_rps": runs["base"],
        "head_median": head,
        "base_median": base,
        "ratio_of_medians": head / base,
        "median_of_round_ratios": median(ratios),
    }
    print(
        f"\n{args.head or 'this tree'} {head:,.0f} req/s, base {args.base} {base:,.0f} req/s "
        f"(medians): ratio {head / base:.3f}; median of per-round ratios {median(ratios):.3f}"
    )
    write_json("ab_intake", result, args.json)
    return result


if __name__ == "__main__":
    main()
