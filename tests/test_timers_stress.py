"""Stress: many retries and delays of a millisecond or two, cancels racing them, and every task
still reaches a final state. Short, bounded runs with fixed seeds; a stuck timer fails them."""

from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING, Final

import pytest

from actors import QUEUED, RUNNING, Admission, TaskSystem, new_task
from tests.support import ANSWER_S, all_tasks

if TYPE_CHECKING:
    from actors import TaskView

RUN_S: Final = 2.0
"""How long tasks are offered in each run."""
SETTLE_S: Final = 10.0
"""How long every task has, once the offering stops, to reach a final state."""


class FlakyHandler:
    """Fails each attempt with a chance fixed by the task's id and attempt: no shared state."""

    def __init__(self, seed: int) -> None:
        self._seed = seed

    def __call__(self, task: TaskView) -> None:
        if random.Random(f"{self._seed}:{task.id}:{task.attempts}").random() < 0.5:
            raise RuntimeError("flaky")


@pytest.mark.parametrize("seed", [7, 1234])
def test_every_task_reaches_a_final_state_under_millisecond_retries_delays_and_cancels(
    seed: int,
) -> None:
    rng = random.Random(seed)
    system = TaskSystem.start(
        FlakyHandler(seed),
        workers=3,
        queue_size=256,
        retry_base_ms=1,
        retry_max_ms=2,
        uniform=random.Random(seed + 1).uniform,
    )
    accepted: list[str] = []
    offering = threading.Event()
    offering.set()

    def cancel_some() -> None:
        cancels = random.Random(seed + 2)
        while offering.is_set():
            if accepted:
                system.cancel_async(cancels.choice(accepted)).get(timeout=ANSWER_S)

    canceller = threading.Thread(target=cancel_some, name="stress-canceller")
    canceller.start()
    try:
        deadline = time.monotonic() + RUN_S
        number = 0
        while time.monotonic() < deadline:
            number += 1
            delay_s = rng.choice((0.0, 0.0, 0.001, 0.002))
            task = new_task(f"t{number}", b"null", rng.randint(0, 4), delay_s=delay_s)
            answer = system.submit_async(task).get(timeout=ANSWER_S)
            if answer is Admission.ACCEPTED:
                accepted.append(task.id)
            else:
                assert answer is Admission.QUEUE_FULL
                time.sleep(0.001)  # let the workers make room; not a wait for a condition
    finally:
        offering.clear()
        canceller.join()

    try:
        settle_by = time.monotonic() + SETTLE_S
        while True:
            left = [t for t in all_tasks(system) if t.status in (QUEUED, RUNNING)]
            if not left or time.monotonic() > settle_by:
                break
            time.sleep(0.01)
        assert len(accepted) > 100
        assert left == [], f"{len(left)} of {len(accepted)} tasks never reached a final state"
    finally:
        system.stop(deadline=time.monotonic() + 1)
