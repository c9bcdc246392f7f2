"""What the API tests of task control, batches, priorities and delays share: a handler steered by
the payload that records every run, and a TestClient over a real TaskSystem."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import falcon.testing

from actors import TaskSystem
from api import create_app
from tests.handlers import BLOCK_LIMIT_S, HandlerFailure
from tests.support import wait_until

if TYPE_CHECKING:
    from actors import TaskView

Client = falcon.testing.TestClient
Result = falcon.testing.Result


class Recorder:
    """Records each run as ``(id, attempt)``. Payload ``{"hold": true}`` keeps the attempt
    running until ``release()``; ``{"gate": name}`` until ``open(name)``; ``{"fail": true}``
    fails every attempt (after any wait)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: list[tuple[str, int]] = []
        self._released = threading.Event()
        self._gates: dict[str, threading.Event] = {}

    def __call__(self, task: TaskView) -> None:
        with self._lock:
            self._runs.append((task.id, task.attempts))
        payload = task.payload if isinstance(task.payload, dict) else {}
        if payload.get("hold") and not self._released.wait(BLOCK_LIMIT_S):
            raise HandlerFailure(f"held for {BLOCK_LIMIT_S} s")
        if "gate" in payload and not self._gate(payload["gate"]).wait(BLOCK_LIMIT_S):
            raise HandlerFailure(f"gate {payload['gate']} stayed closed for {BLOCK_LIMIT_S} s")
        if payload.get("fail"):
            raise HandlerFailure(f"told to fail, attempt {task.attempts}")

    def _gate(self, name: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(name, threading.Event())

    @property
    def runs(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._runs)

    def ran(self, task_id: str) -> list[int]:
        """The attempt numbers ``task_id`` has run with, in order."""
        return [attempt for run_id, attempt in self.runs if run_id == task_id]

    def release(self) -> None:
        """End every held attempt, and let later ones through at once."""
        self._released.set()
        with self._lock:
            gates = list(self._gates.values())
        for gate in gates:
            gate.set()

    def open(self, name: str) -> None:
        self._gate(name).set()


class Systems:
    """Starts TaskSystems with TestClients over them, and stops them all at the end."""

    def __init__(self) -> None:
        self._started: list[TaskSystem] = []

    def client(self, handler: Any, **options: Any) -> Client:
        return Client(create_app(self.start(handler, **options)))

    def start(self, handler: Any, **options: Any) -> TaskSystem:
        system = TaskSystem.start(handler, **options)
        self._started.append(system)
        return system

    def stop_all(self) -> None:
        for system in self._started:
            system.stop(time.monotonic() + 5)


def enqueue(client: Client, task_id: str, **fields: Any) -> Result:
    return client.simulate_post("/enqueue", body=json.dumps({"id": task_id, **fields}))


def accept(client: Client, task_id: str, **fields: Any) -> dict[str, Any]:
    result = enqueue(client, task_id, **fields)
    assert result.status_code == 201, result.text
    return result.json


def get_task(client: Client, task_id: str) -> Result:
    return client.simulate_get("/task", params={"id": task_id})


def status_of(client: Client, task_id: str) -> str | None:
    """The task's status now, or None if it is not stored."""
    result = get_task(client, task_id)
    if result.status_code == 404:
        return None
    assert result.status_code == 200, result.text
    return result.json["status"]


def wait_for_status(client: Client, task_id: str, status: str) -> dict[str, Any]:
    wait_until(lambda: status_of(client, task_id) == status)
    return get_task(client, task_id).json


def stats(client: Client) -> dict[str, Any]:
    result = client.simulate_get("/stats")
    assert result.status_code == 200, result.text
    return result.json


def stored_ids(client: Client) -> list[str]:
    result = client.simulate_get("/tasks")
    assert result.status_code == 200, result.text
    return [task["id"] for task in result.json]


def error_of(result: Result) -> Any:
    """The JSON body of an error answer, checked to be JSON."""
    assert result.headers["content-type"] == "application/json", result.headers
    body = result.json
    assert isinstance(body, dict)
    assert isinstance(body.get("error"), str)
    assert body["error"]
    return body
