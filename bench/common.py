"""What the benchmark scripts share: processes on free ports, statistics, machine facts, output.

Every script in bench/ is run as ``python bench/NAME.py`` from anywhere; Python puts bench/ on
``sys.path``, which is how they import this module. Loads only ever target 127.0.0.1.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import hashlib
import http.client
import importlib.metadata
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

T = TypeVar("T")

BENCH_DIR: Final = Path(__file__).resolve().parent
ROOT: Final = BENCH_DIR.parent
OUT_DIR: Final = BENCH_DIR / "out"
HOST: Final = "127.0.0.1"

PACKAGES: Final = ("pykka", "falcon", "waitress", "msgspec", "huey", "dramatiq", "matplotlib")

NOOP_HANDLER: Final = "actors.handlers:noop"
BIG_QUEUE: Final = 10_000_000
"""QUEUE_SIZE for load runs: the service's upper bound, so the load never meets a full line."""

READY_TIMEOUT_S: Final = 15.0
"""How long a started server may take to answer its first request."""


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def log_file(name: str) -> IO[bytes]:
    """A file under bench/out/logs/ for a server's stderr, so a full pipe never stalls it."""
    logs = OUT_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return (logs / f"{name}.log").open("wb")


def start_service(
    port: int, name: str, root: Path = ROOT, **settings: str
) -> subprocess.Popen[bytes]:
    """``python main.py`` exactly as a user starts it, with ``settings`` as its configuration;
    ``root`` is the source tree to run (another checkout, for an A/B of two commits: Python puts
    the script's own directory first on the path, so that tree's packages are the ones used).

    The service's own variables are dropped from the inherited environment (a DB_PATH or
    LOG_LEVEL set in the shell would silently change what is measured); defaults apply unless
    ``settings`` names them.
    """
    from api.config import CONFIG_VARIABLES

    inherited = {name: value for name, value in os.environ.items() if name not in CONFIG_VARIABLES}
    env = {**inherited, "HOST": HOST, "PORT": str(port), **settings}
    return _spawn([sys.executable, str(root / "main.py")], env, name, cwd=root)


def start_bare(port: int, threads: int, name: str) -> subprocess.Popen[bytes]:
    """The bare Falcon + waitress app (bench/bare_app.py)."""
    command = [sys.executable, str(BENCH_DIR / "bare_app.py"), "--port", str(port)]
    return _spawn([*command, "--threads", str(threads)], dict(os.environ), name)


def _spawn(
    command: list[str], env: dict[str, str], name: str, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    with log_file(name) as log:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=log)


def wait_ready(port: int, process: subprocess.Popen[bytes], path: str = "/healthz") -> None:
    """Poll ``path`` until it answers 200; fail if the process exits or the deadline passes."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before serving")
        try:
            status, _ = http_request(port, "GET", path, timeout_s=1.0)
        except OSError:
            time.sleep(0.05)
            continue
        if status == 200:
            return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} not ready within {READY_TIMEOUT_S} s")


def stop(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    """SIGTERM, wait for exit (kill past ``timeout_s``); returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -9


def default_http_threads() -> int:
    """The service's own default HTTP_THREADS."""
    from api.config import load_config

    return load_config({}).http_threads


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, timeout_s: float = 10.0
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


# --- other load on the machine ----------------------------------------------------------------

QUIET_CORES: Final = 0.25
"""Busy cores below which the machine counts as quiet before a measurement starts."""
QUIET_BUDGET_S: Final = 60.0
"""Seconds one script may spend waiting for quiet and repeating disturbed measurements."""
NOISY_CORES: Final = 0.3
"""Other load during a measurement above which it is repeated."""
NOISY_REPEATS: Final = 2

_budget_spent_s = 0.0


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent not idle since boot (from /proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CpuWatch:
    """CPU used during a measurement by the processes measured, and by everything else.

    The machine is shared: another engineer's load on it would distort figures silently, so
    every measurement reports ``foreign_cores`` (average cores busy with anything that is not
    this script, its waited-for children, or ``pids``).
    """

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self._pids = tuple(pids)
        self._started = time.monotonic()
        self._busy = machine_busy_seconds()
        self._own = own_cpu_seconds()
        self._pid_cpu = {pid: cpu_seconds(pid) for pid in self._pids}

    def pid_seconds(self, pid: int) -> float:
        return cpu_seconds(pid) - self._pid_cpu[pid]

    def foreign_cores(self) -> float:
        elapsed = max(1e-9, time.monotonic() - self._started)
        ours = own_cpu_seconds() - self._own + sum(self.pid_seconds(pid) for pid in self._pids)
        return max(0.0, (machine_busy_seconds() - self._busy - ours) / elapsed)


def wait_for_quiet(window_s: float = 1.0) -> None:
    """Wait until other processes leave the cores alone, within this script's budget."""
    global _budget_spent_s
    started = time.monotonic()
    try:
        while _budget_spent_s + (time.monotonic() - started) < QUIET_BUDGET_S:
            watch = CpuWatch()
            time.sleep(window_s)
            if watch.foreign_cores() < QUIET_CORES:
                return
        print("  warning: the machine is busy with other work; measuring anyway")
    finally:
        _budget_spent_s += time.monotonic() - started


def quiet_measurement(
    measure: Callable[[], T], disturbance: Callable[[T], float]
) -> tuple[T, list[T]]:
    """Measure on a quiet machine; repeat (up to NOISY_REPEATS times) a disturbed measurement.

    Repeats stop once the script's quiet budget is spent. Returns the least disturbed result,
    and every result (a repeated load run adds tasks to the server).
    """
    global _budget_spent_s
    results: list[T] = []
    for _ in range(1 + NOISY_REPEATS):
        wait_for_quiet()
        started = time.monotonic()
        results.append(measure())
        if results[:-1]:  # a repeat is spent from the budget too
            _budget_spent_s += time.monotonic() - started
        if disturbance(results[-1]) <= NOISY_CORES or _budget_spent_s >= QUIET_BUDGET_S:
            break
        print(f"    (other load {disturbance(results[-1]):.2f} cores: measuring again)")
    return min(results, key=disturbance), results


# --- memory and threads of this process -----------------------------------------------------


def _status_field(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{name} not in /proc/self/status")


def rss_bytes() -> int:
    return _status_field("VmRSS") * 1024


def os_thread_count() -> int:
    """Every thread of this process, Python's or not."""
    return _status_field("Threads")


def settle_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so RSS counts only live data."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


# --- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (need not be sorted)."""
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# --- machine facts and output ---------------------------------------------------------------


def machine() -> dict[str, Any]:
    versions: dict[str, str] = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "packages": versions,
        "wrk": _wrk_version(),
        "tree": _git_tree(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _wrk_version() -> str:
    try:
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    except OSError:
        return "not installed"
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else "unknown"


def _git_tree() -> str:
    """The commit measured; when the service code differs from it, "+dirty." and a short hash
    of the difference, so two runs on different uncommitted code do not look alike."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return result.stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    paths = ("actors", "api", "main.py")
    if not git("status", "--porcelain", "--", *paths).strip():
        return commit
    digest = hashlib.sha1(git("diff", "HEAD", "--", *paths).encode())
    for name in sorted(git("ls-files", "--others", "--exclude-standard", "--", *paths).split()):
        digest.update(name.encode() + (ROOT / name).read_bytes())
    return f"{commit}+dirty.{digest.hexdigest()[:7]}"


def write_json(name: str, results: Mapping[str, Any], path: str | None = None) -> Path:
    """Write ``results`` with the machine facts to ``path`` (default bench/out/NAME.json)."""
    target = Path(path) if path else OUT_DIR / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "machine": machine(), "results": results}
    target.write_text(json.dumps(document, indent=2) + "\n")
    return target


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, readable on a terminal too."""
    cells = [[str(h) for h in headers], *[[_cell(value) for value in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return (
            "| "
            + " | ".join(value.ljust(width) for value, width in zip(row, widths, strict=True))
            + " |"
        )

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
