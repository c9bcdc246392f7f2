"""Connecting to PostgreSQL: one URL, the timeouts that keep an outage quick, and errors that
name the host and database but never the password."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from typing import TYPE_CHECKING, Final, NamedTuple
from urllib.parse import unquote, urlsplit

from actors.store import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 5
"""How long a connection attempt may take: a start against an unreachable database gives up
well within the 15 s the contract allows, and a reconnection in an outage never hangs."""

STATEMENT_TIMEOUT_MS: Final = 10_000
"""No statement of ours takes long: one that does is waiting on a lock or a dying server, and
the repository, which waits on it, must get its thread back."""

IDLE_IN_TRANSACTION_MS: Final = 5_000
"""Our transactions never wait on us between statements for longer than a round trip: one
that does belongs to an instance that hung or lost the network mid-transaction, and the
server ends it, so the locks it holds (the intake lock among them) never stall the cluster."""

SYNCHRONOUS_COMMIT: Final = "off"
"""The connection's default: a commit does not wait for its WAL to reach the disk (it does
within ``wal_writer_delay``, 200 ms by default). Claims, outcomes and lease renewals are each a
commit, one or more per task, made one after the other by the repository: waiting for a disk
flush each would bound an instance to a few hundred tasks a second. Only a crash of the
PostgreSQL server itself (never of an instance) can take such commits back, and what it takes
back runs again: a claim undone leaves the task queued, an outcome undone leaves the attempt
running until its lease ends, when it is rescued as interrupted (at least once). The commits a
client is promised (intake, cancel, retry by hand, delete) set it back on (actors/pg_store.py).
The same trade as SQLite's ``synchronous=NORMAL`` (actors/sqlite_store.py)."""

TCP_USER_TIMEOUT_MS: Final = 5_000
"""A server that vanishes mid-statement (a cut network) is noticed this soon, not after the
kernel's minutes of retransmissions."""


class DatabaseUrl(NamedTuple):
    """A DATABASE_URL, and how to name it in messages: host and database, never the password."""

    url: str
    host: str
    database: str

    @classmethod
    def parse(cls, url: str) -> DatabaseUrl:
        """StoreError (with no part of the URL in it) if it is not a PostgreSQL URL."""
        try:
            parts = urlsplit(url)
            host = parts.hostname or "localhost"
            port = parts.port  # raises ValueError on a bad port
        except ValueError:
            raise StoreError("DATABASE_URL is not a valid URL") from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise StoreError("DATABASE_URL must start with postgresql:// or postgres://")
        database = unquote(parts.path.lstrip("/")) or (unquote(parts.username or "") or "?")
        shown = f"{host}:{port}" if port else host
        return cls(url, shown, database)

    def describe(self) -> str:
        return f"host {self.host}, database {self.database}"

    def scrub(self, text: str) -> str:
        """``text`` with the URL's password taken out, should a driver ever quote it."""
        password = urlsplit(self.url).password
        if password:
            text = text.replace(password, "***").replace(unquote(password), "***")
        return text

    def connect(self, application: str) -> psycopg.Connection:
        """A new connection in autocommit mode; StoreError saying where it could not go."""
        import psycopg  # here: a service without DATABASE_URL never loads the driver

        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=application[:63],
                options=(
                    f"-c statement_timeout={STATEMENT_TIMEOUT_MS} "
                    f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS} "
                    f"-c synchronous_commit={SYNCHRONOUS_COMMIT}"
                ),
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=2,
                tcp_user_timeout=TCP_USER_TIMEOUT_MS,
            )
        except psycopg.Error as exc:
            raise self.error("cannot connect", exc) from None

    def error(self, doing: str, exc: BaseException) -> StoreError:
        detail = self.scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        return StoreError(f"PostgreSQL ({self.describe()}): {doing}: {detail}")


class Cluster(NamedTuple):
    """Where the cluster's queue is, and who this instance is in it (actors/cluster.py)."""

    url: DatabaseUrl
    instance_id: str
    lease_ms: int = 15_000


def default_instance_id(
    hostname: Callable[[], str] = socket.gethostname, pid: Callable[[], int] = os.getpid
) -> str:
    """hostname-pid-random: unique across machines, processes and restarts of one pid."""
    return f"{hostname()}-{pid()}-{secrets.token_hex(3)}"
