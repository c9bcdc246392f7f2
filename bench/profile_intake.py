"""Where the service's time goes under the HTTP intake load: py-spy on the running main.py.

    python bench/profile_intake.py [--duration 10] [--target service|bare] [--connections 16]

Starts the server as bench/http_intake.py does, loads it with wrk (16 connections by default), and
first reads CPU time per thread from /proc over an unprofiled window (thread kinds named with
``py-spy dump``), then samples it with ``py-spy record --gil --threads``: only the thread
holding the GIL is sampled, so the shares are shares of the one core Python code gets, the
scarce resource here. Prints CPU per thread kind (user and kernel, µs per request), the GIL
samples per thread kind, the top functions by own time and by inclusive time, and keeps the
raw stacks (bench/out/profile-TARGET-MODE.txt, flamegraph.pl input). Needs py-spy
(``pip install py-spy``) and the right to ptrace (root here). The sampler pauses the process,
which changes its throughput (either way): compare shares, not the req/s. py-spy's GIL view
under-samples the event-loop thread (mostly in poll() without the GIL): /proc says which thread
costs what, py-spy which functions inside a thread.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from common import OUT_DIR, default_http_threads, quiet_measurement, table, write_json
from servers import serving
from wrkrun import WrkResult, require_wrk, run_wrk

if TYPE_CHECKING:
    from collections.abc import Sequence

SAMPLE_RATE: Final = 250
CPU_WINDOW_S: Final = 5.0
TOP: Final = 25
_THREAD_NUMBER = re.compile(r"[-_ ]\d+.*$")
_DUMP_THREAD = re.compile(r'^Thread (\d+) \(\w+\): "(.*)"', re.MULTILINE)
_EVERY_THREAD = ("Thread._bootstrap", "Thread.run ")
"""Frames at the bottom of every thread's stack: 100% inclusive, and so no news."""


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    return found


def record(pid: int, duration_s: float, output: Path, *, gil_only: bool) -> None:
    command = [
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        f"{duration_s:g}",
        "--rate",
        str(SAMPLE_RATE),
        "--format",
        "raw",
        "--output",
        str(output),
        "--threads",
        "--nolineno",
        *(["--gil"] if gil_only else []),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=duration_s + 60)


def thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, from ``py-spy dump``."""
    dump = subprocess.run(
        [py_spy(), "dump", "--pid", str(pid)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return {int(tid): name for tid, name in _DUMP_THREAD.findall(dump)}


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """Native thread id -> (user, system) CPU seconds so far, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    times = {}
    for task_dir in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task_dir / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        times[int(task_dir.name)] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return times


def cpu_by_thread_kind(
    pid: int, before: dict[int, tuple[float, float]], seconds: float
) -> list[tuple[str, float, float]]:
    """(thread kind, user cores, system cores) over a window, busiest first."""
    names = thread_names(pid)
    after = thread_cpu(pid)
    kinds: dict[str, list[float]] = {}
    for tid, (user, system) in after.items():
        user0, system0 = before.get(tid, (0.0, 0.0))
        kind = _THREAD_NUMBER.sub("", names.get(tid, "other"))
        totals = kinds.setdefault(kind, [0.0, 0.0])
        totals[0] += (user - user0) / seconds
        totals[1] += (system - system0) / seconds
    rows = [(kind, user, system) for kind, (user, system) in kinds.items()]
    return sorted(rows, key=lambda row: -(row[1] + row[2]))


def cpu_window(
    port: int, pid: int, connections: int
) -> tuple[WrkResult, list[tuple[str, float, float]]]:
    before = thread_cpu(pid)
    result = run_wrk(port, connections, CPU_WINDOW_S, pid)
    return result, cpu_by_thread_kind(pid, before, result.duration_s)


def analyse(raw: str) -> dict[str, Any]:
    """Shares of samples per thread kind, per leaf function (self) and per function (inclusive)."""
    by_thread: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        # "thread (123): WorkerActor-3;frame;frame..."
        thread, *frames = stack.split(";")
        total += count
        by_thread[_THREAD_NUMBER.sub("", thread.split(": ", 1)[-1])] += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            if not frame.startswith(_EVERY_THREAD):
                inclusive[frame] += count

    def shares(counter: Counter[str], limit: int) -> list[tuple[str, float]]:
        return [(name, count / total) for name, count in counter.most_common(limit)]

    return {
        "samples": total,
        "threads": shares(by_thread, TOP),
        "self": shares(own, TOP),
        "inclusive": shares(inclusive, TOP),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="py-spy profile under the HTTP intake load")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds sampled")
    parser.add_argument("--target", choices=["service", "bare"], default="service")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--all-threads",
        action="store_true",
        help="sample every thread not idle (on CPU or in a syscall), not just the GIL holder",
    )
    parser.add_argument("--json", help="output file (default bench/out/profile_TARGET_MODE.json)")
    args = parser.parse_args(argv)
    require_wrk()
    py_spy()
    mode = "all-threads" if args.all_threads else "gil"
    raw_file = OUT_DIR / f"profile-{args.target}-{mode}.txt"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    threads = default_http_threads()
    print(
        f"Profile of {args.target} under wrk at {args.connections} connections, "
        f"{args.duration:g} s at {SAMPLE_RATE} Hz "
        + ("(every thread not idle)" if args.all_threads else "(GIL holder only)")
    )
    with serving(args.target, threads, f"profile-{args.target}") as server:
        pid = server.process.pid
        run_wrk(server.port, args.connections, 2.0, pid)
        # First an unprofiled window: CPU per thread from /proc, which sampling cannot distort.
        (clean, by_thread), _ = quiet_measurement(
            lambda: cpu_window(server.port, pid, args.connections),
            lambda measured: measured[0].foreign_cores,
        )
        loads: list[WrkResult] = []
        # The load runs longer than the sampling, so it covers all of it.
        load = threading.Thread(
            target=lambda: loads.append(
                run_wrk(server.port, args.connections, args.duration + 3, pid)
            )
        )
        load.start()
        record(pid, args.duration, raw_file, gil_only=not args.all_threads)
        load.join()
    profile = analyse(raw_file.read_text())
    profile["unprofiled_rps"] = clean.rps
    profile["rps_while_sampled"] = loads[0].rps
    profile["cpu_by_thread"] = by_thread
    profile["unprofiled_foreign_cores"] = clean.foreign_cores
    user = sum(row[1] for row in by_thread)
    system = sum(row[2] for row in by_thread)
    print(
        f"Unprofiled {CPU_WINDOW_S:g} s: {clean.rps:,.0f} req/s; server CPU {user:.2f} cores "
        f"in user space + {system:.2f} in the kernel = "
        f"{(user + system) / clean.rps * 1e6:.0f} µs per request "
        f"(other load {clean.foreign_cores:.2f} cores)\n"
    )
    print(
        table(
            ["thread", "user cores", "kernel cores", "µs CPU per request"],
            [
                [kind, f"{u:.3f}", f"{k:.3f}", f"{(u + k) / clean.rps * 1e6:.1f}"]
                for kind, u, k in by_thread
                if u + k > 0.001
            ],
        )
    )
    print(f"\nProfiled: {profile['samples']:,} samples; {loads[0].rps:,.0f} req/s while sampled\n")
    for key, title in (
        ("threads", "thread"),
        ("self", "function (own time)"),
        ("inclusive", "function (inclusive)"),
    ):
        print(
            table(
                [title, "share of samples"],
                [[name, f"{share:.1%}"] for name, share in profile[key]],
            )
        )
        print()
    print(f"raw stacks: {raw_file}")
    print(f"written: {write_json(f'profile_{args.target}_{mode}', profile, args.json)}")
    return profile


if __name__ == "__main__":
    main()
