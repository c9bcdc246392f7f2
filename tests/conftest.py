from __future__ import annotations

from collections.abc import Iterator

import pykka
import pytest


@pytest.fixture(autouse=True)
def stop_all_actors() -> Iterator[None]:
    """No test leaves an actor running: actor threads would hang the interpreter's exit."""
    yield
    pykka.ActorRegistry.stop_all(timeout=5)
