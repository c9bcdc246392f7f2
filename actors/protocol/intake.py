"""Intake: request thread -> dispatcher (admit) -> repository (store) -> dispatcher (stored).

The dispatcher checks the line's bound and reserves a place; the repository stores the task
unless its id is taken, answers the client once the task is committed, and tells the dispatcher,
whose reserved place becomes a place in line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, TypeAlias

if TYPE_CHECKING:
    import pykka

    from actors.protocol.answers import Admission, BatchAdmission
    from actors.reply import Reply
    from actors.task import Task

Places: TypeAlias = "tuple[str, ...]"
"""Places the dispatcher reserved in its lines: the queue of each (empty: none)."""


class AdmitTask(NamedTuple):
    """Request thread -> dispatcher: admit this new task if the line has room."""

    task: Task
    reply: Reply[Admission]


class StoreAdmittedTask(NamedTuple):
    """Dispatcher -> repository: store this task unless its id is taken; tell ``admitted_by``."""

    task: Task
    reply: Reply[Admission]
    admitted_by: pykka.ActorRef


class AnswerRefusal(NamedTuple):
    """Dispatcher -> repository: answer ``reason``, or DUPLICATE if the id is already known.

    A known id is a conflict whatever the line's state: the client learns its task exists
    rather than being told to retry something that will never be accepted.
    """

    task_id: str
    reply: Reply[Admission]
    reason: Admission


class TaskStored(NamedTuple):
    """Repository -> dispatcher: the task is stored (or queued again by hand); its reserved
    place becomes a place in line, or, if it is delayed, it goes to wait with the retry actor.
    """

    task: Task


class PlacesReleased(NamedTuple):
    """Repository -> dispatcher: tasks it reserved places for were refused; free the places."""

    places: Places


class AdmitBatch(NamedTuple):
    """Request thread -> dispatcher: admit all of these new tasks, or none of them."""

    tasks: tuple[Task, ...]
    reply: Reply[BatchAdmission]


class StoreAdmittedBatch(NamedTuple):
    """Dispatcher -> repository: store all of these unless an id is taken; tell ``admitted_by``.

    ``refusal``, when set, is the line's answer (full, shutting down), given unless an id is
    taken: a duplicate is reported whatever the line's state, as for a single task.
    """

    tasks: tuple[Task, ...]
    reply: Reply[BatchAdmission]
    admitted_by: pykka.ActorRef
    places: Places
    """Places the dispatcher reserved for the batch (its tasks that are not delayed)."""
    refusal: Admission | None = None


class BatchStored(NamedTuple):
    """Repository -> dispatcher: the whole batch is stored."""

    tasks: tuple[Task, ...]
    places: Places
