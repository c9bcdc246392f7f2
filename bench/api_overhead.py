"""What the API layer costs per request, in process, with metrics on and off.

    python bench/api_overhead.py [--rounds 5] [--requests 20000]

The HTTP benchmarks (http_intake.py, metrics_cost.py, ab_intake.py) measure whole services on
a shared 2-core machine, where one run differs from the next by up to ±15%: a cost of a few
percent hides in that. This one isolates the Falcon app: it calls ``create_app(...)`` as a WSGI
application, ``POST /enqueue`` with a fresh id each time, over a stand-in task system that
accepts at once, with metrics on and off in alternating rounds, and reports microseconds per
request (medians). It also times the workers' side of metrics, ``TaskMetrics.attempt_ended``,
once per attempt. Together with the service's CPU per request from the HTTP benchmarks
(about 450-550 µs), that says what share of a request metrics take.
"""

from __future__ import annotations

import argparse
import itertools
import time
import timeit
from typing import TYPE_CHECKING, Any

import falcon.testing
from common import median, write_json

from actors.protocol.answers import Admission
from actors.reply import Reply
from actors.task import new_task
from api import create_app
from api.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from actors.task import Task

WARMUP = 2000


class AcceptingSystem:
    """Stands in for TaskSystem on the enqueue path: every task is accepted at once."""

    queue_names = frozenset({"default"})  # what the enqueue resource reads of a TaskSystem

    def submit_async(self, task: Task) -> Reply[Admission]:
        reply: Reply[Admission] = Reply()
        reply.set(Admission.ACCEPTED)
        return reply


def enqueue_caller(metrics: bool) -> Callable[[], None]:
    app = create_app(AcceptingSystem(), metrics=metrics)  # type: ignore[arg-type]
    ids = itertools.count()
    statuses: list[str] = []

    def start_response(status: str, headers: object, exc_info: object = None) -> None:
        statuses.append(status)

    def call() -> None:
        body = b'{"id": "task-%d", "payload": {"n": 1}}' % next(ids)
        environ = falcon.testing.create_environ(path="/enqueue", method="POST", body=body)
        b"".join(app(environ, start_response))
        if not statuses.pop().startswith("201"):
            raise RuntimeError("the app did not accept the task")

    return call


def per_request_us(metrics: bool, requests: int) -> float:
    call = enqueue_caller(metrics)
    for _ in range(WARMUP):
        call()
    started = time.perf_counter()
    for _ in range(requests):
        call()
    return (time.perf_counter() - started) / requests * 1e6


def observer_us() -> float:
    observer = Metrics().tasks
    task = new_task("task-1", b"null", 3)
    number = 200_000
    seconds = min(timeit.repeat(lambda: observer.attempt_ended(task, "done", 0.002), number=number))
    return seconds / number * 1e6


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="API cost per request, metrics on and off")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--json", help="output file (default bench/out/api_overhead.json)")
    args = parser.parse_args(argv)
    runs: dict[str, list[float]] = {"on": [], "off": []}
    for number in range(1, args.rounds + 1):
        for mode in ("on", "off") if number % 2 else ("off", "on"):
            runs[mode].append(per_request_us(mode == "on", args.requests))
        print(f"  round {number}: on {runs['on'][-1]:.1f} µs, off {runs['off'][-1]:.1f} µs")
    on, off = median(runs["on"]), median(runs["off"])
    observe = observer_us()
    result = {
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "app_us_on": runs["on"],
        "app_us_off": runs["off"],
        "app_us_on_median": on,
        "app_us_off_median": off,
        "metrics_us_per_request": on - off,
        "observer_us_per_attempt": observe,
    }
    print(
        f"\nthe app per request: {on:.1f} µs with metrics, {off:.1f} µs without "
        f"(+{on - off:.1f} µs); the workers' observer: {observe:.2f} µs per attempt"
    )
    write_json("api_overhead", result, args.json)
    return result


if __name__ == "__main__":
    main()
