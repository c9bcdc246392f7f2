"""``GET /tasks?order=``: newest first with ``desc``, ``after`` continuing in that order, and the
Link header keeping it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from actors import noop
from tests.api_client import Client, Systems, accept, error_of

if TYPE_CHECKING:
    from collections.abc import Iterator

IDS = [f"t-{n}" for n in range(7)]
LINK = re.compile(r'</tasks\?([^>]*)>; rel="next"')


@pytest.fixture
def client() -> Iterator[Client]:
    systems = Systems()
    client = systems.client(noop, workers=1, queue_size=16)
    for task_id in IDS:
        accept(client, task_id)
    yield client
    systems.stop_all()


def page(client: Client, query: str) -> tuple[list[str], str | None]:
    result = client.simulate_get("/tasks", query_string=query)
    assert result.status_code == 200, result.text
    link = result.headers.get("link")
    match = None if link is None else LINK.fullmatch(link)
    assert link is None or match is not None, link
    return [task["id"] for task in result.json], None if match is None else match.group(1)


def test_order_desc_lists_newest_first_and_asc_is_the_default(client: Client) -> None:
    assert page(client, "order=desc")[0] == IDS[::-1]
    assert page(client, "order=asc")[0] == IDS
    assert page(client, "limit=1000")[0] == IDS


def test_after_continues_in_the_order_asked(client: Client) -> None:
    assert page(client, "order=desc&after=t-4")[0] == ["t-3", "t-2", "t-1", "t-0"]
    assert page(client, "order=asc&after=t-4")[0] == ["t-5", "t-6"]


def test_the_link_header_keeps_order_desc_to_the_last_page(client: Client) -> None:
    pages, query = [], "order=desc&limit=3"
    links = []
    while query is not None:
        ids, query = page(client, query)
        pages.append(ids)
        if query is not None:
            links.append(query)

    assert pages == [["t-6", "t-5", "t-4"], ["t-3", "t-2", "t-1"], ["t-0"]]
    assert links == ["limit=3&order=desc&after=t-4", "limit=3&order=desc&after=t-1"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("order=newest", "order must be asc or desc"),
        ("order=", "order must be asc or desc"),
        ("order=asc&order=desc", "order may be given only once"),
    ],
)
def test_a_bad_order_is_400(client: Client, query: str, message: str) -> None:
    result = client.simulate_get("/tasks", query_string=query)

    assert result.status_code == 400
    assert error_of(result) == {"error": message}
