"""Shared fixtures: workspaces on real SQLite files (and PostgreSQL where it answers), scripted
models in-process, and a real OpenAI-compatible HTTP server on loopback."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dew.agents.names import shipped_directory
from dew.agents.testing import ScriptedModelProvider
from dew.guardians.workspace import Settings, Workspace

from .fakellm import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = shipped_directory()
POSTGRES_ADMIN_URL = os.environ.get("DEW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def fake_llm():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def scenarios_dir(tmp_path) -> Path:
    """A private copy of the shipped scenarios and roster, safe to modify in a test."""
    target = tmp_path / "scenarios"
    shutil.copytree(SCENARIOS, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def postgres_admin():
    """A connection to the PostgreSQL server for the PostgreSQL half; skip clearly when none answers
    (fail instead under DEW_REQUIRE_POSTGRES)."""
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        if os.environ.get("DEW_REQUIRE_POSTGRES"):
            pytest.fail(f"DEW_REQUIRE_POSTGRES is set but no server answers at {POSTGRES_ADMIN_URL}: {e}")
        pytest.skip(
            f"PostgreSQL half skipped: no server answers at {POSTGRES_ADMIN_URL} "
            f"(set DEW_TEST_POSTGRES_URL): {str(e).strip().splitlines()[0]}"
        )


def _postgres_database():
    """Create a throw-away database; yield its URL; drop it. Skip clearly when no server answers."""
    admin = postgres_admin()
    name = f"dew_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """Every storage test runs once on a SQLite file and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dew.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def make_workspace(tmp_path, scenarios_dir, database_url):
    """Open workspaces with a scripted model; all are closed at the end. Every test that uses it
    (every service test) runs twice: on a SQLite file and on PostgreSQL."""
    opened: list[Workspace] = []
    default_url = database_url

    def make(database_url: str | None = None, provider=None, home: Path | None = None) -> Workspace:
        home = home or tmp_path / "home"
        url = database_url or default_url
        ws = Workspace(
            Settings(home=home, scenarios_dir=scenarios_dir, database_url=url),
            provider=provider or ScriptedModelProvider(),
        )
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.close()


@pytest.fixture
def ws(make_workspace):
    return make_workspace()


@pytest.fixture
def dew(tmp_path, scenarios_dir, fake_llm, monkeypatch):
    """Run `dew ARGS` in-process; returns the result (exit_code, stdout, stderr)."""
    env = {
        "DEW_HOME": str(tmp_path / "home"),
        "DEW_SCENARIOS": str(scenarios_dir),
        "DEW_LLM_BASE_URL": fake_llm.url,
        "DEW_LLM_MODEL": "fake-model",
        "DEW_LLM_MAX_RETRIES": "0",
        "DEW_USER": "",
        "DEW_SERVER": "",
        "DEW_CONFIG_DIR": str(tmp_path / "config"),  # never a developer's own `dew login`
        "COLUMNS": "200",
    }
    for k in ("DEW_DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(k, raising=False)
    from dew.guardians.cli.main import app

    runner = CliRunner()

    def run(*args, input=None):
        result = runner.invoke(app, [str(a) for a in args], env=env, input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    run.env = env
    run.fake = fake_llm
    return run
