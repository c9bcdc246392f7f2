"""QUEUES: what it declares, and every way it can be wrong."""

from __future__ import annotations

import pytest

from actors.queues import InvalidQueues, QueueSpec, default_queues, parse_queues


def test_queues_are_read_in_order_with_their_workers_and_rates() -> None:
    assert parse_queues("default:4,emails:2:5,reports:1") == (
        QueueSpec("default", 4),
        QueueSpec("emails", 2, 5.0),
        QueueSpec("reports", 1),
    )


def test_spaces_around_entries_and_fractional_rates_are_taken() -> None:
    assert parse_queues(" slow_lane-2 : 1 : 0.5 , b:3") == (
        QueueSpec("slow_lane-2", 1, 0.5),
        QueueSpec("b", 3),
    )


def test_without_queues_there_is_one_default_queue_with_every_worker() -> None:
    assert default_queues(7) == (QueueSpec("default", 7),)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("default", "not name:workers"),
        ("default:1:2:3", "not name:workers"),
        ("a:1,,b:1", "not name:workers"),
        ("Emails:1", "queue name 'Emails'"),
        (f"{'q' * 65}:1", "queue name"),
        (":1", "queue name ''"),
        ("a.b:1", "queue name 'a.b'"),
        ("a:1,a:2", "declared twice"),
        ("a:0", "workers '0'"),
        ("a:-1", "workers '-1'"),
        ("a:two", "workers 'two'"),
        ("a:1:0", "max_per_second '0'"),
        ("a:1:-2", "max_per_second '-2'"),
        ("a:1:fast", "max_per_second 'fast'"),
        ("a:1:nan", "max_per_second 'nan'"),
        ("a:1:inf", "max_per_second 'inf'"),
        ("a:1000,b:1000", "add up to more than 1024"),
    ],
)
def test_a_wrong_declaration_is_refused_saying_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidQueues, match=says.replace("(", r"\(")):
        parse_queues(text)
