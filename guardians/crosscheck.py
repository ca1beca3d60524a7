"""The rows that matter, checked against the trail that recorded them.

The hash chain proves the audit events were not changed; it says nothing of the mutable rows
beside it. Someone with the database could turn a rejection into an approval, swap a draft, change
a release's hash or a run's requester, and the chain would still verify. Every such row was
recorded by an event at the time, with the hashes of its content; this module compares each row
with its event and names every disagreement (`dew audit verify` reports them, exit 5):

- a run: its requester, scenario version and inputs (by hash) against `run.requested`;
- a work item: its draft (by hash) against `run.drafted`;
- a decision or sign-off: its action, actor, note, edited output (by hash) and signature against
  `decision.*`, and a decision event whose row is gone;
- a run retention cleared (its inputs, drafts and edits empty): named by a `retention.cleared`
  event, and marked so, both ways;
- a release: its location and hash against `output.released`, and a release event whose row is gone;
  and, for a labelled release, that the file it recorded is the approved text with the signed label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from sqlmodel import Session, col, select

from . import audit, labels
from .models import Action, AuditEvent, Decision, Release, Run, SignOff, WorkItem
from .release import released_content

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
    cleared: set[int] = set()  # runs whose texts retention cleared: their hashes cannot be recomputed
    kinds = ["run.requested", "run.drafted", "output.released", "decision.signed_off", "retention.cleared",
             *DECISION_KINDS]  # fmt: skip
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
        elif ev.kind == "retention.cleared":
            cleared.update(_data(ev).get("runs", []))
    found: list[Mismatch] = []
    found += _runs(session, requested, cleared)
    found += _items(session, drafted, cleared)
    found += _decisions(session, decided, cleared)
    found += _releases(session, released)
    found += _signoffs(session, signed)
    return found


def _data(ev: AuditEvent) -> dict[str, Any]:
    return json.loads(ev.data)


def _runs(session: Session, requested: dict[int, AuditEvent], cleared: set[int]) -> list[Mismatch]:
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
        if run.cleared_at is not None and run.key not in cleared:
            out.append(
                Mismatch("runs", run.id, ev.seq, "marked cleared by retention, but no retention event clears it")
            )
        elif run.key in cleared and run.cleared_at is None:
            out.append(Mismatch("runs", run.id, ev.seq, "a retention event cleared it, but its row is not marked so"))
        if run.key in cleared and not run.inputs:
            pass  # cleared: the trail keeps the inputs' hash, the row no longer the inputs
        elif audit.sha256_text(audit.canonical(run.inputs)) != d.get("inputs_sha256"):
            out.append(Mismatch("runs", run.id, ev.seq, "inputs differ from the ones recorded (by hash)"))
    return out


def _items(session: Session, drafted: dict[int, AuditEvent], cleared: set[int]) -> list[Mismatch]:
    out = []
    for item in _rows(session, WorkItem):
        ev = drafted.get(item.key)
        if ev is None:
            out.append(Mismatch("work_items", item.id, None, "no run.drafted event records this draft"))
        elif item.run_id in cleared and item.draft == "":
            continue
        elif audit.sha256_text(item.draft) != _data(ev).get("draft_sha256"):
            out.append(Mismatch("work_items", item.id, ev.seq, "the draft is not the one queued (by hash)"))
    return out


def _decisions(session: Session, decided: dict[int, AuditEvent], cleared: set[int]) -> list[Mismatch]:
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
        if _signed(dec) != d.get("signed"):
            out.append(Mismatch("decisions", dec.id, ev.seq, "its signature differs from the one recorded"))
        edited = audit.sha256_text(dec.edited_output) if dec.edited_output is not None else None
        if dec.run_id in cleared and edited is None:
            pass  # cleared by retention
        elif edited != d.get("edited_sha256"):
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
    for batch in _batches(session, Release):
        out += _releases_batch(session, batch, released, seen)
    for run_id, ev in released.items():
        if run_id not in seen:
            out.append(
                Mismatch("releases", None, ev.seq, f"the release of run {run_id} is recorded but its row is gone")
            )
    return out


def _releases_batch(
    session: Session, batch: list[Release], released: dict[int, AuditEvent], seen: set[int]
) -> list[Mismatch]:
    # What the label checks need, for the whole batch in three queries rather than three per release.
    run_ids, item_ids = [r.run_id for r in batch], [r.item_id for r in batch]
    cleared = set(session.exec(select(Run.id).where(col(Run.id).in_(run_ids), col(Run.cleared_at).is_not(None))).all())
    items = {i.id: i for i in session.exec(select(WorkItem).where(col(WorkItem.id).in_(item_ids))).all()}
    decisions = {d.item_id: d for d in session.exec(select(Decision).where(col(Decision.item_id).in_(item_ids))).all()}
    out = []
    for rel in batch:
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
        if d.get("label") is not None:  # releases made before labels record none
            found = _labelled(d, rel.run_id in cleared, items.get(rel.item_id), decisions.get(rel.item_id))
            out += [Mismatch("releases", rel.id, ev.seq, m) for m in found]
    return out


def _signed(row: Decision | SignOff) -> dict[str, Any] | None:
    """A row's signature in the form its event records it (signing.SignedStatement.to_record)."""
    if row.signature is None and row.signed_statement is None and row.signing_key_id is None:
        return None
    return {"key": row.signing_key_id, "statement": row.signed_statement, "signature": row.signature}


def _labelled(d: dict[str, Any], cleared: bool, item: WorkItem | None, decision: Decision | None) -> list[str]:
    """The file a labelled release recorded must be the approved text with the signed label its
    event holds: what `dew released verify` shows a holder of the file rests on this. (An approved
    text that differs from the one released is named already, by its draft or decision.)"""
    label = d["label"]
    try:
        labels.verify_signature(label)
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return ["the label recorded with the release is not validly signed"]
    if label["file"]["approved_sha256"] != d.get("content_sha256"):
        return ["the label recorded with the release is for another text"]
    if cleared:
        return []  # retention cleared the approved text; the label and hashes above still stand
    if item is None or decision is None or not Action(decision.action).releases:
        return []  # named by the decision checks
    content = released_content(item, decision)
    if audit.sha256_text(content) == d.get("content_sha256") and labels.compose(content, label).sha256 != d["sha256"]:
        return ["the released file is not the approved text with the label recorded for it"]
    return []


def _rows(session: Session, model: Any, batch: int = 1000) -> Any:
    """Every row of a table, in id order, a batch at a time."""
    for rows in _batches(session, model, batch):
        yield from rows


def _batches(session: Session, model: Any, batch: int = 1000) -> Any:
    last = 0
    while True:
        rows = list(session.exec(select(model).where(model.id > last).order_by(col(model.id)).limit(batch)).all())
        if not rows:
            return
        yield rows
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
        if _signed(row) != d.get("signed"):
            out.append(Mismatch("signoffs", row.id, ev.seq, "its signature differs from the one recorded"))
    for (item_id, stage), ev in signed.items():
        if (item_id, stage) not in seen:
            out.append(
                Mismatch(
                    "signoffs", None, ev.seq, f"sign-off {stage} of item {item_id} is recorded but its row is gone"
                )
            )
    return out
