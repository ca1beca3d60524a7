"""Every API operation against every role: allowed (authorized, whatever the outcome) or refused
(401/403 with a message), never a 5xx. The table is checked against the app's routes, so a new
operation cannot be added without saying who may call it."""

from __future__ import annotations

import contextlib
import itertools
import shutil
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from dew.agents.testing import ScriptedModelProvider
from dew.guardians import auth, brake, delegation, notify, signing, users
from dew.guardians.desk.app import DeskConfig, create_app
from dew.guardians.errors import InvalidState
from dew.guardians.models import utcnow
from dew.guardians.workspace import Settings, Workspace

from ..conftest import SCENARIOS, _postgres_database
from .conftest import PEOPLE, Desk, add_people

ALL = set(PEOPLE)
ADMIN = {"root"}
READERS = {"root", "audrey"}
REQUESTERS = {"alice", "bob", "liu.yang"}
DRILL_GUARDIANS = {"zhao.lei", "liu.yang"}  # owner and backup of drill-script
SEES_ALICES_RUN = {"root", "audrey", "alice", "zhao.lei", "liu.yang"}


def _released(desk) -> int:
    run = desk.drafted()
    item = run["items"][0]["id"] if run["items"] else desk.get("zhao.lei", "/api/v1/queue").json()[-1]["id"]
    desk.post("zhao.lei", f"/api/v1/items/{item}/decision", {"action": "approve"}).raise_for_status()
    desk.wait()
    return desk.get("root", f"/api/v1/runs/{run['id']}").json()["release"]["id"]


def _pending_item(desk) -> int:
    run = desk.drafted()
    return desk.get("root", f"/api/v1/runs/{run['id']}").json()["items"][0]["id"]


def _unpaused(desk) -> str:
    with contextlib.suppress(InvalidState):  # not paused
        brake.resume(desk.ws, "drill-script", actor="zhao.lei")
    return "/api/v1/scenarios/drill-script/pause"


_serial = itertools.count(1)


def _throwaway_user(desk, role: str = "requester") -> str:
    """Someone only this call touches: the matrix shares one desk, so no call may change whom
    the others concern (a delegation to a tested guardian would widen what they may see)."""
    uid = f"temp{next(_serial)}"
    users.add_user(desk.ws, uid, "Temp", [role], actor="root")
    return uid


def _delegation(desk) -> int:
    to = _throwaway_user(desk, "guardian")
    return delegation.delegate(desk.ws, "zhao.lei", to, ends_at=utcnow() + timedelta(days=1), actor="zhao.lei").key


def _channel(desk) -> int:
    return notify.add_channel(desk.ws, "alice", "webhook", "http://127.0.0.1:9/hook", actor="alice").key


def _public_key() -> str:
    return signing.public_key_of(Ed25519PrivateKey.generate())


def _key(desk) -> int:
    """A key of zhao.lei's registered through the API (as he would), for one call to revoke."""
    r = desk.post("zhao.lei", "/api/v1/keys", {"public_key": _public_key(), "kind": "file"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


# (method, route): (who is allowed, how to build (path, json) from a desk with a run of alice's)
MATRIX = {
    ("GET", "/api/v1/me"): (ALL, lambda d, c: ("/api/v1/me", None)),
    ("GET", "/api/v1/scenarios"): (ALL, lambda d, c: ("/api/v1/scenarios", None)),
    ("GET", "/api/v1/scenarios/{scenario_id}"): (ALL, lambda d, c: ("/api/v1/scenarios/drill-script", None)),
    ("POST", "/api/v1/runs"): (REQUESTERS, lambda d, c: ("/api/v1/runs", {"scenario": "policy-qa", "inputs": {}})),
    ("GET", "/api/v1/runs"): (ALL, lambda d, c: ("/api/v1/runs", None)),
    ("GET", "/api/v1/runs/{run_id}"): (SEES_ALICES_RUN, lambda d, c: (f"/api/v1/runs/{c['run']}", None)),
    ("POST", "/api/v1/runs/{run_id}/retry"): ({"root", "alice"}, lambda d, c: (f"/api/v1/runs/{c['run']}/retry", None)),
    ("GET", "/api/v1/queue"): (ALL, lambda d, c: ("/api/v1/queue", None)),
    ("GET", "/api/v1/items/{item_id}"): (READERS | DRILL_GUARDIANS, lambda d, c: (f"/api/v1/items/{c['item']}", None)),
    ("GET", "/api/v1/items/{item_id}/trace"): (
        READERS | DRILL_GUARDIANS,
        lambda d, c: (f"/api/v1/items/{c['item']}/trace", None),
    ),
    ("POST", "/api/v1/items/{item_id}/decision"): (
        DRILL_GUARDIANS,
        lambda d, c: (f"/api/v1/items/{_pending_item(d)}/decision", {"action": "reject", "note": "no"}),
    ),
    ("POST", "/api/v1/scenarios/{scenario_id}/pause"): (
        DRILL_GUARDIANS | ADMIN,
        lambda d, c: (_unpaused(d), {"reason": "checking"}),
    ),
    ("POST", "/api/v1/scenarios/{scenario_id}/resume"): (
        DRILL_GUARDIANS | ADMIN,
        lambda d, c: ("/api/v1/scenarios/drill-script/resume", {"note": ""}),
    ),
    ("PUT", "/api/v1/scenarios/{scenario_id}/escalation-contact"): (
        ADMIN,
        lambda d, c: ("/api/v1/scenarios/drill-script/escalation-contact", {"user": "chen.jing"}),
    ),
    ("POST", "/api/v1/releases/{release_id}/recall"): (
        DRILL_GUARDIANS | ADMIN,
        lambda d, c: (f"/api/v1/releases/{c['release']}/recall", {"reason": "wrong"}),
    ),
    ("POST", "/api/v1/escalate"): (ADMIN, lambda d, c: ("/api/v1/escalate", None)),
    ("GET", "/api/v1/releases"): (ALL, lambda d, c: ("/api/v1/releases", None)),
    ("GET", "/api/v1/releases/{release_id}/content"): (
        SEES_ALICES_RUN,
        lambda d, c: (f"/api/v1/releases/{c['release']}/content", None),
    ),
    ("GET", "/api/v1/audit/events"): (READERS, lambda d, c: ("/api/v1/audit/events", None)),
    ("GET", "/api/v1/audit/verify"): (READERS, lambda d, c: ("/api/v1/audit/verify", None)),
    ("GET", "/api/v1/audit/items"): (READERS, lambda d, c: ("/api/v1/audit/items", None)),
    ("GET", "/api/v1/users"): (READERS, lambda d, c: ("/api/v1/users", None)),
    ("POST", "/api/v1/users"): (
        ADMIN,
        lambda d, c: ("/api/v1/users", {"id": f"new{next(_serial)}", "name": "N", "roles": ["auditor"]}),
    ),
    ("PUT", "/api/v1/users/{user_id}/roles"): (
        ADMIN,
        lambda d, c: (f"/api/v1/users/{_throwaway_user(d)}/roles", {"roles": ["auditor"]}),
    ),
    ("POST", "/api/v1/users/{user_id}/disable"): (
        ADMIN,
        lambda d, c: (f"/api/v1/users/{_throwaway_user(d)}/disable", None),
    ),
    ("POST", "/api/v1/tokens"): (ALL, lambda d, c: ("/api/v1/tokens", {"name": "mine"})),
    ("DELETE", "/api/v1/tokens/{token_id}"): (
        {"root", "alice"},
        lambda d, c: (f"/api/v1/tokens/{auth.create_token(d.ws, 'alice', actor='alice')[0].key}", None),
    ),
    ("GET", "/api/v1/delegations"): (ALL, lambda d, c: ("/api/v1/delegations", None)),
    ("POST", "/api/v1/delegations"): (
        {"root", "zhao.lei"},
        lambda d, c: (
            "/api/v1/delegations",
            {
                "guardian": "zhao.lei",
                "delegate": _throwaway_user(d, "guardian"),
                "ends_at": (utcnow() + timedelta(days=2)).isoformat(),
            },
        ),
    ),
    ("DELETE", "/api/v1/delegations/{delegation_id}"): (
        {"root", "zhao.lei"},
        lambda d, c: (f"/api/v1/delegations/{_delegation(d)}", None),
    ),
    ("GET", "/api/v1/notifications/channels"): (ALL, lambda d, c: ("/api/v1/notifications/channels", None)),
    ("POST", "/api/v1/notifications/channels"): (
        {"root", "alice"},
        lambda d, c: (
            "/api/v1/notifications/channels",
            {"user": "alice", "kind": "webhook", "target": "http://127.0.0.1:9/x"},
        ),
    ),
    ("DELETE", "/api/v1/notifications/channels/{channel_id}"): (
        {"root", "alice"},
        lambda d, c: (f"/api/v1/notifications/channels/{_channel(d)}", None),
    ),
    ("GET", "/api/v1/keys"): (ALL, lambda d, c: ("/api/v1/keys", None)),
    ("POST", "/api/v1/keys"): (
        {"zhao.lei", "liu.yang", "chen.jing"},
        lambda d, c: ("/api/v1/keys", {"public_key": _public_key(), "kind": "browser"}),
    ),
    ("POST", "/api/v1/keys/{key_id}/revoke"): (
        {"root", "zhao.lei"},
        lambda d, c: (f"/api/v1/keys/{_key(d)}/revoke", {"reason": "lost"}),
    ),
    ("GET", "/api/v1/notifications"): (ADMIN, lambda d, c: ("/api/v1/notifications", None)),
    ("POST", "/api/v1/notifications/{notification_id}/retry"): (
        ADMIN,
        lambda d, c: ("/api/v1/notifications/1/retry", None),
    ),
}
UNAUTHENTICATED = {("GET", "/api/v1/health"), ("GET", "/api/v1/ready"), ("POST", "/api/v1/auth/token")}


def test_the_matrix_covers_every_operation(desk):
    paths = desk.client.app.openapi()["paths"]
    routes = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    assert routes == set(MATRIX) | UNAUTHENTICATED


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def office(request, tmp_path_factory):
    """One desk per backend for the whole matrix (each operation builds its own targets), with a
    run of alice's waiting for zhao.lei and a released one."""
    home = tmp_path_factory.mktemp("matrix")
    scenarios = home / "scenarios"
    shutil.copytree(SCENARIOS, scenarios, ignore=shutil.ignore_patterns("__pycache__"))
    databases = _postgres_database() if request.param == "postgres" else iter([f"sqlite:///{home / 'dew.db'}"])
    url = next(databases)
    settings = Settings(home=home / "ws", scenarios_dir=scenarios, database_url=url)
    ws = Workspace(settings, ScriptedModelProvider())
    try:
        tokens = add_people(ws, password=None)
        with TestClient(create_app(settings, DeskConfig(workers=2), provider=ScriptedModelProvider())) as client:
            desk = Desk(client, ws, tokens)
            context = {"release": _released(desk), "run": desk.drafted()["id"]}
            context["item"] = desk.get("root", f"/api/v1/runs/{context['run']}").json()["items"][0]["id"]
            yield desk, context
    finally:
        ws.close()
        with contextlib.suppress(StopIteration):
            next(databases)  # drops the PostgreSQL database


@pytest.mark.parametrize("operation", sorted(MATRIX), ids=lambda op: f"{op[0]} {op[1]}")
def test_every_role_is_allowed_or_refused_never_a_server_error(office, operation):
    desk, context = office
    allowed, build = MATRIX[operation]
    for who in sorted(PEOPLE):
        path, body = build(desk, context)
        r = desk.client.request(operation[0], path, json=body, headers=desk.h(who))
        assert r.status_code < 500, (who, r.status_code, r.text)
        refused = r.status_code in (401, 403)
        assert refused == (who not in allowed), (who, r.status_code, r.text)
        if refused:
            assert r.json()["error"]["message"], r.text
