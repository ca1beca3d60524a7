"""Reading the queues: inboxes, one work item with everything a guardian needs, traces."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from dew.guardians.errors import NotFound

from . import audit, inboxes
from .access import check_item, check_run, may_see_item, may_see_run, reads_everything
from .auth import Principal
from .brake import is_paused
from .db import must_get, transaction
from .delegation import active_for, delegated_to
from .models import AuditEvent, Decision, ItemStatus, Release, Role, Run, ScenarioVersion, SignOff, WorkItem

if TYPE_CHECKING:
    from .workspace import Workspace


def inbox(
    ws: Workspace, actor: str | None, *, include_decided: bool = False, after: int = 0, limit: int = 50
) -> list[tuple[WorkItem, str | None]]:
    """A page of the items waiting for `actor` — as guardian, backup, delegate or escalation
    contact — with the rule that lets them decide; every guardian's (rule None) when actor is
    None. By id, the next `limit` after `after`."""
    with transaction(ws.engine) as s:
        if actor is None:
            query = select(WorkItem).where(col(WorkItem.id) > after).order_by(col(WorkItem.id)).limit(limit)
            if not include_decided:
                query = query.where(WorkItem.status == ItemStatus.PENDING)
            return [(item, None) for item in s.exec(query).all()]
        covering = [d.guardian for d in delegated_to(s, actor)]
        found = inboxes.page(s, actor, covering=covering, pending_only=not include_decided, after=after, limit=limit)
        items = _items_by_id(s, [item_id for item_id, _, _ in found])
        return [(items[item_id], rule) for item_id, rule, _ in found]


def _items_by_id(s, ids: list[int]) -> dict[int, WorkItem]:
    return {item.key: item for item in s.exec(select(WorkItem).where(col(WorkItem.id).in_(ids))).all()}


def item_view(ws: Workspace, item_id: int) -> dict[str, Any]:
    """A work item with its run's inputs, provenance and outcome: what `dew show` prints."""
    with transaction(ws.engine) as s:
        item = s.get(WorkItem, item_id)
        if item is None:
            raise NotFound(f"no work item {item_id}")
        run = must_get(s, Run, item.run_id)
        version = s.get(ScenarioVersion, run.scenario_sha256)
        decision = s.exec(select(Decision).where(Decision.item_id == item_id)).first()
        release = s.exec(select(Release).where(Release.item_id == item_id)).first()
        later = s.exec(
            select(WorkItem.id)
            .where(WorkItem.run_id == run.id, WorkItem.revision > item.revision)
            .order_by(col(WorkItem.revision))
        ).first()
    return {
        "item": {
            "id": item.id,
            "status": item.status,
            "revision": item.revision,
            "guardian": item.guardian,
            "backups": item.backups,
            "risk": item.risk,
            "stage": item.stage,
            "sign_required": ws.stored_scenario(run.scenario_sha256).spec.signing_required,
            "created_at": item.created_at.isoformat(),
            "decided_at": item.decided_at.isoformat() if item.decided_at else None,
            "draft": item.draft,
            "findings": item.findings,
            "next_item": later,
        },
        "run": {
            "id": run.id,
            "status": run.status,
            "requester": run.requester,
            "inputs": run.inputs,
            "parent_run": run.parent_run_id,
            "scenario": run.scenario_id,
            "scenario_version": version.version if version else None,
            "scenario_sha256": run.scenario_sha256,
            "error": run.error,
            "cleared_at": run.cleared_at.isoformat() if run.cleared_at else None,
        },
        "provenance": item.provenance,
        "decision": _decision_dict(decision),
        "release": _release_dict(release),
    }


def list_runs(ws: Workspace, status: str | None = None, *, before: int | None = None, limit: int = 100) -> list[Run]:
    """The newest `limit` runs (before run `before`, for the page after), oldest of them first."""
    with transaction(ws.engine) as s:
        query = select(Run).order_by(col(Run.id).desc()).limit(limit)
        if status:
            query = query.where(Run.status == status)
        if before is not None:
            query = query.where(col(Run.id) < before)
        return list(reversed(s.exec(query).all()))


def trace(ws: Workspace, item_id: int) -> dict[str, Any]:
    """Everything that happened to the run behind a work item, in order, from the audit trail."""
    view = item_view(ws, item_id)
    with transaction(ws.engine) as s:
        chain = chain_of(s, view["run"]["id"])
        events = [event_dict(e) for e in audit.events(s, run_ids=chain)]
    return {**view, "chain": chain, "events": events}


def chain_of(session, run_id: int) -> list[int]:
    """Every run linked to this one by hand-offs, first to last."""
    root = session.get(Run, run_id)
    while root.parent_run_id is not None:
        root = session.get(Run, root.parent_run_id)
    chain, frontier = [], [root.id]
    while frontier:
        chain.extend(frontier)
        frontier = list(
            session.exec(select(Run.id).where(col(Run.parent_run_id).in_(frontier)).order_by(col(Run.id))).all()
        )
    return chain


def event_dict(e) -> dict[str, Any]:
    import json

    return {
        "seq": e.seq,
        "at": e.at,
        "kind": e.kind,
        "actor": e.actor,
        "run_id": e.run_id,
        "item_id": e.item_id,
        "data": json.loads(e.data),
        "hash": e.hash,
        "prev_hash": e.prev_hash,
    }


def audit_log(ws: Workspace, limit: int = 100, *, before: int | None = None) -> list[dict[str, Any]]:
    """The newest `limit` events (before event `before`, for the page after), oldest of them first."""
    with transaction(ws.engine) as s:
        query = select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(limit)
        if before is not None:
            query = query.where(col(AuditEvent.seq) < before)
        return [event_dict(e) for e in reversed(s.exec(query).all())]


def _decision_dict(d: Decision | None) -> dict | None:
    if d is None:
        return None
    return {
        "id": d.id,
        "action": d.action,
        "actor": d.actor,
        "note": d.note,
        "diff": d.diff,
        "edited_output": d.edited_output,
        "auth_method": d.auth_method,
        "rule": d.rule,
        "delegation": d.delegation_id,
        "signing_key": d.signing_key_id,
        "at": d.created_at.isoformat(),
    }


def _release_dict(r: Release | None) -> dict | None:
    if r is None:
        return None
    return {
        "id": r.id,
        "destination": r.destination,
        "location": r.location,
        "sha256": r.sha256,
        "at": r.created_at.isoformat(),
        "recalled_at": r.recalled_at.isoformat() if r.recalled_at else None,
        "recalled_by": r.recalled_by,
        "recall_reason": r.recall_reason,
    }


def released(ws: Workspace, *, before: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest `limit` releases (before release `before`, for the page after), oldest of them first."""
    with transaction(ws.engine) as s:
        query = select(Release, Run).where(Release.run_id == Run.id).order_by(col(Release.id).desc()).limit(limit)
        if before is not None:
            query = query.where(col(Release.id) < before)
        return [_release_row(r, run) for r, run in reversed(s.exec(query).all())]


def _release_row(r: Release, run: Run) -> dict[str, Any]:
    return {**(_release_dict(r) or {}), "run_id": run.id, "item_id": r.item_id, "scenario": run.scenario_id}


# --- what one person may see ---------------------------------------------------------------------
def queue_for(
    ws: Workspace, p: Principal, scenario: str | None = None, *, after: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """A page of the pending items `p` may decide on (own, backed up, delegated, escalated to
    them), oldest first: the next `limit` after item `after`, each with the rule that lets them
    decide and who delegated it."""
    with transaction(ws.engine) as s:
        covering = [d.guardian for d in delegated_to(s, p.id)]
        found = inboxes.page(s, p.id, covering=covering, scenario=scenario, after=after, limit=limit)
        items = _items_by_id(s, [item_id for item_id, _, _ in found])
        run_ids = {item.run_id for item in items.values()}
        requesters = dict(s.exec(select(Run.id, Run.requester).where(col(Run.id).in_(run_ids))).all())
        held = {sc: bool(is_paused(s, sc)) for sc in {item.scenario_id for item in items.values()}}
        rows = []
        for item_id, rule, via in found:
            item = items[item_id]
            row = {**_item_summary(item), "requester": requesters[item.run_id], "rule": rule, "delegated_by": via}
            rows.append({**row, "held": held[item.scenario_id]})
        return rows


def waiting_for(ws: Workspace, p: Principal, scenario: str | None = None) -> tuple[int, list[str]]:
    """How many items wait for `p` (in `scenario`, if given), and the scenarios of all that wait
    for them (the inbox's filter)."""
    with transaction(ws.engine) as s:
        covering = [d.guardian for d in delegated_to(s, p.id)]
        return (
            inboxes.count(s, p.id, covering=covering, scenario=scenario),
            inboxes.scenarios(s, p.id, covering=covering),
        )


def _item_summary(item: WorkItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "run_id": item.run_id,
        "scenario": item.scenario_id,
        "revision": item.revision,
        "guardian": item.guardian,
        "backups": item.backups,
        "risk": item.risk,
        "status": item.status,
        "created_at": item.created_at.isoformat(),
        "findings": len(item.findings),
        "due_at": item.due_at.isoformat() if item.due_at else None,
        "escalation": item.escalation,
        "reminded": item.reminded_at is not None,
        "stage": item.stage,
    }


def runs_for(
    ws: Workspace, p: Principal, *, status: str | None = None, before: int | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """The runs `p` may see, newest first (before run `before`, for the page after)."""
    with transaction(ws.engine) as s:
        query = select(Run).order_by(col(Run.id).desc())
        if status:
            query = query.where(Run.status == status)
        if before is not None:
            query = query.where(col(Run.id) < before)
        if not reads_everything(p) and not p.has(Role.GUARDIAN):
            query = query.where(Run.requester == p.id)  # the common case, narrowed in SQL
        out = []
        for run in s.exec(query).yield_per(500):
            items = _items_of(s, run.key) if p.has(Role.GUARDIAN) else []
            if may_see_run(s, p, run, items):
                out.append(_run_summary(run))
                if len(out) >= limit:
                    break
    return out


def _items_of(s, run_id: int) -> list[WorkItem]:
    return list(s.exec(select(WorkItem).where(WorkItem.run_id == run_id).order_by(col(WorkItem.revision))).all())


def _run_summary(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "scenario": run.scenario_id,
        "status": run.status,
        "requester": run.requester,
        "parent_run": run.parent_run_id,
        "error": run.error,
        "attempts": run.attempts,
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
    }


def run_view(ws: Workspace, p: Principal, run_id: int) -> dict[str, Any]:
    """One run as `p` may see it: its status, inputs, the items `p` may see, its release."""
    with transaction(ws.engine) as s:
        run = s.get(Run, run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
        items = _items_of(s, run_id)
        check_run(s, p, run, items)
        release = s.exec(select(Release).where(Release.run_id == run_id)).first()
        children = list(s.exec(select(Run.id).where(Run.parent_run_id == run_id)).all())
        visible_items = [_item_summary(i) for i in items if may_see_item(s, p, i)]
    return {
        **_run_summary(run),
        "inputs": run.inputs,
        "items": visible_items,
        "release": _release_dict(release),
        "handed_off_to": children,
    }


def item_for(ws: Workspace, p: Principal, item_id: int) -> dict[str, Any]:
    """`item_view` for someone who may see the item, with the earlier rounds of its run and the
    delegations in force on its queue."""
    with transaction(ws.engine) as s:
        item = s.get(WorkItem, item_id)
        if item is None:
            raise NotFound(f"no work item {item_id}")
        check_item(s, p, item)
        rounds = list(
            s.exec(select(WorkItem).where(WorkItem.run_id == item.run_id, WorkItem.revision < item.revision)).all()
        )
        earlier = []
        for r in sorted(rounds, key=lambda r: r.revision):
            d = s.exec(select(Decision).where(Decision.item_id == r.id)).first()
            earlier.append({"id": r.id, "revision": r.revision, "draft": r.draft, "decision": _decision_dict(d)})
        delegations = [
            {"id": d.id, "delegate": d.delegate, "ends_at": d.ends_at.isoformat(), "reason": d.reason}
            for d in active_for(s, item.guardian)
        ]
        signed = {x.stage: x for x in s.exec(select(SignOff).where(SignOff.item_id == item_id)).all()}
        paused = is_paused(s, item.scenario_id)
        run = must_get(s, Run, item.run_id)
    view = item_view(ws, item_id)
    stages = []
    for n, st in enumerate(ws.stored_scenario(run.scenario_sha256).spec.stages()):
        done = signed.get(n)
        stages.append({
            "stage": n, "name": st.name, "guardian": st.guardian, "backups": list(st.backups),
            "state": "signed" if done else "waiting" if n == item.stage and item.status == "pending" else
                     "decided" if n == item.stage else "later",
            "by": done.actor if done else None, "at": done.created_at.isoformat() if done else None,
            "rule": done.rule if done else None, "note": done.note if done else None,
            "signing_key": done.signing_key_id if done else None,
        })  # fmt: skip
    deadline = {
        "due_at": item.due_at.isoformat() if item.due_at else None,
        "reminded_at": item.reminded_at.isoformat() if item.reminded_at else None,
        "escalation": item.escalation,
        "escalated_to": item.escalated_to,
    }
    held = {"by": paused.changed_by, "reason": paused.paused_reason} if paused else None
    return {
        **view,
        "earlier": earlier,
        "delegations": delegations,
        "stages": stages,
        "deadline": deadline,
        "held": held,
    }


def released_for(ws: Workspace, p: Principal, *, before: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest `limit` releases `p` may see (before release `before`), newest first: read a
    batch at a time until the page is full, narrowed in SQL to their own runs when that is all
    they may see."""
    with transaction(ws.engine) as s:
        query = select(Release, Run).where(Release.run_id == Run.id).order_by(col(Release.id).desc())
        if before is not None:
            query = query.where(col(Release.id) < before)
        if not reads_everything(p) and not p.has(Role.GUARDIAN):
            query = query.where(Run.requester == p.id)
        out = []
        for r, run in s.exec(query).yield_per(500):
            if reads_everything(p) or may_see_run(s, p, run, _items_of(s, run.key)):
                out.append(_release_row(r, run))
                if len(out) >= limit:
                    break
        return out


def released_text(ws: Workspace, p: Principal, release_id: int) -> tuple[Release, str]:
    """The released output exactly as released: the approved text with its labels, rebuilt from the
    decision record and the label the trail recorded (not read from the file)."""
    from .labels import released_files  # the release stack (cryptography): not for every listing
    from .release import released_content

    with transaction(ws.engine) as s:
        release = s.get(Release, release_id)
        if release is None:
            raise NotFound(f"no release {release_id}")
        run = must_get(s, Run, release.run_id)
        check_run(s, p, run, _items_of(s, run.key))
        if run.cleared_at is not None:
            raise NotFound(f"release {release_id}'s text was cleared by retention on {run.cleared_at:%Y-%m-%d}; "
                           "its recipient holds the file, the trail its hash")  # fmt: skip
        item = must_get(s, WorkItem, release.item_id)
        decision = s.exec(select(Decision).where(Decision.item_id == item.id)).first()
        if decision is None:
            raise NotFound(f"release {release_id} has no decision on record")
        return release, released_files(s, release, released_content(item, decision)).text


def search_items(
    ws: Workspace,
    *,
    scenario: str | None = None,
    guardian: str | None = None,
    requester: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Work items matching every given filter, newest first (the auditor's search)."""
    with transaction(ws.engine) as s:
        query = select(WorkItem, Run).where(WorkItem.run_id == Run.id).order_by(col(WorkItem.id).desc()).limit(limit)
        if scenario:
            query = query.where(WorkItem.scenario_id == scenario)
        if guardian:
            query = query.where(WorkItem.guardian == guardian)
        if requester:
            query = query.where(Run.requester == requester)
        if status:
            query = query.where(WorkItem.status == status)
        if since:
            query = query.where(col(WorkItem.created_at) >= since)
        if until:
            query = query.where(col(WorkItem.created_at) <= until)
        rows = s.exec(query).all()
        decided = {
            d.item_id: d
            for d in s.exec(select(Decision).where(col(Decision.item_id).in_([i.id for i, _ in rows]))).all()
        }
        return [
            {
                **_item_summary(item),
                "requester": run.requester,
                "decided_by": decided[item.id].actor if item.id in decided else None,
                "decision": decided[item.id].action if item.id in decided else None,
            }
            for item, run in rows
        ]


def trace_for(ws: Workspace, p: Principal, item_id: int) -> dict[str, Any]:
    """`trace` as `p` may see it: the item must be theirs to see, and along the hand-off chain they
    see only the events of runs and items they may see (another queue's reasons stay there)."""
    item_for(ws, p, item_id)  # refused unless `p` may see this item
    full = trace(ws, item_id)
    if reads_everything(p):
        return full
    with transaction(ws.engine) as s:
        runs = {r.key: r for r in s.exec(select(Run).where(col(Run.id).in_(full["chain"]))).all()}
        items = {r: _items_of(s, r) for r in runs}
        seen_items = {i.key for its in items.values() for i in its if may_see_item(s, p, i)}
        seen_runs = {r for r, run in runs.items() if may_see_run(s, p, run, items[r])}
    events = [
        e
        for e in full["events"]
        if (e["item_id"] in seen_items if e["item_id"] is not None else e["run_id"] in seen_runs)
    ]
    return {**full, "events": events}
