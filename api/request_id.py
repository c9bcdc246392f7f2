"""``X-Request-ID``: one id per request, echoed in the response and carried on its log lines."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from contextvars import ContextVar
from typing import Final

import falcon

logger = logging.getLogger(__name__)

HEADER: Final = "X-Request-ID"

MAX_LENGTH: Final = 128
"""The longest client id taken as it is; a longer one is replaced."""

# Printable ASCII without spaces: an id that cannot break a log line or a header, or be
# mistaken for two fields. Anything else is replaced, not cleaned, so an id is never altered.
_SANE: Final = re.compile(rf"[\x21-\x7e]{{1,{MAX_LENGTH}}}")

current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)
"""The id of the request this thread serves now (None outside requests): read by the log filter
in api/logs.py, so that every line a request causes carries it."""


# A fresh id is this process's random prefix and a count: unique within the process, and across
# processes as unlikely to repeat as 64 random bits. A uuid4 per request cost a read of
# os.urandom and an object, about 2 µs; this is a counter step (atomic in CPython) and a format.
_PREFIX: Final = secrets.token_hex(8)
_NUMBERS: Final = itertools.count(1)


def accept_or_generate(given: str | None) -> str:
    """``given`` if it is a sane id, else a fresh one (32 hex digits)."""
    if given is not None and _SANE.fullmatch(given):
        return given
    return f"{_PREFIX}{next(_NUMBERS):016x}"


class RequestIdMiddleware:
    """Falcon middleware, installed first: it sees every request, and its ``process_response``
    runs last, on every answer (401s and errors included), with the id still in context."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        request_id = accept_or_generate(req.get_header(HEADER))
        req.context.request_id = request_id
        # waitress reuses its threads: the token puts the previous value back afterwards.
        req.context.request_id_token = current_request_id.set(request_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        token = getattr(req.context, "request_id_token", None)
        if token is None:
            # Falcon refused the request before any middleware ran (a TRACE, say).
            resp.set_header(HEADER, accept_or_generate(req.get_header(HEADER)))
            return
        resp.set_header(HEADER, req.context.request_id)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s answered %s", req.method, req.path, resp.status)
        current_request_id.reset(token)
