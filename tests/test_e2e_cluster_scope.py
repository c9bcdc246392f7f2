"""End to end with DATABASE_URL: what a cluster instance does not offer yet (issue 15's queues)
is refused plainly, and nothing that asks about queues waits for an answer that a cluster's
dispatcher never gives. (Its schedules: tests/test_e2e_cluster_schedules.py.)"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING

from tests.test_e2e import ROOT
from tests.test_e2e_cluster import Cluster, cluster  # noqa: F401 (the fixture)

if TYPE_CHECKING:
    from pathlib import Path

ANSWER_S = 2.0


def test_a_cluster_instance_has_the_default_queue_and_no_queue_paths(
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
    assert stats.json()["queues"] == []
    for method, path in (
        ("GET", "/queues"),
        ("POST", "/queues/pause?name=default"),
    ):
        reply = service.request(method, path)
        assert reply.status == 404, (method, path, reply)


def test_queues_with_database_url_is_a_startup_error(tmp_path: Path) -> None:
    environ = {
        "DATABASE_URL": "postgresql://u:s3cret@127.0.0.1:1/tasks",
        "QUEUES": "default:2,emails:1",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "main.py"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )

    assert done.returncode == 2
    assert "QUEUES" in done.stderr
    assert "DATABASE_URL" in done.stderr
    assert "s3cret" not in done.stderr
