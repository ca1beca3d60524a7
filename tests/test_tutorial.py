"""The tutorial's scenario is real: it loads, runs, is decided and released, and its documented
error message is the one dew prints."""

from __future__ import annotations

import re
from pathlib import Path

from dew.agents.testing import ScriptedModelProvider, unfenced
from dew.guardians.flow import decide
from dew.guardians.runs import start_run

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "writing-a-scenario.md"


def tutorial_yaml() -> str:
    text = TUTORIAL.read_text(encoding="utf-8")
    return re.search(r"<!-- tutorial-scenario -->\n```yaml\n(.+?)```", text, re.S).group(1)


def test_the_tutorial_scenario_runs_end_to_end(make_workspace, scenarios_dir):
    (scenarios_dir / "meeting-minutes.yaml").write_text(tutorial_yaml(), encoding="utf-8")
    replies = iter(
        [
            "Zhao Lei will talk to the warehouse lead.",  # no numbered list, no owner: sent back
            "1. Clear the bay 3 fire exit. Owner: Zhao Lei. Due: Friday.\n"
            "2. Book the next drill. Owner: Liu Yang. Due: 5 December.",
        ]
    )
    provider = ScriptedModelProvider(reply=lambda s, p: next(replies))
    ws = make_workspace(provider=provider)
    example = ws.scenario("meeting-minutes").spec.examples[0]
    r = start_run(ws, "meeting-minutes", dict(example.inputs), requester="gao.yan")
    assert "Fix each of these points:\n- the actions must be a numbered list" in unfenced(provider.calls[1]["prompt"])
    assert r.item.findings == [] and r.item.guardian == "zhou.hong"
    assert (
        r.item.draft.startswith("# Minutes: Weekly safety meeting") and "Attendees: Zhao Lei, Liu Yang" in r.item.draft
    )
    done = decide(ws, r.item.id, actor="zhou.hong", action="approve")
    assert done.release.location == f"outbox/meeting-minutes/{r.run.id}-minutes.md"


def test_the_documented_error_is_what_dew_prints(tmp_path):
    from typer.testing import CliRunner

    from dew.guardians.cli.main import app

    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "meeting-minutes.yaml").write_text(
        tutorial_yaml().replace("    prompt: |", "    promt: |"), encoding="utf-8"
    )
    result = CliRunner().invoke(app, ["scenarios", "check", str(folder / "meeting-minutes.yaml")])
    shown = result.stderr.replace(str(folder), "scenarios")
    documented = re.search(r"gives:\n\n```\n(.+?)```", TUTORIAL.read_text(encoding="utf-8"), re.S).group(1)
    assert shown == documented
