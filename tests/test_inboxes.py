"""Inboxes as index ranges (guardians/inboxes.py): the decider rows say what each item says at
every step of its life, pages walk an inbox without gaps or repeats, and the migration fills the
rows for items that existed before it. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlmodel import select

from dew.guardians import brake, db, inboxes
from dew.guardians.auth import Principal
from dew.guardians.db import transaction
from dew.guardians.deadlines import sweep
from dew.guardians.delegation import delegate
from dew.guardians.flow import decide
from dew.guardians.models import ItemDecider, WorkItem, utcnow
from dew.guardians.queue import inbox, queue_for, waiting_for
from dew.guardians.runs import start_run

from . import signatures
from .desk.conftest import DRILL

CASE = {"transcript": "问：是否占道经营？答：是。", "party": "某某便利店"}


def _rows_agree_with_items(ws) -> int:
    """Every item's decider rows are exactly what its own fields say; returns how many rows."""
    with transaction(ws.engine) as s:
        items = s.exec(select(WorkItem)).all()
        stored: dict[int, set] = {}
        for row in s.exec(select(ItemDecider)).all():
            stored.setdefault(row.item_id, set()).add((row.person, row.rule, row.status))
        for item in items:
            assert stored.pop(item.key, set()) == {(p, r, item.status) for p, r in inboxes.deciders_of(item)}, item.id
        assert stored == {}  # no rows for items that do not exist
        return sum(1 + len(i.backups) + len(i.escalated_to) for i in items)


def _with_deadline(scenarios_dir) -> None:
    path = scenarios_dir / "drill-script.yaml"
    body = path.read_text(encoding="utf-8")
    path.write_text(body.replace("risk: medium\n", "risk: medium\ndeadline: 8h\nremind_before: 2h\n", 1), "utf-8")


def test_the_rows_follow_every_item_through_queue_escalation_sign_off_revision_and_decision(
    make_workspace, scenarios_dir
):
    _with_deadline(scenarios_dir)
    ws = make_workspace()
    brake.set_escalation_contact(ws, "drill-script", "chen.jing", actor="zhao.lei")
    late = start_run(ws, "drill-script", DRILL, requester="alice").item
    _rows_agree_with_items(ws)
    due = late.due_at
    sweep(ws, now=due + timedelta(minutes=1))
    sweep(ws, now=due + timedelta(hours=8, minutes=1))  # escalated to chen.jing
    _rows_agree_with_items(ws)
    assert [(i.id, rule) for i, rule in inbox(ws, "chen.jing")] == [(late.id, "escalation")]
    decide(ws, late.key, actor="chen.jing", action="reject", note="逾期")
    _rows_agree_with_items(ws)
    assert inbox(ws, "chen.jing") == [] and inbox(ws, "zhao.lei") == []
    assert [(i.id, rule) for i, rule in inbox(ws, "zhao.lei", include_decided=True)] == [(late.id, "owner")]

    staged = start_run(ws, "enforcement-document", CASE, requester="alice").item
    assert [(i.id, rule) for i, rule in inbox(ws, "zhang.min")] == [(staged.id, "owner")]  # the legal review first
    signatures.decide(ws, staged.key, actor="zhang.min", action="approve", note="事实清楚")
    _rows_agree_with_items(ws)
    assert [(i.id, rule) for i, rule in inbox(ws, "li.wei")] == [(staged.id, "owner")]  # then the guardian
    assert [(i.id, rule) for i, rule in inbox(ws, "zhang.min")] == [(staged.id, "backup")]

    revised = start_run(ws, "drill-script", DRILL, requester="bob").item
    decide(ws, revised.key, actor="zhao.lei", action="revise", note="补充疏散路线")
    _rows_agree_with_items(ws)
    waiting = [i for i, _ in inbox(ws, "zhao.lei")]
    assert [(i.run_id, i.revision) for i in waiting] == [(revised.run_id, 1)]  # the new draft, not the old


def test_pages_walk_an_inbox_without_gaps_or_repeats_with_rules_delegations_and_filters(make_workspace):
    ws = make_workspace()
    drills = [start_run(ws, "drill-script", DRILL, requester="alice").item for _ in range(9)]
    cases = [start_run(ws, "enforcement-document", CASE, requester="alice").item for _ in range(4)]
    decide(ws, drills[3].key, actor="zhao.lei", action="approve")
    decide(ws, drills[6].key, actor="liu.yang", action="reject", note="no")
    pending = [i.id for i in drills if i.id not in (drills[3].id, drills[6].id)]
    expected = [(i, "owner", None) for i in pending]

    def walk(person: str, limit: int, **filters) -> list[tuple]:
        seen, after = [], 0
        while True:
            rows = queue_for(ws, Principal.declared(person), after=after, limit=limit, **filters)
            seen += [(r["id"], r["rule"], r["delegated_by"]) for r in rows]
            if len(rows) < limit:
                return seen
            after = rows[-1]["id"]

    for limit in (1, 2, 3, 7, 100):
        assert walk("zhao.lei", limit) == expected
        assert walk("liu.yang", limit) == [(i, "backup", None) for i in pending]
    assert walk("li.wei", 3) == [(c.id, "backup", None) for c in cases]  # the legal review's backup

    # A delegate decides the guardian's items as the guardian's delegate, beside their own.
    delegate(ws, "zhao.lei", "zhang.min", ends_at=utcnow() + timedelta(days=3), actor="zhao.lei")
    mixed = sorted([(i, "delegate", "zhao.lei") for i in pending] + [(c.id, "owner", None) for c in cases])
    for limit in (1, 4, 50):
        assert walk("zhang.min", limit) == mixed
    assert walk("zhang.min", 2, scenario="enforcement-document") == [(c.id, "owner", None) for c in cases]
    zhang = Principal.declared("zhang.min")
    assert waiting_for(ws, zhang) == (len(mixed), ["drill-script", "enforcement-document"])
    assert waiting_for(ws, zhang, "drill-script")[0] == len(pending)

    # The CLI's everyone's-inbox pages by id over the items themselves.
    everyone, after = [], 0
    while page := inbox(ws, None, after=after, limit=4):
        everyone += [i.id for i, _ in page]
        after = page[-1][0].key
    assert everyone == sorted(pending + [c.id for c in cases])


def test_the_migration_fills_the_rows_of_items_queued_before_it(make_workspace, scenarios_dir):
    _with_deadline(scenarios_dir)
    ws = make_workspace()
    brake.set_escalation_contact(ws, "drill-script", "chen.jing", actor="zhao.lei")
    first = start_run(ws, "drill-script", DRILL, requester="alice").item
    start_run(ws, "enforcement-document", CASE, requester="alice")
    sweep(ws, now=first.due_at + timedelta(hours=8, minutes=1))
    decide(ws, start_run(ws, "drill-script", DRILL, requester="bob").item.key, actor="zhao.lei", action="approve")
    expected = _rows_agree_with_items(ws)

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    with ws.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0010")
    with ws.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with transaction(ws.engine) as s:
        assert s.exec(text("SELECT count(*) FROM item_deciders")).one()[0] == expected
    _rows_agree_with_items(ws)


def test_a_delegate_is_offered_and_may_decide_an_item_that_names_a_variant_of_the_guardian(make_workspace):
    """Rows written before identities were validated may name `ZHAO.LEI`: the owner decides them
    (same_person), and so may their delegate; the inbox offers exactly what may be decided."""
    ws = make_workspace()
    item = start_run(ws, "drill-script", DRILL, requester="alice").item
    with transaction(ws.engine) as s:
        s.exec(text("UPDATE work_items SET guardian = 'ZHAO.LEI' WHERE id = :i").bindparams(i=item.id))
    delegate(ws, "zhao.lei", "zhang.min", ends_at=utcnow() + timedelta(days=1), actor="zhao.lei")
    assert [(i.id, rule) for i, rule in inbox(ws, "zhang.min")] == [(item.id, "delegate")]
    done = decide(ws, item.key, actor="zhang.min", action="approve")
    assert done.run.status == "released"
    assert inbox(ws, "zhang.min") == []
