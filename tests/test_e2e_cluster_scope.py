"""End to end with DATABASE_URL and no QUEUES: an instance has the one queue, ``default``, and
everything that asks about queues and schedules is answered at once (the queues themselves:
tests/test_e2e_cluster_queues.py; the schedules: tests/test_e2e_cluster_schedules.py)."""

from __future__ import annotations

import time

from tests.test_e2e_cluster import Cluster, cluster  # noqa: F401 (the fixture)

ANSWER_S = 2.0


def test_a_cluster_instance_without_queues_declared_has_the_default_queue(
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
    for path in ("/queues", "/schedules"):
        started = time.monotonic()
        reply = service.request("GET", path)
        assert reply.status == 200, (path, reply)
        assert time.monotonic() - started < ANSWER_S, path
    assert [queue["name"] for queue in service.request("GET", "/queues").json()] == ["default"]
