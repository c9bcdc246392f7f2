"""The messages actors send each other: small, immutable, typed.

pykka does not copy messages, so nothing here is mutable except the replies, which exist to be
written once by the actor that answers. Every question asked from outside the actors (by a
request thread, or by the entry object at start and shutdown) carries its own Reply, and so
does every message it becomes on its way between actors: an actor that stops or crashes fails
the replies of what it leaves unanswered (actors/base.py).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pykka

    from actors.paging import Page
    from actors.reply import Reply
    from actors.stats import LineCounts, TaskCounts
    from actors.store import StoreError
    from actors.task import Task


class Admission(enum.Enum):
    """How an enqueue ended."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    QUEUE_FULL = "queue_full"
    SHUTTING_DOWN = "shutting_down"
    TOO_MANY_SCHEDULED = "too_many_scheduled"
    """A delayed task, refused: ``scheduled_max`` tasks already wait for their time."""
    STORE_UNAVAILABLE = "store_unavailable"
    """The durable store cannot be written: nothing new can be promised until it can."""


class Connect(NamedTuple):
    """Entry object -> dispatcher: the workers and the retry actor, which start after it."""

    workers: tuple[pykka.ActorRef, ...]
    retry: pykka.ActorRef


# --- intake: request thread -> dispatcher -> repository -> dispatcher ---------------------------


class Submit(NamedTuple):
    """Request thread -> dispatcher: admit this new task if the line has room."""

    task: Task
    reply: Reply[Admission]


class Insert(NamedTuple):
    """Dispatcher -> repository: store this task unless its id is taken; tell ``admitted_by``."""

    task: Task
    reply: Reply[Admission]
    admitted_by: pykka.ActorRef


class Refusal(NamedTuple):
    """Dispatcher -> repository: answer ``reason``, or DUPLICATE if the id is already known.

    A known id is a conflict whatever the line's state: the client learns its task exists
    rather than being told to retry something that will never be accepted.
    """

    task_id: str
    reply: Reply[Admission]
    reason: Admission


class Inserted(NamedTuple):
    """Repository -> dispatcher: the task is stored (or queued again by hand); its reserved
    place becomes a place in line, or, if it is delayed, it goes to wait with the retry actor.
    """

    task: Task


class PlacesReleased(NamedTuple):
    """Repository -> dispatcher: tasks it reserved places for were refused; free the places."""

    places: int


class BatchAdmission(NamedTuple):
    """How a batch enqueue ended: every task accepted, or none, and which one was refused."""

    admission: Admission
    position: int | None = None
    """With DUPLICATE: the position of the first task whose id is taken (or repeated)."""


class SubmitBatch(NamedTuple):
    """Request thread -> dispatcher: admit all of these new tasks, or none of them."""

    tasks: tuple[Task, ...]
    reply: Reply[BatchAdmission]


class InsertBatch(NamedTuple):
    """Dispatcher -> repository: store all of these unless an id is taken; tell ``admitted_by``.

    ``refusal``, when set, is the line's answer (full, shutting down), given unless an id is
    taken: a duplicate is reported whatever the line's state, as for a single task.
    """

    tasks: tuple[Task, ...]
    reply: Reply[BatchAdmission]
    admitted_by: pykka.ActorRef
    places: int
    """Places the dispatcher reserved for the batch (its tasks that are not delayed)."""
    refusal: Admission | None = None


class InsertedBatch(NamedTuple):
    """Repository -> dispatcher: the whole batch is stored."""

    tasks: tuple[Task, ...]
    places: int


# --- running: dispatcher -> worker -> dispatcher ------------------------------------------------


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


# --- retries: dispatcher -> retry actor -> dispatcher -------------------------------------------


class ScheduleRetry(NamedTuple):
    """Dispatcher -> retry actor: send this task back to the line after ``delay_s``."""

    task: Task
    delay_s: float


class RetriesDue(NamedTuple):
    """Retry actor -> dispatcher: these are due; they re-enter the line even when it is full."""

    tasks: tuple[Task, ...]


class Unscheduled(NamedTuple):
    """Retry actor -> dispatcher: this many of the tasks it held were cancelled, and will
    never come due (the dispatcher counts the tasks waiting there)."""

    cancelled: int


class Recovered(NamedTuple):
    """Entry object -> dispatcher, before any Submit: the tasks a store held, to go back in line
    ahead of new work (past the line's bound) or to wait with the retry actor until due."""

    line: tuple[Task, ...]
    waiting: tuple[tuple[Task, float], ...]
    """Each task waiting for its next attempt, and the seconds from now until it is due."""


class AlarmRang(NamedTuple):
    """Timer thread -> retry actor: the earliest retry it was told about is due."""


# --- acting on one task: request thread -> dispatcher / retry actor / repository --------------


class Outcome(NamedTuple):
    """How an action on one task (cancel, retry by hand, delete) ended.

    ``task`` is the task's state after the action, or None if the id is unknown; ``conflict``
    says why a known task was left as it is (409); ``refused`` is the line's refusal (503).
    """

    task: Task | None
    conflict: str | None = None
    refused: Admission | None = None


class Cancel(NamedTuple):
    """Request thread -> dispatcher -> retry actor -> repository: cancel a queued task.

    The dispatcher takes it out of the line, or answers that a worker has it; the retry actor
    takes it out of its heap; the repository then marks it cancelled, or answers why not. A
    task that was on its way between them when the Cancel passed (a due retry, a stored task
    not yet in line) is queued in the repository but was found by neither: the repository
    sends the Cancel round again, behind the message that carries the task (``rounds``).
    """

    task_id: str
    reply: Reply[Outcome]
    rounds: int = 0


class MarkCancelled(NamedTuple):
    """Dispatcher or retry actor -> repository: ``found`` means it took the task out of its
    line or heap, so the task is queued and will never run: store it cancelled. Otherwise the
    repository says why it cannot be cancelled, or sends the Cancel round again."""

    task_id: str
    reply: Reply[Outcome]
    found: bool
    dispatcher: pykka.ActorRef
    """Where the Cancel goes round again if the task was on its way."""
    rounds: int = 0


class Requeue(NamedTuple):
    """Request thread -> dispatcher: queue a failed or cancelled task again, attempts from 0."""

    task_id: str
    reply: Reply[Outcome]


class RequeueTask(NamedTuple):
    """Dispatcher -> repository: requeue it if it is failed or cancelled; ``refusal`` (full,
    shutting down) is answered only for such a task, else why it cannot be retried."""

    task_id: str
    reply: Reply[Outcome]
    admitted_by: pykka.ActorRef
    refusal: Admission | None = None


class DeleteTask(NamedTuple):
    """Request thread -> repository: forget a finished task (and its row in the store)."""

    task_id: str
    reply: Reply[Outcome]


class SweepRetention(NamedTuple):
    """Alarm thread -> repository: evict the finished tasks the retention rules no longer keep."""


# --- reading tasks: request thread -> repository; shutdown: entry object -> actors ----------


class GetTask(NamedTuple):
    """-> repository: reply with the Task, or None."""

    task_id: str
    reply: Reply[Task | None]


class TakeStock(NamedTuple):
    """TaskSystem.stop() -> repository: reply with a Stock, held back until everything before
    it is committed like any answer."""

    reply: Reply[Stock]


class Stock(NamedTuple):
    """What the repository holds as the system stops: the shutdown summary's numbers, all
    read from one place, so a task moving between actors at that moment is still counted."""

    counts: dict[str, int]
    """Tasks per status."""
    in_line: int
    """Queued tasks due now: waiting in line, or on their way into it."""
    awaiting: int
    """Queued tasks waiting for their next attempt's time: a retry's, or a delayed task's."""


class BeginShutdown(NamedTuple):
    """-> dispatcher: refuse new tasks and stop handing out queued ones; reply True once it
    does."""

    reply: Reply[bool]


class WhenIdle(NamedTuple):
    """-> dispatcher: set ``reply`` once no worker is running an attempt."""

    reply: Reply[None]


class CancelRetries(NamedTuple):
    """-> retry actor: stop the alarm and release nothing more; reply with how many wait."""

    reply: Reply[int]


# --- start with a durable store -----------------------------------------------------------------


class Recover(NamedTuple):
    """Entry object -> repository, first of all: open the store and load every task.

    Replied with every stored task in creation order, or with the StoreError that made the
    store unusable, given as the answer rather than raised: a raised one would crash the actor
    with a logged traceback, and it is the user's configuration error, which main.py reports
    plainly.
    """

    reply: Reply[tuple[Task, ...] | StoreError]


class CommitDue(NamedTuple):
    """Alarm thread -> repository: changes nobody is waiting for have waited long enough; or,
    while the store is down, it is time to try writing to it again."""


class WatchStore(NamedTuple):
    """Entry object -> repository: tell ``dispatcher`` whenever the store goes down or comes
    back (StoreAvailability), and now if it is already down."""

    dispatcher: pykka.ActorRef


class StoreAvailability(NamedTuple):
    """Repository -> dispatcher: the store can (or cannot) be written; while it cannot, new
    work is refused with STORE_UNAVAILABLE before it reaches the repository."""

    available: bool


# --- stats and readiness: request thread -> one actor each, asked in parallel -----------------


class Readiness(enum.Enum):
    """Whether a new task would be admitted now, as ``GET /readyz`` reports it."""

    READY = "ready"
    FULL = "full"
    SHUTTING_DOWN = "shutting down"
    TOO_MANY_SCHEDULED = "too many scheduled tasks"
    STORE_UNAVAILABLE = "store unavailable"


class GetReadiness(NamedTuple):
    """Request thread -> dispatcher: reply with the Readiness a Submit would meet now."""

    reply: Reply[Readiness]


class GetDispatcherStats(NamedTuple):
    """Request thread -> dispatcher: reply with its LineCounts; and, if ``retry_reply`` is
    given, pass GetRetryStats on to the retry actor. Asked through the dispatcher, the retry
    actor answers after every task the dispatcher sent it before: a delayed task whose 201 the
    client has seen is already counted as scheduled."""

    reply: Reply[LineCounts]
    retry_reply: Reply[int] | None = None


class GetRepositoryStats(NamedTuple):
    """Request thread -> repository: reply with its TaskCounts."""

    reply: Reply[TaskCounts]


class GetRetryStats(NamedTuple):
    """Request thread -> retry actor: reply with how many tasks wait for their next attempt
    (a retry, or the time a delayed task is due)."""

    reply: Reply[int]


# --- paging: request thread -> repository -------------------------------------------------------


class ListPage(NamedTuple):
    """-> repository: reply with the Page of tasks after ``after`` (None: from the first) with
    ``status`` (None: any), at most ``limit`` (None: all); or with None if ``after`` is unknown.
    """

    reply: Reply[Page | None]
    status: str | None = None
    limit: int | None = None
    after: str | None = None
    newest_first: bool = False
