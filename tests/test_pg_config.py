"""DATABASE_URL, INSTANCE_ID and LEASE_MS (api/config.py, main.py): checked before anything
starts, and the URL's password never shown."""

from __future__ import annotations

import re

import pytest

from actors.pg_connect import DatabaseUrl, default_instance_id
from api import ConfigError, load_config
from main import build_cluster, describe_config

URL = "postgresql://queue:s3cret-pw@db.example:5433/tasks"


def test_database_url_selects_a_cluster_with_its_settings() -> None:
    config = load_config({"DATABASE_URL": URL, "INSTANCE_ID": "node-1", "LEASE_MS": "5000"})

    cluster = build_cluster(config)

    assert cluster is not None
    assert (cluster.instance_id, cluster.lease_ms) == ("node-1", 5000)
    assert cluster.url.describe() == "host db.example:5433, database tasks"


def test_without_database_url_there_is_no_cluster() -> None:
    assert build_cluster(load_config({})) is None
    assert load_config({}).lease_ms == 15_000


def test_database_url_and_db_path_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="DB_PATH and DATABASE_URL"):
        load_config({"DATABASE_URL": URL, "DB_PATH": "/tmp/tasks.db"})


@pytest.mark.parametrize("url", ["mysql://u:s3cret-pw@h/db", "db.example/tasks", "sqlite:///x"])
def test_a_scheme_other_than_postgresql_is_refused_without_quoting_the_url(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"DATABASE_URL": url})
    assert "s3cret" not in str(raised.value)
    assert "postgresql://" in str(raised.value)


def test_the_logged_configuration_hides_the_password() -> None:
    line = describe_config(load_config({"DATABASE_URL": URL}))

    assert "s3cret" not in line
    assert "DATABASE_URL='postgresql://queue:***@db.example:5433/tasks'" in line


def test_a_lease_shorter_than_the_bound_is_refused() -> None:
    with pytest.raises(ConfigError, match="LEASE_MS"):
        load_config({"LEASE_MS": "10"})


def test_the_default_instance_id_is_hostname_pid_and_a_random_suffix() -> None:
    first = default_instance_id(lambda: "host", lambda: 42)
    second = default_instance_id(lambda: "host", lambda: 42)

    assert re.fullmatch(r"host-42-[0-9a-f]{6}", first)
    assert first != second


def test_errors_scrub_the_password_even_if_a_driver_quoted_it() -> None:
    url = DatabaseUrl.parse(URL)
    error = url.error("cannot connect", RuntimeError("bad password s3cret-pw given"))
    assert "s3cret" not in str(error)
    assert "host db.example:5433, database tasks" in str(error)


def test_in_a_cluster_every_log_line_names_its_instance() -> None:
    import io
    import logging

    from api.logs import configure_logging

    stream = io.StringIO()
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    try:
        configure_logging("INFO", "text", stream, instance="node-7")
        logging.getLogger("anything").info("hello")
        configure_logging("INFO", "json", stream, instance="node-7")
        logging.getLogger("anything").info("again")
    finally:
        root.handlers[:], _ = before
        root.setLevel(before[1])

    text, json_line = stream.getvalue().splitlines()
    assert text.endswith("hello [instance=node-7]")
    assert '"instance":"node-7"' in json_line
