"""What the PostgreSQL benchmarks share: a private server, instances on it, enqueuers, counts.

The server is the tests' own (tests/pg_server.py: Debian's PostgreSQL 15, started as
``postgres`` in a temporary directory and removed after), but with ``fsync`` on: a benchmark of
a durable queue measures the commits it pays for, as a production server would make it pay.
Each measurement gets a fresh database of its own on it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from common import (
    BIG_QUEUE,
    HOST,
    NOOP_HANDLER,
    ROOT,
    CpuWatch,
    free_port,
    http_request,
    start_service,
    stop,
    wait_for_quiet,
    wait_ready,
)

sys.path.insert(0, str(ROOT))  # tests.pg_server, as the test suite has it

from tests.pg_server import PgServer, private_server, unavailable_reason

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator, Sequence

SERVER_SETTINGS: Final = ("listen_addresses=127.0.0.1", "max_connections=300")
"""The benchmark server's settings: PostgreSQL's defaults (fsync, synchronous_commit and full
page writes on) but for where it listens and how many connections it takes."""

TABLE: Final = "task_queue_tasks"
"""The service's task table (actors/pg_schema.py)."""

DRAIN_TIMEOUT_S: Final = 300.0
"""How long a benchmark waits for its tasks to finish before it gives up."""


@contextlib.contextmanager
def bench_server() -> Iterator[PgServer]:
    """A private PostgreSQL server for one benchmark script, fsync on; removed at the end."""
    reason = unavailable_reason()
    if reason is not None:
        raise SystemExit(f"cannot start PostgreSQL: {reason}")
    with private_server(settings=SERVER_SETTINGS) as server:
        yield server


class Instance(NamedTuple):
    name: str
    port: int
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def instances(
    count: int, database_url: str | None, name: str, **settings: str
) -> Iterator[list[Instance]]:
    """``count`` instances of ``python main.py`` on ``database_url`` (memory only if None),
    started together and ready; stopped with SIGTERM afterwards."""
    started: list[Instance] = []
    try:
        for number in range(1, count + 1):
            port, label = free_port(), f"{name}-{number}"
            options = dict(settings)
            if database_url is not None:
                options |= {"DATABASE_URL": database_url, "INSTANCE_ID": label}
            started.append(Instance(label, port, start_service(port, label, **options)))
        for instance in started:
            wait_ready(instance.port, instance.process)
        yield started
    finally:
        for instance in started:
            ended_already = instance.process.poll() is not None  # a benchmark killed it
            code = stop(instance.process)
            if code != 0 and not ended_already:
                print(f"  warning: {instance.name} exited with {code} (bench/out/logs/)")


def task_counts(database_url: str) -> dict[str, int]:
    """Tasks per status in the service's table, read straight from the database."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute(f"SELECT status, count(*) FROM {TABLE} GROUP BY status")
        return {status: count for status, count in rows}


def wait_until_done(database_url: str, total: int, timeout_s: float = DRAIN_TIMEOUT_S) -> float:
    """Wait until ``total`` tasks are done; when the last one finished (its ``updated_at``, on
    this machine's clock: the services run here too)."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url, autocommit=True) as connection:
        while True:
            done_row = connection.execute(
                f"SELECT count(*), max(updated_at) FROM {TABLE} WHERE status = 'done'"
            ).fetchone()
            assert done_row is not None
            done, last = done_row
            if done >= total:
                return float(last)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{done} of {total} tasks done after {timeout_s} s")
            time.sleep(0.05)


class Intake(NamedTuple):
    accepted: int
    refused: dict[int, int]
    """Answers other than 201, by status."""
    seconds: float


def enqueue_all(
    ports: Sequence[int], ids: Sequence[str], clients: int, body: bytes = b"null"
) -> Intake:
    """POST /enqueue every id, from ``clients`` threads on keep-alive connections spread over
    ``ports`` (as a load balancer would); the payload is ``body``."""
    chunks = [ids[n::clients] for n in range(clients)]
    refused: dict[int, int] = {}
    accepted = 0
    lock = threading.Lock()

    def client(number: int) -> None:
        nonlocal accepted
        connection = http.client.HTTPConnection(HOST, ports[number % len(ports)], timeout=30)
        ok, other = 0, dict[int, int]()
        try:
            for task_id in chunks[number]:
                body_bytes = b'{"id":%s,"payload":%s}' % (json.dumps(task_id).encode(), body)
                connection.request("POST", "/enqueue", body=body_bytes)
                response = connection.getresponse()
                response.read()
                if response.status == 201:
                    ok += 1
                else:
                    other[response.status] = other.get(response.status, 0) + 1
        finally:
            connection.close()
            with lock:
                accepted += ok
                for status, count in other.items():
                    refused[status] = refused.get(status, 0) + count

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Intake(accepted, refused, time.monotonic() - started)


def run_service(
    server: PgServer, count: int, tasks: int, clients: int, name: str, **settings: str
) -> dict[str, Any]:
    """``tasks`` no-op tasks through ``count`` instances on a fresh database: enqueued by
    ``clients`` HTTP clients spread over them while they run; the figures, end to end (from the
    first enqueue to the last task's end, its ``updated_at``)."""
    database = server.create_database(name.replace("-", "_"))
    url = server.url(database)
    options = {"TASK_HANDLER": NOOP_HANDLER, "QUEUE_SIZE": str(BIG_QUEUE), **settings}
    ids = [f"{name}-{n}" for n in range(tasks)]
    try:
        with instances(count, url, name, **options) as started:
            wait_for_quiet()
            watch = CpuWatch([instance.process.pid for instance in started])
            began = time.time()
            intake = enqueue_all([instance.port for instance in started], ids, clients)
            finished = wait_until_done(url, intake.accepted)
            service_cpu_s = sum(watch.pid_seconds(instance.process.pid) for instance in started)
            foreign_cores = watch.foreign_cores()
            attempts = [instance_attempts(instance.port) for instance in started]
        return {
            "instances": count,
            "tasks": tasks,
            "clients": clients,
            "accepted": intake.accepted,
            "refused": intake.refused,
            "intake_s": intake.seconds,
            "intake_per_s": intake.accepted / intake.seconds,
            "end_to_end_s": finished - began,
            "tasks_per_s": intake.accepted / (finished - began),
            "attempts_by_instance": attempts,
            "service_cpu_s": service_cpu_s,
            "foreign_cores": foreign_cores,
        }
    finally:
        server.drop_database(database)


def instance_attempts(port: int) -> int | None:
    """The attempts an instance counts in /stats (its own, or the cluster's if it says so)."""
    status, body = http_request(port, "GET", "/stats")
    if status != 200:
        return None
    attempts = json.loads(body).get("totals", {}).get("attempts")
    return attempts if isinstance(attempts, int) else None
