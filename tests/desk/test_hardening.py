"""What an independent review of the desk found, each now refused or handled: cross-site requests
behind a sign-on proxy, tokens an admin issues for someone, another queue's events in a trace,
people named in a scenario after their guardian role was taken away, personal reasons in other
people's delegations, and inputs that made the server fail."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from dew.agents.testing import ScriptedModelProvider
from dew.guardians import auth, delegation, users
from dew.guardians.desk.app import DeskConfig, create_app
from dew.guardians.models import AuthMethod, utcnow
from dew.guardians.runs import start_run

from .. import signatures
from .conftest import PASSWORD, add_people


def test_behind_a_sign_on_proxy_only_the_desks_own_pages_can_change_anything(make_workspace):
    ws = make_workspace()
    add_people(ws)
    run = start_run(ws, "drill-script", {"facility_type": "w", "hazard": "fire", "participants": "t"},
                    requester="alice", method=AuthMethod.TOKEN)  # fmt: skip
    app = create_app(
        ws.settings, DeskConfig(workers=1, proxy_user_header="X-Remote-User"), provider=ScriptedModelProvider()
    )
    form = {"action": "approve"}
    with TestClient(app) as client:
        as_guardian = {"X-Remote-User": "zhao.lei"}
        for where in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {}):
            r = client.post(
                f"/items/{run.item.id}/decide", data=form, headers={**as_guardian, **where}, follow_redirects=False
            )
            assert r.status_code == 403 and "another site" in r.text, where
        r = client.post(f"/items/{run.item.id}/decide", data=form, follow_redirects=False,
                        headers={**as_guardian, "Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"})  # fmt: skip
        assert r.status_code == 303, r.text


def test_a_token_an_admin_issues_for_someone_cannot_decide_for_them(desk):
    run = desk.drafted()
    item = run["id"] and desk.get("zhao.lei", "/api/v1/queue").json()[0]["id"]
    issued = desk.post("root", "/api/v1/tokens", {"user": "zhao.lei", "name": "case system"}).json()["token"]
    r = desk.client.post(
        f"/api/v1/items/{item}/decision", json={"action": "approve"}, headers={"Authorization": f"Bearer {issued}"}
    )
    assert r.status_code == 403 and "issued to 'zhao.lei' by someone else cannot decide" in r.json()["error"]["message"]
    assert (
        desk.client.get("/api/v1/queue", headers={"Authorization": f"Bearer {issued}"}).status_code == 200
    )  # reading is fine
    assert desk.post("zhao.lei", f"/api/v1/items/{item}/decision", {"action": "approve"}).status_code == 202


def test_a_trace_shows_only_the_runs_and_items_its_reader_may_see(make_workspace):
    ws = make_workspace()
    users.add_user(ws, "root", "Root", ["admin"], actor="root")
    for uid, roles in [("xu.jie", ["guardian"]), ("zhang.min", ["guardian"]), ("li.wei", ["guardian"]),
                       ("ma.li", ["guardian"]), ("operator.gao", ["requester"])]:  # fmt: skip
        users.add_user(ws, uid, uid, roles, actor="root")
    tokens = {u: auth.create_token(ws, u, actor=u)[1] for u in ("xu.jie", "zhang.min", "operator.gao")}
    app = create_app(ws.settings, DeskConfig(workers=1), provider=ScriptedModelProvider())
    with TestClient(app) as client:
        h = {u: {"Authorization": f"Bearer {t}"} for u, t in tokens.items()}
        case = {"caller": "王女士", "location": "某区幸福路88号",
                "complaint": "楼下餐饮店每天晚上把六张桌子摆到人行道上，行人只能走机动车道。"}  # fmt: skip
        r = client.post("/api/v1/runs", json={"scenario": "hotline-intake", "inputs": case}, headers=h["operator.gao"])
        assert r.status_code == 202, r.text
        assert app.state.executor.wait_idle(60)
        hotline_item = client.get("/api/v1/queue", headers=h["xu.jie"]).json()[0]["id"]
        client.post(f"/api/v1/items/{hotline_item}/decision", json={"action": "approve"}, headers=h["xu.jie"])
        assert app.state.executor.wait_idle(60)
        enforcement_item = client.get("/api/v1/queue", headers=h["zhang.min"]).json()[0]["id"]
        body = signatures.api_body(ws, enforcement_item, actor="zhang.min", action="reject", note="当事人信息不全")
        r = client.post(f"/api/v1/items/{enforcement_item}/decision", json=body, headers=h["zhang.min"])
        assert r.status_code == 202, r.text  # a high-risk decision, signed
        mine = client.get(f"/api/v1/items/{hotline_item}/trace", headers=h["xu.jie"]).json()
        assert {e["item_id"] for e in mine["events"] if e["item_id"]} == {hotline_item}
        assert "当事人信息不全" not in str(mine["events"])
        theirs = client.get(f"/api/v1/items/{enforcement_item}/trace", headers=h["zhang.min"]).json()
        assert "当事人信息不全" in str(theirs["events"])


def test_losing_the_guardian_role_ends_the_power_to_brake_and_delegate(desk):
    users.set_roles(desk.ws, "liu.yang", ["auditor"], actor="root")
    r = desk.post("liu.yang", "/api/v1/scenarios/drill-script/pause", {"reason": "mine"})
    assert r.status_code == 403
    ends = (utcnow() + timedelta(days=1)).isoformat()
    r = desk.post("liu.yang", "/api/v1/delegations", {"delegate": "chen.jing", "ends_at": ends})
    assert r.status_code == 403 and "does not hold the guardian role" in r.json()["error"]["message"]


def test_a_delegations_reason_is_seen_by_those_it_concerns(desk):
    delegation.delegate(desk.ws, "zhao.lei", "chen.jing", ends_at=utcnow() + timedelta(days=3), actor="zhao.lei",
                        reason="病假")  # fmt: skip
    assert desk.get("alice", "/api/v1/delegations").json() == []
    assert [d["reason"] for d in desk.get("chen.jing", "/api/v1/delegations").json()] == ["病假"]
    assert len(desk.get("audrey", "/api/v1/delegations").json()) == 1


def test_odd_inputs_get_a_clear_refusal_not_a_server_error(desk):
    page = desk.client.get("/login")
    r = desk.client.post("/login", data={"user": "alice", "password": PASSWORD, "csrf": "é"}, follow_redirects=False)
    assert r.status_code == 403 and page.status_code == 200
    assert desk.client.get("/audit?until=9999-12-31", headers=desk.h("audrey")).status_code == 422
    run = desk.drafted()
    r = desk.post("alice", f"/api/v1/runs/{run['id']}/retry")
    assert r.status_code == 409 and "only a failed run is retried" in r.json()["error"]["message"]


def test_a_release_left_undelivered_is_completed_when_the_server_starts(desk):
    run = desk.drafted()
    item = desk.get("zhao.lei", "/api/v1/queue").json()[0]["id"]
    desk.post("zhao.lei", f"/api/v1/items/{item}/decision", {"action": "approve"})
    desk.wait()
    location = desk.get("alice", f"/api/v1/runs/{run['id']}").json()["release"]["location"]
    path = desk.ws.settings.home / location
    path.unlink()  # as if the process died between recording the release and moving the file
    desk.client.__exit__(None, None, None)
    with TestClient(create_app(desk.ws.settings, DeskConfig(workers=1), provider=ScriptedModelProvider())):
        assert path.is_file()
