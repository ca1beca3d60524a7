"""Reading the queues: inboxes, one work item with everything a guardian needs, traces."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from dew.guardians.errors import NotFound

from . import audit
from .db import must_get, transaction
from .models import Decision, Release, Run, ScenarioVersion, WorkItem

if TYPE_CHECKING:
    from .workspace import Workspace


def inbox(ws: Workspace, actor: str | None, *, include_decided: bool = False) -> list[WorkItem]:
    """Items waiting for `actor` (as guardian or backup); every guardian's when actor is None."""
    with transaction(ws.engine) as s:
        query = select(WorkItem).order_by(col(WorkItem.id))
        if not include_decided:
            query = query.where(WorkItem.status == "pending")
        items = list(s.exec(query).all())
    if actor is not None:
        # Backups live in a JSON list; filtering in Python keeps SQLite and PostgreSQL alike.
        items = [i for i in items if i.guardian == actor or actor in (i.backups or [])]
    return items


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
        },
        "provenance": item.provenance,
        "decision": _decision_dict(decision),
        "release": _release_dict(release),
    }


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


def audit_log(ws: Workspace, limit: int | None = None) -> list[dict[str, Any]]:
    with transaction(ws.engine) as s:
        rows = [event_dict(e) for e in audit.events(s)]
    return rows[-limit:] if limit else rows


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
    }


def released(ws: Workspace) -> list[dict[str, Any]]:
    with transaction(ws.engine) as s:
        rows = s.exec(select(Release, Run).where(Release.run_id == Run.id).order_by(col(Release.id))).all()
        return [
            {**(_release_dict(r) or {}), "run_id": run.id, "item_id": r.item_id, "scenario": run.scenario_id}
            for r, run in rows
        ]
