"""Run task_queue: read the configuration, wire the actors and the HTTP server, serve, shut down.

    pip install -e . && python main.py

Exit codes: 0 after a graceful shutdown, 2 for a startup error (bad configuration, a handler
that cannot be imported, a DB_PATH that is not a usable store, a DATABASE_URL that cannot be used,
an address that cannot be bound),
1 when a second signal cut the shutdown short.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

import msgspec

from actors import (
    HandlerLoadError,
    Retention,
    SqliteStore,
    StoreError,
    TaskSystem,
    load_handler,
    simulation,
)
from actors.allow_list import AllowList
from actors.handlers import HandlerSpec
from actors.pg_connect import Cluster, DatabaseUrl, default_instance_id
from actors.runners import process_runners, thread_runners
from actors.schedule_store import SqliteScheduleStore, schedules_path
from actors.signing import parse_signing_keys
from actors.system import STOP_GRACE_S
from actors.target_runner import Deliveries
from api import ConfigError, create_app, load_config
from api.config import queues_of
from api.logs import configure_logging
from api.metrics import Metrics
from api.server import HttpServer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from actors.runners import RunnerFactory
    from actors.system import ShutdownSummary
    from actors.worker import Handler
    from api import Config

logger = logging.getLogger("task_queue")

STOP_SIGNALS: Final = {signal.SIGTERM, signal.SIGINT}
EXIT_STARTUP_ERROR: Final = 2
EXIT_FORCED: Final = 1
EXIT_GRACE_S: Final = STOP_GRACE_S + 2.0
"""How long after SHUTDOWN_TIMEOUT_S the process exits (0) whatever it is still waiting for:
the actors' own stopping gives up on a dead or stuck one after STOP_GRACE_S."""


def main(environ: Mapping[str, str] = os.environ) -> int:
    try:
        config = load_config(environ)
    except ConfigError as exc:
        print(f"task_queue: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    # Known before the first line is logged: in a cluster, every line names its instance.
    instance_id = (config.instance_id or default_instance_id()) if config.database_url else None
    configure_logging(config.log_level, config.log_format, instance=instance_id)
    logger.info("configuration: %s", describe_config(config), extra={"config": safe_config(config)})
    # Stop signals are taken with sigwait by the main thread, never by a handler running at an
    # arbitrary point. Blocked before any thread starts, so every thread inherits the mask:
    # even one that the TASK_HANDLER module starts when it is imported, just below.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        runners = build_runners(config, instance_id)
    except HandlerLoadError as exc:
        return _bad_handler(exc)

    # Checked by load_config already: these cannot raise here.
    allow = AllowList.parse(config.target_allow)
    queues = queues_of(config)
    metrics = Metrics([queue.name for queue in queues]) if config.metrics else None
    workers = sum(queue.workers for queue in queues)
    deliveries = Deliveries(
        allow,
        workers=workers,
        result_max_bytes=config.result_max_bytes,
        signing_keys=parse_signing_keys(config.target_signing_keys or ""),
    )
    try:
        cluster = build_cluster(config, instance_id)
    except StoreError as exc:
        print(f"task_queue: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    try:
        system = TaskSystem.start(
            runners=runners,
            queues=queues,
            queue_size=config.queue_size,
            scheduled_max=config.scheduled_max,
            retry_base_ms=config.retry_base_ms,
            retry_max_ms=config.retry_max_ms,
            open_store=partial(SqliteStore.open, config.db_path) if config.db_path else None,
            open_schedules=(
                partial(SqliteScheduleStore.open, schedules_path(config.db_path))
                if config.db_path
                else None
            ),
            retention=Retention(config.retention_max_finished, config.retention_ttl_s),
            observer=metrics.tasks if metrics else None,
            task_timeout_ms=config.task_timeout_ms,
            result_max_bytes=config.result_max_bytes,
            deliveries=deliveries,
            cluster=cluster,
        )
    except HandlerLoadError as exc:  # from a worker process, which loads it itself
        return _bad_handler(exc)
    except StoreError as exc:
        where = "DATABASE_URL" if cluster is not None else f"DB_PATH={config.db_path}"
        print(f"task_queue: {where}: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    try:
        server = HttpServer(
            create_app(
                system,
                max_body_bytes=config.max_body_bytes,
                api_token=config.api_token,
                metrics=metrics or False,
                metrics_public=config.metrics_public,
                listings_max=config.listings_max,
                target_allow=allow,
            ),
            host=config.host,
            port=config.port,
            threads=config.http_threads,
            max_body_bytes=config.max_body_bytes,
            client_timeout_s=config.client_timeout_s,
        )
    except OSError as exc:
        system.stop(time.monotonic())
        print(f"task_queue: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    server.start()
    logger.info(
        "listening on http://%s:%d (workers=%d queues=%s worker_mode=%s queue_size=%d "
        "http_threads=%d handler=%s store=%s auth=%s metrics=%s%s)",
        server.host,
        server.port,
        workers,
        ",".join(queue.name for queue in queues),
        config.worker_mode,
        config.queue_size,
        config.http_threads,
        config.task_handler or "built-in simulation",
        describe_store(config, cluster),
        # Whether a token is set, never the token itself.
        "bearer token" if config.api_token else "none",
        ("public" if config.metrics_public else "on") if config.metrics else "off",
        f" instance={cluster.instance_id}" if cluster is not None else "",
        extra={"address": f"http://{server.host}:{server.port}"},
    )

    received = signal.sigwait(STOP_SIGNALS)
    threading.Thread(target=_exit_on_second_signal, name="second-signal", daemon=True).start()
    deadline = time.monotonic() + config.shutdown_timeout_s
    threading.Thread(
        target=_exit_at, args=(deadline + EXIT_GRACE_S,), name="exit-deadline", daemon=True
    ).start()
    logger.info(
        "%s received: shutting down (up to %.0f s for work in flight)",
        signal.Signals(received).name,
        config.shutdown_timeout_s,
    )
    # Each step below gives up on what does not answer in time (logged), never raises: a
    # stop signal always ends the process, whatever state the actors are in.
    if system.begin_shutdown():
        logger.info("intake closed")
    try:
        if not server.stop(deadline):
            logger.warning("HTTP requests still in flight at the deadline were cut off")
    except Exception:
        logger.exception("stopping the HTTP server failed; shutting down the actors anyway")
    else:
        logger.info("HTTP server stopped")
    summary = system.stop(deadline)
    logger.info("%s", describe_summary(summary), extra={"summary": summary._asdict()})
    if summary.unanswered:
        # A stuck actor's thread (not a daemon) would hold the interpreter's exit for ever.
        _exit_now(0)
    return 0


def build_cluster(config: Config, instance_id: str | None = None) -> Cluster | None:
    """The cluster DATABASE_URL names, with this instance as ``instance_id`` (default:
    INSTANCE_ID, else made up), or None; StoreError if it is not a PostgreSQL URL."""
    if config.database_url is None:
        return None
    return Cluster(
        DatabaseUrl.parse(config.database_url),
        instance_id or config.instance_id or default_instance_id(),
        config.lease_ms,
    )


def describe_store(config: Config, cluster: Cluster | None) -> str:
    if cluster is not None:
        return f"postgresql ({cluster.url.describe()})"
    return config.db_path or "memory only"


def safe_config(config: Config) -> dict[str, object]:
    """The effective configuration by variable name, with API_TOKEN and TARGET_SIGNING_KEYS
    said as set or unset, and DATABASE_URL without its password."""
    settings: dict[str, object] = msgspec.to_builtins(config)
    if config.database_url is not None:
        settings["DATABASE_URL"] = _without_password(config.database_url)
    settings["API_TOKEN"] = "set" if config.api_token else "unset"
    settings["TARGET_SIGNING_KEYS"] = "set" if config.target_signing_keys else "unset"
    return settings


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def describe_config(config: Config) -> str:
    return " ".join(
        f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"
        for name, value in safe_config(config).items()
    )


def build_runners(config: Config, instance_id: str | None = None) -> RunnerFactory:
    """Where each worker runs its attempts, as WORKER_MODE says."""
    if config.worker_mode == "thread":
        return thread_runners(build_handler(config), config.result_max_bytes)
    # Each child loads the handler itself: TaskSystem.start raises HandlerLoadError if it cannot.
    spec = HandlerSpec(
        config.task_handler, config.sim_min_ms, config.sim_max_ms, config.sim_failure_rate
    )
    return process_runners(
        spec,
        result_max_bytes=config.result_max_bytes,
        max_tasks=config.worker_max_tasks,
        max_memory_mb=config.worker_max_memory_mb,
        # A handler's own log lines reach the service's log in its format.
        log_setup=partial(
            configure_logging, config.log_level, config.log_format, instance=instance_id
        ),
    )


def build_handler(config: Config) -> Handler:
    if config.task_handler:
        return load_handler(config.task_handler)
    return simulation(config.sim_min_ms, config.sim_max_ms, config.sim_failure_rate)


def describe_summary(summary: ShutdownSummary) -> str:
    counts = " ".join(f"{status}={count}" for status, count in summary.counts.items())
    fate = "kept for the next start:" if summary.kept else "abandoned"
    line = (
        f"shutdown complete: {counts}; {fate} {summary.abandoned_in_line} queued "
        f"and {summary.abandoned_retries} waiting for their time"
    )
    if summary.unanswered:
        line += f"; given up on at shutdown (counts may be short): {', '.join(summary.unanswered)}"
    if not summary.drained:
        line += f"; {summary.counts.get('running', 0)} running attempt(s) cut off at the deadline"
        if summary.kept:
            line += " (they count as interrupted at the next start)"
    return line


def _bad_handler(exc: HandlerLoadError) -> int:
    print(f"task_queue: TASK_HANDLER: {exc}", file=sys.stderr)
    return EXIT_STARTUP_ERROR


def _exit_on_second_signal() -> None:
    received = signal.sigwait(STOP_SIGNALS)
    logger.warning("%s received again: exiting now", signal.Signals(received).name)
    _exit_now(EXIT_FORCED)


def _exit_at(deadline: float) -> None:
    """The last word on a shutdown: exit 0 at ``deadline`` if the process is still here."""
    time.sleep(max(0.0, deadline - time.monotonic()))
    logger.error(
        "shutdown did not finish within SHUTDOWN_TIMEOUT_S + %.0f s: exiting now", EXIT_GRACE_S
    )
    _exit_now(0)


def _exit_now(code: int) -> None:
    logging.shutdown()
    os._exit(code)


def run() -> None:
    """``python main.py``, and the ``task-queue`` command: serve until stopped, then exit."""
    # TASK_HANDLER names a module of the user's project, and they start us from its directory,
    # which neither `python /path/to/main.py` nor a console script puts on sys.path. It goes
    # right behind the directory of this file (added at the end when an editable install's
    # import hook finds us instead), so that a project's own main.py or api/ never shadows
    # ours: not here, nor in the worker processes, which start with this sys.path. Not in
    # main(), so tests calling it in-process keep their own sys.path.
    here = os.path.dirname(os.path.abspath(__file__))
    entries = [os.path.abspath(entry or os.curdir) for entry in sys.path]
    if here not in entries:
        sys.path.append(here)
        entries.append(here)
    sys.path.insert(entries.index(here) + 1, os.getcwd())
    sys.exit(main())


if __name__ == "__main__":
    run()
