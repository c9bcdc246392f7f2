"""The service's configuration, read from the environment and checked before anything starts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Final, Literal, cast, get_args

import msgspec
from msgspec import Meta

from actors.allow_list import AllowList, InvalidAllowList
from actors.queues import QUEUES_SYNTAX, InvalidQueues, QueueSpec, default_queues, parse_queues
from actors.signing import InvalidSigningKeys, parse_signing_keys


class ConfigError(Exception):
    """An environment variable has a value the service cannot run with."""


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["text", "json"]
WorkerMode = Literal["process", "thread"]

DAY_MS = 86_400_000


class Config(msgspec.Struct, frozen=True, rename="upper", kw_only=True):
    """Every setting, named as its environment variable (field ``workers`` is ``WORKERS``)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8080
    workers: Annotated[int, Meta(ge=1, le=1024)] = 4
    # Unset: one queue, default, with WORKERS workers. Set: name:workers[:max_per_second],
    # comma-separated, each queue with workers of its own (actors/queues.py); not with WORKERS.
    queues: str | None = None
    queue_size: Annotated[int, Meta(ge=1, le=10_000_000)] = 64
    retry_base_ms: Annotated[int, Meta(ge=0, le=DAY_MS)] = 100
    retry_max_ms: Annotated[int, Meta(ge=0, le=30 * DAY_MS)] = 30_000
    max_body_bytes: Annotated[int, Meta(ge=64, le=1 << 30)] = 1_048_576
    # Each request thread waits on the actors, so more threads keep more requests in flight
    # under many connections (bench/http_load.py measures where throughput holds).
    http_threads: Annotated[int, Meta(ge=1, le=1024)] = 32
    shutdown_timeout_s: Annotated[float, Meta(ge=0, le=86_400)] = 30.0
    task_handler: str | None = None
    sim_min_ms: Annotated[float, Meta(ge=0, le=DAY_MS)] = 100.0
    sim_max_ms: Annotated[float, Meta(ge=0, le=DAY_MS)] = 500.0
    sim_failure_rate: Annotated[float, Meta(ge=0, le=1)] = 0.2
    log_level: LogLevel = "INFO"
    # One readable line per event, or one JSON object per line (api/logs.py).
    log_format: LogFormat = "text"
    # Unset: tasks live in memory only. Set: the SQLite file that keeps them across restarts;
    # whether it is usable is checked when the store opens (actors/sqlite_store.py).
    db_path: str | None = None
    # Unset: no cluster. Set (postgresql://user:password@host:port/dbname): the PostgreSQL
    # database every instance with the same URL shares as one queue (actors/cluster.py). Never
    # logged with its password.
    database_url: str | None = None
    # The name of this instance in the database, the logs and /stats (default: hostname, pid
    # and a random suffix; actors/cluster.py).
    instance_id: str | None = None
    # How long a claimed attempt is this instance's before any other may rescue it: renewed
    # well before it ends while the attempt runs (actors/leases.py).
    lease_ms: Annotated[int, Meta(ge=300, le=DAY_MS)] = 15_000
    # Unset: no authentication. Set: every endpoint but /healthz and /readyz needs
    # `Authorization: Bearer <token>` (api/auth.py). Never logged.
    api_token: str | None = None
    # Finished tasks kept at most, and for how long after they finish; 0 turns a rule off
    # (actors/retention.py). What bounds memory over weeks.
    retention_max_finished: Annotated[int, Meta(ge=0, le=1_000_000_000)] = 100_000
    retention_ttl_s: Annotated[float, Meta(ge=0, le=10 * 365 * 86_400)] = 86_400.0
    # GET /metrics on (api/metrics.py); off only to measure what it costs (bench/metrics_cost.py).
    metrics: bool = True
    # With API_TOKEN set, whether /metrics is open to scrapers without the token.
    metrics_public: bool = False
    # Where attempts run: in a child process owned by each worker (a hung attempt can be
    # killed, a crash costs one attempt, handlers do not share the service's GIL), or on the
    # worker's own thread in the service's process.
    worker_mode: WorkerMode = "process"
    # An attempt's time limit unless the task sets its own timeout_ms.
    task_timeout_ms: Annotated[int, Meta(ge=100, le=30 * DAY_MS)] = 600_000
    # Process mode only: replace a worker's child after this many attempts, or after an
    # attempt that left it above this resident memory; 0 turns a rule off.
    worker_max_tasks: Annotated[int, Meta(ge=0, le=1_000_000_000)] = 0
    worker_max_memory_mb: Annotated[int, Meta(ge=0, le=1_048_576)] = 0
    # The largest result (encoded as JSON) kept for a task; a larger one is dropped.
    result_max_bytes: Annotated[int, Meta(ge=0, le=1 << 30)] = 65_536
    # Seconds a request has from its first byte to arrive whole (408 and close after), and a
    # response may wait for its client to read more (api/server.py).
    client_timeout_s: Annotated[float, Meta(gt=0, le=86_400)] = 30.0
    # Tasks that may wait for their time (delayed, or waiting for a retry) before new delayed
    # tasks are refused; retries are never refused (actors/dispatcher.py).
    scheduled_max: Annotated[int, Meta(ge=1, le=100_000_000)] = 100_000
    # Unpaged GET /tasks answers streamed at once; more are refused with 503 (api/tasks.py).
    listings_max: Annotated[int, Meta(ge=1, le=1024)] = 4
    # URL prefixes a task's target may point at, comma-separated; empty: no target is allowed
    # (actors/allow_list.py).
    target_allow: str = ""
    # Keys that sign every delivery to a target (actors/signing.py), comma-separated; unset:
    # deliveries go unsigned. Never logged.
    target_signing_keys: str | None = None


CONFIG_VARIABLES = tuple(field.encode_name for field in msgspec.structs.fields(Config))
"""The environment variables the service reads."""

_PATH = re.compile(r" - at `\$\.(\w+)`$")

_CHOICES: Final = {
    "LOG_LEVEL": get_args(LogLevel),
    "LOG_FORMAT": get_args(LogFormat),
    "WORKER_MODE": get_args(WorkerMode),
}


def _accepts(kind: msgspec.inspect.Type) -> str | None:
    """What a variable of this type accepts, said the way a person setting it would read it:
    one wording for a value of the wrong kind and for one out of bounds (the bounds are the
    field's Meta)."""
    match kind:
        case msgspec.inspect.IntType():
            return f"a whole number{_bounds(kind.ge, kind.gt, kind.le, kind.lt)}"
        case msgspec.inspect.FloatType():
            return f"a number{_bounds(kind.ge, kind.gt, kind.le, kind.lt)}"
        case msgspec.inspect.BoolType():
            return "1 or 0 (or true or false)"
    return None


def _bounds(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    if ge is not None and le is not None:
        return f" from {_number(ge)} to {_number(le)}"
    low = f" from {_number(ge)}" if ge is not None else ""
    low = f" above {_number(gt)}" if gt is not None else low
    high = f" up to {_number(le)}" if le is not None else ""
    high = f" below {_number(lt)}" if lt is not None else high
    return f"{low}{',' if low and high else ''}{high}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_ACCEPTS: Final = {
    field.encode_name: accepts
    for field in cast("msgspec.inspect.StructType", msgspec.inspect.type_info(Config)).fields
    if (accepts := _accepts(field.type)) is not None
}
"""What each numeric and boolean variable accepts, by name."""


def load_config(environ: Mapping[str, str]) -> Config:
    """Build the Config from ``environ``; an empty variable counts as unset.

    Raises ConfigError naming the variable and its value when a value is wrong.
    """
    given: dict[str, str] = {
        name: environ[name].strip() for name in CONFIG_VARIABLES if environ.get(name, "").strip()
    }
    if "LOG_LEVEL" in given:
        given["LOG_LEVEL"] = given["LOG_LEVEL"].upper()
    for name in ("LOG_FORMAT", "WORKER_MODE"):
        if name in given:
            given[name] = given[name].lower()
    try:
        # strict=False lets msgspec turn "8080" into 8080, with the bounds above still checked.
        config = msgspec.convert(given, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(exc, given)) from None
    if config.sim_min_ms > config.sim_max_ms:
        raise ConfigError(
            f"SIM_MIN_MS={given.get('SIM_MIN_MS', config.sim_min_ms)} is more than "
            f"SIM_MAX_MS={given.get('SIM_MAX_MS', config.sim_max_ms)}"
        )
    if config.worker_mode == "thread":
        for name in ("WORKER_MAX_TASKS", "WORKER_MAX_MEMORY_MB"):
            if getattr(config, name.lower()):
                raise ConfigError(
                    f"{name}={given[name]} needs WORKER_MODE=process: a thread cannot be "
                    "replaced while it runs, so it cannot be recycled"
                )
    if config.queues is not None:
        if "WORKERS" in given:
            raise ConfigError(
                f"QUEUES={given['QUEUES']!r} and WORKERS={given['WORKERS']!r} are both set: "
                "QUEUES gives each queue its workers, so leave WORKERS unset"
            )
        try:
            parse_queues(config.queues)
        except InvalidQueues as exc:
            raise ConfigError(
                f"invalid QUEUES={given['QUEUES']!r}: {exc}; expected {QUEUES_SYNTAX}"
            ) from None
    if config.database_url is not None:
        if config.db_path is not None:
            raise ConfigError(
                "DB_PATH and DATABASE_URL are both set: choose one store, the SQLite file or "
                "the PostgreSQL database"
            )
        if not config.database_url.startswith(("postgresql://", "postgres://")):
            # The URL itself is not echoed: it may hold a password.
            raise ConfigError("DATABASE_URL must start with postgresql:// or postgres://")
    try:
        AllowList.parse(config.target_allow)
        parse_signing_keys(config.target_signing_keys or "")
    except (InvalidAllowList, InvalidSigningKeys) as exc:
        raise ConfigError(str(exc)) from None
    return config


def queues_of(config: Config) -> tuple[QueueSpec, ...]:
    """The queues ``config`` declares: QUEUES, or one queue ``default`` with WORKERS workers."""
    if config.queues is None:
        return default_queues(config.workers)
    return parse_queues(config.queues)  # checked by load_config: cannot raise here


def _describe(exc: msgspec.ValidationError, given: Mapping[str, str]) -> str:
    """``invalid NAME='value': expected ...``: the variable, its value, and what it accepts,
    whatever msgspec's own words for the failure were (a wrong kind, or out of bounds)."""
    message = str(exc)
    match = _PATH.search(message)
    if match is None:
        return f"invalid configuration: {message}"
    name = match.group(1)
    if name in _CHOICES:
        reason = f"expected one of {', '.join(_CHOICES[name])}"
    elif name in _ACCEPTS:
        reason = f"expected {_ACCEPTS[name]}"
    else:
        reason = message[: match.start()]
    return f"invalid {name}={given.get(name, '')!r}: {reason}"
