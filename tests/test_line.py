"""WaitingLine: highest priority first, first in first out within a priority."""

from __future__ import annotations

import pytest

from actors.line import WaitingLine
from actors.task import Task, new_task


def task(task_id: str, priority: int = 0) -> Task:
    return new_task(task_id, b"null", 3, priority=priority)


def drain(line: WaitingLine) -> list[str]:
    return [line.popleft().id for _ in range(len(line))]


def test_an_empty_line_is_falsy_and_refuses_to_pop() -> None:
    line = WaitingLine()

    assert not line
    assert len(line) == 0
    with pytest.raises(IndexError):
        line.popleft()


def test_default_priority_tasks_come_out_in_arrival_order() -> None:
    line = WaitingLine()
    line.extend(task(f"t{n}") for n in range(5))

    assert drain(line) == ["t0", "t1", "t2", "t3", "t4"]


def test_higher_priorities_come_first_and_each_priority_keeps_arrival_order() -> None:
    line = WaitingLine()
    for task_id, priority in [("a", 0), ("b", 5), ("c", 9), ("d", 5), ("e", 0), ("f", 9)]:
        line.append(task(task_id, priority))

    assert len(line) == 6
    assert drain(line) == ["c", "f", "b", "d", "a", "e"]
    assert not line


def test_a_task_arriving_between_pops_is_placed_by_its_priority() -> None:
    line = WaitingLine()
    line.extend([task("low-1", 1), task("low-2", 1)])
    assert line.popleft().id == "low-1"

    line.append(task("high", 7))

    assert drain(line) == ["high", "low-2"]


def test_remove_takes_out_only_that_task_and_keeps_the_rest_in_order() -> None:
    line = WaitingLine()
    line.extend([task("a", 2), task("b", 2), task("c", 4), task("d", 2)])

    removed = line.remove("b")

    assert removed is not None and removed.id == "b"
    assert len(line) == 3
    assert drain(line) == ["c", "a", "d"]


def test_removing_the_last_task_of_a_priority_lets_lower_ones_through() -> None:
    line = WaitingLine()
    line.extend([task("only-high", 8), task("low", 0)])

    assert line.remove("only-high") is not None

    assert drain(line) == ["low"]


def test_removing_an_unknown_id_changes_nothing() -> None:
    line = WaitingLine()
    line.extend([task("a"), task("b", 3)])

    assert line.remove("zzz") is None
    assert len(line) == 2
    assert drain(line) == ["b", "a"]
