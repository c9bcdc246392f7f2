"""``GET /tasks`` with ``status``, ``limit`` and ``after``: filters, pages and their Link header."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import TYPE_CHECKING, Any

import falcon.testing
import pytest

from actors import TaskSystem, noop
from api import create_app
from tests.support import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from actors import TaskView
    from actors.worker import Handler

Client = falcon.testing.TestClient
LINK = re.compile(r'<(/tasks)\?([^>]*)>; rel="next"')


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    """Build a TestClient over a fresh TaskSystem running ``handler``; stop them all at the end."""
    systems: list[TaskSystem] = []

    def make(handler: Handler, **options: Any) -> Client:
        system = TaskSystem.start(handler, **options)
        systems.append(system)
        return falcon.testing.TestClient(create_app(system))

    yield make
    for system in systems:
        system.stop(time.monotonic() + 5)


class ByPayload:
    """Succeeds, fails on payload "fail", and holds its worker on "hold" until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.holding = threading.Event()

    def __call__(self, task: TaskView) -> None:
        if task.payload == "fail":
            raise RuntimeError("asked to fail")
        if task.payload == "hold":
            self.holding.set()
            self.release.wait(10)


@pytest.fixture
def by_payload() -> Iterator[ByPayload]:
    handler = ByPayload()
    yield handler
    handler.release.set()


def enqueue(client: Client, task_id: str, payload: Any = None) -> None:
    body = {"id": task_id, "payload": payload, "max_retries": 0}
    result = client.simulate_post("/enqueue", body=json.dumps(body))
    assert result.status_code == 201, result.text


def get_tasks(client: Client, query: str = "") -> falcon.testing.Result:
    result = client.simulate_get("/tasks", query_string=query)
    assert result.status_code == 200, result.text
    assert result.headers["content-type"] == "application/json"
    return result


def ids(result: falcon.testing.Result) -> list[str]:
    return [task["id"] for task in result.json]


def next_query(result: falcon.testing.Result) -> str | None:
    """The query string of the Link rel="next" target, or None without one."""
    link = result.headers.get("link")
    if link is None:
        return None
    match = LINK.fullmatch(link)
    assert match is not None, link
    return match.group(2)


def follow(client: Client, query: str) -> list[list[str]]:
    """Every page's ids, from ``query`` on, following Link headers to the end."""
    pages: list[list[str]] = []
    next_page: str | None = query
    while next_page is not None:
        result = get_tasks(client, next_page)
        pages.append(ids(result))
        next_page = next_query(result)
        assert len(pages) < 1000, "the Link headers never end"
    return pages


@pytest.fixture
def mixed(
    make_client: Callable[..., Client], by_payload: ByPayload
) -> tuple[Client, dict[str, str]]:
    """One worker, tasks of every status: id -> the status it ends in while the test looks."""
    client = make_client(by_payload, workers=1, queue_size=100)
    plan = {
        "d1": ("ok", "done"),
        "f1": ("fail", "failed"),
        "d2": ("ok", "done"),
        "f2": ("fail", "failed"),
        "d3": ("ok", "done"),
        "r1": ("hold", "running"),
        "q1": ("ok", "queued"),
        "q2": ("ok", "queued"),
        "q3": ("ok", "queued"),
    }
    for task_id, (payload, _) in plan.items():
        enqueue(client, task_id, payload)
    assert by_payload.holding.wait(10)
    expected = {task_id: status for task_id, (_, status) in plan.items()}
    wait_until(lambda: {t["id"]: t["status"] for t in get_tasks(client).json} == expected)
    return client, expected


# --- without parameters, and filters ------------------------------------------------------------


def test_without_parameters_the_answer_is_every_task_without_a_link(
    mixed: tuple[Client, dict[str, str]],
) -> None:
    client, expected = mixed

    result = get_tasks(client)

    assert ids(result) == list(expected)
    assert "link" not in result.headers


def test_unknown_parameters_are_ignored_as_before(mixed: tuple[Client, dict[str, str]]) -> None:
    client, _ = mixed

    assert get_tasks(client, "page=2&sort=id").json == get_tasks(client).json


@pytest.mark.parametrize("status", ["queued", "running", "done", "failed"])
def test_status_lists_only_tasks_in_that_status_in_creation_order(
    mixed: tuple[Client, dict[str, str]], status: str
) -> None:
    client, expected = mixed

    result = get_tasks(client, f"status={status}")

    assert ids(result) == [task_id for task_id, s in expected.items() if s == status]
    assert all(task["status"] == status for task in result.json)
    assert "link" not in result.headers


def test_after_alone_lists_every_task_after_that_one(
    mixed: tuple[Client, dict[str, str]],
) -> None:
    client, _ = mixed

    assert ids(get_tasks(client, "after=d3")) == ["r1", "q1", "q2", "q3"]
    assert ids(get_tasks(client, "after=q3")) == []


def test_a_filtered_task_shows_as_get_task_does(mixed: tuple[Client, dict[str, str]]) -> None:
    client, _ = mixed

    [failed] = get_tasks(client, "status=failed&after=d2").json

    assert failed == client.simulate_get("/task", params={"id": "f2"}).json
    assert failed["last_error"] == "RuntimeError: asked to fail"


# --- pages and the Link header ------------------------------------------------------------------


def test_following_the_links_reaches_every_task_exactly_once_in_order(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(noop, queue_size=100)
    all_ids = [f"task-{n:02}" for n in (7, 3, 12, 0, 9, 1, 5, 10, 2, 11, 8, 4, 6)]
    for task_id in all_ids:
        enqueue(client, task_id)

    pages = follow(client, "limit=4")

    assert [len(page) for page in pages] == [4, 4, 4, 1]
    assert [task_id for page in pages for task_id in page] == all_ids


@pytest.mark.parametrize("limit", [1, 2, 3, 6, 7, 1000])
def test_every_limit_pages_through_every_task_once(
    make_client: Callable[..., Client], limit: int
) -> None:
    client = make_client(noop, queue_size=100)
    all_ids = [f"t{n}" for n in range(6)]
    for task_id in all_ids:
        enqueue(client, task_id)

    pages = follow(client, f"limit={limit}")

    assert all(1 <= len(page) <= limit for page in pages)
    assert [task_id for page in pages for task_id in page] == all_ids


def test_the_link_points_after_the_last_task_of_the_page_and_keeps_the_other_parameters(
    mixed: tuple[Client, dict[str, str]],
) -> None:
    client, _ = mixed

    result = get_tasks(client, "limit=2&status=done")

    assert ids(result) == ["d1", "d2"]
    assert result.headers["link"] == '</tasks?status=done&limit=2&after=d2>; rel="next"'


def test_the_last_page_has_no_link_even_when_it_is_full(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(noop, queue_size=100)
    for task_id in ("a", "b", "c", "d"):
        enqueue(client, task_id)

    first = get_tasks(client, "limit=2")
    last = get_tasks(client, "limit=2&after=b")

    assert next_query(first) == "limit=2&after=b"
    assert ids(last) == ["c", "d"]
    assert "link" not in last.headers
    assert "link" not in get_tasks(client, "limit=4").headers


def test_a_filtered_page_has_a_link_only_while_a_matching_task_follows(
    mixed: tuple[Client, dict[str, str]],
) -> None:
    client, _ = mixed

    # d3 is the last done task, with other tasks after it: no next page of done tasks.
    result = get_tasks(client, "status=done&limit=1&after=d2")

    assert ids(result) == ["d3"]
    assert "link" not in result.headers


def test_status_limit_and_after_combine_and_their_links_lead_through_the_rest(
    mixed: tuple[Client, dict[str, str]],
) -> None:
    client, _ = mixed

    assert follow(client, "status=queued&limit=2&after=r1") == [["q1", "q2"], ["q3"]]
    assert follow(client, "status=failed&limit=1") == [["f1"], ["f2"]]
    assert follow(client, "status=done&limit=2&after=d1") == [["d2", "d3"]]
    assert follow(client, "status=running&limit=5&after=r1") == [[]]


@pytest.mark.parametrize(
    "task_id", ["a b", "a/b?c=d&e#f", "%41", "é😀", "+plus+", 'x>; rel="prev"', "a,b;c"]
)
def test_ids_in_links_are_url_encoded_and_following_them_works(
    make_client: Callable[..., Client], task_id: str
) -> None:
    client = make_client(noop, queue_size=100)
    for each in ("first", task_id, "last"):
        enqueue(client, each)

    first = get_tasks(client, "limit=2")
    query = next_query(first)

    assert ids(first) == ["first", task_id]
    assert query is not None
    assert re.fullmatch(r"limit=2&after=[A-Za-z0-9_.~%-]+", query)
    assert follow(client, query) == [["last"]]


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=bogus", "status must be one of queued, running, done, failed, cancelled"),
        ("status=DONE", "status must be one of queued, running, done, failed, cancelled"),
        ("status=", "status must be one of queued, running, done, failed, cancelled"),
        ("status", "status must be one of queued, running, done, failed, cancelled"),
        ("limit=0", "limit must be an integer from 1 to 1000"),
        ("limit=1001", "limit must be an integer from 1 to 1000"),
        ("limit=-1", "limit must be an integer from 1 to 1000"),
        ("limit=%2B5", "limit must be an integer from 1 to 1000"),
        ("limit=%205", "limit must be an integer from 1 to 1000"),
        ("limit=1.5", "limit must be an integer from 1 to 1000"),
        ("limit=ten", "limit must be an integer from 1 to 1000"),
        ("limit=1e3", "limit must be an integer from 1 to 1000"),
        ("limit=" + "9" * 5000, "limit must be an integer from 1 to 1000"),
        ("limit=", "limit must be an integer from 1 to 1000"),
        ("after=", "after must be a task id"),
        ("after=nobody", "after: no task with that id"),
        ("after=A", "after: no task with that id"),
        ("limit=2&after=nobody", "after: no task with that id"),
        ("status=done&status=failed", "status may be given only once"),
        ("limit=2&limit=2", "limit may be given only once"),
        ("after=a&after=a", "after may be given only once"),
        ("status=&status=", "status may be given only once"),
    ],
)
def test_bad_parameters_are_400_with_a_message(
    make_client: Callable[..., Client], query: str, message: str
) -> None:
    client = make_client(noop)
    enqueue(client, "a")

    result = client.simulate_get("/tasks", query_string=query)

    assert result.status_code == 400
    assert result.headers["content-type"] == "application/json"
    assert result.json == {"error": message}


def test_leading_zeros_in_limit_are_accepted(make_client: Callable[..., Client]) -> None:
    client = make_client(noop)
    for task_id in ("a", "b", "c"):
        enqueue(client, task_id)

    assert ids(get_tasks(client, "limit=002")) == ["a", "b"]
