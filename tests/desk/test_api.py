"""The JSON API: the governed cycle over HTTP, each decision bound to a person who proved who
they are, and every rule refused with a clear message and nothing changed."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlmodel import select

from dew.guardians import auth, labels
from dew.guardians.db import transaction
from dew.guardians.models import ApiToken, AuditEvent, Decision, utcnow

from .conftest import PASSWORD


def _events(desk) -> int:
    with transaction(desk.ws.engine) as s:
        return len(s.exec(select(AuditEvent.seq)).all())


def test_health_and_readiness(desk):
    assert desk.client.get("/api/v1/health").json() == {"status": "ok"}
    ready = desk.client.get("/api/v1/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_a_run_started_over_http_is_drafted_in_the_background_approved_and_released(desk):
    r = desk.post("alice", "/api/v1/runs", {"scenario": "drill-script", "inputs": {
        "facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}})  # fmt: skip
    assert r.status_code == 202 and r.json()["status"] == "queued"
    run_id = r.json()["run_id"]
    desk.wait()
    run = desk.get("alice", f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "awaiting_decision"
    assert run["items"] == []  # a requester never sees a draft no guardian has approved

    queue = desk.get("zhao.lei", "/api/v1/queue").json()
    assert [q["run_id"] for q in queue] == [run_id] and queue[0]["rule"] == "owner"
    item_id = queue[0]["id"]
    item = desk.get("zhao.lei", f"/api/v1/items/{item_id}").json()
    assert item["run"]["inputs"]["hazard"] == "fire" and item["item"]["draft"]

    d = desk.post("zhao.lei", f"/api/v1/items/{item_id}/decision", {"action": "approve", "note": "ok"})
    assert d.status_code == 202, d.text
    assert d.json()["rule"] == "owner" and d.json()["auth_method"] == "token"
    desk.wait()
    run = desk.get("alice", f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "released" and run["release"]["location"].startswith("outbox/drill-script/")

    releases = desk.get("alice", "/api/v1/releases").json()
    assert [x["run_id"] for x in releases] == [run_id]
    content = desk.get("alice", f"/api/v1/releases/{releases[0]['id']}/content")
    assert content.status_code == 200 and labels.check(content.content, None).content == item["item"]["draft"]
    assert content.headers["x-sha256"] == releases[0]["sha256"] == hashlib.sha256(content.content).hexdigest()
    assert content.content == (desk.ws.settings.home / releases[0]["location"]).read_bytes()  # the file, labelled
    assert desk.get("bob", "/api/v1/releases").json() == []
    assert desk.get("bob", f"/api/v1/releases/{releases[0]['id']}/content").status_code == 403

    with transaction(desk.ws.engine) as s:
        decision = s.exec(select(Decision)).one()
        event = s.exec(select(AuditEvent).where(AuditEvent.kind == "decision.approved")).one()
    assert (decision.actor, decision.auth_method, decision.rule) == ("zhao.lei", "token", "owner")
    assert '"auth_method":"token"' in event.data and '"rule":"owner"' in event.data


def test_a_backup_decides_as_backup_and_an_edit_keeps_its_diff(desk):
    run = desk.drafted()
    item_id = desk.get("liu.yang", "/api/v1/queue").json()[0]["id"]
    draft = desk.get("liu.yang", f"/api/v1/items/{item_id}").json()["item"]["draft"]
    d = desk.post(
        "liu.yang",
        f"/api/v1/items/{item_id}/decision",
        {"action": "edit", "edited": draft + "\n补充：疏散集合点在东门。"},
    )
    assert d.status_code == 202 and d.json()["rule"] == "backup"
    desk.wait()
    view = desk.get("root", f"/api/v1/items/{item_id}").json()
    assert "+补充：疏散集合点在东门。" in view["decision"]["diff"] and view["decision"]["rule"] == "backup"
    assert desk.get("alice", f"/api/v1/runs/{run['id']}").json()["status"] == "released"


def test_a_delegate_decides_while_the_delegation_lasts_and_not_after(desk):
    desk.drafted()
    desk.drafted()
    first, second = (q["id"] for q in desk.get("zhao.lei", "/api/v1/queue").json())
    assert desk.get("chen.jing", "/api/v1/queue").json() == []
    assert desk.get("chen.jing", f"/api/v1/items/{first}").status_code == 403

    ends = (utcnow() + timedelta(days=7)).isoformat()
    r = desk.post("zhao.lei", "/api/v1/delegations", {"delegate": "chen.jing", "ends_at": ends, "reason": "年假"})
    assert r.status_code == 201, r.text
    delegation_id = r.json()["id"]
    queue = desk.get("chen.jing", "/api/v1/queue").json()
    assert {q["id"] for q in queue} == {first, second} and queue[0]["delegated_by"] == "zhao.lei"
    d = desk.post("chen.jing", f"/api/v1/items/{first}/decision", {"action": "approve"})
    assert d.status_code == 202 and d.json()["rule"] == "delegate"
    with transaction(desk.ws.engine) as s:
        assert s.exec(select(Decision)).one().delegation_id == delegation_id

    # Only the guardian or an admin may end it; then the delegate is refused again.
    assert desk.client.delete(f"/api/v1/delegations/{delegation_id}", headers=desk.h("chen.jing")).status_code == 403
    assert desk.client.delete(f"/api/v1/delegations/{delegation_id}", headers=desk.h("zhao.lei")).status_code == 200
    refused = desk.post("chen.jing", f"/api/v1/items/{second}/decision", {"action": "approve"})
    assert refused.status_code == 403 and "delegates the queue" in refused.json()["error"]["message"]


def test_nobody_decides_on_a_run_they_requested(desk):
    desk.drafted(who="liu.yang")  # liu.yang, drill-script's backup, requests work too
    item_id = desk.get("zhao.lei", "/api/v1/queue").json()[0]["id"]
    before = _events(desk)
    r = desk.post("liu.yang", f"/api/v1/items/{item_id}/decision", {"action": "approve"})
    assert r.status_code == 403
    assert r.json()["error"] == {
        "code": "not_authorized",
        "message": "'liu.yang' requested run 1 and may not decide on its output (four-eyes rule)",
    }
    with transaction(desk.ws.engine) as s:
        assert s.exec(select(Decision)).all() == []
        kinds = [e.kind for e in s.exec(select(AuditEvent).where(AuditEvent.seq > before)).all()]
    assert kinds == ["decision.refused"]  # the refusal is on record; nothing else changed


def test_requesters_auditors_and_other_guardians_cannot_decide(desk):
    desk.drafted()
    item_id = desk.get("zhao.lei", "/api/v1/queue").json()[0]["id"]
    for who, status, why in [
        ("alice", 403, "does not hold the guardian role"),
        ("audrey", 403, "does not hold the guardian role"),
        ("chen.jing", 403, "is in zhao.lei's queue"),
    ]:
        r = desk.post(who, f"/api/v1/items/{item_id}/decision", {"action": "approve"})
        assert r.status_code == status and why in r.json()["error"]["message"], (who, r.text)
    assert desk.get("zhao.lei", "/api/v1/queue").json()[0]["status"] == "pending"


def test_a_requester_sees_only_their_own_runs(desk):
    mine = desk.start("alice")
    theirs = desk.start("bob")
    desk.wait()
    assert [r["id"] for r in desk.get("alice", "/api/v1/runs").json()] == [mine]
    refused = desk.get("alice", f"/api/v1/runs/{theirs}")
    assert refused.status_code == 403 and "requesters see the runs they requested" in refused.json()["error"]["message"]
    assert {r["id"] for r in desk.get("audrey", "/api/v1/runs").json()} == {mine, theirs}
    assert {r["id"] for r in desk.get("zhao.lei", "/api/v1/runs").json()} == {mine, theirs}  # both in his queue
    assert desk.get("chen.jing", "/api/v1/runs").json() == []


def test_wrong_expired_and_revoked_tokens_are_refused(desk):
    for header in ["Bearer dew_nonsense", "Bearer not-even-ours", "Basic abc", "Bearer "]:
        r = desk.client.get("/api/v1/me", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.json()["error"]["code"] == "not_authenticated"
    assert desk.client.get("/api/v1/me").json()["error"]["code"] == "identity_required"

    token, secret = auth.create_token(desk.ws, "alice", actor="alice", expires_at=utcnow() + timedelta(hours=1))
    h = {"Authorization": f"Bearer {secret}"}
    assert desk.client.get("/api/v1/me", headers=h).json()["id"] == "alice"
    with transaction(desk.ws.engine) as s:
        row = s.get(ApiToken, token.id)
        row.expires_at = utcnow() - timedelta(seconds=1)
        s.add(row)
    assert "expired" in desk.client.get("/api/v1/me", headers=h).json()["error"]["message"]

    _, other = auth.create_token(desk.ws, "alice", actor="alice")
    h2 = {"Authorization": f"Bearer {other}"}
    assert desk.client.get("/api/v1/me", headers=h2).status_code == 200
    tid = desk.get("alice", "/api/v1/me").json() and token.id + 1
    assert desk.client.delete(f"/api/v1/tokens/{tid}", headers=desk.h("bob")).status_code == 403
    assert desk.client.delete(f"/api/v1/tokens/{tid}", headers=h2).status_code == 200
    assert desk.client.get("/api/v1/me", headers=h2).status_code == 401


def test_a_disabled_user_is_locked_out_at_once(desk):
    assert desk.get("bob", "/api/v1/me").status_code == 200
    assert desk.post("root", "/api/v1/users/bob/disable").status_code == 200
    assert desk.get("bob", "/api/v1/me").status_code == 401


def test_password_sign_in_gives_a_token_and_guessing_is_slowed_down(desk):
    r = desk.client.post("/api/v1/auth/token", json={"user": "alice", "password": PASSWORD, "name": "laptop"})
    assert r.status_code == 201 and r.json()["token"].startswith("dew_")
    assert desk.client.get("/api/v1/me", headers={"Authorization": f"Bearer {r.json()['token']}"}).json()["roles"] == [
        "requester"
    ]
    for _ in range(5):
        bad = desk.client.post("/api/v1/auth/token", json={"user": "alice", "password": "wrong password!"})
        assert bad.status_code == 401 and bad.json()["error"]["message"] == "wrong user name or password"
    locked = desk.client.post("/api/v1/auth/token", json={"user": "alice", "password": PASSWORD})
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    # An unknown account answers exactly like a wrong password.
    unknown = desk.client.post("/api/v1/auth/token", json={"user": "nobody", "password": "whatever1234"})
    assert unknown.status_code == 401 and unknown.json()["error"]["message"] == "wrong user name or password"


def test_the_audit_trail_is_for_auditors_and_admins(desk):
    desk.drafted()
    assert desk.get("audrey", "/api/v1/audit/verify").json()["status"] == "intact"
    assert desk.get("audrey", "/api/v1/audit/events?limit=5").status_code == 200
    items = desk.get("audrey", "/api/v1/audit/items?scenario=drill-script&requester=alice").json()
    assert len(items) == 1 and items[0]["guardian"] == "zhao.lei"
    for who in ("alice", "zhao.lei"):
        r = desk.get(who, "/api/v1/audit/events")
        assert r.status_code == 403 and "only auditor or admin" in r.json()["error"]["message"]
    trace = desk.get("audrey", f"/api/v1/items/{items[0]['id']}/trace").json()
    assert [e["kind"] for e in trace["events"]][:2] == ["run.requested", "run.drafted"]


def test_errors_have_one_shape(desk):
    r = desk.get("root", "/api/v1/items/999")
    assert r.status_code == 404 and r.json() == {"error": {"code": "not_found", "message": "no work item 999"}}
    r = desk.post("alice", "/api/v1/runs", {"scenario": "drill-script", "inputs": {}, "extra": 1})
    assert r.status_code == 422 and r.json()["error"]["code"] == "request_invalid"
    r = desk.post("alice", "/api/v1/runs", {"scenario": "drill-script", "inputs": {"hazard": "fire"}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "input_missing"
    r = desk.get("root", "/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_a_browser_session_must_send_its_csrf_token_to_the_api(desk):
    page = desk.client.get("/login")
    csrf = page.cookies.get("dew_login_csrf") or desk.client.cookies.get("dew_login_csrf")
    r = desk.client.post(
        "/login", data={"user": "alice", "password": PASSWORD, "csrf": csrf, "next": "/"}, follow_redirects=False
    )
    assert r.status_code == 303
    assert desk.client.get("/api/v1/me").json()["auth_method"] == "password"
    refused = desk.client.post("/api/v1/runs", json={"scenario": "drill-script", "inputs": {}})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_refused"


def test_a_request_asked_again_with_its_key_finds_the_run_it_started(desk):
    """A client whose answer was lost (a server killed mid-request) asks again with the same
    Idempotency-Key: the same run, not a second one; the key with another request is refused."""
    body = {"scenario": "drill-script", "inputs": {"facility_type": "warehouse", "hazard": "fire",
                                                   "participants": "Shift team"}}  # fmt: skip
    auth = {"Authorization": f"Bearer {desk.tokens['alice']}", "Idempotency-Key": "req-7f3a"}
    first = desk.client.post("/api/v1/runs", json=body, headers=auth)
    again = desk.client.post("/api/v1/runs", json=body, headers=auth)
    assert first.status_code == again.status_code == 202
    assert first.json()["run_id"] == again.json()["run_id"]
    other = desk.client.post("/api/v1/runs", json={**body, "inputs": {**body["inputs"], "hazard": "flood"}},
                             headers=auth)  # fmt: skip
    assert other.status_code == 409
    assert "the request key 'req-7f3a' was given before for another request" in other.json()["error"]["message"]
    desk.wait()
    assert len(desk.get("alice", "/api/v1/runs").json()) == 1
    # Keys are the requester's own: another requester's same key is another request.
    bob = {"Authorization": f"Bearer {desk.tokens['bob']}", "Idempotency-Key": "req-7f3a"}
    theirs = desk.client.post("/api/v1/runs", json=body, headers=bob)
    assert theirs.status_code == 202 and theirs.json()["run_id"] != first.json()["run_id"]
    desk.wait()


def test_the_queue_and_the_releases_come_a_page_at_a_time_with_a_link_to_the_next(desk):
    runs = [desk.drafted() for _ in range(3)]
    queue = desk.get("zhao.lei", "/api/v1/queue?limit=2")
    assert [q["run_id"] for q in queue.json()] == [r["id"] for r in runs[:2]]
    after = queue.json()[-1]["id"]
    assert queue.headers["link"] == f'</api/v1/queue?after={after}&limit=2>; rel="next"'
    rest = desk.get("zhao.lei", f"/api/v1/queue?after={after}&limit=2")
    assert [q["run_id"] for q in rest.json()] == [runs[2]["id"]] and "link" not in rest.headers
    assert desk.get("zhao.lei", "/api/v1/queue?limit=0").status_code == 422

    for q in desk.get("zhao.lei", "/api/v1/queue").json():
        assert desk.post("zhao.lei", f"/api/v1/items/{q['id']}/decision", {"action": "approve"}).status_code == 202
    desk.wait()
    everything = [x["id"] for x in desk.get("alice", "/api/v1/releases").json()]
    assert len(everything) == 3 and everything == sorted(everything, reverse=True)  # newest first
    newest = desk.get("alice", "/api/v1/releases?limit=2")
    assert [x["id"] for x in newest.json()] == everything[:2]
    before = everything[1]
    assert newest.headers["link"] == f'</api/v1/releases?before={before}&limit=2>; rel="next"'
    assert [x["id"] for x in desk.get("alice", f"/api/v1/releases?before={before}").json()] == everything[2:]
