"""Hostile clients (issue 11): what slow senders and unread listings cost the service.

    python bench/hostile_clients.py [--root PATH] [--slow 1100] [--listings 30] [--tasks 100000]

1. Slow clients: ``--slow`` connections send one byte a second (never a whole request) while a
   fresh client asks ``/healthz`` four times a second: its latency, its failures (a probe waits
   at most 5 s), and when the server had closed every slow connection (CLIENT_TIMEOUT_S=2).
2. Unread listings: ``--tasks`` delayed tasks stored (batches of 1000), then ``--listings``
   clients send ``GET /tasks`` and never read (4 KiB receive buffers) while ``/healthz`` is
   probed for 5 s: the service's RSS (/proc) before and at its highest, the probe's latency, and
   the answers' statuses.

``--root`` runs another source tree (``git archive <commit> | tar -x -C /tmp/base``) for a
before/after; the settings it does not know it ignores.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import select
import socket
import time
from pathlib import Path
from typing import Any

from common import HOST, ROOT, free_port, start_service, stop, wait_ready, write_json

PROBE_TIMEOUT_S = 5.0


def probe(port: int) -> float | None:
    """Seconds a fresh client takes to get 200 from /healthz; None if it does not."""
    started = time.monotonic()
    connection = http.client.HTTPConnection(HOST, port, timeout=PROBE_TIMEOUT_S)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        ok = response.status == 200
    except OSError:
        ok = False
    finally:
        connection.close()
    return time.monotonic() - started if ok else None


def latencies(values: list[float | None]) -> dict[str, Any]:
    answered = sorted(v for v in values if v is not None)
    return {
        "probes": len(values),
        "failed": len(values) - len(answered),
        "median_ms": round(answered[len(answered) // 2] * 1000, 1) if answered else None,
        "max_ms": round(answered[-1] * 1000, 1) if answered else None,
    }


def slow_clients(root: Path, count: int) -> dict[str, Any]:
    port = free_port()
    process = start_service(
        port, "hostile-slow", root, TASK_HANDLER="actors.handlers:noop", CLIENT_TIMEOUT_S="2"
    )
    try:
        wait_ready(port, process)
        socks: dict[int, socket.socket] = {}
        for number in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect((HOST, port))
            socks[number] = sock
        started = time.monotonic()
        probes: list[float | None] = []
        all_closed_s = None
        while time.monotonic() - started < 10:
            round_started = time.monotonic()
            if int((round_started - started) * 4) % 4 == 0:
                for number, sock in list(socks.items()):
                    try:
                        sock.send(b"G")
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        sock.close()
                        del socks[number]
            poller = select.poll()
            for sock in socks.values():
                poller.register(sock, select.POLLIN)
            ready = {fd for fd, _ in poller.poll(0)}
            for number, sock in list(socks.items()):
                if sock.fileno() in ready:
                    sock.close()
                    del socks[number]
            if not socks and all_closed_s is None:
                all_closed_s = round(time.monotonic() - started, 2)
            probes.append(probe(port))
            time.sleep(max(0.0, 0.25 - (time.monotonic() - round_started)))
        for sock in socks.values():
            sock.close()
        return {
            "slow": count,
            "all_closed_after_s": all_closed_s,
            "still_open_at_10_s": len(socks),
            "healthz": latencies(probes),
        }
    finally:
        stop(process)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def unread_listings(root: Path, listings: int, tasks: int) -> dict[str, Any]:
    port = free_port()
    process = start_service(
        port,
        "hostile-listings",
        root,
        TASK_HANDLER="actors.handlers:noop",
        SCHEDULED_MAX=str(tasks),
    )
    try:
        wait_ready(port, process)
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        for start in range(0, tasks, 1000):
            batch = [{"id": f"t{n}", "delay_ms": 86_400_000} for n in range(start, start + 1000)]
            connection.request("POST", "/enqueue/batch", body=json.dumps(batch))
            response = connection.getresponse()
            response.read()
            assert response.status == 201, response.status
        connection.close()
        before = rss_mb(process.pid)
        readers = []
        for _ in range(listings):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(30)
            sock.connect((HOST, port))
            sock.sendall(b"GET /tasks HTTP/1.1\r\nHost: x\r\n\r\n")
            readers.append(sock)
        probes: list[float | None] = []
        peak = before
        started = time.monotonic()
        while time.monotonic() - started < 5:
            probes.append(probe(port))
            peak = max(peak, rss_mb(process.pid))
            time.sleep(0.05)
        statuses: dict[str, int] = {}
        for sock in readers:
            with contextlib.suppress(OSError):
                head = sock.recv(64).split(b" ")
                status = head[1].decode() if len(head) > 1 else "none"
                statuses[status] = statuses.get(status, 0) + 1
        peak = max(peak, rss_mb(process.pid))
        for sock in readers:
            sock.close()
        return {
            "tasks": tasks,
            "listings": listings,
            "rss_before_mb": round(before),
            "rss_peak_mb": round(peak),
            "growth_mb": round(peak - before),
            "statuses": statuses,
            "healthz": latencies(probes),
        }
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--slow", type=int, default=1100)
    parser.add_argument("--listings", type=int, default=30)
    parser.add_argument("--tasks", type=int, default=100_000)
    args = parser.parse_args()
    results = {
        "root": str(args.root),
        "slow_clients": slow_clients(args.root, args.slow),
        "unread_listings": unread_listings(args.root, args.listings, args.tasks),
    }
    print(json.dumps(results, indent=2))
    write_json("hostile_clients", results)


if __name__ == "__main__":
    main()
