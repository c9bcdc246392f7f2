"""End to end with DATABASE_URL: what a cluster instance does not offer yet (issue 15's
schedules) is refused plainly, and what asks about queues is answered at once (the queues
themselves: tests/test_e2e_cluster_queues.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tests.test_e2e_cluster import Cluster, cluster  # noqa: F401 (the fixture)

if TYPE_CHECKING:
    pass

ANSWER_S = 2.0


def test_a_cluster_instance_has_the_default_queue_and_no_schedule_paths(
    cluster: Cluster,  # noqa: F811
) -> None:
    service = cluster.start("only")

    accepted = service.enqueue({"id": "a", "payload": 1, "queue": "default"})
    unknown = service.enqueue({"id": "b", "payload": 1, "queue": "emails"})
    started = time.monotonic()
    stats = service.request("GET", "/stats")
    stats_s = time.monotonic() - started

    assert accepted.status == 201, accepted
    assert accepted.json()["queue"] == "default"
    assert (unknown.status, unknown.json()) == (400, {"error": "unknown queue"})
    assert stats.status == 200, stats
    assert stats_s < ANSWER_S
    assert [queue["name"] for queue in stats.json()["queues"]] == ["default"]
    for method, path in (
        ("GET", "/schedules"),
        ("POST", "/schedules"),
        ("GET", "/schedule?id=x"),
    ):
        reply = service.request(method, path)
        assert reply.status == 404, (method, path, reply)
