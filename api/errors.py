"""Error responses: one shape for all of them, ``{"error": "..."}``."""

from __future__ import annotations

import http
import logging
from typing import TYPE_CHECKING, Any, Final

import falcon

from api.schema import ErrorBody, ItemErrorBody, encoder

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger(__name__)


def error_json(message: str) -> bytes:
    return encoder.encode(ErrorBody(error=message))


def error_message(status_code: int, description: str | None) -> str:
    """The description when there is one, else the status's own phrase ("not found")."""
    if description:
        return description
    try:
        return http.HTTPStatus(status_code).phrase.lower()
    except ValueError:
        return "error"


class ItemError(falcon.HTTPError):
    """An error about one task of a batch: the body also says which one, ``"index"``."""

    def __init__(self, status: str, description: str, index: int) -> None:
        super().__init__(status, description=description)
        self.index = index


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Falcon's error serializer: JSON whatever the client's Accept header says."""
    message = error_message(error.status_code, error.description)
    if isinstance(error, ItemError):
        resp.data = encoder.encode(ItemErrorBody(error=message, index=error.index))
    else:
        resp.data = error_json(message)
    resp.content_type = falcon.MEDIA_JSON


def handle_unexpected(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Mapping[str, Any]
) -> None:
    """A bug, not bad input: log it whole, answer 500 in the usual shape."""
    logger.exception("unhandled error on %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(description="internal server error")


RETRY_AFTER_STOPPED_S: Final = 5
"""What ``Retry-After`` tells a client whose question an actor that had stopped could not answer:
past the shutdown deadline, or after a crash, only another process (a restart) will."""


def handle_system_stopped(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Mapping[str, Any]
) -> None:
    """An actor the request needed had stopped (shutdown's deadline passed, or it crashed):
    answered at once, whatever the request's timeout."""
    raise service_unavailable("task system stopped", retry_after_s=RETRY_AFTER_STOPPED_S)


def handle_store_error(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Mapping[str, Any]
) -> None:
    """A read the database could not answer (a cluster's, in an outage): 503, as enqueues."""
    raise service_unavailable("store unavailable", retry_after_s=1)


def service_unavailable(message: str, retry_after_s: int | None = None) -> falcon.HTTPError:
    return falcon.HTTPServiceUnavailable(description=message, retry_after=retry_after_s)
