"""The rows that matter, checked against the trail that recorded them.

The hash chain proves the audit events were not changed; it says nothing of the mutable rows
beside it. Someone with the database could turn a rejection into an approval, swap a draft, change
a release's hash or a run's requester, and the chain would still verify. Every such row was
recorded by an event at the time, with the hashes of its content; this module compares each row
with its event and names every disagreement (`dew audit verify` reports them, exit 5):

- a run: its requester, scenario version and inputs (by hash) against `run.requested`;
- a work item: its draft (by hash) against `run.drafted`;
- a decision: its action, actor, note and edited output (by hash) against `decision.*`, and a
  decision event whose row is gone;
- a release: its location and hash against `output.released`, and a release event whose row is gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from . import audit
from .models import Action, AuditEvent, Decision, Release, Run, SignOff, WorkItem

DECISION_KINDS = {f"decision.{a.item_status}": a.value for a in Action}


@dataclass(frozen=True)
class Mismatch:
    table: str  # runs | work_items | decisions | releases
    key: int | None
    seq: int | None  # the event it disagrees with, when there is one
    detail: str

    def __str__(self) -> str:
        where = f"{self.table} {self.key}" if self.key is not None else self.table
        against = f" (audit event {self.seq})" if self.seq is not None else ""
        return f"{where}{against}: {self.detail}"


def check_rows(session: Session) -> list[Mismatch]:
    requested: dict[int, AuditEvent] = {}
    drafted: dict[int, AuditEvent] = {}
    decided: dict[int, AuditEvent] = {}
    released: dict[int, AuditEvent] = {}
    signed: dict[tuple[int, int], AuditEvent] = {}
    kinds = ["run.requested", "run.drafted", "output.released", "decision.signed_off", *DECISION_KINDS]
    for ev in audit.events(session, kinds=kinds):
        if ev.kind == "run.requested" and ev.run_id is not None:
            requested[ev.run_id] = ev
        elif ev.kind == "run.drafted" and ev.item_id is not None:
            drafted[ev.item_id] = ev
        elif ev.kind in DECISION_KINDS and ev.item_id is not None:
            decided[ev.item_id] = ev
        elif ev.kind == "output.released" and ev.run_id is not None:
            released[ev.run_id] = ev
        elif ev.kind == "decision.signed_off" and ev.item_id is not None:
            signed[(ev.item_id, _data(ev).get("stage", -1))] = ev
    found: list[Mismatch] = []
    found += _runs(session, requested)
    found += _items(session, drafted)
    found += _decisions(session, decided)
    found += _releases(session, released)
    found += _signoffs(session, signed)
    return found


def _data(ev: AuditEvent) -> dict[str, Any]:
    return json.loads(ev.data)


def _runs(session: Session, requested: dict[int, AuditEvent]) -> list[Mismatch]:
    out = []
    for run in _rows(session, Run):
        ev = requested.get(run.key)
        if ev is None:
            out.append(Mismatch("runs", run.id, None, "no run.requested event records this run"))
            continue
        d = _data(ev)
        if run.requester != ev.actor:
            out.append(Mismatch("runs", run.id, ev.seq, f"requester is '{run.requester}', the trail says '{ev.actor}'"))
        if run.scenario_sha256 != d.get("scenario_sha256"):
            out.append(Mismatch("runs", run.id, ev.seq, "scenario version differs from the one recorded"))
        if audit.sha256_text(audit.canonical(run.inputs)) != d.get("inputs_sha256"):
            out.append(Mismatch("runs", run.id, ev.seq, "inputs differ from the ones recorded (by hash)"))
    return out


def _items(session: Session, drafted: dict[int, AuditEvent]) -> list[Mismatch]:
    out = []
    for item in _rows(session, WorkItem):
        ev = drafted.get(item.key)
        if ev is None:
            out.append(Mismatch("work_items", item.id, None, "no run.drafted event records this draft"))
        elif audit.sha256_text(item.draft) != _data(ev).get("draft_sha256"):
            out.append(Mismatch("work_items", item.id, ev.seq, "the draft is not the one queued (by hash)"))
    return out


def _decisions(session: Session, decided: dict[int, AuditEvent]) -> list[Mismatch]:
    out = []
    seen: set[int] = set()
    for dec in _rows(session, Decision):
        seen.add(dec.item_id)
        ev = decided.get(dec.item_id)
        if ev is None:
            out.append(
                Mismatch("decisions", dec.id, None, f"no decision event records a decision on item {dec.item_id}")
            )
            continue
        d = _data(ev)
        if dec.action != DECISION_KINDS[ev.kind]:
            out.append(Mismatch("decisions", dec.id, ev.seq, f"action is '{dec.action}', the trail says "
                                f"'{DECISION_KINDS[ev.kind]}'"))  # fmt: skip
        if dec.actor != ev.actor:
            out.append(Mismatch("decisions", dec.id, ev.seq, f"decided by '{dec.actor}', the trail says '{ev.actor}'"))
        if dec.note != d.get("note"):
            out.append(
                Mismatch("decisions", dec.id, ev.seq, "the note (reason, feedback) differs from the one recorded")
            )
        # Events before people signed in (migration 0004) say nothing of how; newer ones must agree.
        for field in ("auth_method", "rule"):
            if field in d and getattr(dec, field) != d[field]:
                out.append(Mismatch("decisions", dec.id, ev.seq, f"{field} is '{getattr(dec, field)}', the trail "
                                    f"says '{d[field]}'"))  # fmt: skip
        edited = audit.sha256_text(dec.edited_output) if dec.edited_output is not None else None
        if edited != d.get("edited_sha256"):
            out.append(
                Mismatch("decisions", dec.id, ev.seq, "the edited output differs from the one recorded (by hash)")
            )
    for item_id, ev in decided.items():
        if item_id not in seen:
            out.append(
                Mismatch("decisions", None, ev.seq, f"the decision on item {item_id} is recorded but its row is gone")
            )
    return out


def _releases(session: Session, released: dict[int, AuditEvent]) -> list[Mismatch]:
    out = []
    seen: set[int] = set()
    for rel in _rows(session, Release):
        seen.add(rel.run_id)
        ev = released.get(rel.run_id)
        if ev is None:
            out.append(
                Mismatch("releases", rel.id, None, f"no output.released event records the release of run {rel.run_id}")
            )
            continue
        d = _data(ev)
        if rel.sha256 != d.get("sha256"):
            out.append(Mismatch("releases", rel.id, ev.seq, "the released hash differs from the one recorded"))
        if rel.location != d.get("location"):
            out.append(
                Mismatch("releases", rel.id, ev.seq, f"location is {rel.location}, the trail says {d.get('location')}")
            )
    for run_id, ev in released.items():
        if run_id not in seen:
            out.append(
                Mismatch("releases", None, ev.seq, f"the release of run {run_id} is recorded but its row is gone")
            )
    return out


def _rows(session: Session, model: Any, batch: int = 1000) -> Any:
    """Every row of a table, in id order, a batch at a time."""
    last = 0
    while True:
        rows = session.exec(select(model).where(model.id > last).order_by(col(model.id)).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id


def _signoffs(session: Session, signed: dict[tuple[int, int], AuditEvent]) -> list[Mismatch]:
    out = []
    seen: set[tuple[int, int]] = set()
    for row in _rows(session, SignOff):
        key = (row.item_id, row.stage)
        seen.add(key)
        ev = signed.get(key)
        if ev is None:
            out.append(Mismatch("signoffs", row.id, None, f"no decision.signed_off event records stage {row.stage}"))
            continue
        d = _data(ev)
        if row.actor != ev.actor:
            out.append(Mismatch("signoffs", row.id, ev.seq, f"signed by '{row.actor}', the trail says '{ev.actor}'"))
        if (row.auth_method, row.rule, row.note) != (d.get("auth_method"), d.get("rule"), d.get("note")):
            out.append(Mismatch("signoffs", row.id, ev.seq, "how or why it was signed differs from the trail"))
    for (item_id, stage), ev in signed.items():
        if (item_id, stage) not in seen:
            out.append(
                Mismatch(
                    "signoffs", None, ev.seq, f"sign-off {stage} of item {item_id} is recorded but its row is gone"
                )
            )
    return out
