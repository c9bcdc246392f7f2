"""A private PostgreSQL 15 server for the tests, started once per session and removed after.

The machine has Debian's PostgreSQL 15 installed but not running. The ``pg_server`` fixture
makes a cluster in a temporary directory owned by the ``postgres`` user (``initdb``, as that
user through ``runuser`` when the tests run as root), starts it on a free port of 127.0.0.1 with
its socket in the same directory, and at the end of the session stops it and removes the
directory. ``pg_database`` gives each test a database of its own on that server, as the
``postgresql://`` URL a service is given in ``DATABASE_URL``; ``PgServer.stop`` and
``PgServer.start`` take the server away and bring it back on the same port, for outage tests.

Without the binaries, or without the right to run them as ``postgres``, the tests that use
these fixtures are skipped with the reason; with ``CI`` set they fail instead, because there a
skip would hide that the PostgreSQL mode went untested.

The fixtures need no driver: the server is managed with its own programs (``pg_ctl``, ``psql``),
so this works before and whatever the service uses to talk to it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

BIN_DIR: Final = Path(os.environ.get("PG_BIN_DIR", "/usr/lib/postgresql/15/bin"))
"""Where Debian's PostgreSQL 15 keeps its programs (``PG_BIN_DIR`` overrides it)."""

OWNER: Final = "postgres"
"""The operating system user the server runs as: PostgreSQL refuses to run as root."""

HOST: Final = "127.0.0.1"

START_TIMEOUT_S: Final = 30
"""How long ``pg_ctl`` may wait for the server to accept connections (it takes about 0.2 s)."""

START_ATTEMPTS: Final = 3
"""Ports tried before giving up on starting the server."""

COMMAND_TIMEOUT_S: Final = 60.0
"""Any one of the server's programs (initdb takes a second or two) must end within this."""

SETTINGS: Final = (
    "listen_addresses=127.0.0.1",
    # Tests crash service processes, never the machine: what a committed transaction leaves in
    # the operating system's cache survives a killed process or a stopped server, so no test
    # can see what fsync changes, and without it a commit costs no disk flush. The benchmarks
    # (bench/pg_*.py) keep fsync on, as a production server would.
    "fsync=off",
    "full_page_writes=off",
    # Several service processes per test, each with a pool, and a listening connection each.
    "max_connections=200",
)

_unique = itertools.count(1)


def unavailable_reason(bin_dir: Path = BIN_DIR) -> str | None:
    """Why a private server cannot be started here, or None if it can."""
    for program in ("initdb", "pg_ctl", "postgres", "psql"):
        if not (bin_dir / program).is_file():
            return f"PostgreSQL 15 is not installed: no {bin_dir / program}"
    try:
        pwd.getpwnam(OWNER)
    except KeyError:
        return f"there is no {OWNER!r} user to run the server as"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return f"running as root without runuser, so the server cannot run as {OWNER!r}"
    elif pwd.getpwuid(os.geteuid()).pw_name != OWNER:
        return f"the tests run neither as root nor as {OWNER!r}, so they cannot start the server"
    return None


def require_postgres(bin_dir: Path = BIN_DIR) -> None:
    """Skip the calling test when no server can be started here; in CI (``CI`` set), fail it."""
    reason = unavailable_reason(bin_dir)
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so the PostgreSQL tests must run, but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PgServer:
    """One private cluster: its directory, its port, and ways to stop, start and use it."""

    def __init__(
        self, root: Path, port: int, bin_dir: Path = BIN_DIR, settings: Sequence[str] = SETTINGS
    ) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.socket_dir = root
        self.log_path = root / "server.log"
        self.port = port
        self.bin_dir = bin_dir
        self.settings = tuple(settings)

    @classmethod
    def create(cls, bin_dir: Path = BIN_DIR, settings: Sequence[str] = SETTINGS) -> PgServer:
        """Make a new cluster in a temporary directory owned by ``postgres`` (not started)."""
        root = Path(tempfile.mkdtemp(prefix="task_queue-pg-"))
        owner = pwd.getpwnam(OWNER)
        os.chown(root, owner.pw_uid, owner.pw_gid)
        server = cls(root, free_port(), bin_dir, settings)
        try:
            server._run(
                "initdb",
                "-D",
                str(server.data_dir),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            )
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one of the server's programs as ``postgres``; fail with its output if it fails."""
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", OWNER, "--", *command]
        result = subprocess.run(
            command,
            cwd=self.root,  # postgres cannot look into the test runner's working directory
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} exited with {result.returncode}:\n"
                f"{result.stdout}{result.stderr}{self.server_log()}"
            )
        return result

    def server_log(self) -> str:
        """The server's own log, for a failure's message."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    @property
    def options(self) -> str:
        settings = " ".join(f"-c {setting}" for setting in self.settings)
        return f"-p {self.port} -k {self.socket_dir} {settings}"

    def start(self) -> None:
        """Start the server on its port and wait until it accepts connections."""
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            self.options,
            "-w",
            "-t",
            str(START_TIMEOUT_S),
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` ends every session and checkpoints; ``immediate`` is as
        abrupt as a crash (recovery replays the log at the next start)."""
        self._run(
            "pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(START_TIMEOUT_S)
        )

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def url(self, database: str = "postgres") -> str:
        """The URL of ``database`` on this server, as ``DATABASE_URL`` takes it."""
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql through the server's socket; its output, unaligned."""
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                statement,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql {statement!r} failed: {result.stderr}")
        return result.stdout.strip()

    def schema(self, database: str) -> str:
        """``database``'s schema as pg_dump writes it (no data), to compare two databases."""
        dumped = self._run(
            "pg_dump",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            database,
        ).stdout
        # pg_dump marks its output with a random key (\restrict): not part of the schema.
        return "\n".join(line for line in dumped.splitlines() if not line.startswith("\\"))

    def create_database(self, prefix: str = "test") -> str:
        """Create an empty database with a name not used before in this session; its name."""
        name = f"{prefix}_{os.getpid()}_{next(_unique)}"
        self.sql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending any session still on it (a killed service's, say)."""
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def remove(self) -> None:
        """Stop the server if it runs, at once, and remove its directory."""
        if self.is_running():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_server(
    bin_dir: Path = BIN_DIR, settings: Sequence[str] = SETTINGS
) -> Iterator[PgServer]:
    """A started private server, stopped and removed on leaving (the benchmarks use it too)."""
    server = PgServer.create(bin_dir, settings)
    try:
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                server.start()
                break
            except RuntimeError:
                # The free port may have been taken since it was picked (other test runs share
                # the machine): a server that could not bind tries another one.
                if attempt == START_ATTEMPTS or "could not bind" not in server.server_log():
                    raise
                server.port = free_port()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's private PostgreSQL server (skipped, or in CI failed, where there is none)."""
    require_postgres()
    with private_server() as server:
        yield server


@pytest.fixture
def pg_database(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database for this test: its ``postgresql://`` URL.

    Afterwards the server is started again if the test left it stopped, so that one outage test
    cannot take the server from the tests after it, and the database is dropped.
    """
    name = pg_server.create_database()
    yield pg_server.url(name)
    if not pg_server.is_running():
        pg_server.start()
    pg_server.drop_database(name)
