"""The deployment files say what dew can do: every dew command in the compose file and in
docs/deploy.md is a command dew has, with options it takes (no Docker engine runs here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
import yaml

from dew.guardians.cli.main import app

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "deploy" / "compose.yaml"


def parses(argv: list[str]) -> None:
    """Parse a dew command line as the CLI would, without running it; raise if it would be refused.
    (Typer carries its own copy of click: the command tree is walked by its `commands`.)"""
    assert argv[0] == "dew"
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("dew", list(argv[1:]), resilient_parsing=False)
    args = list(ctx._protected_args) + list(ctx.args)
    while getattr(cmd, "commands", None) and args:
        name, args = args[0], args[1:]
        sub = cmd.commands.get(name)  # type: ignore[attr-defined]
        assert sub is not None, f"dew has no command '{name}' in {' '.join(argv)}"
        ctx = sub.make_context(name, args, parent=ctx, resilient_parsing=False)
        cmd, args = sub, list(getattr(ctx, "_protected_args", [])) + list(ctx.args)
    assert not args, f"left over in {' '.join(argv)}: {args}"


def test_every_command_in_the_compose_file_is_a_dew_command():
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    commands = {name: s["command"] for name, s in compose["services"].items() if s.get("command", [""])[0] == "dew"}
    assert set(commands) == {"desk", "worker"}
    for command in commands.values():
        parses(command)
    for name in commands:  # both run on the distributed engine, on the shared database and folder
        service = compose["services"][name]
        assert service["environment"]["DEW_ENGINE"] == "procrastinate"
        assert service["environment"]["DEW_DATABASE_URL"].startswith("postgresql://")
        assert "home:/srv/dew/home" in service["volumes"]


def test_the_deploy_guide_uses_real_commands():
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)
    lines = [
        m.group(1)
        for b in blocks
        for m in re.finditer(r"^(?:docker compose .* exec \w+ )?(dew [^#\n]+)", b, flags=re.M)
    ]
    assert len(lines) >= 3
    for line in lines:
        parses(shlex.split(line))


def test_a_wrong_option_is_caught():
    with pytest.raises(Exception, match="No such option: --concurency"):
        parses(["dew", "worker", "--concurency", "8"])
    with pytest.raises(AssertionError, match="no command 'wroker'"):
        parses(["dew", "wroker"])
