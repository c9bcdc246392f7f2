from __future__ import annotations

from collections.abc import Iterator

import pykka
import pytest

from tests.api_client import Recorder

# The private PostgreSQL server's fixtures (pg_server, pg_database), for every test module.
pytest_plugins = ["tests.pg_server"]


@pytest.fixture(autouse=True)
def stop_all_actors() -> Iterator[None]:
    """No test leaves an actor running: actor threads would hang the interpreter's exit."""
    yield
    pykka.ActorRegistry.stop_all(timeout=5)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """The API tests' handler (tests/api_client.py); anything it still holds is let go after."""
    recorder = Recorder()
    yield recorder
    recorder.release()
