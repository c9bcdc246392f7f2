"""The results part of BENCHMARKS.md, as Markdown, from the JSON files the benchmarks wrote.

    python bench/report.py [--dir bench/out] > /tmp/results.md

Reads bench/out/*.json, or DIR/*.json (a missing one is reported as not run), and prints the
machine, one table per benchmark, and the targets of issue 3 with met / missed. Paste it into
BENCHMARKS.md after a full run (python bench/run_all.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from common import OUT_DIR, table

if TYPE_CHECKING:
    from collections.abc import Sequence

PROFILE_ROWS: Final = 15
DIRTY: Final = " (+dirty.HASH: uncommitted service code, HASH of the difference)"


def load(name: str, directory: Path = OUT_DIR) -> dict[str, Any] | None:
    path = directory / f"{name}.json"
    if not path.exists():
        return None
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def machine_section(document: dict[str, Any]) -> list[str]:
    machine = document["machine"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    return [
        f"- {machine['cores']} cores ({machine['cpu']}), Python {machine['python']}",
        f"- {packages}; {machine.get('wrk', 'wrk')}",
        f"- tree measured: `{machine['tree']}`" + (DIRTY if "dirty" in machine["tree"] else ""),
    ]


def intake_section(results: dict[str, Any]) -> list[str]:
    summary = results["summary"]
    rows = [
        [
            kind,
            s["rps"],
            s["p50_ms"],
            s["p99_ms"],
            s["non_2xx"],
            s["socket_errors"],
            s["cpu_us_per_request"],
            f"{s['max_foreign_cores']:.2f}",
        ]
        for kind, s in summary.items()
    ]
    return [
        f"{results['connections']} connections, {len(results['runs']['service'])} rounds x "
        f"{results['duration_s']:g} s per server, {results['http_threads']} waitress threads; "
        "medians of the rounds (errors summed).",
        "",
        table(
            [
                "server",
                "req/s",
                "p50 ms",
                "p99 ms",
                "non-2xx",
                "socket errors",
                "server CPU µs/req",
                "other load (cores, max)",
            ],
            rows,
        ),
        "",
        f"**Ratio service / bare: {results['ratio']:.2f}.** Every accepted task reached done: "
        f"{'yes' if results['all_accepted_done'] else 'NO'} (checked with GET /tasks after "
        "each service run).",
    ]


def metrics_cost_section(results: dict[str, Any]) -> list[str]:
    ratios = results["pair_ratios"]
    return [
        f"{results['connections']} connections, {results['bursts']} pairs of "
        f"{results['burst_s']:g} s wrk bursts on two services running side by side (metrics on, "
        f"metrics off), the order flipping each pair; {results['http_threads']} waitress threads.",
        "",
        f"**Median of the per-pair ratios on / off: {results['ratio']:.3f}** (pairs ranged "
        f"{min(ratios):.3f}-{max(ratios):.3f}; ratio of totals {results['ratio_of_totals']:.3f}). "
        f"CPU per request: {results['cpu_us_per_request']['on']:.0f} µs on, "
        f"{results['cpu_us_per_request']['off']:.0f} µs off. Non-2xx: {results['non_2xx']}. "
        f"/metrics counted every accepted task: {'yes' if results['metrics_check'] else 'NO'}.",
    ]


def load_section(results: dict[str, Any]) -> list[str]:
    rows = []
    for kind, runs in results["runs"].items():
        for run in runs:
            rows.append(
                [
                    kind,
                    run["connections"],
                    run["rps"],
                    run["p50_ms"],
                    run["p99_ms"],
                    run["socket_errors"],
                    run["non_2xx"],
                    f"{run['vs_first']:.0%}" if "vs_first" in run else "",
                    f"{run['foreign_cores']:.2f}",
                ]
            )
    return [
        f"{results['duration_s']:g} s per run after a 2 s warmup, each server fresh per row.",
        "",
        table(
            [
                "server",
                "connections",
                "req/s",
                "p50 ms",
                "p99 ms",
                "socket errors",
                "non-2xx",
                "vs 16 connections",
                "other load (cores)",
            ],
            rows,
        ),
    ]


def engine_section(results: dict[str, Any]) -> list[str]:
    summary = results["summary"]
    ours = summary["task_queue (actors)"]["tasks_per_s"]
    rows = [
        [
            name,
            s["tasks_per_s"],
            f"{s['enqueue_s']:.2f}",
            f"{s['total_s']:.2f}",
            f"{ours / s['tasks_per_s']:.2f}",
            s["all_ok"],
        ]
        for name, s in summary.items()
    ]
    return [
        f"{results['tasks']:,} no-op tasks, {results['workers']} workers / worker threads, "
        f"median of {len(next(iter(results['runs'].values())))} alternating rounds.",
        "",
        table(["engine", "tasks/s", "enqueue s", "total s", "task_queue / this", "all done"], rows),
    ]


def retries_section(results: dict[str, Any]) -> list[str]:
    return [
        table(
            [
                "tasks",
                "attempts",
                "RETRY_BASE_MS",
                "total s",
                "tasks/s",
                "attempts/s",
                "threads, idle system",
                "peak threads",
                "all done",
            ],
            [
                [
                    results["tasks"],
                    results["attempts"],
                    results["retry_base_ms"],
                    f"{results['total_s']:.2f}",
                    results["tasks_per_s"],
                    results["attempts_per_s"],
                    results["threads_idle_system"],
                    results["peak_threads"],
                    results["all_done"],
                ]
            ],
        ),
    ]


def memory_section(results: dict[str, Any]) -> list[str]:
    rows = [
        [
            r["tasks"],
            f"{r['rss_after_mb'] - r['rss_before_mb']:.1f}",
            r["bytes_per_task"],
            r["get_p50_us"],
            r["get_p99_us"],
            f"{r['fill_s']:.1f}",
            r["all_done"],
        ]
        for r in results["rows"]
    ]
    return [
        table(
            [
                "stored tasks",
                "RSS delta MB",
                "bytes / task",
                "GET p50 µs",
                "GET p99 µs",
                "fill s",
                "all done",
            ],
            rows,
        ),
        "",
        f"GET p99 at the largest size / at the smallest: **{results['get_p99_ratio']:.2f}** "
        f"({results['lookups']:,} sequential in-process lookups of random ids through "
        "`TaskSystem.get`, the actor round trip `GET /task` makes, without HTTP).",
    ]


def shutdown_section(results: dict[str, Any]) -> list[str]:
    rows = []
    for case, runs in results["cases"].items():
        seconds = sorted(run["seconds"] for run in runs)
        after = [run["after_attempt_end_s"] for run in runs if "after_attempt_end_s" in run]
        rows.append(
            [
                case,
                f"{seconds[len(seconds) // 2]:.3f}",
                f"{seconds[-1]:.3f}",
                f"{sorted(after)[len(after) // 2]:.3f}" if after else "",
                all(run["exit_code"] == 0 for run in runs),
            ]
        )
    return [
        table(
            [
                "case",
                "SIGTERM → exit, median s",
                "max s",
                "exit after the attempt's end, s",
                "exit code 0",
            ],
            rows,
        ),
        "",
        f"The running attempt lasts {results['attempt_ms']} ms and is signalled a quarter of "
        "the way in.",
    ]


def profile_section(results: dict[str, Any]) -> list[str]:
    cpu_rows = [
        [
            kind,
            f"{user:.3f}",
            f"{system:.3f}",
            f"{(user + system) / results['unprofiled_rps'] * 1e6:.0f}",
        ]
        for kind, user, system in results["cpu_by_thread"]
        if user + system > 0.001
    ]
    return [
        f"Unprofiled window: {results['unprofiled_rps']:,.0f} req/s. CPU per thread kind "
        "(from /proc):",
        "",
        table(["thread", "user cores", "kernel cores", "CPU µs per request"], cpu_rows),
        "",
        f"py-spy, GIL holder only ({results['samples']:,} samples, "
        f"{results['rps_while_sampled']:,.0f} req/s while sampled), top functions by own time:",
        "",
        table(
            ["function (own time)", "share"],
            [[name, f"{share:.1%}"] for name, share in results["self"][:PROFILE_ROWS]],
        ),
        "",
        table(
            ["function (inclusive)", "share"],
            [[name, f"{share:.1%}"] for name, share in results["inclusive"][:PROFILE_ROWS]],
        ),
    ]


def cpu_comparison(service: dict[str, Any], bare: dict[str, Any]) -> list[str]:
    """CPU µs per request by thread kind, service against bare, from the unprofiled windows."""

    def per_request(doc: dict[str, Any]) -> dict[str, float]:
        rps = doc["unprofiled_rps"]
        return {kind: (u + k) / rps * 1e6 for kind, u, k in doc["cpu_by_thread"]}

    ours, theirs = per_request(service), per_request(bare)
    kinds = [kind for kind in ours if ours[kind] >= 1 or theirs.get(kind, 0) >= 1]
    rows = [[kind, f"{ours[kind]:.0f}", f"{theirs.get(kind, 0):.0f}"] for kind in kinds]
    rows.append(["all", f"{sum(ours.values()):.0f}", f"{sum(theirs.values()):.0f}"])
    return [
        "CPU µs per request by thread kind, service against the bare app (unprofiled windows, "
        f"{service['unprofiled_rps']:,.0f} and {bare['unprofiled_rps']:,.0f} req/s; other load "
        f"{service['unprofiled_foreign_cores']:.2f} and {bare['unprofiled_foreign_cores']:.2f} "
        "cores):",
        "",
        table(["thread", "service", "bare"], rows),
    ]


def targets(docs: dict[str, dict[str, Any] | None]) -> list[str]:
    rows: list[list[object]] = []
    if (intake := docs["http_intake"]) is not None:
        r = intake["results"]
        errors = r["summary"]["service"]["non_2xx"]
        rows.append(
            [
                "HTTP intake ratio service / bare ≥ 0.60, zero non-2xx",
                f"{r['ratio']:.2f}, {errors} non-2xx",
                verdict(r["ratio"] >= 0.6 and not errors),
            ]
        )
    if (cost := docs["metrics_cost"]) is not None:
        ratio = cost["results"]["ratio"]
        rows.append(
            [
                "(issue 6) intake with metrics on within 5% of off",
                f"{ratio:.3f}",
                verdict(ratio >= 0.95),
            ]
        )
    if (load_doc := docs["http_load"]) is not None:
        runs = load_doc["results"]["runs"]["service"]
        bare_runs = load_doc["results"]["runs"]["bare"]
        first, last = runs[0], runs[-1]
        held = last["rps"] / first["rps"]
        bare_held = bare_runs[-1]["rps"] / bare_runs[0]["rps"]
        errors = sum(run["socket_errors"] + run["non_2xx"] for run in runs)
        rows.append(
            [
                f"at {last['connections']} connections ≥ 90% of the {first['connections']}"
                "-connection throughput",
                f"{held:.0%} (bare app: {bare_held:.0%})",
                verdict(held >= 0.9),
            ]
        )
        rows.append(["load held: zero errors", f"{errors}", verdict(errors == 0)])
        rows.append(
            [
                f"p99 at {last['connections']} connections under 100 ms",
                f"{last['p99_ms']:,.0f} ms (bare app: {bare_runs[-1]['p99_ms']:,.0f} ms)",
                verdict(last["p99_ms"] < 100),
            ]
        )
    if (engine := docs["engine"]) is not None:
        s = engine["results"]["summary"]
        ours = s["task_queue (actors)"]["tasks_per_s"]
        dramatiq = s["dramatiq StubBroker"]["tasks_per_s"]
        huey = s["huey MemoryHuey"]["tasks_per_s"]
        rows.append(
            [
                "engine ≥ Dramatiq's tasks/s",
                f"{ours / dramatiq:.2f}x Dramatiq",
                verdict(ours >= dramatiq),
            ]
        )
        rows.append(
            ["(aim) engine ≥ Huey's tasks/s", f"{ours / huey:.2f}x Huey", verdict(ours >= huey)]
        )
    if (memory := docs["memory"]) is not None:
        r = memory["results"]
        largest = r["rows"][-1]
        rows.append(
            [
                f"≤ 400 bytes per stored finished task at {largest['tasks']:,}",
                f"{largest['bytes_per_task']:.0f} B",
                verdict(largest["bytes_per_task"] <= 400),
            ]
        )
        rows.append(
            [
                f"GET /task p99 at {largest['tasks']:,} within 1.5x of {r['rows'][0]['tasks']:,}",
                f"{r['get_p99_ratio']:.2f}x",
                verdict(r["get_p99_ratio"] <= 1.5),
            ]
        )
    if (shutdown := docs["shutdown"]) is not None:
        idle = max(run["seconds"] for run in shutdown["results"]["cases"]["idle"])
        rows.append(
            ["shutdown with nothing running under 1 s", f"{idle:.3f} s (max)", verdict(idle < 1)]
        )
    return [table(["target (issue 3)", "measured", ""], rows)]


SECTIONS: Final = (
    ("http_intake", "1. HTTP intake vs the framework limit", intake_section),
    ("http_load", "2. Load held", load_section),
    ("engine", "3. Engine in-process vs peers", engine_section),
    ("retries", "4. Retries at scale", retries_section),
    ("memory", "5. Memory and scale", memory_section),
    ("shutdown", "6. Shutdown latency", shutdown_section),
    ("metrics_cost", "7. What metrics cost", metrics_cost_section),
    ("profile_service_gil", "Profile of the service under the intake load", profile_section),
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Markdown results from bench/out/*.json")
    parser.add_argument("--dir", default=str(OUT_DIR), help="where the JSON files are")
    directory = Path(parser.parse_args(argv).dir)
    docs = {name: load(name, directory) for name, _, _ in SECTIONS}
    first = next((doc for doc in docs.values() if doc is not None), None)
    if first is None:
        raise SystemExit("no results in bench/out/: run python bench/run_all.py first")
    lines = ["### Machine", "", *machine_section(first), "", "### Targets", "", *targets(docs)]
    for name, title, section in SECTIONS:
        lines += ["", f"### {title}", ""]
        doc = docs[name]
        if doc is None:
            lines.append("Not run.")
            continue
        if doc["machine"]["tree"] != first["machine"]["tree"]:
            lines += [f"Measured on tree `{doc['machine']['tree']}`.", ""]
        lines += section(doc["results"])
    service_profile = docs["profile_service_gil"]
    bare_profile = load("profile_bare_gil", directory)
    if service_profile is not None and bare_profile is not None:
        lines += ["", *cpu_comparison(service_profile["results"], bare_profile["results"])]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
