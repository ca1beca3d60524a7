"""Retention: texts that may hold personal data are kept no longer than the workspace's period,
and the proof of what happened is kept for good.

Logs of AI-generated content are kept at least six months (the labelling measures and GB
45438-2025; EU AI Act art. 26), and personal information no longer than its purpose needs (PIPL
art. 19). So the trail (who, when, why, and the SHA-256 of every input, draft and edit) is never
touched, and `dew retention apply` clears the texts of runs that ended longer ago than the period:
the run's inputs and error detail, its drafts and the arguments its tools were called with, the
edits and diffs of its decisions, and its LangGraph checkpoints. `dew audit verify` still
verifies, since every hash stays; each clearing is an audit event naming the runs it cleared, and
verify reports a run marked cleared that no such event names.

Only finished runs (released or rejected) are cleared; a failed or waiting run is unfinished
work. Released files belong to their recipients and stay in the outbox. Decision notes stay: the
reason for a decision is the accountability record itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from dew.agents.errors import InputInvalid

from . import audit
from .db import transaction
from .identity import person_id
from .models import Decision, Run, RunStatus, WorkItem, WorkspaceSetting, utcnow
from .users import require_admin

if TYPE_CHECKING:
    from .workspace import Workspace

KEY = "retention_days"
MIN_DAYS = 183  # six months: the least any of the rules above allows
FINISHED = (RunStatus.RELEASED, RunStatus.REJECTED)
BATCH = 500  # runs per transaction (and per audit event)


def period(session: Session) -> int | None:
    """The retention period in days, or None: nothing is cleared until an admin sets one."""
    row = session.get(WorkspaceSetting, KEY)
    return int(row.value) if row is not None else None


def set_period(ws: Workspace, days: int, *, actor: str) -> int:
    actor = person_id(actor, what="who sets the retention period")
    if days < MIN_DAYS:
        raise InputInvalid(f"the retention period is at least {MIN_DAYS} days (six months: logs of AI-generated "
                           f"content are kept that long); not {days}")  # fmt: skip
    with transaction(ws.engine) as s:
        require_admin(s, actor, "set the retention period")
        before = period(s)
        s.merge(WorkspaceSetting(key=KEY, value=days, changed_by=actor, changed_at=utcnow()))
        audit.emit(s, audit.RetentionSet(days=days, before=before), actor=actor)
    return days


@dataclass
class Cleared:
    days: int
    cutoff: datetime
    runs: list[int] = field(default_factory=list)
    items: int = 0
    decisions: int = 0
    dry_run: bool = False


def due(session: Session, cutoff: datetime, limit: int | None = None) -> list[int]:
    """Finished runs last changed before `cutoff` whose texts are still kept, oldest first."""
    query = (
        select(Run.id)
        .where(col(Run.status).in_(FINISHED), col(Run.cleared_at).is_(None), col(Run.updated_at) < cutoff)
        .order_by(col(Run.id))
    )
    if limit is not None:
        query = query.limit(limit)
    return [i for i in session.exec(query).all() if i is not None]


def apply(ws: Workspace, *, actor: str, dry_run: bool = False, now: datetime | None = None) -> Cleared:
    """Clear the texts of every finished run older than the period, a batch per transaction."""
    actor = person_id(actor, what="who applies retention")
    with transaction(ws.engine) as s:
        require_admin(s, actor, "apply retention")
        days = period(s)
    if days is None:
        raise InputInvalid("no retention period is set: an admin sets one first (dew retention set DAYS)")
    cutoff = (now or utcnow()) - timedelta(days=days)
    report = Cleared(days=days, cutoff=cutoff, dry_run=dry_run)
    if dry_run:
        with transaction(ws.engine) as s:
            report.runs = due(s, cutoff)
        return report
    while True:
        with transaction(ws.engine) as s:
            batch = due(s, cutoff, BATCH)
        if not batch:
            return report
        _drop_checkpoints(ws, batch)  # first: a crash before the rows are cleared only loses what goes anyway
        with transaction(ws.engine) as s:
            items, decisions = _clear(s, batch)
            audit.emit(s, audit.RetentionCleared(days=days, cutoff=cutoff.isoformat(), runs=batch, items=items,
                                                 decisions=decisions), actor=actor)  # fmt: skip
        report.runs += batch
        report.items += items
        report.decisions += decisions


def _clear(s: Session, run_ids: list[int]) -> tuple[int, int]:
    when = utcnow()
    for run in s.exec(select(Run).where(col(Run.id).in_(run_ids)).with_for_update()).all():
        run.inputs, run.error_detail, run.cleared_at = {}, None, when
        s.add(run)
    items = s.exec(select(WorkItem).where(col(WorkItem.run_id).in_(run_ids))).all()
    for item in items:
        item.draft = ""
        item.provenance = [_without_texts(p) for p in item.provenance]
        s.add(item)
    decisions = s.exec(select(Decision).where(col(Decision.run_id).in_(run_ids))).all()
    for d in decisions:
        d.edited_output, d.diff = None, None
        s.add(d)
    s.flush()
    return len(items), len(decisions)


def _without_texts(record: dict) -> dict:
    """A model call's provenance without what the model saw and the arguments its tools were
    called with (hashes stay)."""
    record = {k: v for k, v in record.items() if k != "seen"}
    if not record.get("tool_calls"):
        return record
    calls = [{k: v for k, v in c.items() if k != "args"} for c in record["tool_calls"]]
    return {**record, "tool_calls": calls}


def _drop_checkpoints(ws: Workspace, run_ids: list[int]) -> None:
    from dew.agents.runtime import thread_id

    saver = ws.runtime.checkpointer
    for run_id in run_ids:
        saver.delete_thread(thread_id(run_id))
