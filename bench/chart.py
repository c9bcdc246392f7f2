"""The chart for BENCHMARKS.md: throughput and p99 against connections, service and bare app.

    python bench/chart.py [--input bench/out/http_load.json] [--output bench/chart.png]

Reads what bench/http_load.py wrote; run that first (bench/run_all.py does both).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from common import BENCH_DIR, OUT_DIR

if TYPE_CHECKING:
    from collections.abc import Sequence

STYLE = {
    "service": ("task_queue service", "tab:blue", "o"),
    "bare": ("bare Falcon + waitress", "tab:gray", "s"),
}


def draw(document: dict[str, Any], output: Path) -> None:
    runs: dict[str, list[dict[str, Any]]] = document["results"]["runs"]
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for kind, rows in runs.items():
        label, colour, marker = STYLE[kind]
        connections = [row["connections"] for row in rows]
        throughput.plot(
            connections, [row["rps"] for row in rows], marker=marker, color=colour, label=label
        )
        latency.plot(
            connections, [row["p99_ms"] for row in rows], marker=marker, color=colour, label=label
        )
    for axes, title, unit in (
        (throughput, "Throughput", "requests/s"),
        (latency, "p99 latency", "ms (log scale)"),
    ):
        axes.set_xscale("log", base=2)
        axes.set_xticks([row["connections"] for row in runs["service"]])
        axes.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axes.set_xlabel("concurrent connections (wrk)")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
        axes.legend()
    throughput.set_ylim(bottom=0)
    latency.set_yscale("log")
    machine = document["machine"]
    figure.suptitle(
        f"POST /enqueue, no-op handler: {machine['cores']} cores, Python {machine['python']}, "
        f"tree {machine['tree']}",
        fontsize=10,
    )
    figure.savefig(output, dpi=100)


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Chart of bench/http_load.py's results")
    parser.add_argument("--input", default=str(OUT_DIR / "http_load.json"))
    parser.add_argument("--output", default=str(BENCH_DIR / "chart.png"))
    args = parser.parse_args(argv)
    source = Path(args.input)
    if not source.exists():
        raise SystemExit(f"{source} not found: run python bench/http_load.py first")
    output = Path(args.output)
    draw(json.loads(source.read_text()), output)
    print(f"written: {output}")
    return output


if __name__ == "__main__":
    main()
