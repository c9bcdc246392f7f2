"""The actor base class every actor here uses: pykka's threading actor with a faster inbox, which
fails every question it leaves unanswered when it stops or crashes."""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any, cast

import pykka

from actors.reply import Reply, SystemStopped

if TYPE_CHECKING:
    from types import TracebackType


class Actor(pykka.ThreadingActor):
    """A ``pykka.ThreadingActor`` whose inbox is a ``queue.SimpleQueue``, and which never leaves
    a question (a message carrying a Reply) unanswered.

    pykka's default inbox is ``queue.Queue``, written in Python with a condition variable, on
    the path of every message; ``put``, ``get`` and ``empty`` are all pykka needs of it, and
    ``SimpleQueue`` does those in C. pykka only ever calls
    ``get()`` without a timeout, the one use of it that cannot wait past a deadline
    (actors/alarm.py says why a timed one can).

    A question whose handling raises, and every question still in the inbox when the actor
    stops or crashes, is failed with SystemStopped at once: whoever asked hears now rather than
    at its timeout. A subclass that overrides ``on_stop`` or ``on_failure`` calls this one's,
    after failing whatever questions it holds itself. Questions are told with ``tell_or_fail``,
    which the inbox's closing waits for, so none slips in after the inbox was emptied.
    """

    @staticmethod
    def _create_actor_inbox() -> Any:
        return _Inbox()

    def _handle_receive(self, message: Any) -> Any:
        # pykka's own dispatch (stop, proxies, on_receive), wrapped: a try costs nothing until
        # something raises, and then the question that raised is the one nothing else answers.
        try:
            return super()._handle_receive(message)
        except Exception as exc:
            fail_replies(message, _stopped(f"{self} failed handling {type(message).__name__}", exc))
            raise

    def on_stop(self) -> None:
        self._fail_inbox(f"{self} stopped")

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._fail_inbox(f"{self} crashed")

    def _fail_inbox(self, why: str) -> None:
        """Close the inbox to questions, then fail those left in it; what pykka answers itself
        (a ``stop`` or an ``ask`` waiting there) is put back for its teardown to answer."""
        inbox = cast("_Inbox", self.actor_inbox)  # _create_actor_inbox's
        with inbox.closing:
            inbox.closed = True
        left: list[Any] = []
        while True:
            try:
                envelope = inbox.get_nowait()
            except queue.Empty:
                break
            if envelope.reply_to is not None:
                left.append(envelope)
            else:
                fail_replies(envelope.message, _stopped(f"{why} before it answered"))
        for envelope in left:
            inbox.put(envelope)


class _Inbox(queue.SimpleQueue[Any]):
    """An actor's inbox, with what closes it to questions as the actor stops.

    pykka's ``tell`` looks whether the actor lives, then puts: an actor that stops and empties
    its inbox between the two would never see the message, and pykka's own teardown drops a
    told one unanswered. So a question is put under ``closing`` and only while ``closed`` is
    False; the actor sets it under the same lock before emptying the inbox, and what was put
    before is in the inbox when it does. Told messages that carry no question skip the lock.
    """

    def __init__(self) -> None:
        super().__init__()
        self.closing = threading.Lock()
        self.closed = False


def tell_question(actor: pykka.ActorRef, message: object) -> None:
    """Tell ``actor`` ``message``, which carries a question, so that the actor either gets it
    or is stopped and fails it; ActorDeadError if the actor was stopped before, as pykka's
    ``tell`` raises it."""
    inbox = getattr(actor, "actor_inbox", None)
    if not isinstance(inbox, _Inbox):  # an actor of another base: pykka's own tell
        actor.tell(message)
        return
    with inbox.closing:
        if inbox.closed:
            raise pykka.ActorDeadError(f"{actor} not found")
        actor.tell(message)


def tell_or_fail(actor: pykka.ActorRef, message: object) -> bool:
    """Tell ``actor`` ``message``; if it has stopped, fail the questions the message carries
    instead (pykka raises ActorDeadError to the sender, which would otherwise crash it, and
    leave the asker waiting). False if it had stopped."""
    try:
        tell_question(actor, message)
    except pykka.ActorDeadError:
        fail_replies(message, _stopped(f"{actor} had stopped"))
        return False
    return True


def fail_replies(message: object, error: BaseException) -> None:
    """Fail every Reply ``message`` carries (its fields, if it is a NamedTuple, as every
    message here is) that is not answered yet."""
    if isinstance(message, tuple):
        for field in message:
            if isinstance(field, Reply):
                field.fail(error)
            elif isinstance(field, tuple):  # a message carried in a message
                fail_replies(field, error)


def _stopped(why: str, cause: BaseException | None = None) -> SystemStopped:
    error = SystemStopped(why)
    error.__cause__ = cause
    return error
