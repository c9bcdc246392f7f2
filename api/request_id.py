"""``X-Request-ID``: one id per request, echoed in the response and carried on its log lines."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import falcon

logger = logging.getLogger(__name__)

HEADER: Final = "X-Request-ID"
ENVIRON_KEY: Final = "HTTP_X_REQUEST_ID"
"""Where WSGI puts the request's header."""

MAX_LENGTH: Final = 128
"""The longest client id taken as it is; a longer one is replaced."""

# Printable ASCII without spaces: an id that cannot break a log line or a header, or be
# mistaken for two fields. Anything else is replaced, not cleaned, so an id is never altered.
_SANE: Final = re.compile(rf"[\x21-\x7e]{{1,{MAX_LENGTH}}}")

current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)
"""The id of the request this thread serves now (None outside requests): read by the log filter
in api/logs.py, so that every line a request causes carries it."""


# A fresh id is this process's random prefix and a count: unique within the process, and across
# processes as unlikely to repeat as 64 random bits, for a counter step (atomic in CPython) and a
# format per request where a uuid4 would read os.urandom and build an object.
_PREFIX: Final = secrets.token_hex(8)
_NUMBERS: Final = itertools.count(1)


def accept_or_generate(given: str | None) -> str:
    """``given`` if it is a sane id, else a fresh one (32 hex digits)."""
    if given is not None and _SANE.fullmatch(given):
        return given
    return f"{_PREFIX}{next(_NUMBERS):016x}"


class RequestIds:
    """The app's outermost layer, a WSGI wrapper: every request gets its id before Falcon sees
    it, every answer (401s, errors, Falcon's own refusals) carries it, and the log lines of
    everything in between can read it from ``current_request_id``.

    A wrapper rather than a Falcon middleware: it also sees what Falcon refuses before any
    middleware runs, and it costs one call per request instead of two hooks and a
    ``req.context`` object.
    ``app`` is the Falcon app inside, for what needs it (route inspection).
    """

    __slots__ = ("app",)

    def __init__(self, app: falcon.App) -> None:
        self.app = app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request_id = accept_or_generate(environ.get(ENVIRON_KEY))

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append((HEADER, request_id))
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s %s answered %s", environ["REQUEST_METHOD"], environ["PATH_INFO"], status
                )
            return start_response(status, headers, exc_info)

        # waitress reuses its threads: the token puts the previous value back afterwards.
        token = current_request_id.set(request_id)
        try:
            return self.app(environ, start)
        finally:
            current_request_id.reset(token)
