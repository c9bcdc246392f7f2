"""Running an attempt: dispatcher -> worker -> dispatcher, and the states saved on the way."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from actors.reply import Reply
    from actors.task import Task


class Run(NamedTuple):
    """Dispatcher -> worker: run one attempt of this task."""

    task: Task


class AttemptFinished(NamedTuple):
    """Worker -> dispatcher: the outcome of an attempt, and that the worker is free again.

    ``task`` is the state after the attempt: done, failed, or queued with ``next_attempt_at``,
    in which case ``retry_delay_s`` says how long from now it is due.
    """

    worker: int
    task: Task
    retry_delay_s: float | None


class Save(NamedTuple):
    """Worker or dispatcher -> repository: this is the task's state now."""

    task: Task


class SaveRunning(NamedTuple):
    """Worker -> repository, with a store: this attempt starts now; set ``committed`` once that
    is committed (held back like every answer), so the attempt counts even if the service dies
    during it."""

    task: Task
    committed: Reply[None]
