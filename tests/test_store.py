"""MemoryStore: the store protocol's contract, kept in memory for as long as the object lives."""

from __future__ import annotations

import msgspec

from actors.store import MemoryStore
from actors.task import DONE, new_task


def test_a_memory_store_starts_empty() -> None:
    assert MemoryStore().load() == []


def test_tasks_come_back_in_creation_order_with_their_latest_state() -> None:
    store = MemoryStore()
    a, b, c = (new_task(name, b"null", max_retries=0, now=float(n)) for n, name in enumerate("abc"))
    store.commit([a, b])
    done_a = msgspec.structs.replace(a, status=DONE, attempts=1)
    store.commit([c, done_a])

    assert store.load() == [done_a, b, c]
    assert store.commits == 2


def test_what_was_committed_outlives_close() -> None:
    store = MemoryStore()
    task = new_task("a", b"1", max_retries=0)
    store.commit([task])
    store.close()

    assert store.load() == [task]


def test_a_load_is_a_copy_the_caller_may_change() -> None:
    store = MemoryStore()
    store.commit([new_task("a", b"1", max_retries=0)])

    store.load().clear()

    assert len(store.load()) == 1
