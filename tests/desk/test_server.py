"""The server's own duties: runs it finds unfinished when it starts, the clock's tick (reminders,
escalations, notifications, queued runs nobody took), sessions that end, and a trusted proxy."""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from dew.agents.testing import ScriptedModelProvider
from dew.guardians import notify
from dew.guardians.clock import tick
from dew.guardians.db import transaction
from dew.guardians.desk.app import DeskConfig, create_app
from dew.guardians.errors import InvalidState
from dew.guardians.models import Run, WebSession, utcnow
from dew.guardians.runs import request_run

from .conftest import DRILL, PASSWORD, add_people


def test_runs_left_queued_or_cut_off_are_taken_up_when_the_server_starts(make_workspace):
    ws = make_workspace()
    add_people(ws)
    from dew.guardians.models import AuthMethod

    queued = request_run(ws, "drill-script", DRILL, requester="alice", method=AuthMethod.TOKEN)
    cut_off = request_run(ws, "drill-script", DRILL, requester="alice", method=AuthMethod.TOKEN)
    with transaction(ws.engine) as s:  # a worker took it and the process died before its first step was saved
        row = s.get(Run, cut_off.key)
        row.status = "running"
        s.add(row)
    app = create_app(ws.settings, DeskConfig(workers=2), provider=ScriptedModelProvider())
    with TestClient(app):
        assert app.state.executor.wait_idle(60)
    with transaction(ws.engine) as s:
        statuses = {r.id: r.status for r in s.exec(select(Run)).all()}
    assert statuses == {queued.key: "awaiting_decision", cut_off.key: "awaiting_decision"}


class _Receiver(BaseHTTPRequestHandler):
    got: ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).got.append((self.headers["x-dew-event"], body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_clock_tells_the_guardian_an_item_waits(make_workspace, scenarios_dir):
    path = scenarios_dir / "drill-script.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("risk: medium\n", "risk: medium\ndeadline: 8h\n", 1), encoding="utf-8"
    )
    ws = make_workspace()
    add_people(ws)
    receiver = HTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.got = []
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        notify.add_channel(ws, "zhao.lei", "webhook", url, actor="zhao.lei", secret="s3cret-key")
        app = create_app(ws.settings, DeskConfig(workers=1, tick_seconds=3600), provider=ScriptedModelProvider())
        with TestClient(app) as client:
            token = client.post("/api/v1/auth/token", json={"user": "alice", "password": PASSWORD}).json()["token"]
            client.post("/api/v1/runs", json={"scenario": "drill-script", "inputs": DRILL},
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            assert app.state.executor.wait_idle(60)
            done = tick(app.state.ws, app.state.executor)
            assert done["notifications"] == 1
            assert [event for event, _ in _Receiver.got] == ["item.queued"]
            assert b"Shift team" not in _Receiver.got[0][1]  # never the inputs or the draft
    finally:
        receiver.shutdown()


def test_an_expired_session_sends_the_browser_to_sign_in(desk):
    page = desk.client.get("/login")
    csrf = page.cookies.get("dew_login_csrf") or desk.client.cookies.get("dew_login_csrf")
    desk.client.post("/login", data={"user": "zhao.lei", "password": PASSWORD, "csrf": csrf}, follow_redirects=False)
    assert desk.client.get("/inbox", follow_redirects=False).status_code == 200
    with transaction(desk.ws.engine) as s:
        for row in s.exec(select(WebSession)).all():
            row.expires_at = utcnow() - timedelta(seconds=1)
            s.add(row)
    r = desk.client.get("/inbox", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Finbox"


def test_a_proxy_header_is_trusted_only_when_configured(make_workspace):
    ws = make_workspace()
    add_people(ws)
    plain = create_app(ws.settings, DeskConfig(workers=1), provider=ScriptedModelProvider())
    with TestClient(plain) as client:
        r = client.get("/api/v1/me", headers={"X-Remote-User": "root"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "identity_required"
    proxied = create_app(
        ws.settings, DeskConfig(workers=1, proxy_user_header="X-Remote-User"), provider=ScriptedModelProvider()
    )
    with TestClient(proxied) as client:
        me = client.get("/api/v1/me", headers={"X-Remote-User": "zhao.lei"}).json()
        assert me["id"] == "zhao.lei" and me["auth_method"] == "proxy"
        assert client.get("/api/v1/me", headers={"X-Remote-User": "nobody"}).status_code == 401


def test_admins_see_the_deliveries_that_did_not_arrive(desk):
    notify.add_channel(desk.ws, "zhao.lei", "webhook", "http://127.0.0.1:9/closed", actor="zhao.lei")
    desk.drafted()
    assert notify.deliver_due(desk.ws)["retrying"] == 1  # port 9 refuses: retried later, the run is unharmed
    page = desk.client.get("/login")
    csrf = page.cookies.get("dew_login_csrf") or desk.client.cookies.get("dew_login_csrf")
    desk.client.post("/login", data={"user": "root", "password": PASSWORD, "csrf": csrf}, follow_redirects=False)
    people = desk.client.get("/people").text
    assert 'id="deliveries"' in people and "item.queued" in people


def test_one_server_serves_a_workspace(make_workspace):
    ws = make_workspace()
    first = create_app(ws.settings, DeskConfig(workers=1), provider=ScriptedModelProvider())
    second = create_app(ws.settings, DeskConfig(workers=1), provider=ScriptedModelProvider())
    with TestClient(first):
        assert first.state.executor.alive
        with pytest.raises(InvalidState, match="another dew server is already serving"), TestClient(second):
            pass
    with TestClient(second):  # the lock went with the first server
        pass
