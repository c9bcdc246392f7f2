"""Running wrk with bench/unique_ids.lua against a local server, and reading its figures."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

from common import BENCH_DIR, HOST, CpuWatch, quiet_measurement

if TYPE_CHECKING:
    from pathlib import Path

SCRIPT: Final = BENCH_DIR / "unique_ids.lua"
WRK_THREADS: Final = 2
"""One wrk thread per core: enough to saturate a Python server on this machine."""
TIMEOUT_S: Final = 5
"""A request unanswered this long counts as a socket error (timeout)."""


@dataclass(frozen=True)
class WrkResult:
    connections: int
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_s: float
    """CPU seconds the server process used during the run (user + system)."""
    foreign_cores: float
    """Average cores busy with other processes during the run: noise from a shared machine."""

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s

    @property
    def accepted(self) -> int:
        return self.requests - self.non_2xx

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / max(1, self.requests) * 1e6

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "rps": self.rps,
            "cpu_us_per_request": self.cpu_us_per_request,
        }


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    return path


def run_wrk(
    port: int, connections: int, duration_s: float, server_pid: int, script: Path = SCRIPT
) -> WrkResult:
    """One wrk run of POST /enqueue with fresh unique ids (``script`` writes the bodies); stops
    by itself after ``duration_s``."""
    command = [
        require_wrk(),
        f"-t{min(WRK_THREADS, connections)}",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        f"--timeout={TIMEOUT_S}s",
        "-s",
        str(script),
        f"http://{HOST}:{port}",
        "--",
        uuid.uuid4().hex[:8],
    ]
    watch = CpuWatch([server_pid])
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60)
    server_cpu_s, foreign_cores = watch.pid_seconds(server_pid), watch.foreign_cores()
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    figures = _parse(done.stdout)
    return WrkResult(
        connections=connections,
        requests=figures["requests"],
        duration_s=figures["duration_us"] / 1e6,
        non_2xx=figures["non_2xx"],
        socket_errors=sum(
            figures[key] for key in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        p50_ms=figures["p50_us"] / 1000,
        p90_ms=figures["p90_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        max_ms=figures["max_us"] / 1000,
        server_cpu_s=server_cpu_s,
        foreign_cores=foreign_cores,
    )


def run_wrk_quietly(
    port: int, connections: int, duration_s: float, server_pid: int
) -> tuple[WrkResult, int]:
    """A measured run, repeated if other processes disturbed it (see quiet_measurement).

    Returns the least disturbed run and how many requests all the runs had accepted.
    """
    best, runs = quiet_measurement(
        lambda: run_wrk(port, connections, duration_s, server_pid),
        lambda result: result.foreign_cores,
    )
    return best, sum(run.accepted for run in runs)


def _parse(output: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith("WRK_JSON "):
            figures: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            return figures
    raise RuntimeError(f"no WRK_JSON line in wrk's output:\n{output}")
