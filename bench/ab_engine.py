"""Same-run A/B of the engine (benchmark 3's in-process path): this tree against an earlier one.

    python bench/ab_engine.py --base 6a3821b [--mode thread|process] [--rounds 6] [--tasks 20000]

Checks the base commit out into a temporary git worktree, then runs ``--tasks`` no-op tasks
through ``TaskSystem`` with 4 workers, in a fresh process per run, alternating the two trees
(the order flipping each round), and reports each tree's median tasks/s and the median of the
per-round ratios this tree / base: figures from one run on a noisy shared machine, rather than
against another day's. Both trees run on this environment's packages; the API used (``start``,
``submit_async``, ``stop``) is one every tree since the actors' first version has.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 4


class _Finish:
    """Counts attempts that ended; notes the time the last one did."""

    def __init__(self, expected: int) -> None:
        self.left = expected
        self.lock = threading.Lock()
        self.event = threading.Event()
        self.at = 0.0

    def one_done(self, *_: Any) -> None:
        with self.lock:
            self.left -= 1
            if self.left == 0:
                self.at = time.perf_counter()
                self.event.set()

    attempt_ended = one_done  # the observer's hook in process mode


def run_once(root: Path, mode: str, tasks: int) -> None:
    """In a child process: one run over the tree at ``root``; prints tasks/s and whether every
    task was accepted and done."""
    sys.path.insert(0, str(root))
    import logging

    logging.disable(logging.WARNING)
    from actors import Admission, TaskSystem, new_task

    finish = _Finish(tasks)
    if mode == "thread":
        system = TaskSystem.start(finish.one_done, workers=WORKERS, queue_size=tasks)
    else:
        from actors.handlers import HandlerSpec
        from actors.runners import process_runners

        runners = process_runners(HandlerSpec("actors.handlers:noop"), result_max_bytes=65_536)
        system = TaskSystem.start(
            runners=runners, workers=WORKERS, queue_size=tasks, observer=finish
        )
    batch = [new_task(f"task-{n}", b'"x"', 3) for n in range(tasks)]
    started = time.perf_counter()
    replies = [system.submit_async(task) for task in batch]
    finish.event.wait(300)
    refused = sum(1 for reply in replies if reply.get(timeout=10) is not Admission.ACCEPTED)
    summary = system.stop(time.monotonic() + 10)
    ok = refused == 0 and summary.counts.get("done") == tasks
    print(f"{tasks / (finish.at - started):.0f} {ok}")


def one_run(root: Path, mode: str, tasks: int) -> float | None:
    done = subprocess.run(
        [sys.executable, __file__, "--one", str(root), "--mode", mode, "--tasks", str(tasks)],
        capture_output=True,
        text=True,
        cwd=root,
        check=False,
    )
    last = done.stdout.strip().splitlines()[-1:] or [done.stderr[-300:]]
    try:
        rate, ok = last[0].split()
    except ValueError:
        print(f"  run failed in {root}: {last[0]}")
        return None
    if ok != "True":
        print(f"  not every task accepted and done in {root}")
        return None
    return float(rate)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=False)
    parser.add_argument("--mode", choices=("thread", "process"), default="thread")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        run_once(Path(args.one), args.mode, args.tasks)
        return
    if not args.base:
        parser.error("--base is required")
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "base"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base],
            check=True,
            capture_output=True,
        )
        try:
            rates: dict[Path, list[float]] = {ROOT: [], base: []}
            ratios: list[float] = []
            for round_number in range(args.rounds):
                order = (ROOT, base) if round_number % 2 == 0 else (base, ROOT)
                got = {root: one_run(root, args.mode, args.tasks) for root in order}
                for root, rate in got.items():
                    if rate is not None:
                        rates[root].append(rate)
                if got[ROOT] is not None and got[base] is not None:
                    ratios.append(got[ROOT] / got[base])
            for name, root in (("this tree", ROOT), (f"base {args.base}", base)):
                shown = [round(rate) for rate in rates[root]]
                median = statistics.median(rates[root]) if rates[root] else 0
                print(f"{args.mode} {name}: median {median:.0f} tasks/s {shown}")
            if ratios:
                print(f"median pair ratio this / base: {statistics.median(ratios):.3f}")
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                check=False,
                capture_output=True,
            )


if __name__ == "__main__":
    main()
