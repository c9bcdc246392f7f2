"""End to end: a user's own handler, in a project directory of their own, run by the installed
``task-queue`` command or by ``python /path/to/main.py``, both started from that directory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from tests.support import wait_until
from tests.test_e2e import (
    HOST,
    ROOT,
    STARTUP_TIMEOUT_S,
    Service,
    free_port,
    healthy,
    service_environment,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

COMMAND: Final = Path(sys.executable).parent / "task-queue"
"""Where ``pip install`` put the console script: next to the interpreter running the tests
(not resolved: a virtual environment's python is a link to the system's)."""

HANDLER_MODULE: Final = '''
"""A user's handler: records what it ran, and where, in the file the payload names."""

import json
import os
from pathlib import Path


def run(task):
    record = {"id": task.id, "cwd": os.getcwd(), "n": task.payload["n"]}
    Path(task.payload["out"]).write_text(json.dumps(record), encoding="utf-8")
    return {"doubled": task.payload["n"] * 2}
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project directory: ``myjobs/work.py`` holds the handler ``run``."""
    directory = tmp_path / "myproject"
    (directory / "myjobs").mkdir(parents=True)
    (directory / "myjobs" / "__init__.py").write_text("", encoding="utf-8")
    (directory / "myjobs" / "work.py").write_text(textwrap.dedent(HANDLER_MODULE), encoding="utf-8")
    return directory


SHADOWS: Final = {"main.py": "main", "api/__init__.py": "api", "actors/__init__.py": "actors"}
"""Modules a project may well have under the names of ours."""

LOOK_ALIKE: Final = """
import os

# Not the service's: the project's own module of the same name, saying it was imported, and by whom.
with open({marker!r}, "a", encoding="utf-8") as record:
    record.write(f"{{os.getpid()}}\\n")
"""


def crowd(project: Path, *paths: str) -> Path:
    """``project`` with modules of its own at ``paths`` (keys of SHADOWS)."""
    for path in paths:
        (project / path).parent.mkdir(exist_ok=True)
        marker = str(project / f"imported-{SHADOWS[path]}")
        (project / path).write_text(LOOK_ALIKE.format(marker=marker), encoding="utf-8")
    return project


def imported_from(project: Path) -> list[str]:
    """Which of the project's look-alike modules something imported."""
    return sorted(name for name in SHADOWS.values() if (project / f"imported-{name}").exists())


@pytest.fixture
def start_in(tmp_path: Path) -> Iterator[Callable[[list[str], Path], Service]]:
    """Start ``command`` with ``cwd`` as its working directory, running myjobs.work:run."""
    started: list[Service] = []

    def start(command: list[str], cwd: Path) -> Service:
        port = free_port()
        environ = service_environment(HOST=HOST, PORT=port, TASK_HANDLER="myjobs.work:run")
        # Only the working directory may make the handler importable.
        environ.pop("PYTHONPATH", None)
        log_path = tmp_path / f"service-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        service = Service(process, port, log_path)
        started.append(service)
        wait_until(lambda: healthy(service), timeout_s=STARTUP_TIMEOUT_S, interval_s=0.02)
        return service

    yield start
    for service in started:
        service.kill()


def runs_the_users_handler(service: Service, project: Path) -> None:
    out = project / "out.json"
    service.accept({"id": "mine", "payload": {"n": 21, "out": str(out)}})

    done = service.wait_for_task("mine", lambda task: task["status"] in ("done", "failed"))

    assert done["status"] == "done", done
    assert done["last_error"] is None
    record = out.read_text(encoding="utf-8")
    assert '"id": "mine"' in record
    assert '"n": 21' in record


def test_the_task_queue_command_is_installed_next_to_the_interpreter() -> None:
    assert COMMAND.is_file(), f"{COMMAND} is missing: pip install -e . installs it"


def test_task_queue_run_from_a_project_directory_imports_its_handler_from_there(
    start_in: Callable[[list[str], Path], Service], project: Path
) -> None:
    service = start_in([str(COMMAND)], project)

    runs_the_users_handler(service, project)


def test_python_main_py_by_absolute_path_from_a_project_directory_imports_its_handler(
    start_in: Callable[[list[str], Path], Service], project: Path
) -> None:
    service = start_in([sys.executable, str(ROOT / "main.py")], project)

    runs_the_users_handler(service, project)


def test_from_elsewhere_the_users_module_is_not_found_and_the_service_does_not_start(
    project: Path, tmp_path: Path
) -> None:
    # The other side of the two tests above: it is the working directory that makes it work.
    environ = service_environment(HOST=HOST, PORT=free_port(), TASK_HANDLER="myjobs.work:run")
    environ.pop("PYTHONPATH", None)

    finished = subprocess.run(
        [str(COMMAND)],
        cwd=tmp_path,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
        check=False,
    )

    assert finished.returncode == 2, finished
    assert "TASK_HANDLER" in finished.stderr
    assert "myjobs" in finished.stderr


def test_what_the_users_handler_returns_is_the_tasks_result(
    start_in: Callable[[list[str], Path], Service], project: Path
) -> None:
    service = start_in([str(COMMAND)], project)
    service.accept({"id": "twice", "payload": {"n": 5, "out": str(project / "out.json")}})

    done = service.wait_for_task("twice", lambda task: task["status"] in ("done", "failed"))

    assert (done["status"], done["result"]) == ("done", {"doubled": 10}), done


COMMANDS: Final = {
    "task-queue": [str(COMMAND)],
    "python main.py": [sys.executable, str(ROOT / "main.py")],
}


@pytest.mark.parametrize("how", list(COMMANDS))
def test_a_project_with_its_own_main_py_and_api_runs_its_handler_with_ours(
    start_in: Callable[[list[str], Path], Service], project: Path, how: str
) -> None:
    crowd(project, "main.py", "api/__init__.py")
    service = start_in(COMMANDS[how], project)

    runs_the_users_handler(service, project)
    # The worker processes import our api (for their logging), and the command imports our main
    # in each of them: never the project's.
    assert "api" not in imported_from(project)
    if how == "task-queue":
        assert imported_from(project) == []


@pytest.mark.parametrize("how", list(COMMANDS))
def test_no_process_of_the_service_imports_a_projects_own_main_api_or_actors(
    start_in: Callable[[list[str], Path], Service], project: Path, how: str
) -> None:
    """Not even the forkserver the worker processes come from: its sys.path starts with the
    working directory (Python 3.11's forkserver does not take the one it is given), and it
    imports the modules it preloads from there."""
    crowd(project, *SHADOWS)
    service = start_in(COMMANDS[how], project)

    runs_the_users_handler(service, project)
    assert imported_from(project) == []
