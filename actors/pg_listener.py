"""Listener: the thread that hears, over LISTEN, that another instance enqueued work (or paused
or resumed a queue).

Its own connection, which only waits for notifications: the repository's cannot, as it runs
statements. Each notification from another instance wakes the dispatcher, which claims the new
work if a worker is idle; those from this instance are ignored (its dispatcher heard of the
tasks from the repository already). A lost connection is made again, after a pause; what was
notified meanwhile is found by the dispatcher's polling.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Final

import psycopg
import pykka

from actors.pg_schema import CHANNEL
from actors.protocol.cluster import Wake
from actors.store import StoreError

if TYPE_CHECKING:
    from actors.pg_connect import DatabaseUrl

logger = logging.getLogger(__name__)

WAIT_S: Final = 0.5
"""How long one wait for notifications lasts: how soon ``close`` is noticed."""

RECONNECT_S: Final = 1.0
"""The pause before connecting again after the connection was lost."""

_WAKE = Wake()


class Listener:
    """LISTEN on the cluster's channel, on a daemon thread, until ``close``."""

    def __init__(self, url: DatabaseUrl, instance_id: str, dispatcher: pykka.ActorRef) -> None:
        self._url = url
        self._instance_id = instance_id
        self._dispatcher = dispatcher
        self._closed = threading.Event()
        self._connection: psycopg.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="pg-listener", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 2.0) -> None:
        self._closed.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                self._listen()
            except (StoreError, psycopg.Error) as exc:
                logger.debug("listener: %s; connecting again", self._url.scrub(str(exc)))
            except pykka.ActorDeadError:
                return  # the dispatcher stopped: shutdown
            finally:
                if self._connection is not None:
                    with contextlib.suppress(Exception):
                        self._connection.close()
                    self._connection = None
            self._closed.wait(RECONNECT_S)

    def _listen(self) -> None:
        self._connection = connection = self._url.connect(f"task_queue {self._instance_id} listen")
        connection.execute(f"LISTEN {CHANNEL}")
        # Work enqueued while it was not listening is found now, not at the next poll.
        self._dispatcher.tell(_WAKE)
        while not self._closed.is_set():
            for notify in connection.notifies(timeout=WAIT_S):
                if notify.payload != self._instance_id:
                    self._dispatcher.tell(_WAKE)
