"""Deadlines: reminders before an item lapses, escalation after. Nothing is ever approved by timeout.

A scenario's `deadline` gives each sign-off a time to be decided by (`work_items.due_at`). The
sweep, run by the server on a timer and by hand with `dew escalate`, moves each pending item
along one way only:

    reminder (before the deadline) → escalated to the backups (at the deadline)
      → escalated to the person an admin named for the scenario (a second period later)

Each step is an audit event and a notification; the named person may then decide (rule
`escalation`). Items of a paused scenario are held and not swept. An item is locked while it is
moved, so two sweepers never send the same reminder twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlmodel import col, select

from . import audit, inboxes, notify
from .brake import is_paused
from .db import locked, transaction
from .models import ItemStatus, Run, ScenarioState, WorkItem, utcnow
from .runs import deciders

if TYPE_CHECKING:
    from .workspace import Workspace


@dataclass
class SweepReport:
    reminded: list[int] = field(default_factory=list)
    escalated: list[tuple[int, int]] = field(default_factory=list)  # (item, level)


def sweep(ws: Workspace, *, now: datetime | None = None) -> SweepReport:
    now = now or utcnow()
    report = SweepReport()
    with transaction(ws.engine) as s:
        due = s.exec(
            select(WorkItem.id, Run.scenario_sha256)
            .where(WorkItem.run_id == Run.id, WorkItem.status == ItemStatus.PENDING, col(WorkItem.due_at).is_not(None))
            .order_by(col(WorkItem.due_at))
        ).all()
    for item_id, sha in due:
        spec = ws.stored_scenario(sha).spec
        if spec.wait is None or spec.remind_at is None or item_id is None:
            continue
        with transaction(ws.engine) as s:
            item = locked(s, WorkItem, item_id)
            if item.status != ItemStatus.PENDING or item.due_at is None or is_paused(s, item.scenario_id):
                continue
            due_at = item.due_at
            if item.escalation == 0 and item.reminded_at is None and due_at - spec.remind_at <= now < due_at:
                item.reminded_at = now
                s.add(item)
                audit.emit(s, audit.ItemReminded(guardian=item.guardian, due_at=due_at.isoformat()), actor="dew",
                           run_id=item.run_id, item_id=item.id)  # fmt: skip
                notify.enqueue(s, "item.reminder", item, deciders(s, item))
                report.reminded.append(item.key)
                continue
            if item.escalation == 0 and now >= due_at and item.backups:
                _escalate(s, item, 1, list(item.backups), due_at)
                report.escalated.append((item.key, 1))
                continue
            # With backups, the named person is asked a period after them; without, at the deadline.
            if item.escalation < 2 and now >= (due_at + spec.wait if item.backups else due_at):
                state = s.get(ScenarioState, item.scenario_id)
                contact = state.escalate_to if state else None
                to = [contact] if contact and contact not in (item.guardian, *item.backups) else []
                item.escalated_to = to
                _escalate(s, item, 2, to, due_at)
                report.escalated.append((item.key, 2))
    return report


def _escalate(s, item: WorkItem, level: int, to: list[str], due_at: datetime) -> None:
    item.escalation = level
    s.add(item)
    s.flush()
    inboxes.record(s, item)
    audit.emit(s, audit.ItemEscalated(level=level, to=to, due_at=due_at.isoformat()), actor="dew",
               run_id=item.run_id, item_id=item.id)  # fmt: skip
    notify.enqueue(s, "item.escalated", item, list(dict.fromkeys([item.guardian, *to])))
