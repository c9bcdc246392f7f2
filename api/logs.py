"""``LOG_FORMAT``: log lines as readable text or as one JSON object each, with request and task ids.

Stdlib logging only. A line about a task carries ``task_id`` and ``attempt`` (given as
``extra``); a line a request causes carries ``request_id`` (added by ``RequestIdFilter`` from
the context the request middleware sets, api/request_id.py). Other ``extra`` fields (the startup
configuration, the shutdown summary) become fields of their own in JSON.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Final, Literal

import msgspec

from api.request_id import current_request_id

LogFormat = Literal["text", "json"]

CONTEXT_FIELDS: Final = ("instance", "request_id", "task_id", "attempt")
"""What every line says when it applies: the instance of a cluster that wrote it (INSTANCE_ID),
the request, the task and the attempt it is about."""

TRACEBACK_FIELD: Final = "traceback"
"""An ``extra`` field holding a traceback already formatted as text (one from a worker's child
process, say): written where a record's own exception would be."""

# What every LogRecord has: anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    TRACEBACK_FIELD,
}

_json = msgspec.json.Encoder(enc_hook=str)  # anything msgspec cannot encode is said as str()

# The characters that would split a text line, or make one line look like two.
_CONTROL: Final = {code: f"\\x{code:02x}" for code in (*range(32), 127)} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


class RequestIdFilter(logging.Filter):
    """Puts the current request's id (or None) on every record, whatever thread logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


class InstanceFilter(logging.Filter):
    """Puts the instance's INSTANCE_ID on every record: in a cluster, whose line it is."""

    def __init__(self, instance: str) -> None:
        super().__init__()
        self._instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = self._instance
        return True


def rfc3339(created: float) -> str:
    """A record's time as RFC 3339 in UTC, to the millisecond."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message> [request_id=... task_id=... attempt=...]``.

    Control characters in the message are escaped, so that a handler's multi-line error (it ends
    up in the message) cannot forge log lines; a traceback follows on lines of its own.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{rfc3339(record.created)} {record.levelname} {record.name}: "
            f"{record.getMessage().translate(_CONTROL)}"
        )
        context = [
            # Task ids are user data, quoted as the messages quote them (%r): spaces stay clear.
            f"{name}={value!r}" if name == "task_id" else f"{name}={value}"
            for name in CONTEXT_FIELDS
            if (value := getattr(record, name, None)) is not None
        ]
        if context:
            line += " [" + " ".join(context).translate(_CONTROL) + "]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif (text := getattr(record, TRACEBACK_FIELD, None)) is not None:
            line += "\n" + text
        elif record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (RFC 3339), ``level``, ``logger``, ``message``, then
    ``request_id``, ``task_id``, ``attempt`` when known, any other ``extra`` field, and an
    ``exception`` (the traceback as one string) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if (value := getattr(record, name, None)) is not None:
                entry[name] = value
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRIBUTES and name not in entry and value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif (text := getattr(record, TRACEBACK_FIELD, None)) is not None:
            entry["exception"] = text
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:
            return _json.encode(entry).decode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (from undecodable input) has no UTF-8 form: write it escaped.
            return _json.encode(_escaped(entry)).decode("utf-8")


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_escaped(key): _escaped(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(item) for item in value]
    return value


def configure_logging(
    level: str,
    log_format: LogFormat,
    stream: IO[str] = sys.stderr,
    *,
    instance: str | None = None,
) -> None:
    """Send every logger's lines to ``stream`` in ``log_format``, from ``level`` up; with
    ``instance`` (a cluster's INSTANCE_ID), each line names it."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    # On the handler, not a logger: records propagated from any logger pass through it.
    handler.addFilter(RequestIdFilter())
    if instance is not None:
        handler.addFilter(InstanceFilter(instance))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
