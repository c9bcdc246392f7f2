"""load_config: defaults, every variable parsed, and each bad value named in the error."""

from __future__ import annotations

import pytest

from api.config import CONFIG_VARIABLES, Config, ConfigError, load_config


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    config = load_config({})

    assert config == Config(
        host="127.0.0.1",
        port=8080,
        workers=4,
        queue_size=64,
        retry_base_ms=100,
        retry_max_ms=30_000,
        max_body_bytes=1_048_576,
        http_threads=32,
        shutdown_timeout_s=30.0,
        task_handler=None,
        sim_min_ms=100.0,
        sim_max_ms=500.0,
        sim_failure_rate=0.2,
        log_level="INFO",
        log_format="text",
        db_path=None,
        api_token=None,
        metrics=True,
        metrics_public=False,
        worker_mode="process",
        task_timeout_ms=600_000,
        worker_max_tasks=0,
        worker_max_memory_mb=0,
        result_max_bytes=65_536,
    )


def test_http_threads_default_to_more_than_waitress_four() -> None:
    assert load_config({}).http_threads > 4


def test_every_variable_is_read_and_parsed() -> None:
    environ = {
        "HOST": "0.0.0.0",
        "PORT": "9090",
        "WORKERS": "7",
        "QUEUE_SIZE": "1000",
        "RETRY_BASE_MS": "5",
        "RETRY_MAX_MS": "2500",
        "MAX_BODY_BYTES": "4096",
        "HTTP_THREADS": "32",
        "SHUTDOWN_TIMEOUT_S": "2.5",
        "TASK_HANDLER": "mypkg.jobs:run",
        "SIM_MIN_MS": "1.5",
        "SIM_MAX_MS": "3",
        "SIM_FAILURE_RATE": "0.75",
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "json",
        "DB_PATH": "/var/lib/task_queue/tasks.db",
        "API_TOKEN": "s3cret-token",
        "RETENTION_MAX_FINISHED": "500",
        "RETENTION_TTL_S": "0",
        "METRICS": "0",
        "METRICS_PUBLIC": "1",
        "WORKER_MODE": "Process",
        "TASK_TIMEOUT_MS": "2500",
        "WORKER_MAX_TASKS": "100",
        "WORKER_MAX_MEMORY_MB": "512",
        "RESULT_MAX_BYTES": "1024",
        "CLIENT_TIMEOUT_S": "2.5",
        "SCHEDULED_MAX": "5000",
        "LISTINGS_MAX": "2",
        "TARGET_ALLOW": "https://hooks.example/in, http://127.0.0.1:9000",
        "TARGET_SIGNING_KEYS": "a-signing-key-of-length",
        "INSTANCE_ID": "node-a",
        "LEASE_MS": "4000",
    }

    config = load_config(environ)

    # QUEUES is read below: with WORKERS, it is a configuration error. DATABASE_URL excludes
    # DB_PATH: tests/test_pg_config.py reads it.
    assert set(environ) | {"QUEUES", "DATABASE_URL"} == set(CONFIG_VARIABLES)
    assert config == Config(
        host="0.0.0.0",
        port=9090,
        workers=7,
        queue_size=1000,
        retry_base_ms=5,
        retry_max_ms=2500,
        max_body_bytes=4096,
        http_threads=32,
        shutdown_timeout_s=2.5,
        task_handler="mypkg.jobs:run",
        sim_min_ms=1.5,
        sim_max_ms=3.0,
        sim_failure_rate=0.75,
        log_level="DEBUG",
        log_format="json",
        db_path="/var/lib/task_queue/tasks.db",
        api_token="s3cret-token",
        retention_max_finished=500,
        retention_ttl_s=0.0,
        metrics=False,
        metrics_public=True,
        worker_mode="process",
        task_timeout_ms=2500,
        worker_max_tasks=100,
        worker_max_memory_mb=512,
        result_max_bytes=1024,
        client_timeout_s=2.5,
        scheduled_max=5000,
        listings_max=2,
        target_allow="https://hooks.example/in, http://127.0.0.1:9000",
        target_signing_keys="a-signing-key-of-length",
        instance_id="node-a",
        lease_ms=4000,
    )


def test_variables_the_service_does_not_know_are_ignored() -> None:
    assert load_config({"PATH": "/usr/bin", "workers": "not read"}) == load_config({})


@pytest.mark.parametrize("name", CONFIG_VARIABLES)
@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_variable_counts_as_unset(name: str, empty: str) -> None:
    assert load_config({name: empty}) == load_config({})


def test_surrounding_whitespace_is_ignored() -> None:
    assert load_config({"WORKERS": " 8 ", "LOG_LEVEL": "\twarning\n"}).workers == 8


@pytest.mark.parametrize("level", ["debug", "Info", "WARNING", "error", "critical"])
def test_log_level_is_read_in_any_case(level: str) -> None:
    assert load_config({"LOG_LEVEL": level}).log_level == level.upper()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "80.5"),
        ("WORKERS", "four"),
        ("WORKERS", "4.5"),
        ("WORKERS", "true"),
        ("QUEUE_SIZE", "1_000"),
        ("RETRY_BASE_MS", "0x10"),
        ("RETRY_MAX_MS", "30s"),
        ("MAX_BODY_BYTES", "1MB"),
        ("HTTP_THREADS", "many"),
        ("SHUTDOWN_TIMEOUT_S", "soon"),
        ("SIM_MIN_MS", "fast"),
        ("SIM_MAX_MS", "slow"),
        ("SIM_FAILURE_RATE", "20%"),
    ],
)
def test_a_value_that_is_not_a_number_is_an_error_naming_the_variable(
    name: str, value: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({name: value})

    assert name in str(raised.value)
    assert value in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "-1"),
        ("PORT", "65536"),
        ("WORKERS", "0"),
        ("WORKERS", "-4"),
        ("QUEUE_SIZE", "0"),
        ("RETRY_BASE_MS", "-1"),
        ("RETRY_MAX_MS", "-1"),
        ("MAX_BODY_BYTES", "0"),
        ("HTTP_THREADS", "0"),
        ("SHUTDOWN_TIMEOUT_S", "-0.5"),
        ("SHUTDOWN_TIMEOUT_S", "inf"),
        ("SHUTDOWN_TIMEOUT_S", "nan"),
        ("SIM_MIN_MS", "-1"),
        ("SIM_MAX_MS", "-1"),
        ("SIM_FAILURE_RATE", "1.01"),
        ("SIM_FAILURE_RATE", "-0.1"),
        ("SIM_FAILURE_RATE", "nan"),
        ("TASK_TIMEOUT_MS", "99"),
        ("TASK_TIMEOUT_MS", "1.5"),
        ("WORKER_MAX_TASKS", "-1"),
        ("WORKER_MAX_MEMORY_MB", "-1"),
        ("RESULT_MAX_BYTES", "-1"),
        ("WORKER_MODE", "fork"),
        ("CLIENT_TIMEOUT_S", "0"),
        ("CLIENT_TIMEOUT_S", "nan"),
        ("SCHEDULED_MAX", "0"),
        ("LISTINGS_MAX", "0"),
    ],
)
def test_a_value_out_of_range_is_an_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config({name: value})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WORKERS", "0", "invalid WORKERS='0': expected a whole number from 1 to 1024"),
        ("WORKERS", "four", "invalid WORKERS='four': expected a whole number from 1 to 1024"),
        ("WORKERS", "4.5", "invalid WORKERS='4.5': expected a whole number from 1 to 1024"),
        ("PORT", "65536", "invalid PORT='65536': expected a whole number from 0 to 65535"),
        (
            "TASK_TIMEOUT_MS",
            "99",
            "invalid TASK_TIMEOUT_MS='99': expected a whole number from 100 to 2592000000",
        ),
        (
            "SIM_FAILURE_RATE",
            "1.01",
            "invalid SIM_FAILURE_RATE='1.01': expected a number from 0 to 1",
        ),
        (
            "SIM_FAILURE_RATE",
            "20%",
            "invalid SIM_FAILURE_RATE='20%': expected a number from 0 to 1",
        ),
        (
            "SHUTDOWN_TIMEOUT_S",
            "nan",
            "invalid SHUTDOWN_TIMEOUT_S='nan': expected a number from 0 to 86400",
        ),
        (
            "CLIENT_TIMEOUT_S",
            "0",
            "invalid CLIENT_TIMEOUT_S='0': expected a number above 0, up to 86400",
        ),
        ("METRICS", "yes", "invalid METRICS='yes': expected 1 or 0 (or true or false)"),
        ("WORKER_MODE", "fork", "invalid WORKER_MODE='fork': expected one of process, thread"),
        (
            "LOG_LEVEL",
            "verbose",
            "invalid LOG_LEVEL='VERBOSE': expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
    ],
)
def test_a_wrong_value_is_named_with_what_its_variable_accepts_in_one_style(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({name: value})

    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "0"),
        ("PORT", "65535"),
        ("WORKERS", "1"),
        ("SIM_FAILURE_RATE", "0"),
        ("SIM_FAILURE_RATE", "1"),
        ("SHUTDOWN_TIMEOUT_S", "0"),
        ("RETRY_BASE_MS", "0"),
    ],
)
def test_the_ends_of_each_range_are_allowed(name: str, value: str) -> None:
    config = load_config({name: value})
    assert getattr(config, name.lower()) == float(value)


@pytest.mark.parametrize(
    "environ",
    [
        {"SIM_MIN_MS": "600"},
        {"SIM_MAX_MS": "50"},
        {"SIM_MIN_MS": "10", "SIM_MAX_MS": "9.5"},
    ],
)
def test_a_simulation_minimum_above_its_maximum_is_an_error_naming_both(
    environ: dict[str, str],
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(environ)

    assert "SIM_MIN_MS" in str(raised.value)
    assert "SIM_MAX_MS" in str(raised.value)


def test_an_equal_simulation_minimum_and_maximum_are_allowed() -> None:
    config = load_config({"SIM_MIN_MS": "250", "SIM_MAX_MS": "250"})
    assert config.sim_min_ms == config.sim_max_ms == 250


@pytest.mark.parametrize("level", ["VERBOSE", "trace", "5", "INFO,DEBUG"])
def test_an_unknown_log_level_is_an_error_naming_the_variable_and_the_choices(level: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"LOG_LEVEL": level})

    assert "LOG_LEVEL" in str(raised.value)
    assert "DEBUG" in str(raised.value) and "CRITICAL" in str(raised.value)


@pytest.mark.parametrize("log_format", ["text", "json", "JSON", "Text"])
def test_log_format_is_read_in_any_case(log_format: str) -> None:
    assert load_config({"LOG_FORMAT": log_format}).log_format == log_format.lower()


def test_an_unknown_log_format_is_an_error_naming_the_variable_and_the_choices() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"LOG_FORMAT": "xml"})

    assert str(raised.value) == "invalid LOG_FORMAT='xml': expected one of text, json"


@pytest.mark.parametrize("name", ["METRICS", "METRICS_PUBLIC"])
@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False), ("true", True)])
def test_metrics_switches_take_1_and_0(name: str, value: str, expected: bool) -> None:
    assert getattr(load_config({name: value}), name.lower()) is expected


@pytest.mark.parametrize("name", ["METRICS", "METRICS_PUBLIC"])
def test_a_metrics_switch_that_is_not_a_boolean_is_an_error_naming_the_variable(name: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({name: "yes please"})

    assert str(raised.value) == f"invalid {name}='yes please': expected 1 or 0 (or true or false)"


@pytest.mark.parametrize("name", ["WORKER_MAX_TASKS", "WORKER_MAX_MEMORY_MB"])
def test_recycling_in_thread_mode_is_an_error_naming_both_variables(name: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({"WORKER_MODE": "thread", name: "10"})

    assert name in str(raised.value)
    assert "WORKER_MODE=process" in str(raised.value)


def test_thread_mode_without_recycling_is_allowed() -> None:
    assert load_config({"WORKER_MODE": "THREAD"}).worker_mode == "thread"


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("TARGET_ALLOW", "ftp://files.example", "ftp://files.example"),
        ("TARGET_ALLOW", "https://a.example,,https://b.example", "an empty entry"),
        ("TARGET_ALLOW", "https://a.example/in?x=1", "without a query"),
        ("TARGET_SIGNING_KEYS", "k3y-abc", "key 1 is too short"),
        ("TARGET_SIGNING_KEYS", "a-long-enough-signing-key,", "key 2 is empty"),
    ],
)
def test_a_target_setting_the_service_cannot_use_is_an_error_naming_it(
    name: str, value: str, said: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config({name: value})

    assert name in str(raised.value)
    assert said in str(raised.value)
    if name == "TARGET_SIGNING_KEYS":
        assert value.strip(",") not in str(raised.value)  # a key is never repeated
