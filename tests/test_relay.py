"""Relay: an actor's inbox served by another thread while its own is stuck, and only ever one."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

import pykka
import pytest

from actors.base import Actor
from actors.relay import LOOP_STEPS, Relay
from tests.support import wait_until

TIMEOUT_S = 5.0


class Block(NamedTuple):
    """-> Stuckable: get stuck until ``gate`` opens; then hand the thread to the relay."""

    gate: threading.Event
    entered: threading.Event


class WhoServes(NamedTuple):
    """-> Stuckable: answer with the serving thread."""


class GetRelay(NamedTuple):
    """-> Stuckable: answer with its relay."""


class Stuckable(Actor):
    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.relay = Relay(self, name="stuckable")
        self.served_by: list[threading.Thread] = []

    def on_receive(self, message: Any) -> Any:
        self.served_by.append(threading.current_thread())
        match message:
            case Block(gate, entered):
                entered.set()
                gate.wait()
                self.relay.park()
            case WhoServes():
                return threading.current_thread()
            case GetRelay():
                return self.relay
        return None

    def on_stop(self) -> None:
        self.relay.stop()
        super().on_stop()


@pytest.fixture
def actor() -> Iterator[tuple[pykka.ActorRef, Relay]]:
    ref = Stuckable.start()
    yield ref, ref.ask(GetRelay(), timeout=TIMEOUT_S)
    pykka.ActorRegistry.stop_all()


def stuck(ref: pykka.ActorRef, relay: Relay) -> threading.Event:
    """Get the serving thread stuck and have the relay take over; the gate that frees it."""
    gate, entered = threading.Event(), threading.Event()
    ref.tell(Block(gate, entered))
    assert entered.wait(TIMEOUT_S)
    relay.take_over(lambda: None)
    return gate


def test_pykkas_loop_steps_the_relay_runs_are_still_there() -> None:
    for step in LOOP_STEPS:
        method = getattr(pykka.ThreadingActor, step)
        assert inspect.signature(method).parameters.keys() == {"self"}, step
    # The steps the relay runs are what the actor's own thread runs after on_start.
    source = inspect.getsource(pykka.Actor._actor_loop)  # type: ignore[attr-defined]
    assert [line.strip() for line in source.splitlines() if line.strip().startswith("self.")] == [
        "self._actor_loop_setup()",
        *(f"self.{step}()" for step in LOOP_STEPS),
    ]


def test_another_thread_serves_the_inbox_while_the_actors_own_is_stuck(
    actor: tuple[pykka.ActorRef, Relay],
) -> None:
    ref, relay = actor
    own = ref.ask(WhoServes(), timeout=TIMEOUT_S)

    gate = stuck(ref, relay)

    relay_thread = ref.ask(WhoServes(), timeout=TIMEOUT_S)
    assert relay_thread is not own
    gate.set()


def test_a_thread_whose_call_returns_waits_as_a_spare_and_is_used_next_time(
    actor: tuple[pykka.ActorRef, Relay],
) -> None:
    ref, relay = actor
    own = ref.ask(WhoServes(), timeout=TIMEOUT_S)
    stuck(ref, relay).set()  # the own thread returns, and parks
    first_relay = ref.ask(WhoServes(), timeout=TIMEOUT_S)
    wait_until(lambda: relay.spares == 1)

    gate = stuck(ref, relay)  # the relay thread is stuck now: the spare takes over

    assert ref.ask(WhoServes(), timeout=TIMEOUT_S) is own
    assert first_relay is not own
    gate.set()


def test_stopping_the_actor_lets_every_spare_end(
    actor: tuple[pykka.ActorRef, Relay],
) -> None:
    ref, relay = actor
    own = ref.ask(WhoServes(), timeout=TIMEOUT_S)
    stuck(ref, relay).set()
    relay_thread = ref.ask(WhoServes(), timeout=TIMEOUT_S)

    ref.stop(timeout=TIMEOUT_S)

    own.join(TIMEOUT_S)
    relay_thread.join(TIMEOUT_S)
    assert not own.is_alive()
    assert not relay_thread.is_alive()
