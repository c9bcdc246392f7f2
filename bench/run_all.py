"""Run every benchmark once, each in its own process, then draw the chart.

    python bench/run_all.py [--quick] [--skip NAME ...] [--out DIR]

About 9 minutes on a quiet 2-core machine, at most about 18 on a busy one (``--quick``: about
2.5, with shorter runs and smaller N, to check that everything works, not to quote). Each script
prints its table and writes bench/out/NAME.json (or DIR/NAME.json); the chart goes to
bench/chart.png. The profiles (service, then the bare app for comparison) run only where py-spy
is installed. Exits 1 if any benchmark failed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from common import BENCH_DIR, OUT_DIR, machine

if TYPE_CHECKING:
    from collections.abc import Sequence

BENCHMARKS: Final[dict[str, list[str]]] = {
    # name: the script and its arguments
    "http_intake": ["http_intake.py"],
    "metrics_cost": ["metrics_cost.py"],
    "api_overhead": ["api_overhead.py"],
    "http_load": ["http_load.py"],
    "chart": ["chart.py"],
    "engine": ["engine.py"],
    "retries": ["retries.py"],
    "memory": ["memory.py"],
    "shutdown": ["shutdown.py"],
    "profile_service": ["profile_intake.py", "--target", "service"],
    "profile_bare": ["profile_intake.py", "--target", "bare"],
}
QUICK: Final[dict[str, list[str]]] = {
    "http_intake": ["--duration", "3"],
    "metrics_cost": ["--bursts", "2", "--burst-s", "2"],
    "api_overhead": ["--rounds", "2", "--requests", "5000"],
    "http_load": ["--duration", "3"],
    "engine": ["--tasks", "5000", "--rounds", "1"],
    "retries": ["--tasks", "2000"],
    "memory": ["--sizes", "1000", "20000", "--lookups", "5000"],
    "shutdown": ["--repeats", "1", "--attempt-ms", "1000"],
    "profile_service": ["--duration", "3"],
    "profile_bare": ["--duration", "3"],
}
OUTPUTS: Final = {"profile_service": "profile_service_gil", "profile_bare": "profile_bare_gil"}
"""JSON names that differ from the benchmark's name."""


def output_arguments(name: str, out: Path) -> list[str]:
    if name == "chart":
        return ["--input", str(out / "http_load.json")]
    return ["--json", str(out / f"{OUTPUTS.get(name, name)}.json")]


def has_py_spy() -> bool:
    return bool(shutil.which("py-spy")) or Path(sys.executable).with_name("py-spy").exists()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every benchmark")
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(BENCHMARKS))
    parser.add_argument("--out", default=str(OUT_DIR), help="where the JSON files go")
    args = parser.parse_args(argv)
    facts = machine()
    print(
        f"machine: {facts['cores']} cores ({facts['cpu']}), Python {facts['python']}, "
        f"tree {facts['tree']}"
    )
    print("packages: " + ", ".join(f"{name} {v}" for name, v in facts["packages"].items()))
    failed: list[str] = []
    started = time.monotonic()
    for name, (script, *arguments) in BENCHMARKS.items():
        if name in args.skip:
            continue
        if name.startswith("profile") and not has_py_spy():
            print(f"\n== {name}: skipped, py-spy is not installed")
            continue
        command = [
            sys.executable,
            str(BENCH_DIR / script),
            *arguments,
            *(QUICK.get(name, []) if args.quick else []),
            *output_arguments(name, Path(args.out)),
        ]
        print(f"\n== {name}: {' '.join(command[1:])}", flush=True)
        began = time.monotonic()
        code = subprocess.run(command).returncode
        print(
            f"== {name}: {'ok' if code == 0 else f'FAILED ({code})'} "
            f"in {time.monotonic() - began:.0f} s",
            flush=True,
        )
        if code != 0:
            failed.append(name)
    print(
        f"\nall benchmarks: {time.monotonic() - started:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
