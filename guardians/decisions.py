"""Decisions on work items, and who may make them.

Only the item's guardian, one of its listed backups, or the guardian's active delegate may decide;
nobody decides on a run they requested, anywhere along its hand-off chain; an item is decided
once; in a workspace with users, only a signed-in user with the guardian role decides. The checks run inside the same transaction that records
the decision, on a locked row, and a unique constraint on `decisions.item_id` backs them up, so
two decisions racing cannot both land. Recording a decision is all this module does; resuming
the run and releasing what was approved is `flow.py`'s.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from dew.guardians.errors import (
    AlreadyDecided,
    DecisionInvalid,
    IdentityRequired,
    InvalidState,
    NotAuthorized,
    NotFound,
)

from . import audit, inboxes, notify, signing
from .access import chain_requesters
from .brake import refuse_if_paused
from .db import locked, must_get, transaction
from .delegation import active_delegation
from .identity import person_id, same_person
from .models import (
    Action,
    AuthMethod,
    DecideRule,
    Decision,
    Delegation,
    Guardian,
    ItemStatus,
    Role,
    Run,
    SignOff,
    WorkItem,
    utcnow,
)
from .signing import SignedStatement
from .users import require_signed_in

if TYPE_CHECKING:
    from .workspace import Workspace


@dataclass
class Recorded:
    """What a decision recorded: the item's final Decision, or (at a stage before the last) a SignOff."""

    item: WorkItem
    decision: Decision | None = None
    signoff: SignOff | None = None


def record_decision(
    ws: Workspace,
    item_id: int,
    *,
    actor: str,
    action: str,
    note: str | None = None,
    edited: str | None = None,
    method: str = AuthMethod.DECLARED,
    signed: SignedStatement | None = None,
) -> Recorded:
    """Authorize and record one decision with its audit event; refusals are audited too.

    At a sign-off stage before the last, an approval is recorded as a SignOff and the item moves
    on to the next stage's people; a rejection or a revision at any stage ends the item.
    `method` says how the actor proved who they are (an AuthMethod); the edges pass it. `signed` is
    the decider's signature over it (signing.py), required where the scenario says so."""
    actor = person_id(actor, what="who decides")  # before anything: a malformed id is never recorded
    if action not in tuple(Action):
        raise DecisionInvalid(f"unknown decision '{action}' (one of: {', '.join(Action)})")
    note = signing.normal_note(note)
    if action == "reject" and not note:
        raise DecisionInvalid("a rejection needs a reason (--reason)")
    if action == "revise" and not note:
        raise DecisionInvalid("a revision needs feedback for the agent (--feedback)")

    with transaction(ws.engine) as s:
        item = s.get(WorkItem, item_id)
        if item is None:
            raise NotFound(f"no work item {item_id}")
        run = must_get(s, Run, item.run_id)
    spec = ws.stored_scenario(run.scenario_sha256).spec
    stages = spec.stages()
    diff = None
    if action == "edit":
        if item.stage < len(stages) - 1:
            raise DecisionInvalid(
                f"work item {item_id} is at sign-off {item.stage + 1} of {len(stages)} ({stages[item.stage].name}); "
                "an edit is made at the last sign-off: approve, reject or send back here"
            )
        diff = _check_edit(ws, item, run, edited)
    from dew.agents.spec import LLMStep

    if action == "revise" and not isinstance(spec.step(spec.revise_step), LLMStep):
        raise DecisionInvalid(f"scenario '{spec.id}' has no agent to act on feedback; edit or reject instead")

    try:
        with transaction(ws.engine) as s:
            # The run first, then the item: release locks the run and then, through the foreign
            # key of its new row, touches the item; locking in the other order here deadlocked
            # racing deciders on PostgreSQL (found by the 20-way race in tests/storage).
            run = locked(s, Run, run.key)
            item = locked(s, WorkItem, item_id)
            rule, delegation = authorize(s, item, run, actor, method)
            expected = signing.expected_fields(item_id=item.key, stage=item.stage, action=action, signer=actor,
                                               draft=item.draft, note=note, edited=edited)  # fmt: skip
            key = signing.check(s, signed, required=spec.signing_required, scenario=spec.id, expected=expected)
            proof = signed if key is not None else None
            if action == Action.APPROVE and item.stage < len(stages) - 1:
                row = _sign_off(s, item, run, stages, actor, method, rule, note, spec, proof)
                return Recorded(item=item, signoff=row)
            decision = Decision(
                item_id=item.key,
                run_id=run.key,
                action=action,
                actor=actor,
                note=note,
                edited_output=edited if action == "edit" else None,
                diff=diff,
                auth_method=method,
                rule=rule,
                delegation_id=delegation.id if delegation else None,
                signing_key_id=proof.key_id if proof else None,
                signed_statement=proof.statement if proof else None,
                signature=proof.signature if proof else None,
            )
            s.add(decision)
            item.status, item.decided_at = Action(action).item_status, utcnow()
            run.status, run.updated_at = Action(action).run_status, utcnow()
            s.add(item)
            s.add(run)
            s.flush()
            inboxes.record(s, item)
            audit.emit(
                s,
                audit.DecisionMade(
                    action=action,
                    guardian=item.guardian,
                    as_backup=rule == DecideRule.BACKUP,
                    note=note,
                    draft_sha256=audit.sha256_text(item.draft),
                    edited_sha256=audit.sha256_text(edited) if action == "edit" and edited is not None else None,
                    rule=rule,
                    auth_method=method,
                    delegation=delegation.id if delegation else None,
                    signed=proof.to_record() if proof else None,
                ),
                actor=actor,
                run_id=run.id,
                item_id=item.id,
            )
    except IntegrityError:
        _record_refusal(ws, item_id, actor, action, "already decided")
        raise AlreadyDecided(f"work item {item_id} has already been decided") from None
    except (NotAuthorized, AlreadyDecided, IdentityRequired, InvalidState) as e:
        _record_refusal(ws, item_id, actor, action, e.message)
        raise
    return Recorded(item=item, decision=decision)


def _sign_off(s: Session, item: WorkItem, run: Run, stages: list, actor: str, method: str, rule: str,
              note: str | None, spec, proof: SignedStatement | None) -> SignOff:  # fmt: skip
    """Record an approval at a stage before the last and hand the item to the next stage's people."""
    stage = stages[item.stage]
    row = SignOff(item_id=item.key, stage=item.stage, stage_name=stage.name, actor=actor, auth_method=method, rule=rule,
                  note=note, signing_key_id=proof.key_id if proof else None,
                  signed_statement=proof.statement if proof else None,
                  signature=proof.signature if proof else None)  # fmt: skip
    s.add(row)
    nxt = stages[item.stage + 1]
    item.stage += 1
    item.guardian, item.backups = nxt.guardian, list(nxt.backups)
    item.reminded_at, item.escalation, item.escalated_to = None, 0, []
    item.due_at = utcnow() + spec.wait if spec.wait else None
    s.add(item)
    s.flush()
    inboxes.record(s, item)
    audit.emit(
        s,
        audit.SignedOff(
            stage=row.stage, stage_name=stage.name, rule=rule, auth_method=method, next_stage=nxt.name,
            next_guardian=nxt.guardian, note=note, draft_sha256=audit.sha256_text(item.draft),
            signed=proof.to_record() if proof else None,
        ),
        actor=actor,
        run_id=run.id,
        item_id=item.id,
    )  # fmt: skip
    notify.enqueue(s, "item.queued", item, [nxt.guardian, *nxt.backups])
    return row


def authorize(
    session: Session, item: WorkItem, run: Run, actor: str, method: str = AuthMethod.DECLARED
) -> tuple[DecideRule, Delegation | None]:
    """Why `actor` may decide on `item` now (owner, backup or delegate), or an error saying why not."""
    if item.status != ItemStatus.PENDING:
        raise AlreadyDecided(f"work item {item.id} was already {item.status}; a decided item cannot be decided again")
    refuse_if_paused(session, item.scenario_id, f"decide on work item {item.id}")
    if method == AuthMethod.ISSUED_TOKEN:
        raise NotAuthorized(
            f"a token issued to '{actor}' by someone else cannot decide: a decision needs the person's own sign-in "
            "(the web desk, or a token they created themselves with dew login or dew tokens create)"
        )
    user = require_signed_in(session, actor, method, "decide")
    if user is not None and Role.GUARDIAN not in user.roles:
        raise NotAuthorized(f"'{actor}' does not hold the guardian role, so may not decide on work item {item.id}")
    person = session.get(Guardian, actor)
    if person is None or not person.active:
        raise NotAuthorized(f"'{actor}' is not on the guardian roster, so may not decide on work item {item.id}")
    delegation = None
    if same_person(actor, item.guardian):
        rule = DecideRule.OWNER
    elif any(same_person(actor, who) for who in item.backups):
        rule = DecideRule.BACKUP
    elif (delegation := active_delegation(session, item.guardian, actor)) is not None:
        rule = DecideRule.DELEGATE
    elif any(same_person(actor, who) for who in item.escalated_to):
        rule = DecideRule.ESCALATION
    else:
        who = " or ".join([item.guardian, *item.backups])
        raise NotAuthorized(
            f"work item {item.id} is in {item.guardian}'s queue; only {who} may decide on it, not '{actor}' "
            f"(unless {item.guardian} delegates the queue to them)"
        )
    for earlier in session.exec(select(SignOff).where(SignOff.item_id == item.id)).all():
        if same_person(actor, earlier.actor):
            raise NotAuthorized(
                f"'{actor}' already signed off work item {item.id} ({earlier.stage_name}); "
                "each sign-off must come from a different person"
            )
    for run_id, requester in chain_requesters(session, run):
        if same_person(actor, requester):
            whose = f"run {run_id}, which handed off to run {run.id}" if run_id != run.id else f"run {run.id}"
            raise NotAuthorized(f"'{actor}' requested {whose} and may not decide on its output (four-eyes rule)")
    return rule, delegation


def may_decide(ws: Workspace, item_id: int, actor: str, method: str) -> str | None:
    """Why `actor` may not decide on the item now, or None if they may (to offer the decision
    form only to those who can use it; recording the decision checks again)."""
    try:
        with transaction(ws.engine) as s:
            item = must_get(s, WorkItem, item_id)
            authorize(s, item, must_get(s, Run, item.run_id), actor, method)
    except (NotAuthorized, AlreadyDecided, IdentityRequired, InvalidState, NotFound) as e:
        return e.message
    return None


def _check_edit(ws: Workspace, item: WorkItem, run: Run, edited: str | None) -> str:
    if edited is None or not edited.strip():
        raise DecisionInvalid("an edit needs the edited output (--file), and it is empty")
    if edited == item.draft:
        raise DecisionInvalid("the edited output is identical to the draft; use approve instead")
    spec = ws.stored_scenario(run.scenario_sha256).spec
    if spec.output.format == "json":
        from dew.agents.checks import json_problem  # jsonschema: loaded for an edit, not for every command

        problem = json_problem(edited, spec.output.schema_)
        if problem:
            raise DecisionInvalid(f"the edited output is not acceptable: {problem}")
    diff = difflib.unified_diff(
        item.draft.splitlines(keepends=True),
        edited.splitlines(keepends=True),
        fromfile=f"item-{item.id}/draft",
        tofile=f"item-{item.id}/edited",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in diff)


def _record_refusal(ws: Workspace, item_id: int, actor: str, action: str, reason: str) -> None:
    with transaction(ws.engine) as s:
        item = s.get(WorkItem, item_id)
        audit.emit(
            s,
            audit.DecisionRefused(action=action, reason=reason),
            actor=actor,
            run_id=item.run_id if item else None,
            item_id=item_id,
        )
