"""The brake (踩刹车): pause a digital employee, resume it, recall what it released.

While a scenario is paused no new run of it starts, queued runs wait, and its pending items are
held (nobody decides on them) until someone resumes it; each change is an audit event with its
reason. A recall withdraws a released output: the outbox file stays where it was (it is evidence)
and a `<file>.recalled` note beside it says who recalled it, when and why.

Who may brake a scenario: its guardian, a backup, or an admin. Who may recall: the same people.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sqlmodel import Session

from dew.agents.errors import InputInvalid
from dew.guardians.errors import InvalidState, NotAuthorized, NotFound

from . import audit
from .db import must_get, transaction
from .identity import person_id, same_person
from .models import Release, Role, Run, ScenarioState, User, utcnow
from .users import has_users, is_admin

if TYPE_CHECKING:
    from .workspace import Workspace


def state(session: Session, scenario_id: str) -> ScenarioState | None:
    return session.get(ScenarioState, scenario_id)


def is_paused(session: Session, scenario_id: str) -> ScenarioState | None:
    """The pause in force on a scenario, or None."""
    row = session.get(ScenarioState, scenario_id)
    return row if row is not None and row.paused else None


def refuse_if_paused(session: Session, scenario_id: str, doing: str) -> None:
    row = is_paused(session, scenario_id)
    if row is not None:
        raise InvalidState(
            f"'{scenario_id}' is paused (by {row.changed_by}: {row.paused_reason or 'no reason given'}); "
            f"nobody can {doing} until it is resumed"
        )


def _may_brake(ws: Workspace, session: Session, actor: str, scenario_id: str) -> None:
    spec = ws.scenario(scenario_id).spec
    if has_users(session):
        # Being named in the file is not enough: only who holds the guardian role now (or an admin).
        user = session.get(User, actor)
        signs = user is not None and user.active and Role.GUARDIAN in user.roles
        if is_admin(session, actor) or (signs and any(same_person(actor, p) for p in spec.people())):
            return
    elif any(same_person(actor, p) for p in spec.people()):
        return
    raise NotAuthorized(f"only {scenario_id}'s guardians or an admin may brake it or recall its outputs, not '{actor}'")


def can_brake(ws: Workspace, actor: str, scenario_id: str) -> bool:
    """Whether to offer `actor` the brake and the recall (the actions check again)."""
    try:
        with transaction(ws.engine) as s:
            _may_brake(ws, s, actor, scenario_id)
    except NotAuthorized:
        return False
    return True


def pause(ws: Workspace, scenario_id: str, *, actor: str, reason: str) -> ScenarioState:
    actor = person_id(actor, what="who pauses")
    reason = " ".join(reason.split())
    if not reason:
        raise InputInvalid("say why the digital employee is paused (--reason)")
    with transaction(ws.engine) as s:
        _may_brake(ws, s, actor, scenario_id)
        row = s.get(ScenarioState, scenario_id, with_for_update=True) or ScenarioState(scenario_id=scenario_id)
        if row.paused:
            raise InvalidState(f"'{scenario_id}' is already paused (by {row.changed_by}: {row.paused_reason})")
        row.paused, row.paused_reason, row.changed_by, row.changed_at = True, reason, actor, utcnow()
        s.add(row)
        audit.emit(s, audit.ScenarioPaused(scenario=scenario_id, reason=reason), actor=actor)
    return row


def resume(ws: Workspace, scenario_id: str, *, actor: str, note: str = "") -> ScenarioState:
    actor = person_id(actor, what="who resumes")
    with transaction(ws.engine) as s:
        _may_brake(ws, s, actor, scenario_id)
        row = s.get(ScenarioState, scenario_id, with_for_update=True)
        if row is None or not row.paused:
            raise InvalidState(f"'{scenario_id}' is not paused")
        row.paused, row.changed_by, row.changed_at = False, actor, utcnow()
        s.add(row)
        audit.emit(s, audit.ScenarioResumed(scenario=scenario_id, note=note.strip()), actor=actor)
    return row


def set_escalation_contact(ws: Workspace, scenario_id: str, contact: str | None, *, actor: str) -> ScenarioState:
    """Whom a scenario's overdue items escalate to after its backups (an admin names them)."""
    actor = person_id(actor, what="who names the escalation contact")
    contact = person_id(contact, what="the escalation contact") if contact else None
    ws.scenario(scenario_id)  # it must exist
    with transaction(ws.engine) as s:
        if has_users(s):
            if not is_admin(s, actor):
                raise NotAuthorized("only an admin names whom overdue items escalate to")
            if contact:
                named = s.get(User, contact)
                if named is None or not named.active or Role.GUARDIAN not in named.roles:
                    raise InputInvalid(f"'{contact}' must be an active user with the guardian role")
        row = s.get(ScenarioState, scenario_id, with_for_update=True) or ScenarioState(scenario_id=scenario_id)
        row.escalate_to = contact
        s.add(row)
        audit.emit(s, audit.EscalationContactSet(scenario=scenario_id, contact=contact), actor=actor)
    return row


def recall(ws: Workspace, release_id: int, *, actor: str, reason: str) -> Release:
    actor = person_id(actor, what="who recalls")
    reason = " ".join(reason.split())
    if not reason:
        raise InputInvalid("say why the output is recalled (--reason)")
    with transaction(ws.engine) as s:
        release = s.get(Release, release_id, with_for_update=True)
        if release is None:
            raise NotFound(f"no release {release_id}")
        run = must_get(s, Run, release.run_id)
        _may_brake(ws, s, actor, run.scenario_id)
        if release.recalled_at is not None:
            raise InvalidState(f"release {release_id} was already recalled by {release.recalled_by}")
        release.recalled_at, release.recalled_by, release.recall_reason = utcnow(), actor, reason
        s.add(release)
        audit.emit(
            s,
            audit.OutputRecalled(
                release_id=release_id, location=release.location, sha256=release.sha256, reason=reason
            ),
            actor=actor,
            run_id=run.id,
            item_id=release.item_id,
        )
        note = {"recalled": True, "release": release_id, "by": actor, "at": release.recalled_at.isoformat(),
                "reason": reason, "sha256": release.sha256}  # fmt: skip
    # After the commit, like a release: the note never claims a recall that is not on record.
    marker = recall_note(ws, release)
    marker.write_text(json.dumps(note, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return release


def recall_note(ws: Workspace, release: Release):
    target = ws.settings.home / release.location
    return target.with_name(target.name + ".recalled")
