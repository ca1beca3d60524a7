"""Delegation: a guardian hands their queue to a named colleague for a period (leave).

A delegation covers the items of the guardian's own queue (not those they only back up), starts
and ends by itself, and is shown on the items and on every decision made under it. The guardian
or an admin creates it; either may end it early. A delegate is held to every other rule: on the
roster, signed in, and never deciding on a run they requested.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from dew.agents.errors import InputInvalid
from dew.guardians.errors import NotAuthorized, NotFound

from . import audit
from .db import transaction
from .identity import person_id, same_person
from .models import Delegation, Guardian, Role, User, utcnow
from .users import has_users, is_admin

if TYPE_CHECKING:
    from .workspace import Workspace

MAX_DELEGATION = timedelta(days=366)


def delegate(
    ws: Workspace,
    guardian: str,
    to: str,
    *,
    ends_at: datetime,
    actor: str,
    starts_at: datetime | None = None,
    reason: str = "",
) -> Delegation:
    guardian = person_id(guardian, what="the guardian")
    to = person_id(to, what="the delegate")
    actor = person_id(actor, what="who delegates")
    starts_at = starts_at or utcnow()
    if same_person(guardian, to):
        raise InputInvalid("a guardian cannot delegate to themselves")
    if ends_at <= starts_at:
        raise InputInvalid("a delegation must end after it starts")
    if ends_at <= utcnow():
        raise InputInvalid("a delegation must end in the future")
    if ends_at - starts_at > MAX_DELEGATION:
        raise InputInvalid("a delegation may last at most a year; make a new one after that")
    with transaction(ws.engine) as s:
        _may_delegate(s, actor, guardian)
        for person, what in ((guardian, "guardian"), (to, "delegate")):
            on_roster = s.get(Guardian, person)
            if on_roster is None or not on_roster.active:
                raise InputInvalid(f"the {what} '{person}' is not on the guardian roster")
        if has_users(s):
            user = s.get(User, to)
            if user is None or not user.active or Role.GUARDIAN not in user.roles:
                raise InputInvalid(f"the delegate '{to}' must be an active user with the guardian role")
        row = Delegation(
            guardian=guardian,
            delegate=to,
            starts_at=starts_at,
            ends_at=ends_at,
            reason=reason.strip(),
            created_by=actor,
        )
        s.add(row)
        s.flush()
        audit.emit(
            s,
            audit.DelegationCreated(
                delegation_id=row.key,
                guardian=guardian,
                delegate=to,
                starts_at=starts_at.isoformat(),
                ends_at=ends_at.isoformat(),
                reason=row.reason,
            ),
            actor=actor,
        )
    return row


def end_delegation(ws: Workspace, delegation_id: int, *, actor: str) -> Delegation:
    actor = person_id(actor, what="who ends the delegation")
    with transaction(ws.engine) as s:
        row = s.get(Delegation, delegation_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no delegation {delegation_id}")
        _may_delegate(s, actor, row.guardian)
        if row.revoked_at is None and row.ends_at > utcnow():
            row.revoked_at = utcnow()
            s.add(row)
            audit.emit(
                s,
                audit.DelegationEnded(delegation_id=row.key, guardian=row.guardian, delegate=row.delegate),
                actor=actor,
            )
    return row


def _may_delegate(s: Session, actor: str, guardian: str) -> None:
    if is_admin(s, actor):
        return
    if has_users(s):  # the guardian must still hold the role, not just be named on the roster
        user = s.get(User, actor)
        if user is None or not user.active or Role.GUARDIAN not in user.roles:
            raise NotAuthorized(f"'{actor}' does not hold the guardian role, so has no queue to delegate")
    if not same_person(actor, guardian):
        raise NotAuthorized(f"only {guardian} or an admin may delegate {guardian}'s queue")


def _current(at: datetime | None):
    """The conditions of a delegation in force at `at` (now by default)."""
    at = at or utcnow()
    return (col(Delegation.revoked_at).is_(None), col(Delegation.starts_at) <= at, col(Delegation.ends_at) > at)


def active_delegation(s: Session, guardian: str, delegate: str, at: datetime | None = None) -> Delegation | None:
    """The delegation under which `delegate` may decide `guardian`'s items now. The guardian is
    compared as `same_person` compares (an item written before identities were validated may name
    a variant), as the owner is when deciding, and as the inbox finds the item."""
    query = select(Delegation).where(Delegation.delegate == delegate, *_current(at)).order_by(col(Delegation.id))
    return next((d for d in s.exec(query).all() if same_person(d.guardian, guardian)), None)


def delegated_to(s: Session, delegate: str, at: datetime | None = None) -> list[Delegation]:
    """The delegations `delegate` acts under now."""
    return list(s.exec(select(Delegation).where(Delegation.delegate == delegate, *_current(at))).all())


def active_for(s: Session, guardian: str, at: datetime | None = None) -> list[Delegation]:
    """Who covers `guardian`'s queue now (shown on their items)."""
    return list(s.exec(select(Delegation).where(Delegation.guardian == guardian, *_current(at))).all())


def list_delegations(ws: Workspace, *, current_only: bool = False, involving: str | None = None) -> list[Delegation]:
    """Delegations (`involving`: only those where that person is the guardian or the delegate)."""
    with transaction(ws.engine) as s:
        query = select(Delegation).order_by(col(Delegation.id))
        if involving is not None:
            query = query.where((col(Delegation.guardian) == involving) | (col(Delegation.delegate) == involving))
        rows = list(s.exec(query).all())
    if current_only:
        now = utcnow()
        rows = [d for d in rows if d.revoked_at is None and d.ends_at > now]
    return rows
