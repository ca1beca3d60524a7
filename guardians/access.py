"""Who may see and do what, by role. Used alike by the API, the web pages and the CLI.

- admin: manages people, delegations and settings; reads everything.
- guardian: sees the items of the queues they own, back up or are delegated, and their runs.
- requester: starts runs; sees their own runs (and the runs handed off from them) and what was
  released from them, never a draft that no guardian has approved.
- auditor: reads everything, changes nothing.
A declared identity (a workspace without users, used at one terminal) reads everything, as the
local CLI always has; deciding is still held to the roster rules in `decisions.py`.
"""

from __future__ import annotations

from sqlmodel import Session

from dew.guardians.errors import InvalidState, NotAuthorized

from .auth import Principal
from .delegation import delegated_to
from .identity import same_person
from .models import AuthMethod, Role, Run, WorkItem


def reads_everything(p: Principal) -> bool:
    return p.method == AuthMethod.DECLARED or p.has(Role.ADMIN, Role.AUDITOR)


def require_role(p: Principal, *roles: str, doing: str) -> None:
    if p.method == AuthMethod.DECLARED:
        return
    if not p.has(*roles):
        raise NotAuthorized(
            f"only {' or '.join(roles)} may {doing}; '{p.id}' holds {', '.join(sorted(p.roles)) or 'no role'}"
        )


def covered_guardians(s: Session, p: Principal) -> set[str]:
    """Whose queues `p` works on now: their own, and those delegated to them."""
    return {p.id, *(d.guardian for d in delegated_to(s, p.id))}


def may_see_item(s: Session, p: Principal, item: WorkItem) -> bool:
    if reads_everything(p):
        return True
    if p.has(Role.GUARDIAN):
        return item.guardian in covered_guardians(s, p) or any(
            same_person(p.id, b) for b in [*item.backups, *item.escalated_to]
        )
    return False


def may_see_run(s: Session, p: Principal, run: Run, items: list[WorkItem] | None = None) -> bool:
    if reads_everything(p):
        return True
    if p.has(Role.REQUESTER) and any(same_person(p.id, who) for _, who in chain_requesters(s, run)):
        return True
    return bool(items) and any(may_see_item(s, p, i) for i in items or [])


def check_item(s: Session, p: Principal, item: WorkItem) -> None:
    if not may_see_item(s, p, item):
        raise NotAuthorized(
            f"work item {item.id} is in {item.guardian}'s queue; '{p.id}' does not work on that queue "
            "(guardians see the queues they own, back up or are delegated; auditors and admins see all)"
        )


def check_run(s: Session, p: Principal, run: Run, items: list[WorkItem]) -> None:
    if not may_see_run(s, p, run, items):
        raise NotAuthorized(
            f"run {run.id} is not '{p.id}''s to see: requesters see the runs they requested, guardians the runs "
            "in their queues, auditors and admins all runs"
        )


def delegations_scope(p: Principal) -> str | None:
    """Whose delegations `p` may list: everyone's for admins and auditors, else only their own
    (a delegation's reason may be personal: leave, illness)."""
    return None if reads_everything(p) else p.id


def check_retry(s: Session, p: Principal, run: Run) -> None:
    """A failed run is retried by whoever requested it, or by an admin (who asks comes first)."""
    allowed = p.method == AuthMethod.DECLARED or p.has(Role.ADMIN)
    allowed = allowed or (p.has(Role.REQUESTER) and same_person(p.id, run.requester))
    if not allowed:
        raise NotAuthorized(f"only run {run.id}'s requester ({run.requester}) or an admin may retry it, not '{p.id}'")
    if run.status != "failed":
        raise InvalidState(f"run {run.id} is {run.status}; only a failed run is retried")


def chain_requesters(session: Session, run: Run) -> list[tuple[int, str]]:
    """The requester of this run and of every run that handed off to it, nearest first."""
    found: list[tuple[int, str]] = []
    seen: set[int] = set()
    current: Run | None = run
    while current is not None and current.key not in seen:
        seen.add(current.key)
        found.append((current.key, current.requester))
        current = session.get(Run, current.parent_run_id) if current.parent_run_id is not None else None
    return found
