"""The README's examples, run: every ```console block against a real ``python main.py``.

The convention, in README.md: right before each console block, an HTML comment (invisible on the
forges) names the service the block runs against::

    <!-- readme-test: service=line WORKERS=1 QUEUE_SIZE=2 TASK_HANDLER=tests.handlers:hold -->

The first block of a service gives its settings (environment variables); its later blocks name
it alone, and run after the earlier ones, in README order, against the same service. Every
setting but TASK_HANDLER must also be written out (``WORKERS=1``) in the visible text of the
README section that holds the block, and a TASK_HANDLER outside ``tests`` too (the test handlers
are described in words: "a slow handler"). Lines of the comment after the first that start with
``$`` prepare the block: they run before it, and their output is not compared. ``service=none``
starts nothing: the block's ``python main.py`` commands run to their exit instead. Every service
runs in a directory of its own, which holds the README's handler module ``myjobs/work.py``.

In a block, ``$ <command>`` is run through the shell with ``localhost:8080`` replaced by the
service's address, and its output compared with the lines below it: each response's status line,
every header it sends but Content-Length, Date and Server unless the README shows them too (in
the order sent), and the body (as JSON when it is JSON). Times, the HTTP date, ``uptime_s`` and
generated request ids are masked on both sides. A GET is asked again until it answers as shown
(or a deadline passes): what it shows may wait on an attempt. ``$ VAR=value python main.py``
without output says how the block's service was started, and must match its settings.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from actors.system import ShutdownSummary
from actors.task import STATUSES
from main import describe_summary
from tests.support import wait_until
from tests.test_e2e import (
    HOST,
    STARTUP_TIMEOUT_S,
    Service,
    healthy,
    service_environment,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT: Final = Path(__file__).resolve().parent.parent
README: Final = ROOT / "README.md"
COMMAND_TIMEOUT_S: Final = 10.0
ANSWER_TIMEOUT_S: Final = 10.0
"""How long a GET is asked again until it answers as the README shows."""
OMITTED_HEADERS: Final = frozenset({"Content-Length", "Date", "Server"})
"""Headers every answer carries that the README may leave out."""
HANDLER_MODULE: Final = "# myjobs/work.py"
"""The first line of the README's handler example, written into each service's directory."""

MARKER: Final = re.compile(r"^<!-- readme-test: (?P<settings>[^\n]*?)\s*(?P<end>-->)?$")
SETTING: Final = re.compile(r"^[A-Z_]+=\S+$")
START: Final = re.compile(r"^(?P<settings>(?:[A-Z_]+=\S+ )*)python main\.py$")
MASKS: Final = (
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"), "<time>"),
    (re.compile(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT"), "<date>"),
    (re.compile(r'"uptime_s":[0-9.]+'), '"uptime_s":0'),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<request id>"),
)
WRITES: Final = re.compile(r"\s(?:-d|--data\S*|-X)\s")


@dataclass(frozen=True)
class Command:
    line: str
    expected: str


@dataclass
class Block:
    service: str
    settings: dict[str, str]
    preparation: list[str]
    commands: list[Command]
    at: int
    """The block's line number in README.md."""
    section: str
    """The visible text of the README section (``##``) that holds the block."""


@dataclass
class Story:
    """One service's settings and its blocks, in README order."""

    settings: dict[str, str]
    blocks: list[Block] = field(default_factory=list)


def parse_readme(text: str) -> tuple[list[Block], list[int]]:
    """The console blocks with their readme-test comments, and the lines of any without one."""
    lines = text.splitlines()
    sections = _sections(lines)
    blocks: list[Block] = []
    unmarked: list[int] = []
    comment: list[str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if (match := MARKER.match(line)) is not None:
            comment = [match.group("settings")]
            while match.group("end") is None:
                index += 1
                rest = lines[index]
                if rest.strip() == "-->":
                    break
                comment.append(rest.strip())
            index += 1
            continue
        if line.strip() == "```console":
            end = lines.index("```", index + 1)
            body = lines[index + 1 : end]
            if comment is None:
                unmarked.append(index + 1)
            else:
                blocks.append(_block(comment, body, index + 1, sections[index]))
            comment = None
            index = end + 1
            continue
        if line.strip():
            comment = None  # a comment counts only right before its block
        index += 1
    return blocks, unmarked


def _sections(lines: list[str]) -> list[str]:
    """For each line, the visible text (comments left out) of the ``##`` section holding it."""
    starts = [n for n, line in enumerate(lines) if line.startswith("## ")] + [len(lines)]
    owner: list[str] = [""] * len(lines)
    for start, end in zip([0, *starts], starts, strict=False):
        text = re.sub(r"<!--.*?-->", "", "\n".join(lines[start:end]), flags=re.DOTALL)
        owner[start:end] = [text] * (end - start)
    return owner


def _block(comment: list[str], body: list[str], at: int, section: str) -> Block:
    words = comment[0].split()
    assert words and words[0].startswith("service="), f"line {at}: no service= in {comment}"
    settings = dict(word.split("=", 1) for word in words[1:] if SETTING.match(word))
    assert len(settings) == len(words) - 1, f"line {at}: settings are VAR=value: {comment[0]}"
    preparation = [line.removeprefix("$ ") for line in comment[1:] if line.startswith("$ ")]
    commands: list[Command] = []
    for line in body:
        if line.startswith("$ "):
            commands.append(Command(line.removeprefix("$ "), ""))
        else:
            assert commands, f"line {at}: output before any command"
            last = commands[-1]
            commands[-1] = Command(last.line, f"{last.expected}{line}\n")
    commands = [Command(command.line, command.expected.strip("\n")) for command in commands]
    return Block(words[0].removeprefix("service="), settings, preparation, commands, at, section)


def stories(blocks: list[Block]) -> dict[str, Story]:
    found: dict[str, Story] = {}
    for block in blocks:
        story = found.get(block.service)
        if story is None:
            found[block.service] = Story(block.settings, [block])
            continue
        assert not block.settings or block.settings == story.settings, (
            f"line {block.at}: service {block.service} was started with {story.settings}"
        )
        story.blocks.append(block)
    return found


BLOCKS, UNMARKED = parse_readme(README.read_text(encoding="utf-8"))
STORIES: Final = stories(BLOCKS)


# --- comparing what a command printed with what the README shows ---------------------------


def mask(text: str) -> str:
    text = text.replace("\r\n", "\n")
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return text


@dataclass(frozen=True)
class Printed:
    """What a command printed: the responses' heads (with ``curl -i``), and the rest."""

    heads: list[tuple[str, list[tuple[str, str]]]]
    body: str


def read_output(text: str) -> Printed:
    text = mask(text)
    heads = []
    while text.startswith("HTTP/"):
        head, _, text = text.partition("\n\n")
        status, *header_lines = head.split("\n")
        headers = [
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in header_lines)
        ]
        heads.append((status.strip(), headers))
    return Printed(heads, text.strip())


def difference(expected: str, actual: str) -> str | None:
    """Why ``actual`` is not what the README shows, or None when it is."""
    shown, printed = read_output(expected), read_output(actual)
    if [status for status, _ in shown.heads] != [status for status, _ in printed.heads]:
        return "status lines differ"
    for (status, shown_headers), (_, sent) in zip(shown.heads, printed.heads, strict=True):
        names = {name for name, _ in shown_headers}
        expected_headers = [
            (name, value) for name, value in sent if name in names or name not in OMITTED_HEADERS
        ]
        if shown_headers != expected_headers:
            return f"headers of {status!r} differ: the README shows {shown_headers}"
    if _as_json(shown.body) != _as_json(printed.body):
        return "bodies differ"
    return None


def _as_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- running the examples ------------------------------------------------------------------


def handler_module() -> str:
    """The README's example handler, ``myjobs/work.py``, as written there."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"```python\n{HANDLER_MODULE}\n") + len("```python\n")
    return text[start : text.index("```", start)]


def workdir(base: Path, name: str) -> Path:
    """A directory for one service, as a project of its own with the README's handler."""
    directory = base / name
    (directory / "myjobs").mkdir(parents=True)
    (directory / "myjobs" / "__init__.py").write_text("")
    (directory / "myjobs" / "work.py").write_text(handler_module())
    return directory


def run(command: str, port: int, directory: Path) -> subprocess.CompletedProcess[str]:
    """One command of the README through the shell, at the service's address."""
    return subprocess.run(
        command.replace("localhost:8080", f"{HOST}:{port}"),
        shell=True,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def run_main(settings: str, directory: Path) -> str:
    """``VAR=value python main.py`` to its exit, with nothing else set: what it printed (it is
    expected to stop before it listens, so the default address is never bound)."""
    environ = service_environment(**dict(word.split("=", 1) for word in settings.split()))
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py")],
        cwd=directory,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    return done.stdout + done.stderr


def distinct_ports(count: int) -> list[int]:
    """``count`` free ports, all different: each socket is held until all are picked. Picked
    one at a time and closed at once, two could be the same port, and one service would then
    answer the other's examples."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


@dataclass
class Running:
    service: Service | None
    directory: Path


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Running]]:
    """Every service the README's examples name, started together, killed at the end."""
    base = tmp_path_factory.mktemp("readme")
    started: dict[str, Running] = {}
    ports = iter(distinct_ports(len(STORIES)))
    try:
        for name, story in STORIES.items():
            directory = workdir(base, name)
            if name == "none":
                started[name] = Running(None, directory)
                continue
            port = next(ports)
            log_path = directory / "service.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, str(ROOT / "main.py")],
                    cwd=directory,
                    env=service_environment(HOST=HOST, PORT=port, **story.settings),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            started[name] = Running(Service(process, port, log_path), directory)
        # They start at once, so they share one deadline: their startups overlap.
        deadline = time.monotonic() + STARTUP_TIMEOUT_S * 3
        for service in (running.service for running in started.values()):
            if service is not None:
                left = max(0.1, deadline - time.monotonic())
                wait_until(partial(healthy, service), timeout_s=left, interval_s=0.02)
        yield started
    finally:
        for running in started.values():
            if running.service is not None:
                running.service.kill()


def test_every_console_block_says_which_service_it_runs_against() -> None:
    assert UNMARKED == [], f"console blocks without a readme-test comment, at lines {UNMARKED}"
    assert BLOCKS


@pytest.mark.parametrize("name", sorted(STORIES))
def test_the_settings_of_each_example_are_written_out_where_it_is(name: str) -> None:
    story = STORIES[name]
    for block in story.blocks:
        for command in block.commands:
            started = START.match(command.line)
            if started is not None and not command.expected and name != "none":
                stated = dict(word.split("=", 1) for word in started.group("settings").split())
                assert stated.items() <= story.settings.items(), f"line {block.at}: {stated}"
    first = story.blocks[0]
    for variable, value in story.settings.items():
        if variable == "TASK_HANDLER" and value.startswith("tests."):
            continue
        said = value if variable == "TASK_HANDLER" else f"{variable}={value}"
        assert said in first.section, f"line {first.at}: {said} is not said in its section"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("name", sorted(STORIES))
def test_the_readme_examples_answer_as_shown(name: str, services: dict[str, Running]) -> None:
    running = services[name]
    port = running.service.port if running.service is not None else 0
    for block in STORIES[name].blocks:
        for line in block.preparation:
            prepared = run(line, port, running.directory)
            assert prepared.returncode == 0, f"line {block.at}: {line}: {prepared.stderr}"
        for command in block.commands:
            started = START.match(command.line)
            if started is not None:
                if command.expected:
                    printed = run_main(started.group("settings"), running.directory)
                    why = difference(command.expected, printed)
                    assert why is None, f"README.md line {block.at}: $ {command.line}\n{printed}"
                continue
            check(command, block, port, running.directory)


def check(command: Command, block: Block, port: int, directory: Path) -> None:
    """Run ``command``; a GET again until it answers as shown, for at most ANSWER_TIMEOUT_S."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    again = WRITES.search(f" {command.line} ") is None and "> /dev/null" not in command.line
    while True:
        done = run(command.line, port, directory)
        assert done.returncode == 0, f"README.md line {block.at}: {command.line}: {done.stderr}"
        why = difference(command.expected, done.stdout)
        if why is None:
            return
        if not again or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    raise AssertionError(
        f"README.md, block at line {block.at}: $ {command.line}\n{why}\n"
        f"--- the README shows:\n{command.expected}--- it printed:\n{done.stdout}"
    )


SUMMARY: Final = re.compile(
    r"^INFO task_queue: (?P<line>shutdown complete: (?P<counts>[^;]*); "
    r"(?P<fate>abandoned|kept for the next start:) (?P<in_line>\d+) queued and "
    r"(?P<awaiting>\d+) .*)$",
    re.MULTILINE,
)


def test_the_shutdown_summary_lines_of_the_readme_are_those_the_service_writes() -> None:
    shown = list(SUMMARY.finditer(README.read_text(encoding="utf-8")))
    assert len(shown) == 2, "the README shows one summary in memory and one with a store"
    for match in shown:
        counts = dict(word.split("=") for word in match.group("counts").split())
        summary = ShutdownSummary(
            counts={status: int(count) for status, count in counts.items()},
            abandoned_in_line=int(match.group("in_line")),
            abandoned_retries=int(match.group("awaiting")),
            drained=True,
            kept=match.group("fate") != "abandoned",
        )
        assert describe_summary(summary) == match.group("line")
        assert tuple(counts) == STATUSES, "every status, in the order the repository counts them"


def test_the_readme_python_example_runs_as_shown() -> None:
    # "Using the actors without HTTP": the one Python block, run as a reader would paste it.
    found = re.search(
        r"Using the actors without HTTP:\n\n```python\n(.*?)```", README.read_text(), re.S
    )
    assert found is not None, "the README's Python example is gone"
    ran = subprocess.run(
        [sys.executable, "-c", found.group(1)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert ran.returncode == 0, ran.stderr
    # The handler's print and the example's own run on two threads: their words may interleave.
    assert ran.stdout.count("world") == 2  # printed by the handler, and inside the task shown
    assert "Task(id='hello'" in ran.stdout
