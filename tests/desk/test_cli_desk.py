"""The CLI speaks for a person too: once a workspace has users, a declared `--as` cannot decide
or start runs; `dew login` keeps a token and the CLI then acts through the server."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from dew.agents.testing import ScriptedModelProvider
from dew.guardians.desk.app import DeskConfig, create_app
from dew.guardians.workspace import Settings

from .conftest import PASSWORD, LiveServer


@pytest.fixture
def cli(tmp_path, scenarios_dir, monkeypatch):
    env = {
        "DEW_HOME": str(tmp_path / "home"),
        "DEW_SCENARIOS": str(scenarios_dir),
        "DEW_CONFIG_DIR": str(tmp_path / "config"),
        "DEW_USER": "",
        "DEW_SERVER": "",
        "COLUMNS": "200",
    }
    for k in ("DEW_DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(k, raising=False)
    from dew.guardians.cli.main import app

    def run(*args, input=None):
        result = CliRunner().invoke(app, [str(a) for a in args], env=env, input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    run.env = env
    run.settings = Settings(
        home=tmp_path / "home", scenarios_dir=scenarios_dir, database_url=f"sqlite:///{tmp_path / 'home' / 'dew.db'}"
    )
    return run


def test_people_are_managed_from_the_cli_and_the_first_must_be_an_admin(cli):
    r = cli("users", "add", "alice", "--name", "Alice", "--role", "requester", "--no-password")
    assert r.exit_code == 1 and "the first user of a workspace must be an admin" in r.stderr
    assert (
        cli(
            "users", "add", "root", "--name", "Root", "--role", "admin", "--password-stdin", input=PASSWORD + "\n"
        ).exit_code
        == 0
    )
    r = cli("users", "add", "alice", "--name", "Alice", "--role", "requester", "--no-password", "--as", "alice")
    assert r.exit_code == 3 and "only an admin may add users" in r.stderr
    r = cli(
        "users",
        "add",
        "zhao.lei",
        "--name",
        "赵磊",
        "-r",
        "guardian,requester",
        "--password-stdin",
        "--as",
        "root",
        input=PASSWORD + "\n",
    )
    assert r.exit_code == 0, r.output
    people = json.loads(cli("users", "list", "--json").stdout)
    assert [(u["id"], u["roles"], u["password"]) for u in people] == [
        ("root", ["admin"], True), ("zhao.lei", ["guardian", "requester"], True)]  # fmt: skip
    assert cli("users", "roles", "zhao.lei", "guardian", "--as", "root").exit_code == 0
    r = cli("users", "disable", "root", "--as", "root")
    assert r.exit_code == 1 and "last active admin" in r.stderr

    token = cli("tokens", "create", "zhao.lei", "--name", "case system", "--expires", "30d", "--as", "root")
    assert token.exit_code == 0 and token.stdout.strip().startswith("dew_") and "shown only now" in token.stderr
    listed = json.loads(cli("tokens", "list", "--json").stdout)
    assert listed[0]["prefix"] == token.stdout.strip()[:12] and token.stdout.strip() not in json.dumps(listed)
    assert cli("tokens", "revoke", str(listed[0]["id"]), "--as", "root").exit_code == 0


def test_a_declared_name_cannot_decide_or_start_runs_once_there_are_users(cli):
    assert cli("run", "drill-script", "--example", "first", "--as", "alice").exit_code == 0  # no users yet: as before
    cli("users", "add", "root", "--name", "Root", "--role", "admin", "--no-password")
    r = cli("approve", "1", "--as", "zhao.lei")
    assert r.exit_code == 3 and "dew login --server URL" in r.stderr and "Traceback" not in r.output
    r = cli("run", "drill-script", "--example", "first", "--as", "alice")
    assert r.exit_code == 3 and "this workspace has users" in r.stderr
    assert cli("inbox").exit_code == 0  # reading stays local


def test_login_then_run_and_decide_through_the_server(cli, tmp_path):
    for uid, roles in [("root", "admin"), ("alice", "requester"), ("zhao.lei", "guardian")]:
        assert (
            cli(
                "users",
                "add",
                uid,
                "--name",
                uid,
                "--role",
                roles,
                "--password-stdin",
                "--as",
                "root",
                input=PASSWORD + "\n",
            ).exit_code
            == 0
        )
    app = create_app(cli.settings, DeskConfig(workers=1), provider=ScriptedModelProvider())
    with LiveServer(app) as server:
        r = cli("login", "--server", server.url, "--user", "alice", "--password-stdin", input=PASSWORD + "\n")
        assert r.exit_code == 0 and "as alice" in r.stdout
        creds = tmp_path / "config" / "credentials.json"
        assert oct(creds.stat().st_mode & 0o777) == "0o600"
        run = json.loads(cli("run", "drill-script", "--example", "first", "--json").stdout)
        assert run["status"] == "awaiting_decision" and run["requester"] == "alice"

        r = cli("approve", "1")
        assert r.exit_code == 3 and "does not hold the guardian role" in r.stderr

        out = cli("logout")
        assert out.exit_code == 0 and "its token is revoked" in out.stdout
        logins = [t for t in json.loads(cli("tokens", "list", "alice", "--json").stdout) if t["name"] == "dew login"]
        assert len(logins) == 1 and logins[0]["revoked_at"] is not None  # not just forgotten: dead
        r = cli("login", "--server", server.url, "--user", "zhao.lei", "--password-stdin", input="wrong password\n")
        assert r.exit_code == 3 and "wrong user name or password" in r.stderr
        assert (
            cli(
                "login", "--server", server.url, "--user", "zhao.lei", "--password-stdin", input=PASSWORD + "\n"
            ).exit_code
            == 0
        )
        r = cli("approve", "1", "--as", "alice")
        assert r.exit_code == 3 and "cannot speak for someone else" in r.stderr
        r = cli("approve", "1", "--comment", "fine")
        assert r.exit_code == 0, r.output
        assert "zhao.lei (owner, signed in by token) decided 'approve'" in r.stdout and "is released" in r.stdout
    shown = json.loads(cli("show", "1", "--json").stdout)
    assert shown["decision"]["auth_method"] == "token" and shown["decision"]["actor"] == "zhao.lei"


def test_a_guardian_signs_through_the_server_with_a_key_file_only_they_hold(cli, tmp_path):
    for uid, roles in [("root", "admin"), ("alice", "requester"), ("zhao.lei", "guardian")]:
        r = cli("users", "add", uid, "--name", uid, "--role", roles, "--password-stdin", "--as", "root",
                input=PASSWORD + "\n")  # fmt: skip
        assert r.exit_code == 0, r.output
    cli.env["DEW_KEY_PASSPHRASE"] = "a long passphrase"
    app = create_app(cli.settings, DeskConfig(workers=1), provider=ScriptedModelProvider())
    with LiveServer(app) as server:
        assert cli("login", "--server", server.url, "--user", "alice", "--password-stdin", input=PASSWORD + "\n")
        for _ in range(2):
            assert cli("run", "drill-script", "--example", "first", "--json").exit_code == 0
        r = cli("keys", "create")
        assert r.exit_code == 3 and "not a guardian" in r.stderr  # a requester has nothing to sign
        assert not (tmp_path / "config" / "keys" / "alice.ed25519.pem").exists()

        cli("login", "--server", server.url, "--user", "zhao.lei", "--password-stdin", input=PASSWORD + "\n")
        r = cli("keys", "create", "--label", "laptop")
        assert r.exit_code == 0, r.output
        key_file = tmp_path / "config" / "keys" / "zhao.lei.ed25519.pem"
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        with pytest.raises(TypeError, match="password-protected"):  # under the passphrase, in OpenSSH's format
            serialization.load_ssh_private_key(key_file.read_bytes(), password=None)

        assert cli("approve", "1", "--sign", "--comment", "fine").exit_code == 0
        cli.env["DEW_KEY_PASSPHRASE"] = "not the passphrase"
        r = cli("reject", "2", "--reason", "no", "--sign")
        assert r.exit_code == 3 and "wrong passphrase" in r.stderr
        cli.env["DEW_KEY_PASSPHRASE"] = "a long passphrase"
        assert cli("reject", "2", "--reason", "no", "--sign").exit_code == 0
        keys = json.loads(cli("keys", "list", "--json").stdout)
        assert [(k["person"], k["kind"], k["label"]) for k in keys] == [("zhao.lei", "file", "laptop")]
    for item in (1, 2):
        shown = json.loads(cli("show", str(item), "--json").stdout)
        assert shown["decision"]["signing_key"] == keys[0]["id"]
    verified = cli("audit", "verify")
    assert verified.exit_code == 0 and "2 signed decisions verified" in verified.stdout
