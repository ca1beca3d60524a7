"""Docs that are generated from code must match the code; README examples must be true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dew.agents.errors import DewError, ScenarioInvalid
from dew.guardians.cli import reference
from dew.guardians.errors import AlreadyDecided, NotAuthorized

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(reference.FILES))
def test_generated_reference_is_up_to_date(name):
    """If this fails, run: python -m dew.guardians.cli.reference"""
    assert (REPO / "docs" / name).read_text(encoding="utf-8") == reference.FILES[name]()


def test_every_cli_command_of_the_contract_is_documented():
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for cmd in [
        "demo",
        "scenarios list",
        "scenarios check",
        "scenarios show",
        "guardians list",
        "guardians add",
        "run",
        "inbox",
        "show",
        "approve",
        "reject",
        "edit",
        "revise",
        "runs",
        "retry",
        "released",
        "audit trace",
        "audit log",
        "audit verify",
    ]:
        assert f"## `dew {cmd}`" in text


def test_error_json_shape_is_stable():
    """The shape the HTTP API will return; pinned so clients can rely on it."""
    assert NotAuthorized("no").to_dict() == {"error": {"code": "not_authorized", "message": "no"}}
    assert AlreadyDecided("twice").to_dict() == {"error": {"code": "already_decided", "message": "twice"}}
    assert ScenarioInvalid("f.yaml", ["f.yaml:3: id: bad", "f.yaml:4: risk: bad"]).to_dict() == {
        "error": {"code": "scenario_invalid", "message": "f.yaml:3: id: bad\nf.yaml:4: risk: bad"}
    }
    codes = {cls.code for cls in _all_subclasses(DewError)}
    assert len(codes) == len(_all_subclasses(DewError))  # every error kind has its own code


def _all_subclasses(cls):
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    test_cmd = re.search(r"<!-- test-command -->\n```(?:bash|sh)\n(.+?)\n```", readme, re.S).group(1).strip()
    assert re.search(r"<!-- run-command -->\n```(?:bash|sh)\n(.+?)\n```", readme, re.S)
    assert test_cmd in ci
