"""CreationOrder on its own: it follows a task map that grows, shrinks or is replaced."""

from __future__ import annotations

from actors.paging import CreationOrder, Page
from actors.task import Task, new_task


def tasks_of(*ids: str) -> dict[str, Task]:
    return {task_id: new_task(task_id, b"null", max_retries=0, now=1.0) for task_id in ids}


def ids_of(page: Page | None) -> list[str]:
    assert page is not None
    return [task.id for task in page.tasks]


def test_it_follows_tasks_added_at_the_end_between_pages() -> None:
    order = CreationOrder()
    tasks = tasks_of("a", "b")
    assert ids_of(order.page(tasks)) == ["a", "b"]

    tasks.update(tasks_of("c", "d"))

    assert ids_of(order.page(tasks, after="b")) == ["c", "d"]
    assert ids_of(order.page(tasks, after="c", limit=1)) == ["d"]


def test_it_is_rebuilt_when_the_map_is_replaced() -> None:
    order = CreationOrder()
    assert ids_of(order.page(tasks_of("a", "b"))) == ["a", "b"]

    assert ids_of(order.page(tasks_of("x", "y", "z"), after="x")) == ["y", "z"]


def test_it_is_rebuilt_when_tasks_were_removed() -> None:
    order = CreationOrder()
    tasks = tasks_of("a", "b", "c", "d")
    order.page(tasks)

    del tasks["b"]
    tasks.update(tasks_of("e"))  # one in, one out: the same count as before

    assert ids_of(order.page(tasks)) == ["a", "c", "d", "e"]
    assert ids_of(order.page(tasks, after="c")) == ["d", "e"]
    assert order.page(tasks, after="b") is None


def test_invalidate_makes_it_see_a_removed_id_added_again_at_the_end() -> None:
    order = CreationOrder()
    tasks = tasks_of("a", "b", "c")
    order.page(tasks)

    del tasks["b"]
    del tasks["c"]
    tasks.update(tasks_of("b", "c"))
    order.invalidate()

    assert ids_of(order.page(tasks)) == ["a", "b", "c"]
    assert ids_of(order.page(tasks, after="a", limit=1)) == ["b"]


def test_a_limit_stops_reading_at_the_first_task_past_the_page() -> None:
    order = CreationOrder()
    tasks = tasks_of(*(f"t{n}" for n in range(5)))

    assert order.page(tasks, limit=2) == Page([tasks["t0"], tasks["t1"]], more=True)
    assert order.page(tasks, limit=5) == Page(list(tasks.values()), more=False)


def test_newest_first_reads_backwards_and_after_means_older_than() -> None:
    order = CreationOrder()
    tasks = tasks_of("a", "b", "c", "d", "e")

    first = order.page(tasks, limit=2, newest_first=True)
    assert ids_of(first) == ["e", "d"]
    assert first is not None and first.more
    second = order.page(tasks, limit=2, after="d", newest_first=True)
    assert ids_of(second) == ["c", "b"]
    last = order.page(tasks, limit=2, after="b", newest_first=True)
    assert ids_of(last) == ["a"]
    assert last is not None and not last.more
    assert ids_of(order.page(tasks, after="a", newest_first=True)) == []


def test_a_removal_then_a_reused_id_is_listed_once_at_its_new_place() -> None:
    order = CreationOrder()
    tasks = tasks_of("a", "b", "c")
    order.page(tasks)

    del tasks["a"]
    order.invalidate()
    tasks.update(tasks_of("a"))

    assert ids_of(order.page(tasks)) == ["b", "c", "a"]
    assert ids_of(order.page(tasks, newest_first=True)) == ["a", "c", "b"]
