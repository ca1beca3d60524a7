"""Schemathesis against the OpenAPI document the app serves, with valid tokens: whatever the
generated input, every operation answers with a clear error or a success, never a 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from dew.agents.testing import ScriptedModelProvider
from dew.guardians.desk.app import DeskConfig, create_app
from dew.guardians.workspace import Settings, Workspace

from .conftest import LiveServer, add_people

# The document only: building it needs no workspace (the app opens one when it starts serving).
_document = create_app(Settings(home=Path("/nonexistent"), scenarios_dir=Path("."), database_url="sqlite://")).openapi()
schema = schemathesis.openapi.from_dict(_document)


@pytest.fixture
def served(tmp_path, scenarios_dir):
    """A desk with people and a token each; one per API operation, so no operation's inputs
    (disabling a user, revoking a token) can starve the next one."""
    config = Settings(
        home=tmp_path / "home", scenarios_dir=scenarios_dir, database_url=f"sqlite:///{tmp_path / 'dew.db'}"
    )
    ws = Workspace(config, ScriptedModelProvider())
    tokens = add_people(ws, password=None)
    with LiveServer(create_app(config, DeskConfig(workers=1), provider=ScriptedModelProvider())) as server:
        yield server, tokens
    ws.close()


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_server_fail(case, served):
    server, tokens = served
    for who in ("root", "alice"):  # an admin reaches every rule; a requester reaches the refusals
        response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {tokens[who]}"})
        assert response.status_code < 500, f"{case.method} {case.formatted_path} as {who}: {response.text[:300]}"
        if response.status_code >= 400 and "application/json" in str(response.headers.get("content-type")):
            body = response.json()
            assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
