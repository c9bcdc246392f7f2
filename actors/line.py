"""WaitingLine: the dispatcher's line of queued tasks, highest priority first, FIFO within one."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from actors.task import MAX_PRIORITY

if TYPE_CHECKING:
    from collections.abc import Iterable

    from actors.task import Task


class WaitingLine:
    """One FIFO deque per priority, and a bit mask of the priorities that hold tasks.

    Taking the next task finds the highest non-empty priority with ``int.bit_length`` on the
    mask instead of looking at ten deques, so a line of default-priority tasks costs what a
    single deque did. Used only on the dispatcher's thread.
    """

    __slots__ = ("_by_priority", "_length", "_nonempty")

    def __init__(self) -> None:
        self._by_priority: tuple[deque[Task], ...] = tuple(deque() for _ in range(MAX_PRIORITY + 1))
        self._nonempty = 0  # bit p is set while priority p holds a task
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def __bool__(self) -> bool:
        return self._length > 0

    def append(self, task: Task) -> None:
        """Put ``task`` last among the tasks of its priority."""
        self._by_priority[task.priority].append(task)
        self._nonempty |= 1 << task.priority
        self._length += 1

    def extend(self, tasks: Iterable[Task]) -> None:
        for task in tasks:
            self.append(task)

    def popleft(self) -> Task:
        """The first task of the highest priority; IndexError when the line is empty."""
        if not self._nonempty:
            raise IndexError("pop from an empty line")
        priority = self._nonempty.bit_length() - 1
        tasks = self._by_priority[priority]
        task = tasks.popleft()
        if not tasks:
            self._nonempty &= ~(1 << priority)
        self._length -= 1
        return task

    def remove(self, task_id: str) -> Task | None:
        """Take the task with this id out of the line; None if it is not in it.

        O(length of the line): only cancelling a task does this.
        """
        for priority, tasks in enumerate(self._by_priority):
            for index, task in enumerate(tasks):
                if task.id == task_id:
                    del tasks[index]
                    if not tasks:
                        self._nonempty &= ~(1 << priority)
                    self._length -= 1
                    return task
        return None
