"""Benchmark: 10,000 schedules held with the cost of one timer, in-process through TaskSystem.

    python bench/schedules.py [--schedules 10000] [--every-ms 10000] [--periods 3] [--cron]
    python bench/schedules.py --cluster 2 [--schedules 1000] [--every-ms 10000] [--periods 3]

Creates the schedules the way ``POST /schedules`` does (a Timing and a template task each) on a
system with the built-in no-op handler, 4 workers. Reported:

- memory per schedule: what the schedules hold once created (tracemalloc's count of the Python
  allocations still live, and the process's RSS growth), divided by their number;
- the threads the schedules cost: the schedule actor's own and its one alarm thread, however
  many schedules there are;
- firing lateness: each firing task's ``created_at`` (set as the firing admits it, after it has
  asked the repository about the last task) minus its nominal time, over ``--periods`` periods
  of ``--every-ms`` (the schedules' creation times, and so their firings, spread over the time
  it took to create them); with ``--cron``, also every schedule on ``* * * * *``: all of them
  due at the same second, the next whole minute (waits for it).

With ``--cluster N``: N ``python main.py`` instances on a private PostgreSQL (bench/pg_common.py,
fsync on), the schedules created through ``POST /schedules`` on the first one; every instance's
timer tries every firing, and the firing's transaction lets one through. Reported: the firing
lateness (the task's ``created_at``, set by the instance that fired, minus its nominal time, read
from the database), the firings and skips, and which instance fired how many; and the firings
due by the time the tasks were read that are missing or there more than once (both must be 0).
"""

from __future__ import annotations

import argparse
import math
import threading
import time
import tracemalloc
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from common import (
    CpuWatch,
    os_thread_count,
    percentile,
    rss_bytes,
    settle_memory,
    table,
    write_json,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors import TaskSystem, TaskView
    from actors.reply import Reply
    from actors.schedule import Schedule

WORKERS: Final = 4
TASKS: Final = "task_queue_tasks"
TIMEOUT_S: Final = 120.0


def noop(task: TaskView) -> None:
    """Every firing's task ends at once: a skip would mean the schedule actor fell behind."""


def create(
    system: TaskSystem, count: int, prefix: str, cron: str | None, every_ms: int | None
) -> list[Schedule]:
    from actors.schedule import timing_of
    from actors.task import new_task

    replies: list[Reply[Schedule | None]] = []
    for index in range(count):
        schedule_id = f"{prefix}-{index}"
        timing = timing_of(cron, every_ms, "UTC")
        template = new_task(schedule_id, b'{"report": "daily"}', 3, 0.0)
        replies.append(system.add_schedule_async(schedule_id, timing, template))
    created = [reply.get(timeout=TIMEOUT_S) for reply in replies]
    assert all(schedule is not None for schedule in created)
    return [schedule for schedule in created if schedule is not None]


def firing_lateness(system: TaskSystem, schedules: Sequence[Schedule]) -> list[float]:
    """Each firing task's lateness in seconds: its creation minus the firing's nominal time."""
    by_id = {schedule.id: schedule for schedule in schedules}
    page = system.list_page_async().get(timeout=TIMEOUT_S)
    assert page is not None
    lateness = []
    for task in page.tasks:
        schedule_id, _, _ = task.id.rpartition("@")
        schedule = by_id.get(schedule_id)
        if schedule is None:
            continue
        timing = schedule.timing
        if timing.every_ms is not None:
            period = timing.every_ms / 1000
            periods = round((task.created_at - schedule.created_at) / period)
            nominal = schedule.created_at + periods * period
        else:
            # A cron firing's time is a whole second, the one its id shows.
            nominal = datetime.fromisoformat(task.id.rpartition("@")[2]).timestamp()
        lateness.append(task.created_at - nominal)
    return lateness


def stats(lateness: Sequence[float]) -> dict[str, float]:
    return {
        "firings": len(lateness),
        "p50_ms": percentile(lateness, 50) * 1000,
        "p99_ms": percentile(lateness, 99) * 1000,
        "max_ms": max(lateness) * 1000,
    }


def measure(count: int, every_ms: int, periods: int, cron: bool) -> dict[str, Any]:
    from actors import TaskSystem

    system = TaskSystem.start(noop, workers=WORKERS, queue_size=64)
    try:
        threads_idle = os_thread_count()
        alarms_idle = sum(1 for t in threading.enumerate() if t.name == "schedule-alarm")
        settle_memory()
        rss_before = rss_bytes()
        tracemalloc.start()
        traced_before = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        schedules = create(system, count, "every", None, every_ms)
        create_s = time.perf_counter() - started
        settle_memory()
        traced_after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        rss_after = rss_bytes()
        threads_held = os_thread_count()
        alarms_held = sum(1 for t in threading.enumerate() if t.name == "schedule-alarm")
        watch = CpuWatch()
        # Every schedule fires ``periods`` times: wait for the last one's last firing.
        last_due = max(schedule.created_at for schedule in schedules) + periods * every_ms / 1000
        time.sleep(max(0.0, last_due - time.time() + 0.5))
        every = stats(firing_lateness(system, schedules))
        shown = system.list_schedules_async().get(timeout=TIMEOUT_S)
        skipped = sum(schedule.skipped for schedule in shown)
        for schedule in schedules:
            system.delete_schedule_async(schedule.id).get(timeout=TIMEOUT_S)
        results: dict[str, Any] = {
            "schedules": count,
            "every_ms": every_ms,
            "periods": periods,
            "create_s": create_s,
            "traced_bytes_per_schedule": (traced_after - traced_before) / count,
            "rss_bytes_per_schedule": (rss_after - rss_before) / count,
            "threads_idle_system": threads_idle,
            "threads_with_schedules": threads_held,
            "schedule_alarm_threads": [alarms_idle, alarms_held],
            "every": every,
            "expected_firings": count * periods,
            "skipped": skipped,
            # Cores busy with other processes meanwhile: lateness is the scheduler's too.
            "foreign_cores": watch.foreign_cores(),
        }
        if cron:
            minutely = create(system, count, "minutely", "* * * * *", None)
            due = minutely[0].next_run_at
            assert due is not None
            time.sleep(max(0.0, due - time.time() + 3.0))
            results["cron_burst"] = stats(firing_lateness(system, minutely))
        return results
    finally:
        system.stop(time.monotonic() + 10)


READ_MARGIN_S: Final = 0.5
"""The firings a cluster run must have made are those due this long before the tasks are read."""


def measure_cluster(instances_n: int, count: int, every_ms: int, periods: int) -> dict[str, Any]:
    """The schedules of a cluster of ``instances_n`` instances: lateness of their firings."""
    import http.client
    import json

    import psycopg
    from common import BIG_QUEUE, HOST, NOOP_HANDLER, wait_for_quiet
    from pg_common import bench_server, instances

    with bench_server() as server:
        url = server.url(server.create_database("schedules"))
        options = {"TASK_HANDLER": NOOP_HANDLER, "QUEUE_SIZE": str(BIG_QUEUE)}
        with instances(instances_n, url, "schedules", **options) as started:
            wait_for_quiet()
            watch = CpuWatch([instance.process.pid for instance in started])
            connection = http.client.HTTPConnection(HOST, started[0].port, timeout=30)
            created: dict[str, float] = {}
            began = time.perf_counter()
            for index in range(count):
                body = {"id": f"every-{index}", "every_ms": every_ms, "task": {}}
                connection.request("POST", "/schedules", body=json.dumps(body).encode())
                response = connection.getresponse()
                answer = json.loads(response.read())
                assert response.status == 201, answer
                created[answer["id"]] = datetime.fromisoformat(answer["created_at"]).timestamp()
            create_s = time.perf_counter() - began
            connection.close()
            last_due = max(created.values()) + periods * every_ms / 1000
            time.sleep(max(0.0, last_due - time.time() + 1.5))
            foreign_cores = watch.foreign_cores()
            service_cpu_s = sum(watch.pid_seconds(instance.process.pid) for instance in started)
            # Firings due by then must all be there; one due in the last moments may not be.
            read_at = time.time() - READ_MARGIN_S
            with psycopg.connect(url) as db:
                rows = db.execute(f"SELECT id, created_at, enqueued_by FROM {TASKS}").fetchall()
                counts = db.execute(
                    "SELECT sum(fired), sum(skipped) FROM task_queue_schedules"
                ).fetchone()
            assert counts is not None
            lateness: list[float] = []
            by_instance: dict[str, int] = {}
            period = every_ms / 1000
            # (schedule, period) of each firing by the read: each must be there exactly once.
            seen: dict[tuple[str, int], int] = {}
            for task_id, task_created, enqueued_by in rows:
                schedule_id = task_id.rpartition("@")[0]
                anchor = created[schedule_id]
                periods_in = round((task_created - anchor) / period)
                lateness.append(task_created - (anchor + periods_in * period))
                by_instance[enqueued_by] = by_instance.get(enqueued_by, 0) + 1
                if anchor + periods_in * period <= read_at:
                    seen[schedule_id, periods_in] = seen.get((schedule_id, periods_in), 0) + 1
            due_by_read = {
                (schedule_id, n)
                for schedule_id, anchor in created.items()
                for n in range(1, math.floor((read_at - anchor) / period) + 1)
            }
    return {
        "instances": instances_n,
        "schedules": count,
        "every_ms": every_ms,
        "periods": periods,
        "create_s": create_s,
        "every": stats(lateness),
        # Creating the schedules may take longer than a period: the first ones then fire
        # more often than ``periods`` by the time the last ones have.
        "expected_firings": len(due_by_read),
        "missing": len(due_by_read - seen.keys()),
        "extra": sum(n - 1 for n in seen.values()) + len(seen.keys() - due_by_read),
        "fired": int(counts[0]),
        "skipped": int(counts[1]),
        "fired_by_instance": by_instance,
        "service_cpu_s": service_cpu_s,
        "foreign_cores": foreign_cores,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Schedules held with the cost of one timer")
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--every-ms", type=int, default=10_000)
    parser.add_argument("--periods", type=int, default=3)
    parser.add_argument("--cron", action="store_true", help="also fire all at one minute")
    parser.add_argument(
        "--cluster", type=int, metavar="N", help="N instances on a private PostgreSQL"
    )
    parser.add_argument("--json", help="output file (default bench/out/schedules.json)")
    args = parser.parse_args(argv)
    if args.cluster:
        return main_cluster(args)
    print(
        f"Schedules: {args.schedules:,} every {args.every_ms} ms for {args.periods} periods, "
        f"{WORKERS} workers, no-op handler"
    )
    results = measure(args.schedules, args.every_ms, args.periods, args.cron)
    print(
        table(
            [
                "schedules",
                "bytes each (traced)",
                "bytes each (RSS)",
                "threads idle",
                "with them",
                "alarm threads",
            ],
            [
                [
                    results["schedules"],
                    round(results["traced_bytes_per_schedule"]),
                    round(results["rss_bytes_per_schedule"]),
                    results["threads_idle_system"],
                    results["threads_with_schedules"],
                    results["schedule_alarm_threads"][1],
                ]
            ],
        )
    )
    rows = [["every_ms", results["every"], results["expected_firings"], results["skipped"]]]
    if "cron_burst" in results:
        rows.append(["* * * * * (all at once)", results["cron_burst"], args.schedules, 0])
    print(
        table(
            ["firings", "count", "expected", "skipped", "lateness p50 ms", "p99 ms", "max ms"],
            [
                [
                    name,
                    row["firings"],
                    expected,
                    skipped,
                    f"{row['p50_ms']:.1f}",
                    f"{row['p99_ms']:.1f}",
                    f"{row['max_ms']:.1f}",
                ]
                for name, row, expected, skipped in rows
            ],
        )
    )
    print(f"(other processes kept {results['foreign_cores']:.1f} cores busy meanwhile)")
    print(f"written: {write_json('schedules', results, args.json)}")
    return results


def main_cluster(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"Schedules in a cluster of {args.cluster} instances on PostgreSQL: {args.schedules:,} "
        f"every {args.every_ms} ms for {args.periods} periods, no-op handler"
    )
    results = measure_cluster(args.cluster, args.schedules, args.every_ms, args.periods)
    row = results["every"]
    print(
        table(
            [
                "firings",
                "due by the read",
                "missing",
                "extra",
                "skipped",
                "lateness p50 ms",
                "p99 ms",
                "max ms",
                "by",
            ],
            [
                [
                    row["firings"],
                    results["expected_firings"],
                    results["missing"],
                    results["extra"],
                    results["skipped"],
                    f"{row['p50_ms']:.1f}",
                    f"{row['p99_ms']:.1f}",
                    f"{row['max_ms']:.1f}",
                    results["fired_by_instance"],
                ]
            ],
        )
    )
    print(
        f"(created in {results['create_s']:.1f} s; "
        f"the instances used {results['service_cpu_s']:.1f} s of CPU; other processes kept "
        f"{results['foreign_cores']:.1f} cores busy meanwhile)"
    )
    print(f"written: {write_json('schedules_cluster', results, args.json)}")
    return results


if __name__ == "__main__":
    main()
