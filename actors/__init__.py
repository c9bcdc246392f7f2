"""The actor core of task_queue, usable on its own, without HTTP.

Start a ``TaskSystem`` with a handler (run on threads of this process) or with
``runners=process_runners(HandlerSpec("package.module:function"), ...)`` (a worker process
each), ``submit_async`` tasks made with ``new_task``, read them back with ``get_async`` (each
answer a Reply to ``get(timeout=...)``), and ``stop`` it; README.md ("How it works") shows it
whole. With ``cluster=Cluster(DatabaseUrl.parse(url), instance_id)`` the tasks are in PostgreSQL,
one queue with every other instance on that database (actors/cluster.py).
"""

from __future__ import annotations

from actors.attempt import PermanentError
from actors.backoff import compute_backoff_ms, should_retry
from actors.handlers import HandlerLoadError, HandlerSpec, load_handler, noop, simulation
from actors.pg_connect import Cluster, DatabaseUrl
from actors.protocol.answers import Admission, BatchAdmission, Outcome
from actors.reply import SystemStopped
from actors.retention import KEEP_ALL, Retention
from actors.runners import process_runners, thread_runners
from actors.sqlite_store import SqliteStore
from actors.store import MemoryStore, Store, StoreError
from actors.system import ShutdownSummary, TaskSystem
from actors.task import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    STATUSES,
    Task,
    TaskView,
    new_task,
)

__all__ = [
    "CANCELLED",
    "DONE",
    "FAILED",
    "KEEP_ALL",
    "QUEUED",
    "RUNNING",
    "STATUSES",
    "Admission",
    "BatchAdmission",
    "Cluster",
    "DatabaseUrl",
    "HandlerLoadError",
    "HandlerSpec",
    "MemoryStore",
    "Outcome",
    "PermanentError",
    "Retention",
    "ShutdownSummary",
    "SqliteStore",
    "Store",
    "StoreError",
    "SystemStopped",
    "Task",
    "TaskSystem",
    "TaskView",
    "compute_backoff_ms",
    "load_handler",
    "new_task",
    "noop",
    "process_runners",
    "should_retry",
    "simulation",
    "thread_runners",
]
