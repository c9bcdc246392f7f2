"""waitress's internals that api/waitress_internals.py extends, as they were when it was checked.

They are not waitress's public API and may change in any release: pyproject.toml pins the minor
version, and these tests say what moved, by name, when a new waitress is tried. Each test names
the internal it guards; a failure means api/waitress_internals.py must be checked against the
new waitress before the pin moves.
"""

from __future__ import annotations

import ast
import inspect
import socket
import time
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Final

import pytest
import waitress.parser
from waitress import trigger, wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import (
    HTTPRequestParser,
    ParsingError,
    TransferEncodingNotImplemented,
    get_header_lines,
)
from waitress.rfc7230 import HEADER_FIELD_RE
from waitress.server import BaseWSGIServer, TcpWSGIServer
from waitress.task import ErrorTask, Task, ThreadedTaskDispatcher, WSGITask
from waitress.utilities import Error

from api import waitress_internals
from api.waitress_internals import (
    CHECKED_AGAINST,
    JsonErrorTask,
    RequestTimeout,
    ServiceChannel,
    ServiceRequestParser,
    ServiceServer,
    ServiceTask,
    create_server,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

INSTALLED: Final = version("waitress")


def changed(what: str, now: object, was: object) -> str:
    return (
        f"waitress {INSTALLED}: {what} changed: now {now}, was {was} (waitress {CHECKED_AGAINST})"
    )


def moved(what: str) -> str:
    return f"waitress {INSTALLED} (checked against {CHECKED_AGAINST}): {what}"


def test_the_installed_waitress_is_the_minor_version_the_internals_were_checked_against() -> None:
    minor = ".".join(INSTALLED.split(".")[:2])
    assert minor == CHECKED_AGAINST, changed("the version", minor, CHECKED_AGAINST)


# --- classes and their bases -------------------------------------------------------------------

BASES: Final = {
    "ServiceServer(TcpWSGIServer)": (ServiceServer, TcpWSGIServer),
    "TcpWSGIServer(BaseWSGIServer)": (TcpWSGIServer, BaseWSGIServer),
    # start_draining closes the listener with wasyncore.dispatcher.close, skipping waitress's.
    "BaseWSGIServer(wasyncore.dispatcher)": (BaseWSGIServer, wasyncore.dispatcher),
    "ServiceChannel(HTTPChannel)": (ServiceChannel, HTTPChannel),
    "HTTPChannel(wasyncore.dispatcher)": (HTTPChannel, wasyncore.dispatcher),
    "ServiceRequestParser(HTTPRequestParser)": (ServiceRequestParser, HTTPRequestParser),
    "JsonErrorTask(ErrorTask)": (JsonErrorTask, ErrorTask),
    "ErrorTask(Task)": (ErrorTask, Task),
    "ServiceTask(WSGITask)": (ServiceTask, WSGITask),
    "WSGITask(Task)": (WSGITask, Task),
    "RequestTimeout(Error)": (RequestTimeout, Error),
}


@pytest.mark.parametrize(("cls", "base"), BASES.values(), ids=BASES)
def test_each_class_still_has_its_base(cls: type, base: type) -> None:
    assert issubclass(cls, base), changed(f"{cls.__name__}'s bases", cls.__mro__, base)


# --- what the subclasses override, and what they add ------------------------------------------

OVERRIDES: Final = {
    JsonErrorTask: {"execute"},
    ServiceTask: {"build_response_header", "set_close_on_finish"},
    ServiceRequestParser: {"parse_header", "received"},
    ServiceChannel: {"received", "readable", "writable", "task_class"}
    | {"error_task_class", "parser_class", "request"},
    ServiceServer: {"__init__", "readable", "handle_accept", "maintenance", "channel_class"}
    | {"next_channel_cleanup"},
    RequestTimeout: {"code", "reason"},
}
"""Per subclass, the names it defines that its waitress base defines too: everything else it
defines must be new to waitress, or it silently replaces something of waitress's."""

INHERITED_FROM: Final = {cls: cls.__mro__[1] for cls in OVERRIDES}


def defined(cls: type) -> set[str]:
    names = set(vars(cls)) | set(getattr(cls, "__annotations__", {}))
    return {name for name in names if not (name.startswith("__") and name != "__init__")}


@pytest.mark.parametrize("cls", OVERRIDES, ids=lambda cls: cls.__name__)
def test_what_a_subclass_overrides_is_still_on_its_waitress_base(cls: type) -> None:
    base = INHERITED_FROM[cls]
    gone = sorted(
        name
        for name in OVERRIDES[cls]
        if not hasattr(base, name)
        and name not in getattr(base, "__annotations__", {})
        # set by the base's constructor rather than on the class
        and name not in _instance_attributes(base)
    )
    assert not gone, moved(f"{base.__name__} no longer has {gone}, which {cls.__name__} overrides")


@pytest.mark.parametrize("cls", OVERRIDES, ids=lambda cls: cls.__name__)
def test_what_a_subclass_adds_is_not_something_waitress_has_grown(cls: type) -> None:
    base = INHERITED_FROM[cls]
    added = defined(cls) - OVERRIDES[cls]
    clashes = sorted(
        name for name in added if hasattr(base, name) or name in _instance_attributes(base)
    )
    assert not clashes, moved(
        f"{base.__name__} now has {clashes}, which {cls.__name__} defines as its own"
    )


# --- signatures --------------------------------------------------------------------------------

SIGNATURES: Final = {
    "wasyncore.dispatcher.close": "(self)",
    "Adjustments.__init__": "(self, **kw)",
    "ThreadedTaskDispatcher.set_thread_count": "(self, count)",
    "ThreadedTaskDispatcher.shutdown": "(self, cancel_pending=True, timeout=5)",
    "TcpWSGIServer.__init__": (
        "(self, application, map=None, _start=True, _sock=None, dispatcher=None, adj=None, "
        "sockinfo=None, bind_socket=True, **kw)"
    ),
    "TcpWSGIServer.readable": "(self)",
    "TcpWSGIServer.handle_accept": "(self)",
    "TcpWSGIServer.maintenance": "(self, now)",
    "TcpWSGIServer.add_task": "(self, task)",
    "TcpWSGIServer.run": "(self)",
    "trigger.trigger.pull_trigger": "(self, thunk=None)",
    "trigger.trigger.close": "(self)",
    "HTTPChannel.__init__": "(self, server, sock, addr, adj, map=None)",
    "HTTPChannel.received": "(self, data)",
    "HTTPChannel.readable": "(self)",
    "HTTPChannel.writable": "(self)",
    "HTTPChannel.handle_close": "(self)",
    "HTTPRequestParser.__init__": "(self, adj)",
    "HTTPRequestParser.parse_header": "(self, header_plus)",
    "HTTPRequestParser.received": "(self, data)",
    "parser.get_header_lines": "(header)",
    "Task.__init__": "(self, channel, request)",
    "Task.build_response_header": "(self)",
    "Task.set_close_on_finish": "(self) -> None",
    "Task.write": "(self, data)",
    "ErrorTask.execute": "(self)",
    "Error.__init__": "(self, body)",
}
"""Every waitress callable the module calls or overrides, by where waitress defines it."""

ROOTS: Final = {
    "wasyncore": wasyncore,
    "trigger": trigger,
    "parser": waitress.parser,
    "Adjustments": Adjustments,
    "ThreadedTaskDispatcher": ThreadedTaskDispatcher,
    "TcpWSGIServer": TcpWSGIServer,
    "HTTPChannel": HTTPChannel,
    "HTTPRequestParser": HTTPRequestParser,
    "Task": Task,
    "ErrorTask": ErrorTask,
    "Error": Error,
}


def resolve(dotted: str) -> Any:
    root, *names = dotted.split(".")
    found: Any = ROOTS[root]
    for depth, name in enumerate(names, 1):
        found = getattr(found, name, None)
        if found is None:
            missing = ".".join([root, *names[:depth]])
            pytest.fail(moved(f"{missing} is gone"))
    return found


@pytest.mark.parametrize(("dotted", "expected"), SIGNATURES.items(), ids=SIGNATURES)
def test_each_method_used_or_overridden_keeps_its_signature(dotted: str, expected: str) -> None:
    now = str(inspect.signature(resolve(dotted)))
    assert now == expected, changed(f"the signature of {dotted}", now, expected)


def test_adjustments_accept_every_setting_create_server_gives() -> None:
    given = {"sockets", "threads", "connection_limit", "asyncore_use_poll"}
    given |= {"max_request_body_size", "ident", "cleanup_interval"}
    known = {name for name, _ in Adjustments._params}
    assert given <= known, changed("Adjustments' settings", sorted(given - known), [])


def test_header_fields_are_still_matched_with_name_and_value_groups() -> None:
    fields = [HEADER_FIELD_RE.match(line) for line in get_header_lines(b"A: 1\r\nB: 2, 3")]
    found = [(m.group("name"), m.group("value")) for m in fields if m is not None]
    assert found == [(b"A", b"1"), (b"B", b"2, 3")], changed("header field parsing", found, "")


# --- what the constructors set -----------------------------------------------------------------

USED_ATTRIBUTES: Final = {
    "TcpWSGIServer": {"_map", "next_channel_cleanup", "active_channels", "trigger"}
    | {"task_dispatcher", "adj", "accepting", "socket"},
    "HTTPChannel": {"request", "requests", "requests_lock", "total_outbufs_len", "will_close"}
    | {"close_when_flushed", "last_activity", "adj", "server", "connected"},
    "HTTPRequestParser": {"error", "completed", "headers", "chunked", "version"},
    "WSGITask": {"channel", "request", "version", "response_headers", "status"}
    | {"close_on_finish", "wrote_header", "content_length", "has_body"},
    "Adjustments": {"max_request_body_size", "send_bytes", "outbuf_high_watermark"}
    | {"cleanup_interval", "connection_limit"},
    "Error": {"code", "reason", "body"},
}
"""The attributes of waitress's objects that api/waitress_internals.py reads or writes."""


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Length", "0")])
    return []


class Built:
    """One of each waitress object, built by waitress's own constructors (no thread, no loop)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.client, accepted = socket.socketpair()
        self.adj = Adjustments(sockets=[self.listener], ident="test")
        self.server = TcpWSGIServer(
            hello,
            map={},
            _sock=self.listener,
            dispatcher=ThreadedTaskDispatcher(),
            adj=self.adj,
            bind_socket=False,
            sockinfo=(socket.AF_INET, socket.SOCK_STREAM, 0, self.listener.getsockname()),
        )
        self.channel = HTTPChannel(self.server, accepted, ("127.0.0.1", 0), self.adj, map={})
        self.parser = HTTPRequestParser(self.adj)
        self.task = WSGITask(self.channel, self.parser)
        self.error = Error("body")

    def objects(self) -> dict[str, object]:
        return {
            "TcpWSGIServer": self.server,
            "HTTPChannel": self.channel,
            "HTTPRequestParser": self.parser,
            "WSGITask": self.task,
            "Adjustments": self.adj,
            "Error": self.error,
        }

    def close(self) -> None:
        self.channel.handle_close()
        self.server.trigger.close()
        wasyncore.dispatcher.close(self.server)
        self.client.close()


@pytest.fixture
def built() -> Iterator[Built]:
    objects = Built()
    yield objects
    objects.close()


def _instance_attributes(cls: type) -> set[str]:
    """The attributes waitress's constructor of ``cls`` sets (known only for those built)."""
    made = Built()
    try:
        for obj in made.objects().values():
            if type(obj) is cls:
                return set(vars(obj))
        return set()
    finally:
        made.close()


@pytest.mark.parametrize("name", USED_ATTRIBUTES)
def test_the_attributes_used_are_still_set_by_waitress(built: Built, name: str) -> None:
    obj = built.objects()[name]
    missing = sorted(attr for attr in USED_ATTRIBUTES[name] if not hasattr(obj, attr))
    assert not missing, changed(f"the attributes of a new {name}", missing, [])


# --- behaviour the subclasses rely on ----------------------------------------------------------


def test_a_parsing_error_raised_by_parse_header_becomes_the_requests_400(built: Built) -> None:
    class Refusing(HTTPRequestParser):
        def parse_header(self, header_plus: bytes) -> None:
            raise ParsingError("refused")

    parser = Refusing(built.adj)
    parser.received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    assert parser.completed, changed("a refused header completes the request", False, True)
    now = (parser.error.code, parser.error.body) if parser.error else None
    assert now == (400, "refused"), changed("a ParsingError in parse_header", now, 400)


def test_an_unsupported_transfer_coding_is_still_raised_from_parse_header(built: Built) -> None:
    parser = HTTPRequestParser(built.adj)
    header = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    with pytest.raises(TransferEncodingNotImplemented):
        parser.parse_header(header)


def parsed(built: Built, version: str, *fields: str) -> HTTPRequestParser:
    parser = HTTPRequestParser(built.adj)
    head = "".join(f"{field}\r\n" for field in ("Host: x", *fields))
    parser.parse_header(f"POST / HTTP/{version}\r\n{head}\r\n".encode())
    return parser


def test_parsed_headers_are_keyed_as_the_subclasses_read_them(built: Built) -> None:
    parser = parsed(built, "1.1", "Connection: close", "Content-Length: 0")
    keys = {"CONNECTION", "CONTENT_LENGTH"}
    assert parser.version == "1.1"
    assert keys <= set(parser.headers), changed("parsed header keys", sorted(parser.headers), keys)


def test_http_1_1_chunked_is_consumed_from_the_headers_and_http_1_0_keeps_it(
    built: Built,
) -> None:
    """ServiceRequestParser refuses a Transfer-Encoding left in the headers: were HTTP/1.1's
    kept too, every chunked request would be refused."""
    chunked = parsed(built, "1.1", "Transfer-Encoding: chunked")
    old = parsed(built, "1.0", "Transfer-Encoding: chunked")

    assert chunked.chunked
    assert "TRANSFER_ENCODING" not in chunked.headers, changed("HTTP/1.1 chunked", "kept", "gone")
    assert not old.chunked
    assert "TRANSFER_ENCODING" in old.headers, changed("HTTP/1.0 Transfer-Encoding", "gone", "kept")


def bodiless_task(built: Built, task_class: type[WSGITask], connection: str | None) -> WSGITask:
    parser = HTTPRequestParser(built.adj)
    extra = f"Connection: {connection}\r\n" if connection else ""
    parser.parse_header(f"DELETE / HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    task = task_class(built.channel, parser)
    task.status = "204 No Content"
    task.start_time = time.time()
    return task


def test_waitress_itself_still_closes_a_connection_after_a_204(built: Built) -> None:
    """The defect ServiceTask works around: once this fails, waitress keeps the connection
    itself, and ServiceTask can go."""
    task = bodiless_task(built, WSGITask, None)
    header = task.build_response_header()

    assert task.close_on_finish, changed("a 204's close", "kept", "closed")
    assert b"Connection: close" in header


@pytest.mark.parametrize(("connection", "closes"), [(None, False), ("close", True)])
def test_service_task_keeps_a_204s_connection_unless_the_client_asked_to_close(
    built: Built, connection: str | None, closes: bool
) -> None:
    task = bodiless_task(built, ServiceTask, connection)
    header = task.build_response_header()

    assert task.close_on_finish is closes
    assert (b"Connection: close" in header) is closes


def test_everything_the_module_imports_from_waitress_is_checked_here() -> None:
    """A new reach into waitress belongs in the lists above too."""
    tree = ast.parse(inspect.getsource(waitress_internals))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("waitress")
        for alias in node.names
    }
    checked = {"wasyncore", "Adjustments", "HTTPChannel", "HTTPRequestParser", "ParsingError"}
    checked |= {"TransferEncodingNotImplemented", "get_header_lines", "HEADER_FIELD_RE"}
    checked |= {"TcpWSGIServer", "ErrorTask", "ThreadedTaskDispatcher", "WSGITask", "Error"}
    assert imported == checked, f"imported from waitress, not checked here: {imported - checked}"


def test_create_server_builds_a_server_from_the_settings_it_gives_waitress() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    server = create_server(
        hello,
        listener,
        threads=1,
        connection_limit=10,
        max_body_bytes=100,
        client_timeout_s=1.0,
    )
    try:
        assert (server.adj.connection_limit, server.adj.max_request_body_size) == (10, 101)
        assert server.socket is listener
    finally:
        server.trigger.close()
        wasyncore.dispatcher.close(server)
        server.stop_threads(1.0)
