"""The programme's figures from a small history built through dew's own functions (runs drafted by
scripted models, decisions of every kind, an escalation, a recall), checked to the exact number on
SQLite and PostgreSQL; and `dew stats` printing them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from dew.agents.errors import InputInvalid
from dew.agents.testing import ScriptedModelProvider
from dew.guardians import brake
from dew.guardians.auth import Principal
from dew.guardians.db import transaction
from dew.guardians.deadlines import sweep
from dew.guardians.errors import NotAuthorized
from dew.guardians.flow import decide
from dew.guardians.models import AuthMethod, Decision, WorkItem
from dew.guardians.runs import execute_start, request_run
from dew.guardians.stats import compute, edit_size, operations, parse_moment, percentile, scope_for

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = 3600.0
DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 30}
NOTICE = """\
dew: 1
id: notice
name: Notice board
description: A fixed notice, no model involved.
version: "1.0.0"
guardian: wu.ting
backups: [zhou.hong]
risk: low
inputs:
  text:
    type: string
    description: What to post.
steps:
  - id: notice
    kind: template
    title: The notice
    template: "NOTICE: {{ inputs.text }}"
output:
  from: notice
  format: text
release:
  to: outbox
  filename: "{{ run.id }}-notice"
"""


def _drafted(ws, scenario: str, inputs: dict) -> WorkItem:
    run = request_run(ws, scenario, inputs, requester="alice")
    result = execute_start(ws, run.key)
    assert result.item is not None, result.run.error
    return result.item


def _backdate(ws, item_id: int, created: datetime, decided: datetime | None = None, *, deadline: bool = False):
    """Move an item (and its decision) to fixed times: the tests cannot wait hours for a decision."""
    values: dict = {"created_at": created, "decided_at": decided}
    if deadline:
        values["due_at"] = created + timedelta(hours=8)
    with transaction(ws.engine) as s:
        s.execute(update(WorkItem).where(WorkItem.id == item_id).values(**values))
        if decided is not None:
            s.execute(update(Decision).where(Decision.item_id == item_id).values(created_at=decided))


@pytest.fixture
def history(make_workspace, scenarios_dir):
    """drill-script (zhao.lei, backup liu.yang; deadline 8h; model 'scripted'): approved (then
    recalled), edited by the backup, rejected late, revised then approved, and one pending past
    its deadline and escalated. document-format (zhou.hong, backup wu.ting; model 'other-model'):
    approved by the backup, edited. notice (wu.ting; no model): one pending."""
    drill = scenarios_dir / "drill-script.yaml"
    drill.write_text(
        drill.read_text(encoding="utf-8").replace("risk: medium\n", "risk: medium\ndeadline: 8h\n", 1),
        encoding="utf-8",
    )
    (scenarios_dir / "notice.yaml").write_text(NOTICE, encoding="utf-8")
    ws = make_workspace()
    other = make_workspace(provider=ScriptedModelProvider(model_name="other-model"))

    a = _drafted(ws, "drill-script", DRILL)
    b = _drafted(ws, "drill-script", DRILL)
    c = _drafted(ws, "drill-script", DRILL)
    d1 = _drafted(ws, "drill-script", DRILL)
    e = _drafted(ws, "drill-script", DRILL)
    released_a = decide(ws, a.key, actor="zhao.lei", action="approve").release
    decide(ws, b.key, actor="liu.yang", action="edit", edited="Bring the extinguisher.\n" + b.draft)  # 1 line, 23 chars
    decide(ws, c.key, actor="zhao.lei", action="reject", note="wrong hazard")
    d2 = decide(ws, d1.key, actor="zhao.lei", action="revise", note="add the night shift").item
    assert d2 is not None and d2.revision == 1
    decide(ws, d2.key, actor="zhao.lei", action="approve")
    assert released_a is not None
    brake.recall(ws, released_a.key, actor="zhao.lei", reason="sent to the wrong team")
    assert e.due_at is not None
    assert sweep(ws, now=e.due_at + timedelta(minutes=1)).escalated == [(e.key, 1)]

    example = ws.scenario("document-format").spec.examples[0].inputs
    f = _drafted(other, "document-format", dict(example))
    g = _drafted(other, "document-format", dict(example))
    assert len(f.findings) == len(g.findings) == 1
    decide(other, f.key, actor="wu.ting", action="approve")
    decide(other, g.key, actor="zhou.hong", action="edit", edited="X1\nX2\n" + g.draft)  # 2 lines, 4 chars
    h = _drafted(ws, "notice", {"text": "fire drill on Friday"})

    _backdate(ws, a.key, T0, T0 + timedelta(hours=1), deadline=True)
    _backdate(ws, b.key, T0, T0 + timedelta(hours=2), deadline=True)
    _backdate(ws, c.key, T0, T0 + timedelta(hours=10), deadline=True)  # decided 2 hours late
    _backdate(ws, d1.key, T0, T0 + timedelta(hours=3), deadline=True)
    _backdate(ws, d2.key, T0 + timedelta(hours=3), T0 + timedelta(hours=4), deadline=True)
    _backdate(ws, e.key, T0 + timedelta(days=1), deadline=True)  # pending; due T0 + 1d 8h
    _backdate(ws, f.key, T0 + timedelta(hours=5), T0 + timedelta(hours=5, minutes=30))
    _backdate(ws, g.key, T0 + timedelta(hours=6), T0 + timedelta(hours=6, minutes=30))
    _backdate(ws, h.key, T0 + timedelta(days=1, hours=1))
    return ws


NOW = T0 + timedelta(days=2)
DRILL_FIGURES = {
    "items": 6, "runs": 5, "pending": 1, "decided": 5, "approved": 2, "edited": 1, "rejected": 1, "revised": 1,
    "approval_rate": 3 / 5, "edit_rate": 1 / 3, "mean_edit_chars": 23, "mean_edit_lines": 1,
    "revision_rounds": 1 / 5, "median_decision_seconds": 2 * H,
    "p90_decision_seconds": 3 * H + 0.6 * 7 * H,  # of 1, 1, 2, 3, 10 hours: rank 3.6 of 0..4
    "overdue": 2, "escalated": 1, "released": 3, "recalled": 1, "findings": 0, "findings_per_draft": 0,
    "with_findings": 0,
}  # fmt: skip
FORMAT_FIGURES = {
    "items": 2, "runs": 2, "pending": 0, "decided": 2, "approved": 1, "edited": 1, "rejected": 0, "revised": 0,
    "approval_rate": 1, "edit_rate": 1 / 2, "mean_edit_chars": 4, "mean_edit_lines": 2, "revision_rounds": 0,
    "median_decision_seconds": H / 2, "p90_decision_seconds": H / 2, "overdue": 0, "escalated": 0, "released": 2,
    "recalled": 0, "findings": 2, "findings_per_draft": 1, "with_findings": 2,
}  # fmt: skip
NOTICE_FIGURES = {
    "items": 1, "runs": 1, "pending": 1, "decided": 0, "approved": 0, "edited": 0, "rejected": 0, "revised": 0,
    "approval_rate": None, "edit_rate": None, "mean_edit_chars": None, "mean_edit_lines": None,
    "revision_rounds": 0, "median_decision_seconds": None, "p90_decision_seconds": None, "overdue": 0,
    "escalated": 0, "released": 0, "recalled": 0, "findings": 0, "findings_per_draft": 0, "with_findings": 0,
}  # fmt: skip
TOTAL_FIGURES = {
    "items": 9, "runs": 8, "pending": 2, "decided": 7, "approved": 3, "edited": 2, "rejected": 1, "revised": 1,
    "approval_rate": 5 / 7, "edit_rate": 2 / 5, "mean_edit_chars": 13.5, "mean_edit_lines": 1.5,
    "revision_rounds": 1 / 8, "median_decision_seconds": 1 * H,
    "p90_decision_seconds": 3 * H + 0.4 * 7 * H,  # of .5, .5, 1, 1, 2, 3, 10 hours: rank 5.4 of 0..6
    "overdue": 2, "escalated": 1, "released": 5, "recalled": 1, "findings": 2, "findings_per_draft": 2 / 9,
    "with_findings": 2,
}  # fmt: skip


def _close(actual: dict, expected: dict) -> None:
    assert set(expected) <= set(actual)
    got = {k: actual[k] for k in expected}
    assert got == pytest.approx(expected), got


def test_figures_by_scenario(history):
    report = compute(history, by="scenario", now=NOW)
    assert [g.key for g in report.groups] == ["drill-script", "document-format", "notice"]  # most items first
    groups = {g.key: g.to_dict() for g in report.groups}
    _close(groups["drill-script"], DRILL_FIGURES)
    _close(groups["document-format"], FORMAT_FIGURES)
    _close(groups["notice"], NOTICE_FIGURES)
    _close(report.total.to_dict(), TOTAL_FIGURES)


def test_figures_by_guardian_count_a_backups_decision_for_the_queue_owner(history):
    report = compute(history, by="guardian", now=NOW)
    groups = {g.key: g.to_dict() for g in report.groups}
    assert set(groups) == {"zhao.lei", "zhou.hong", "wu.ting"}
    _close(groups["zhao.lei"], DRILL_FIGURES)
    _close(groups["zhou.hong"], FORMAT_FIGURES)
    _close(groups["wu.ting"], NOTICE_FIGURES)
    _close(report.total.to_dict(), TOTAL_FIGURES)


def test_figures_by_model_from_each_items_provenance(history):
    report = compute(history, by="model", now=NOW)
    groups = {g.key: g.to_dict() for g in report.groups}
    assert set(groups) == {"scripted", "other-model", None}  # None: drafted by no model
    _close(groups["scripted"], DRILL_FIGURES)
    _close(groups["other-model"], FORMAT_FIGURES)
    _close(groups[None], NOTICE_FIGURES)
    _close(report.total.to_dict(), TOTAL_FIGURES)


def test_a_period_counts_the_items_queued_in_it(history):
    first_day = compute(history, until=parse_moment("2026-03-02", end=True), now=NOW)
    assert {g.key: g.items for g in first_day.groups} == {"drill-script": 5, "document-format": 2}
    _close(first_day.total.to_dict(), {"items": 7, "pending": 0, "decided": 7, "overdue": 1, "escalated": 0})
    second_day = compute(history, since=parse_moment("2026-03-03"), now=NOW)
    assert {g.key: g.items for g in second_day.groups} == {"drill-script": 1, "notice": 1}
    _close(second_day.total.to_dict(), {"items": 2, "pending": 2, "overdue": 1, "escalated": 1, "approval_rate": None})
    # An item pending before its deadline is not overdue yet.
    assert compute(history, since=parse_moment("2026-03-03"), now=T0 + timedelta(days=1, hours=2)).total.overdue == 0
    empty = compute(history, since=parse_moment("2027-01-01"), now=NOW)
    assert empty.groups == [] and empty.total.items == 0 and empty.total.approval_rate is None


def test_a_guardian_sees_the_figures_of_their_own_queue_only(history):
    guardian = Principal("zhou.hong", "周红", frozenset({"guardian"}), AuthMethod.PASSWORD)
    auditor = Principal("audrey", "审计员", frozenset({"auditor"}), AuthMethod.PASSWORD)
    requester = Principal("alice", "Alice", frozenset({"requester"}), AuthMethod.PASSWORD)
    assert scope_for(auditor) is None and scope_for(Principal.declared("anyone")) is None
    assert scope_for(guardian) == "zhou.hong"
    with pytest.raises(NotAuthorized, match="only admins and auditors"):
        scope_for(requester)
    own = compute(history, by="scenario", guardian=scope_for(guardian), now=NOW)
    assert [g.key for g in own.groups] == ["document-format"]
    _close(own.total.to_dict(), FORMAT_FIGURES)


def test_operations_count_the_state_now(history):
    ops = operations(history, now=NOW)
    assert ops.runs == {"released": 5, "rejected": 1, "awaiting_decision": 2}
    assert ops.pending == {"drill-script": 1, "notice": 1}
    assert ops.overdue == {"drill-script": 1}
    assert ops.oldest_pending == {"drill-script": pytest.approx(1 * 86400), "notice": pytest.approx(23 * H)}
    assert ops.decisions == {"approve": 3, "edit": 2, "reject": 1, "revise": 1}
    assert (ops.releases, ops.recalls, ops.signoffs, ops.paused) == (5, 1, 0, [])
    with transaction(history.engine) as s:
        from dew.guardians.audit import verify

        assert ops.audit_events == verify(s).events


def test_edit_size_counts_changed_characters_and_lines():
    assert edit_size("") == (0, 0)
    diff = "--- a\n+++ b\n@@ -1,3 +1,3 @@\n same\n-abc\n+abd\n same\n"
    assert edit_size(diff) == (2, 2)  # c out, d in
    added = "--- a\n+++ b\n@@ -1 +1,2 @@\n+new line\n keep\n"
    assert edit_size(added) == (8, 1)
    two_blocks = "--- a\n+++ b\n@@ -1,4 +1,3 @@\n-x\n keep\n-gone\n-also\n+新\n"
    assert edit_size(two_blocks) == (1 + 8 + 1, 4)
    lines_that_look_like_headers = "--- a\n+++ b\n@@ -1 +1 @@\n---x\n+++x\n"
    assert edit_size(lines_that_look_like_headers) == (4, 2)  # "--" out, "++" in


def test_percentile_and_period_parsing():
    assert percentile([], 90) is None and percentile([5.0], 90) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 90) == pytest.approx(9.1)
    assert parse_moment("2026-03-02") == T0.replace(hour=0)
    assert parse_moment("2026-03-02", end=True) == datetime(2026, 3, 3, tzinfo=UTC)
    assert parse_moment("2026-03-02T09:00", end=True) == T0  # a moment is taken as it is
    assert parse_moment("2026-03-02T17:00+08:00") == T0
    assert parse_moment(None) is None
    with pytest.raises(InputInvalid, match="not a date"):
        parse_moment("last week")
    with pytest.raises(InputInvalid, match="too far"):
        parse_moment("9999-12-31", end=True)


def test_grouping_and_period_are_checked(ws):
    with pytest.raises(InputInvalid, match="cannot group figures by 'requester'"):
        compute(ws, by="requester")
    with pytest.raises(InputInvalid, match="the period is empty"):
        compute(ws, since=T0, until=T0)


# --- dew stats ---------------------------------------------------------------------------------------------------
def _cli(history, *args: str):
    from dew.guardians.cli.main import app

    env = {
        "DEW_HOME": str(history.settings.home),
        "DEW_SCENARIOS": str(history.settings.scenarios_dir),
        "DEW_DATABASE_URL": history.settings.database_url,
        "DEW_USER": "",
        "COLUMNS": "80",
    }
    return CliRunner().invoke(app, ["stats", *args], env=env)


def test_dew_stats_json_has_the_figures(history):
    result = _cli(history, "--json", "--by", "guardian", "--until", "2026-03-02")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["by"], out["since"], out["until"]) == ("guardian", None, "2026-03-03T00:00:00+00:00")
    groups = {g["key"]: g for g in out["groups"]}
    assert set(groups) == {"zhao.lei", "zhou.hong"}
    _close(groups["zhou.hong"], FORMAT_FIGURES)
    _close(out["total"], {"items": 7, "approved": 3, "edited": 2, "rejected": 1, "revised": 1, "pending": 0})


def test_dew_stats_prints_tables_that_fit_a_terminal(history):
    result = _cli(history, "--since", "2026-03-01")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Decisions by scenario, items queued from 2026-03-01 to now" in text
    for title in ("Rates and sizes", "Time to decision and follow-up"):
        assert title in text

    def rows(label: str) -> list[list[str]]:
        return [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if f"│ {label} " in line]

    assert rows("drill-script") == [
        ["drill-script", "6", "1", "2", "1", "1", "1"],
        ["drill-script", "60%", "33%", "23c/1l", "0.2", "0"],
        ["drill-script", "2h 00m", "7h 12m", "2", "1", "1/3"],
    ]
    assert rows("notice")[1:] == [["notice", "–", "–", "–", "0", "0"], ["notice", "–", "–", "0", "0", "0/0"]]
    assert rows("total") == [
        ["total", "9", "2", "3", "2", "1", "1"],
        ["total", "71%", "40%", "13.5c/1.5l", "0.12", "0.22"],
        ["total", "1h 00m", "5h 48m", "2", "1", "1/5"],
    ]
    assert max(len(line) for line in text.splitlines()) <= 80


def test_dew_stats_refuses_a_bad_grouping_or_date(history):
    bad = _cli(history, "--by", "weather")
    assert bad.exit_code != 0 and "cannot group figures by 'weather'" in bad.output
    date = _cli(history, "--since", "yesterday")
    assert date.exit_code != 0 and "'yesterday' is not a date" in date.output
    nothing = _cli(history, "--since", "2030-01-01")
    assert nothing.exit_code == 0 and "No work items were queued from 2030-01-01 to now." in nothing.stdout
