"""Acting on one task: cancel, retry by hand and delete, asked by a request thread."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from actors.task import DEFAULT_QUEUE

if TYPE_CHECKING:
    import pykka

    from actors.protocol.answers import Admission, Outcome
    from actors.reply import Reply


class CancelInLine(NamedTuple):
    """Request thread -> dispatcher -> retry actor: take a queued task out of the line, then
    out of the heap of waiting tasks; the retry actor then sends CancelInRepository.

    The dispatcher answers at once if a worker has the task. A task that was on its way between
    the actors when this passed (a due retry, a stored task not yet in line) is queued in the
    repository but was found by neither: the repository sends this round again, behind the
    message that carries the task (``rounds``).
    """

    task_id: str
    reply: Reply[Outcome]
    rounds: int = 0


class CancelInRepository(NamedTuple):
    """Dispatcher or retry actor -> repository: ``found`` means it took the task out of its
    line or heap, so the task is queued and will never run: store it cancelled. Otherwise the
    repository says why it cannot be cancelled, or sends CancelInLine round again."""

    task_id: str
    reply: Reply[Outcome]
    found: bool
    dispatcher: pykka.ActorRef
    """Where CancelInLine goes round again if the task was on its way."""
    rounds: int = 0


class AdmitRequeue(NamedTuple):
    """Request thread -> dispatcher: queue a failed or cancelled task again, attempts from 0,
    if the line of ``queue`` (the task's) has room."""

    task_id: str
    reply: Reply[Outcome]
    queue: str = DEFAULT_QUEUE


class StoreAdmittedRequeue(NamedTuple):
    """Dispatcher -> repository: requeue it if it is failed or cancelled; ``refusal`` (full,
    shutting down) is answered only for such a task, else why it cannot be retried."""

    task_id: str
    reply: Reply[Outcome]
    admitted_by: pykka.ActorRef
    refusal: Admission | None = None
    queue: str = DEFAULT_QUEUE
    """The queue the dispatcher reserved a place in: a task of another one is not requeued."""


class DeleteTask(NamedTuple):
    """Request thread -> repository: forget a finished task (and its row in the store)."""

    task_id: str
    reply: Reply[Outcome]
