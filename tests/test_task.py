"""Task snapshots and the read-only view handlers get."""

from __future__ import annotations

import time

import msgspec
import pytest

from actors.task import DONE, FAILED, QUEUED, RUNNING, new_task, view_of


def test_a_new_task_is_queued_with_no_attempts_and_no_error() -> None:
    task = new_task("task-1", b'"some data"', max_retries=3, now=1_700_000_000.5)

    assert task.id == "task-1"
    assert task.payload == b'"some data"'
    assert task.max_retries == 3
    assert task.status == QUEUED
    assert task.attempts == 0
    assert task.created_at == task.updated_at == 1_700_000_000.5
    assert task.last_error is None
    assert task.next_attempt_at is None
    assert not task.is_final


def test_a_new_task_without_a_time_is_stamped_now() -> None:
    before = time.time()
    task = new_task("task-1", b"null", max_retries=0)
    after = time.time()

    assert before <= task.created_at <= after
    assert task.updated_at == task.created_at


@pytest.mark.parametrize("field", ["id", "payload", "status", "attempts", "last_error"])
def test_a_task_is_frozen(field: str) -> None:
    task = new_task("task-1", b"null", max_retries=3)
    with pytest.raises(AttributeError):
        setattr(task, field, getattr(task, field))


def test_a_change_makes_a_new_task_and_leaves_the_old_one_as_it_was() -> None:
    task = new_task("task-1", b"null", max_retries=3)
    running = msgspec.structs.replace(task, status=RUNNING, attempts=1)

    assert (task.status, task.attempts) == (QUEUED, 0)
    assert (running.status, running.attempts) == (RUNNING, 1)


@pytest.mark.parametrize(
    ("status", "final"), [(QUEUED, False), (RUNNING, False), (DONE, True), (FAILED, True)]
)
def test_only_done_and_failed_are_final(status: str, final: bool) -> None:
    task = msgspec.structs.replace(new_task("t", b"null", 0), status=status)
    assert task.is_final is final


def test_the_view_carries_id_payload_max_retries_and_attempts() -> None:
    task = msgspec.structs.replace(
        new_task("task-1", b'{"n": [1, 2], "s": "x"}', max_retries=5), attempts=2
    )
    view = view_of(task)

    assert view.id == "task-1"
    assert view.payload == {"n": [1, 2], "s": "x"}
    assert view.max_retries == 5
    assert view.attempts == 2


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [(b"null", None), (b"42", 42), (b"1.5", 1.5), (b'"s"', "s"), (b"[1]", [1]), (b"true", True)],
)
def test_the_view_decodes_any_json_payload(raw: bytes, decoded: object) -> None:
    assert view_of(new_task("t", raw, 0)).payload == decoded


def test_mutating_a_views_payload_changes_neither_the_task_nor_the_next_view() -> None:
    task = new_task("task-1", b'{"items": [1, 2]}', max_retries=3)

    first = view_of(task)
    first.payload["items"].append(3)
    first.payload["new"] = True
    second = view_of(task)

    assert task.payload == b'{"items": [1, 2]}'
    assert second.payload == {"items": [1, 2]}
    assert second.payload is not first.payload


def test_a_view_is_read_only() -> None:
    view = view_of(new_task("task-1", b"null", max_retries=3))
    with pytest.raises(AttributeError):
        view.attempts = 99  # type: ignore[misc]
