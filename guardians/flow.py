"""The governed flow after a draft: a decision resumes the run, an approval is released, and a
release may hand off. The one place that orders these steps, for deciding and for retrying.

    flow ──► decisions (authorize and record a decision)
      ├────► release   (deliver what was approved)
      ├────► handoff ──► runs (start, drive, queue)
      └────► runs

Dependencies point one way: none of those imports another of them except handoff → runs, and
only the edges (and `reconcile.repair`) import flow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import select

from dew.guardians.errors import InvalidState

from .db import must_get, transaction
from .decisions import record_decision
from .handoff import hand_off
from .models import Action, AuthMethod, Decision, Run, WorkItem
from .release import release_run
from .runs import RunResult, begin_retry, decision_payload, drive, get_run
from .signing import SignedStatement

if TYPE_CHECKING:
    from .workspace import Workspace


def decide(
    ws: Workspace,
    item_id: int,
    *,
    actor: str,
    action: str,
    note: str | None = None,
    edited: str | None = None,
    method: str = AuthMethod.DECLARED,
    signed: SignedStatement | None = None,
) -> RunResult:
    """Record a decision, resume the run with it, and release (then hand off) what was approved.
    A sign-off before the last only moves the item on: the run goes on waiting."""
    recorded = record_decision(
        ws, item_id, actor=actor, action=action, note=note, edited=edited, method=method, signed=signed
    )
    if recorded.decision is None:
        return RunResult(run=get_run(ws, recorded.item.run_id), item=recorded.item)
    from .execution import Job, JobKind, carry_out

    return carry_out(ws, Job(JobKind.DECISION, recorded.item.run_id, item_id))


def apply_decision(ws: Workspace, item_id: int) -> RunResult:
    """Resume a run with the decision recorded on one of its items, and deliver what it approved.
    A server records the decision at once and does this on a worker; a retry does it again if
    the process died in between."""
    with transaction(ws.engine) as s:
        item = must_get(s, WorkItem, item_id)
        run = must_get(s, Run, item.run_id)
        decision = s.exec(select(Decision).where(Decision.item_id == item_id)).first()
        later = s.exec(
            select(WorkItem).where(WorkItem.run_id == item.run_id, WorkItem.revision > item.revision)
        ).first()
    if decision is None:
        raise InvalidState(f"work item {item_id} has no decision to apply")
    if later is not None:  # applied already (a revision drafted since): never to the later draft
        return RunResult(run=get_run(ws, item.run_id), item=later)
    payload = decision_payload(decision, item.revision)
    result = drive(ws, item.run_id, lambda rt, sc: rt.resume(sc, item.run_id, payload), run=run)
    return _deliver(ws, result, actor=decision.actor)


def retry_run(ws: Workspace, run_id: int, *, actor: str, force: bool = False) -> RunResult:
    """Continue a failed run from its last checkpoint, or complete an approved run's delivery."""
    pending = begin_retry(ws, run_id, actor=actor, force=force)
    result = drive(ws, run_id, lambda rt, sc: rt.retry(sc, run_id, pending))
    return _deliver(ws, result, actor=actor)


def _deliver(ws: Workspace, result: RunResult, *, actor: str) -> RunResult:
    if result.ended_with is None or not Action(result.ended_with).releases:
        return result
    done = release_run(ws, result.run.key, actor=actor, run=result.run)
    loaded = ws.stored_scenario(done.run.scenario_sha256)
    steps = ws.runtime.state(loaded, done.run.key).get("outputs", {}) if loaded.spec.release.handoff else {}
    child, error = hand_off(ws, done.run, loaded.spec, done.content, steps)
    return RunResult(run=done.run, item=done.item, release=done.release, handoff=child, handoff_error=error)
