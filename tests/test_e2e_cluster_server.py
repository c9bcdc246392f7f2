"""The private PostgreSQL server the cluster tests run on (tests/pg_server.py), tested itself."""

from __future__ import annotations

import importlib.util
import socket
from typing import TYPE_CHECKING

import pytest

from tests.pg_server import HOST, PgServer, require_postgres, unavailable_reason

if TYPE_CHECKING:
    from pathlib import Path


def connect_and_ask(url: str, statement: str) -> str:
    """One statement through the service's own driver (psycopg) when it is installed."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as connection:
        row = connection.execute(statement).fetchone()
    assert row is not None
    return str(row[0])


def test_a_fresh_database_is_empty_reachable_by_its_url_and_unique(
    pg_server: PgServer, pg_database: str
) -> None:
    name = pg_database.rsplit("/", 1)[1]
    assert pg_database == f"postgresql://postgres@{HOST}:{pg_server.port}/{name}"
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    if importlib.util.find_spec("psycopg") is not None:
        assert connect_and_ask(pg_database, "SELECT current_database()") == name
        assert connect_and_ask(pg_database, tables) == "0"
    else:
        assert pg_server.sql("SELECT current_database()", name) == name
        assert pg_server.sql(tables, name) == "0"
    assert pg_server.sql("SELECT version()").startswith("PostgreSQL 15.")
    assert pg_server.create_database() != name


def test_the_server_stops_and_starts_again_on_the_same_port_keeping_its_data(
    pg_server: PgServer, pg_database: str
) -> None:
    name = pg_database.rsplit("/", 1)[1]
    pg_server.sql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)", name)

    pg_server.stop()
    assert not pg_server.is_running()
    with pytest.raises(ConnectionRefusedError), socket.create_connection((HOST, pg_server.port)):
        pass
    pg_server.start()

    assert pg_server.is_running()
    assert pg_server.sql("SELECT n FROM kept", name) == "7"


def test_a_stopped_server_is_started_again_for_the_next_test(
    pg_server: PgServer, pg_database: str
) -> None:
    # The previous test restarted it itself; this one leaves it stopped for the fixture.
    assert pg_server.is_running()
    pg_server.stop("immediate")


def test_the_next_test_finds_the_server_running(pg_server: PgServer, pg_database: str) -> None:
    assert pg_server.is_running()
    assert pg_server.sql("SELECT 1") == "1"


def test_without_postgresql_the_tests_skip_saying_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert unavailable_reason(tmp_path) == f"PostgreSQL 15 is not installed: no {tmp_path}/initdb"

    with pytest.raises(pytest.skip.Exception, match=r"PostgreSQL tests skipped: .* not installed"):
        require_postgres(tmp_path)


def test_in_ci_a_missing_postgresql_fails_instead_of_skipping(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CI", "true")

    with pytest.raises(pytest.fail.Exception, match="CI is set, so the PostgreSQL tests must run"):
        require_postgres(tmp_path)
