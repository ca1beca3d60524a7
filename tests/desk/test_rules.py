"""The rules of deciding beyond one guardian: staged sign-off, deadlines and escalation (never
approval by timeout), and the brake. Enforced in guardians/, tested here through its functions on
SQLite and PostgreSQL; the API and pages only call them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from dew.agents.errors import InputInvalid, ScenarioInvalid
from dew.guardians import brake
from dew.guardians.db import transaction
from dew.guardians.deadlines import sweep
from dew.guardians.decisions import record_decision
from dew.guardians.errors import DecisionInvalid, InvalidState, NotAuthorized
from dew.guardians.flow import decide
from dew.guardians.models import AuditEvent, ItemStatus, Release, SignOff, WorkItem
from dew.guardians.runs import execute_start, request_run, start_run

from .conftest import DRILL


def _with(scenarios_dir, extra: str) -> None:
    """Add top-level fields to the drill-script scenario of this test's private scenario folder."""
    path = scenarios_dir / "drill-script.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("risk: medium\n", "risk: medium\n" + extra, 1), encoding="utf-8")


def _kinds(ws) -> list[str]:
    with transaction(ws.engine) as s:
        return [e.kind for e in s.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()]


def _item(ws, item_id: int) -> WorkItem:
    with transaction(ws.engine) as s:
        return s.get(WorkItem, item_id)


def test_a_staged_sign_off_goes_in_order_and_releases_only_after_the_last(make_workspace, scenarios_dir):
    _with(
        scenarios_dir, "signoff:\n  - name: 法制审核 · legal review\n    guardian: zhang.min\n    backups: [li.wei]\n"
    )
    ws = make_workspace()
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    item = r.item
    assert (item.guardian, item.backups, item.stage) == ("zhang.min", ["li.wei"], 0)

    with pytest.raises(NotAuthorized, match=r"is in zhang\.min's queue"):
        decide(ws, item.key, actor="zhao.lei", action="approve")  # the official cannot go first
    with pytest.raises(DecisionInvalid, match="an edit is made at the last sign-off"):
        decide(ws, item.key, actor="zhang.min", action="edit", edited="something else")

    first = decide(ws, item.key, actor="zhang.min", action="approve", note="法律依据充分")
    assert first.run.status == "awaiting_decision" and first.release is None
    moved = _item(ws, item.key)
    assert (moved.status, moved.stage, moved.guardian, moved.backups) == ("pending", 1, "zhao.lei", ["liu.yang"])
    with transaction(ws.engine) as s:
        assert s.exec(select(Release)).all() == []
        signed = s.exec(select(SignOff)).one()
    assert (signed.actor, signed.stage_name, signed.rule) == ("zhang.min", "法制审核 · legal review", "owner")

    last = decide(ws, item.key, actor="zhao.lei", action="approve")
    assert last.run.status == "released"
    assert "decision.signed_off" in _kinds(ws) and "decision.approved" in _kinds(ws)


def test_two_person_sign_off_needs_two_different_people_and_any_rejection_ends_it(make_workspace, scenarios_dir):
    _with(scenarios_dir, "two_person: true\n")
    ws = make_workspace()
    one = start_run(ws, "drill-script", DRILL, requester="alice").item
    decide(ws, one.key, actor="liu.yang", action="approve")  # the backup signs first
    with pytest.raises(
        NotAuthorized, match=r"already signed off work item .* each sign-off must come from a different person"
    ):
        decide(ws, one.key, actor="liu.yang", action="approve")
    assert decide(ws, one.key, actor="zhao.lei", action="approve").run.status == "released"

    two = start_run(ws, "drill-script", DRILL, requester="alice").item
    decide(ws, two.key, actor="zhao.lei", action="approve")
    rejected = decide(ws, two.key, actor="liu.yang", action="reject", note="时间线不现实")
    assert rejected.run.status == "rejected" and _item(ws, two.key).status == ItemStatus.REJECTED


def test_a_stage_cannot_be_signed_by_the_guardian_who_signs_last(scenarios_dir, make_workspace):
    _with(scenarios_dir, "signoff:\n  - name: again\n    guardian: zhao.lei\n")
    ws = make_workspace()
    with pytest.raises(
        ScenarioInvalid, match=r"drill-script.yaml:\d+: signoff\[0\]\.guardian: 'zhao.lei' is the scenario's guardian"
    ):
        ws.scenario("drill-script")


def test_deadlines_remind_then_escalate_and_never_approve(make_workspace, scenarios_dir):
    _with(scenarios_dir, "deadline: 8h\nremind_before: 2h\n")
    ws = make_workspace()
    brake.set_escalation_contact(ws, "drill-script", "chen.jing", actor="zhao.lei")
    item = start_run(ws, "drill-script", DRILL, requester="alice").item
    due = item.due_at
    assert due is not None and timedelta(hours=7, minutes=59) < due - item.created_at <= timedelta(hours=8)

    assert sweep(ws, now=due - timedelta(hours=3)).reminded == []
    assert sweep(ws, now=due - timedelta(hours=1)).reminded == [item.key]
    assert sweep(ws, now=due - timedelta(minutes=30)).reminded == []  # once
    assert sweep(ws, now=due + timedelta(minutes=1)).escalated == [(item.key, 1)]
    with pytest.raises(NotAuthorized):
        decide(ws, item.key, actor="chen.jing", action="approve")  # not yet: the backups first
    assert sweep(ws, now=due + timedelta(hours=8, minutes=1)).escalated == [(item.key, 2)]
    assert sweep(ws, now=due + timedelta(days=30)).escalated == []  # and no further
    assert _item(ws, item.key).status == "pending"  # nothing is ever approved by timeout
    assert _item(ws, item.key).escalated_to == ["chen.jing"]
    assert _kinds(ws).count("item.escalated") == 2 and _kinds(ws).count("item.reminded") == 1

    recorded = record_decision(ws, item.key, actor="chen.jing", action="reject", note="逾期，退回重做")
    assert recorded.decision is not None and recorded.decision.rule == "escalation"


def test_the_brake_holds_runs_and_items_until_resumed_and_a_recall_marks_the_release(make_workspace):
    ws = make_workspace()
    pending = start_run(ws, "drill-script", DRILL, requester="alice").item
    queued = request_run(ws, "drill-script", DRILL, requester="alice")
    with pytest.raises(NotAuthorized, match="only drill-script's guardians or an admin"):
        brake.pause(ws, "drill-script", actor="chen.jing", reason="?")
    with pytest.raises(InputInvalid, match="say why"):
        brake.pause(ws, "drill-script", actor="zhao.lei", reason="  ")
    brake.pause(ws, "drill-script", actor="zhao.lei", reason="模型输出异常，暂停核查")

    with pytest.raises(InvalidState, match=r"'drill-script' is paused .* nobody can start a run"):
        start_run(ws, "drill-script", DRILL, requester="alice")
    with pytest.raises(InvalidState, match="nobody can decide on work item"):
        decide(ws, pending.key, actor="zhao.lei", action="approve")
    assert execute_start(ws, queued.key).run.status == "queued"  # waits
    assert _item(ws, pending.key).status == "pending"

    brake.resume(ws, "drill-script", actor="liu.yang", note="已核查")
    assert execute_start(ws, queued.key).run.status == "awaiting_decision"
    released = decide(ws, pending.key, actor="zhao.lei", action="approve").release
    assert released is not None

    with pytest.raises(NotAuthorized):
        brake.recall(ws, released.key, actor="alice", reason="mine")
    brake.recall(ws, released.key, actor="zhao.lei", reason="发现事实错误")
    note = ws.settings.home / (released.location + ".recalled")
    assert note.is_file() and "发现事实错误" in note.read_text(encoding="utf-8")
    assert (ws.settings.home / released.location).is_file()  # the file stays: it is evidence
    with pytest.raises(InvalidState, match="already recalled"):
        brake.recall(ws, released.key, actor="zhao.lei", reason="again")
    kinds = _kinds(ws)
    assert {"scenario.paused", "scenario.resumed", "output.recalled", "decision.refused"} <= set(kinds)
