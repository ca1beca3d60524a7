"""A crash between recording a release and delivering it is found and repaired, never silent
(issue 7, finding 3). Deaths are simulated at the exact point with SystemExit, as in the
crash tests of test_governed_run.py."""

from __future__ import annotations

import pytest

from dew.agents.loader import load_directory
from dew.guardians.flow import decide
from dew.guardians.labels import approved_text
from dew.guardians.queue import list_runs
from dew.guardians.reconcile import find_problems, repair
from dew.guardians.runs import start_run
from tests.conftest import SCENARIOS

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}
HOTLINE = {e.name: e.inputs for e in load_directory(SCENARIOS)["hotline-intake"].spec.examples}


def killed(*args, **kwargs):
    raise SystemExit("killed")


def test_a_release_whose_file_never_arrived_is_found_and_delivered(ws, monkeypatch):
    import dew.guardians.release

    r = start_run(ws, "drill-script", DRILL, requester="alice")
    monkeypatch.setattr(dew.guardians.release, "_publish", killed)
    with pytest.raises(SystemExit):
        decide(ws, r.item.id, actor="zhao.lei", action="approve")
    monkeypatch.undo()
    [problem] = find_problems(ws)
    assert problem.kind == "file_missing" and problem.run_id == r.run.id and problem.repairable
    [(_, outcome)] = repair(ws, actor="zhao.lei")
    assert outcome == "delivered" and find_problems(ws) == []
    released = ws.settings.home / problem.location
    assert approved_text(released) == r.item.draft and released.with_name(released.name + ".label.json").exists()
    assert not any((ws.settings.outbox / ".staging").rglob("*.*"))  # nothing left behind


def test_a_release_whose_hand_off_never_started_is_found_and_handed_off(ws, monkeypatch):
    import dew.guardians.flow

    r = start_run(ws, "hotline-intake", dict(HOTLINE["饭店占道经营"]), requester="operator.gao")
    monkeypatch.setattr(dew.guardians.flow, "hand_off", killed)
    with pytest.raises(SystemExit):
        decide(ws, r.item.id, actor="xu.jie", action="approve")
    monkeypatch.undo()
    [problem] = find_problems(ws)
    assert problem.kind == "handoff_missing" and problem.run_id == r.run.id
    [(_, outcome)] = repair(ws, actor="xu.jie")
    assert "handed off to run" in outcome and find_problems(ws) == []
    assert [run.scenario_id for run in list_runs(ws)] == ["hotline-intake", "enforcement-document"]


def test_a_case_that_is_not_handed_off_is_settled_not_missing(ws):
    r = start_run(ws, "hotline-intake", dict(HOTLINE["燃气异味（紧急）"]), requester="operator.gao")
    decide(ws, r.item.id, actor="xu.jie", action="approve")
    assert find_problems(ws) == []  # the skipped hand-off is on record


def test_a_changed_released_file_is_reported_and_never_overwritten(ws):
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    done = decide(ws, r.item.id, actor="zhao.lei", action="approve")
    path = ws.settings.home / done.release.location
    path.write_text("someone's other text", encoding="utf-8")
    [problem] = find_problems(ws)
    assert problem.kind == "file_differs" and not problem.repairable
    [(_, outcome)] = repair(ws, actor="zhao.lei")
    assert outcome == "not repaired: needs a person"
    assert path.read_text(encoding="utf-8") == "someone's other text"


def test_stray_staging_and_temporary_files_are_found_and_removed(ws):
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    decide(ws, r.item.id, actor="zhao.lei", action="approve")
    stray = [ws.settings.outbox / ".staging" / "drill-script" / ".x.md.abc.tmp",
             ws.settings.outbox / "drill-script" / ".y.md.def.tmp"]  # fmt: skip
    for p in stray:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("half", encoding="utf-8")
    assert sorted(p.kind for p in find_problems(ws)) == ["stray_file", "stray_file"]
    repair(ws, actor="zhao.lei")
    assert find_problems(ws) == [] and not any(p.exists() for p in stray)
