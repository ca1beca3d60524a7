"""A running desk for tests: the FastAPI app with its worker pool, on a real SQLite file or
PostgreSQL, with signed-in people of every role and a scripted model."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from dew.agents.testing import ScriptedModelProvider
from dew.guardians import auth, users
from dew.guardians.desk.app import DeskConfig, create_app
from dew.guardians.workspace import Workspace

PASSWORD = "correct horse battery staple"
# id: (name, roles). zhao.lei owns drill-script, liu.yang is its backup; chen.jing owns another
# queue; liu.yang also requests work, so the four-eyes rule has someone to stop.
PEOPLE = {
    "root": ("管理员", ["admin"]),
    "zhao.lei": ("赵磊", ["guardian"]),
    "liu.yang": ("刘洋", ["guardian", "requester"]),
    "chen.jing": ("陈静", ["guardian"]),
    "alice": ("Alice Wang", ["requester"]),
    "bob": ("Bob Li", ["requester"]),
    "audrey": ("审计员 林", ["auditor"]),
}
DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}


def add_people(ws: Workspace, password: str | None = PASSWORD) -> dict[str, str]:
    """Add everyone in PEOPLE (root first, as the first user must be an admin); return a token each.
    Without a password nobody can sign in on the web (argon2 is slow on purpose: API-only tests skip it)."""
    tokens = {}
    for uid, (name, roles) in PEOPLE.items():
        users.add_user(ws, uid, name, roles, actor="root", password=password, locale="zh")
    for uid in PEOPLE:
        _, tokens[uid] = auth.create_token(ws, uid, actor=uid, name="tests")
    return tokens


@dataclass
class Desk:
    client: TestClient
    ws: Workspace
    tokens: dict[str, str] = field(default_factory=dict)

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, who: str, path: str, **kw):
        return self.client.get(path, headers=self.h(who), **kw)

    def post(self, who: str, path: str, json=None, **kw):
        return self.client.post(path, headers=self.h(who), json=json, **kw)

    def wait(self, timeout: float = 60) -> None:
        assert self.client.app.state.executor.wait_idle(timeout), "background jobs did not finish"

    def start(self, who: str = "alice", scenario: str = "drill-script", inputs: dict | None = None) -> int:
        r = self.post(who, "/api/v1/runs", {"scenario": scenario, "inputs": inputs or DRILL})
        assert r.status_code == 202, r.text
        return r.json()["run_id"]

    def drafted(self, who: str = "alice", scenario: str = "drill-script", inputs: dict | None = None) -> dict:
        """Start a run, let the workers draft, and return the run with its queued item."""
        run_id = self.start(who, scenario, inputs)
        self.wait()
        run = self.get("root", f"/api/v1/runs/{run_id}").json()
        assert run["status"] == "awaiting_decision", run
        return run


@pytest.fixture
def desk(make_workspace):
    ws = make_workspace()
    tokens = add_people(ws)
    app = create_app(ws.settings, DeskConfig(workers=2), provider=ScriptedModelProvider())
    with TestClient(app) as client:
        yield Desk(client, ws, tokens)


class LiveServer:
    """The desk served by uvicorn on a loopback port, in a thread: real HTTP for the CLI and the browser."""

    def __init__(self, app):
        import socket
        import threading

        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the desk did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(30)

    def wait(self, timeout: float = 60) -> None:
        assert self.app.state.executor.wait_idle(timeout), "background jobs did not finish"


@pytest.fixture
def live_desk(make_workspace):
    ws = make_workspace()
    add_people(ws)
    app = create_app(ws.settings, DeskConfig(workers=2), provider=ScriptedModelProvider())
    with LiveServer(app) as server:
        server.ws = ws
        yield server
