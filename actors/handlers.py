"""Task handlers: the built-in ones, and loading one by name from ``TASK_HANDLER``."""

from __future__ import annotations

import importlib
import random
import time
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from actors.task import TaskView
    from actors.worker import Handler


class HandlerLoadError(Exception):
    """``TASK_HANDLER`` does not name a function that can be imported."""


class SimulatedFailure(Exception):
    """The failure the built-in simulation raises."""


def noop(task: TaskView) -> None:
    """Succeed at once: for benchmarks, and for trying the API."""


def simulation(
    min_ms: float = 100,
    max_ms: float = 500,
    failure_rate: float = 0.2,
    rng: random.Random | None = None,
) -> Handler:
    """An imitation of work: sleep a uniform ``min_ms``..``max_ms``, fail with ``failure_rate``."""
    # One source serves every worker thread: Random's methods are thread-safe in CPython.
    source = rng or random.Random()

    def simulate(task: TaskView) -> None:
        time.sleep(source.uniform(min_ms, max_ms) / 1000)
        if source.random() < failure_rate:
            raise SimulatedFailure(f"simulated failure on attempt {task.attempts}")

    return simulate


def load_handler(spec: str) -> Handler:
    """Import ``package.module:function`` and return the function."""
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name:
        raise HandlerLoadError(f"expected 'package.module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure is a startup error, not a crash
        raise HandlerLoadError(f"cannot import module {module_name!r}: {exc}") from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        raise HandlerLoadError(f"module {module_name!r} has no attribute {function_name!r}")
    if not callable(handler):
        raise HandlerLoadError(f"{spec!r} is not callable")
    return handler  # type: ignore[no-any-return]


class HandlerSpec(msgspec.Struct, frozen=True):
    """Which handler to run, said so that another process can build it: a handler loaded by
    name, or the built-in simulation with its settings.

    A worker process builds its handler from this (``load``) because a function made at run
    time, such as the simulation's closure, cannot be sent to another process.
    """

    task_handler: str | None = None
    """``TASK_HANDLER``: ``package.module:function``; None for the built-in simulation."""
    sim_min_ms: float = 100
    sim_max_ms: float = 500
    sim_failure_rate: float = 0.2

    def load(self) -> Handler:
        """The handler this names; raises HandlerLoadError as ``load_handler`` does."""
        if self.task_handler:
            return load_handler(self.task_handler)
        return simulation(self.sim_min_ms, self.sim_max_ms, self.sim_failure_rate)
