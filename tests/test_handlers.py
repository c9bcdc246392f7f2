"""Task handlers: loading one by name, the built-in simulation and the no-op."""

from __future__ import annotations

import importlib
import pickle
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from actors.handlers import (
    HandlerLoadError,
    HandlerSpec,
    SimulatedFailure,
    load_handler,
    noop,
    simulation,
)
from actors.task import TaskView


def a_view(attempts: int = 1) -> TaskView:
    return TaskView(id="task-1", payload={"n": 1}, max_retries=3, attempts=attempts)


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An importable module of handlers, written for the test and forgotten after it."""
    module_source = """\
CALLS = []
NOT_CALLABLE = 42


def record(task):
    CALLS.append(task.id)
"""
    (tmp_path / "tq_test_handlers.py").write_text(module_source)
    (tmp_path / "tq_broken_on_import.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "tq_test_handlers"
    for name in ("tq_test_handlers", "tq_broken_on_import"):
        sys.modules.pop(name, None)


def test_a_good_spec_loads_the_named_function() -> None:
    assert load_handler("actors.handlers:noop") is noop


def test_a_loaded_handler_is_the_function_the_module_defines(handler_module: str) -> None:
    handler = load_handler(f"{handler_module}:record")

    handler(a_view())

    assert importlib.import_module(handler_module).CALLS == ["task-1"]


def test_an_unimportable_module_is_a_load_error_naming_it() -> None:
    with pytest.raises(HandlerLoadError, match="no_such_package_for_tq"):
        load_handler("no_such_package_for_tq.jobs:run")


def test_a_module_that_fails_while_importing_is_a_load_error(handler_module: str) -> None:
    with pytest.raises(HandlerLoadError, match="broken at import"):
        load_handler("tq_broken_on_import:run")


def test_a_missing_function_is_a_load_error_naming_it(handler_module: str) -> None:
    with pytest.raises(HandlerLoadError, match="no_such_function"):
        load_handler(f"{handler_module}:no_such_function")


def test_a_name_that_is_not_callable_is_a_load_error(handler_module: str) -> None:
    with pytest.raises(HandlerLoadError, match="not callable"):
        load_handler(f"{handler_module}:NOT_CALLABLE")


@pytest.mark.parametrize(
    "spec", ["", ":", "actors.handlers", "actors.handlers:", ":noop", "actors.handlers.noop"]
)
def test_a_malformed_spec_is_a_load_error_showing_the_expected_shape(spec: str) -> None:
    with pytest.raises(HandlerLoadError, match=r"package\.module:function"):
        load_handler(spec)


def test_noop_succeeds_and_returns_nothing() -> None:
    handler: Callable[[TaskView], object] = noop
    assert handler(a_view()) is None


def test_a_simulation_that_never_fails_always_returns() -> None:
    handler = simulation(min_ms=0, max_ms=0, failure_rate=0.0, rng=random.Random(1))
    for attempt in range(1, 101):
        assert handler(a_view(attempt)) is None


def test_a_simulation_that_always_fails_always_raises_naming_the_attempt() -> None:
    handler = simulation(min_ms=0, max_ms=0, failure_rate=1.0, rng=random.Random(1))
    for attempt in range(1, 101):
        with pytest.raises(SimulatedFailure, match=f"attempt {attempt}$"):
            handler(a_view(attempt))


def test_a_seeded_simulation_fails_exactly_when_its_random_draw_is_below_the_rate() -> None:
    handler = simulation(min_ms=0, max_ms=0, failure_rate=0.5, rng=random.Random(2024))
    twin = random.Random(2024)

    outcomes: list[bool] = []
    expected: list[bool] = []
    for _ in range(200):
        try:
            handler(a_view())
            outcomes.append(False)
        except SimulatedFailure:
            outcomes.append(True)
        twin.uniform(0, 0)  # the sleep's draw
        expected.append(twin.random() < 0.5)

    assert outcomes == expected
    assert 0 < sum(outcomes) < 200


class FixedRandom(random.Random):
    """Draws the same number every time."""

    def __init__(self, draw: float) -> None:
        super().__init__(0)
        self._draw = draw

    def random(self) -> float:
        return self._draw


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5])
def test_a_draw_equal_to_the_failure_rate_succeeds(rate: float) -> None:
    # random() is in [0, 1): failing on draw < rate fails with probability exactly rate, so a
    # rate of 0 never fails, even on a draw of 0.0.
    handler = simulation(min_ms=0, max_ms=0, failure_rate=rate, rng=FixedRandom(rate))
    assert handler(a_view()) is None


def test_a_draw_just_below_the_failure_rate_fails() -> None:
    handler = simulation(min_ms=0, max_ms=0, failure_rate=0.5, rng=FixedRandom(0.4999))
    with pytest.raises(SimulatedFailure):
        handler(a_view())


class RecordingRandom(random.Random):
    """Records the sleep ranges asked of it, and always picks the bottom of the range."""

    def __init__(self) -> None:
        super().__init__(0)
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return a


def test_a_simulation_sleeps_a_uniform_draw_between_its_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr("actors.handlers.time.sleep", slept.append)
    source = RecordingRandom()
    handler = simulation(min_ms=120, max_ms=480, failure_rate=0.0, rng=source)

    handler(a_view())

    assert source.ranges == [(120, 480)]
    assert slept == [0.12]


def test_a_handler_spec_loads_the_named_function() -> None:
    assert HandlerSpec("actors.handlers:noop").load() is noop


def test_a_handler_spec_without_a_name_is_the_simulation_with_its_settings() -> None:
    handler = HandlerSpec(sim_min_ms=0, sim_max_ms=0, sim_failure_rate=1).load()

    with pytest.raises(SimulatedFailure, match="attempt 2"):
        handler(a_view(attempts=2))


def test_a_handler_spec_survives_pickling_as_it_must_to_reach_a_worker_process() -> None:
    spec = HandlerSpec("actors.handlers:noop", sim_min_ms=1, sim_max_ms=2, sim_failure_rate=0.5)

    assert pickle.loads(pickle.dumps(spec)) == spec


def test_a_bad_handler_spec_raises_what_load_handler_raises() -> None:
    with pytest.raises(HandlerLoadError, match="expected 'package\\.module:function'"):
        HandlerSpec("no colon").load()
