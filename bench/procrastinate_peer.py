"""The peer to beat: the same no-op tasks through procrastinate and through the service, side by
side on the same PostgreSQL.

    pip install procrastinate
    python bench/procrastinate_peer.py [--rounds 3] [--tasks 10000] [--clients 16] [--workers 4]

Each round (the order alternating) runs both on a fresh database of one private PostgreSQL 15
server (bench/pg_common.py: fsync on):

- **procrastinate**: its schema applied, one ``procrastinate`` worker process
  (``App.run_worker``, concurrency ``--workers``, LISTEN/NOTIFY on) started and idle, then
  ``--tasks`` calls of the task's ``defer`` from ``--clients`` threads of this process (its sync
  connector: a psycopg pool, one insert and one notify per job).
- **the service**: one ``python main.py`` with ``DATABASE_URL``, ``WORKERS=--workers`` and the
  no-op handler, and the same number of tasks sent by as many HTTP clients (bench/pg_common.py).

Reported for each: the intake rate (defer or POST /enqueue) and tasks/s end to end, from the
first defer or enqueue to the last task's end as the database records it (procrastinate's
``succeeded`` event, the service's ``updated_at``). procrastinate's defer writes to the
database straight from the client; the service's enqueue is an HTTP request first.

``python bench/procrastinate_peer.py --worker URL --concurrency N`` is the worker process itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from common import log_file, median, table, wait_for_quiet, write_json
from pg_common import bench_server, run_service

if TYPE_CHECKING:
    from collections.abc import Sequence

    import procrastinate

    from tests.pg_server import PgServer

KINDS: Final = ("procrastinate", "service")
WORKER_READY_TIMEOUT_S: Final = 30.0
DRAIN_TIMEOUT_S: Final = 300.0


def make_app(url: str, pool_size: int = 1) -> procrastinate.App:
    """A procrastinate app on ``url`` with one task, ``noop``, that does nothing."""
    import procrastinate

    # procrastinate warns about an app made in the __main__ module, whose tasks a worker that
    # imports the module would not find by their default names; here the task is named
    # explicitly and the worker process makes the same app.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=url, min_size=pool_size, max_size=pool_size
        )
    )

    @app.task(name="noop")
    def noop() -> None:
        """Succeed at once, as the service's actors.handlers:noop does."""

    return app


def worker_main(url: str, concurrency: int) -> None:
    """The worker process: run procrastinate's worker until SIGTERM."""
    app = make_app(url, pool_size=concurrency + 2)
    with app.open():
        app.run_worker(
            concurrency=concurrency,
            wait=True,
            listen_notify=True,
            delete_jobs="never",
            install_signal_handlers=True,
        )


def run_procrastinate(
    server: PgServer, tasks: int, clients: int, concurrency: int, name: str
) -> dict[str, Any]:
    """``tasks`` no-op jobs deferred by ``clients`` threads and run by one worker process."""
    import psycopg

    database = server.create_database(name.replace("-", "_"))
    url = server.url(database)
    app = make_app(url, pool_size=clients)
    worker: subprocess.Popen[bytes] | None = None
    try:
        with app.open():
            app.schema_manager.apply_schema()
            with log_file(name) as log:
                worker = subprocess.Popen(
                    [sys.executable, __file__, "--worker", url, "--concurrency", str(concurrency)],
                    stdout=log,
                    stderr=log,
                )
            wait_for_worker(url, worker)
            task = app.tasks["noop"]
            chunks = [range(n, tasks, clients) for n in range(clients)]

            def client(chunk: range) -> None:
                for _ in chunk:
                    task.defer()

            threads = [threading.Thread(target=client, args=(chunk,)) for chunk in chunks]
            wait_for_quiet()
            began = time.time()
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            intake_s = time.monotonic() - started
        with psycopg.connect(url, autocommit=True) as connection:
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while True:
                row = connection.execute(
                    "SELECT count(*), extract(epoch FROM max(at)) FROM procrastinate_events"
                    " WHERE type = 'succeeded'"
                ).fetchone()
                assert row is not None
                done, last = row
                if done >= tasks:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"procrastinate: {done} of {tasks} done")
                time.sleep(0.05)
        end_to_end_s = float(last) - began
        return {
            "tasks": tasks,
            "clients": clients,
            "accepted": tasks,
            "intake_s": intake_s,
            "intake_per_s": tasks / intake_s,
            "end_to_end_s": end_to_end_s,
            "tasks_per_s": tasks / end_to_end_s,
        }
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        server.drop_database(database)


def wait_for_worker(url: str, worker: subprocess.Popen[bytes]) -> None:
    """Wait until the worker has registered itself (procrastinate_workers) and listens."""
    import psycopg

    deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    with psycopg.connect(url, autocommit=True) as connection:
        while True:
            if worker.poll() is not None:
                raise RuntimeError(f"procrastinate worker exited with {worker.returncode}")
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
            ).fetchone()
            if row is not None and row[0] > 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("procrastinate worker not listening in time")
            time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="procrastinate vs the service, same PostgreSQL")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="concurrency / WORKERS")
    parser.add_argument("--worker-mode", default="process", choices=("process", "thread"))
    parser.add_argument("--json", help="output file (default bench/out/procrastinate_peer.json)")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.concurrency)
        return {}
    from importlib.metadata import version

    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    with bench_server() as server:
        print(
            f"procrastinate {version('procrastinate')} vs the service: {args.tasks:,} no-op "
            f"tasks, {args.clients} clients, {args.workers} workers "
            f"(service WORKER_MODE={args.worker_mode}), {args.rounds} round(s), fsync on"
        )
        for round_number in range(1, args.rounds + 1):
            order = KINDS if round_number % 2 else KINDS[::-1]
            for kind in order:
                name = f"peer-{kind}-{round_number}"
                if kind == "procrastinate":
                    row = run_procrastinate(server, args.tasks, args.clients, args.workers, name)
                else:
                    row = run_service(
                        server,
                        1,
                        args.tasks,
                        args.clients,
                        name,
                        WORKERS=str(args.workers),
                        WORKER_MODE=args.worker_mode,
                    )
                runs[kind].append(row)
                print(
                    f"  round {round_number} {kind:13}: {row['tasks_per_s']:7,.0f} tasks/s "
                    f"end to end ({row['end_to_end_s']:.2f} s)  "
                    f"intake {row['intake_per_s']:7,.0f}/s"
                )
    summary = {
        kind: {
            "tasks_per_s": median([run["tasks_per_s"] for run in runs[kind]]),
            "intake_per_s": median([run["intake_per_s"] for run in runs[kind]]),
            "end_to_end_s": median([run["end_to_end_s"] for run in runs[kind]]),
        }
        for kind in KINDS
    }
    print()
    print(
        table(
            ["system", "tasks/s end to end", "intake/s", "seconds"],
            [
                [kind, s["tasks_per_s"], s["intake_per_s"], s["end_to_end_s"]]
                for kind, s in summary.items()
            ],
        )
    )
    ratio = summary["service"]["tasks_per_s"] / summary["procrastinate"]["tasks_per_s"]
    print(f"\nservice / procrastinate, end to end: {ratio:.2f}")
    results = {"settings": vars(args), "runs": runs, "summary": summary, "ratio": ratio}
    print(f"written: {write_json('procrastinate_peer', results, args.json)}")
    return results


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
