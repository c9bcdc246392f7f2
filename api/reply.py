"""Waiting on an actor's answer from a request thread, never forever."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

import pykka

from api.errors import service_unavailable

if TYPE_CHECKING:
    import falcon

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S: Final = 10.0
"""How long a request thread waits for an actor before answering 503."""

TIMEOUT_MESSAGE: Final = "timed out waiting for the task system; try again"


class Answer(Protocol[T_co]):
    """An actor's answer to come: a Reply (or several, as for ``GET /stats``)."""

    def get(self, *, timeout: float | None = None) -> T_co: ...


def wait_for(answer: Answer[T], timeout_s: float) -> T:
    """The answer, or a 503 error to raise if it is not there in ``timeout_s``. An actor that
    stopped before it answered raises SystemStopped at once, which the app answers with 503
    too (api/errors.py)."""
    try:
        return answer.get(timeout=timeout_s)
    except pykka.Timeout:
        logger.warning("an actor did not answer within %.1f s", timeout_s)
        raise _timeout_error() from None


def _timeout_error() -> falcon.HTTPError:
    return service_unavailable(TIMEOUT_MESSAGE, retry_after_s=1)
