"""Start-up cost of a big store: opening an SQLite store and loading every task from it.

    python bench/store_load.py [--tasks 500000] [--rounds 5] [--dir DIR]

Builds a store of N queued tasks (a small JSON payload each) under ``--dir`` (a temporary
directory by default), then opens it and loads it ``--rounds`` times: what a start with
DB_PATH pays before it serves, every row checked (actors/rows.py). Reported: the median and
the fastest load, and the cost per row.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import median, table, write_json

from actors.sqlite_store import SqliteStore
from actors.task import new_task

PAYLOAD = b'{"to": "ada@example.com", "n": 12345}'
CHUNK = 10_000


def build(path: Path, count: int) -> None:
    store = SqliteStore.open(path)
    try:
        for start in range(0, count, CHUNK):
            ids = range(start, min(count, start + CHUNK))
            store.commit([new_task(f"task-{n:07d}", PAYLOAD, 3) for n in ids])
    finally:
        store.close()


def load_once(path: Path, count: int) -> float:
    started = time.perf_counter()
    store = SqliteStore.open(path)
    try:
        loaded = len(store.load())
    finally:
        store.close()
    elapsed = time.perf_counter() - started
    assert loaded == count, loaded
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the store is built")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        path = Path(scratch) / "tasks.db"
        build(path, args.tasks)
        times = [load_once(path, args.tasks) for _ in range(args.rounds)]
    results = {
        "tasks": args.tasks,
        "load_s": times,
        "median_s": median(times),
        "per_row_us": median(times) / args.tasks * 1e6,
    }
    print(
        table(
            ["tasks", "load, median (s)", "fastest (s)", "per row (µs)"],
            [
                [
                    args.tasks,
                    f"{median(times):.2f}",
                    f"{min(times):.2f}",
                    f"{results['per_row_us']:.2f}",
                ]
            ],
        )
    )
    print(f"written to {write_json('store_load', results)}")


if __name__ == "__main__":
    main()
