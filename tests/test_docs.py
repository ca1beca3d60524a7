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


def test_every_command_and_sub_command_is_documented():
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    paths = reference.command_paths()
    assert {"dew run", "dew audit verify", "dew guardians add"} <= set(paths)  # the walk reaches every level
    for path in paths:
        assert f"## `{path}`" in text, f"{path} is missing from docs/cli.md"


def test_every_error_code_and_exit_code_is_documented():
    text = (REPO / "docs" / "errors.md").read_text(encoding="utf-8")
    classes = reference.error_classes()
    assert set(classes) == {DewError, *_all_subclasses(DewError)} - _test_only_errors()
    for cls in classes:
        assert f"| `{cls.code}` | {cls.exit_code} | {cls.http_status} |" in text
    documented = {code for code, _ in reference.EXIT_CODES}
    assert {cls.exit_code for cls in classes} <= documented and {0, 2} <= documented


def _test_only_errors() -> set[type]:
    return {c for c in _all_subclasses(DewError) if not c.__module__.startswith("dew.")}


def test_every_environment_variable_the_code_reads_is_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = {m for line in readme.splitlines() if line.startswith("|") for m in re.findall(r"`(DEW_[A-Z_]+)`", line)}
    read = set()
    for folder in ("agents", "guardians", "tests", "bench"):
        for path in (REPO / folder).rglob("*.py"):
            read |= set(re.findall(r"\b(DEW_[A-Z][A-Z_]*[A-Z])\b", path.read_text(encoding="utf-8")))
    read |= set(re.findall(r"\b(DEW_[A-Z][A-Z_]*[A-Z])\b", (REPO / ".ci" / "run").read_text(encoding="utf-8")))
    assert read - table == set(), "add these to the README's table of environment variables"
    assert table - read == set(), "the README lists variables no code reads"


def test_error_json_shape_is_stable():
    """The shape the HTTP API will return; pinned so clients can rely on it."""
    assert NotAuthorized("no").to_dict() == {"error": {"code": "not_authorized", "message": "no"}}
    assert AlreadyDecided("twice").to_dict() == {"error": {"code": "already_decided", "message": "twice"}}
    assert ScenarioInvalid("f.yaml", ["f.yaml:3: id: bad", "f.yaml:4: risk: bad"]).to_dict() == {
        "error": {"code": "scenario_invalid", "message": "f.yaml:3: id: bad\nf.yaml:4: risk: bad"}
    }
    classes = reference.error_classes()
    assert len({cls.code for cls in classes}) == len(classes)  # every error kind has its own code


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
