"""Starting, driving and retrying runs; queuing each draft the runtime hands back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from dew.agents.errors import DewError, InvalidState, NotFound
from dew.agents.inputs import validate_inputs
from dew.agents.loader import LoadedScenario

from . import audit
from .db import lock_row, transaction
from .models import Decision, Guardian, Release, Run, ScenarioVersion, WorkItem, utcnow

if TYPE_CHECKING:
    from dew.agents.runtime import Outcome, Runtime


@dataclass
class RunResult:
    run: Run
    item: WorkItem | None = None
    release: Release | None = None
    handoff: RunResult | None = None  # the run this release handed off to
    handoff_error: str | None = None  # why a configured hand-off could not start


def start_run(
    ws, scenario_id: str, inputs: dict, *, requester: str, parent_run_id: int | None = None, origin: dict | None = None
) -> RunResult:
    """Start a run. `origin` says how the request arrived when not directly (e.g. the front desk)."""
    loaded = ws.scenario(scenario_id)
    values = validate_inputs(loaded.spec, inputs)
    with transaction(ws.engine) as s:
        _require_guardians(s, loaded)
        if parent_run_id is not None:
            lock_row(s, Run, parent_run_id)  # one hand-off per parent, even when two retries race
            if s.exec(select(Run).where(Run.parent_run_id == parent_run_id)).first() is not None:
                raise InvalidState(f"run {parent_run_id} has already handed off")
        if s.get(ScenarioVersion, loaded.sha256) is None:
            try:
                with s.begin_nested():  # another process may record the same new version right now
                    s.add(
                        ScenarioVersion(
                            sha256=loaded.sha256, scenario_id=loaded.id, version=loaded.spec.version, text=loaded.text
                        )
                    )
                    s.flush()
            except IntegrityError:
                pass
            else:
                audit.emit(
                    s,
                    audit.ScenarioVersionRecorded(
                        scenario=loaded.id,
                        version=loaded.spec.version,
                        scenario_sha256=loaded.sha256,
                        source=loaded.source,
                    ),
                    actor=requester,
                )
        run = Run(
            scenario_id=loaded.id,
            scenario_sha256=loaded.sha256,
            requester=requester,
            inputs=values,
            parent_run_id=parent_run_id,
        )
        s.add(run)
        s.flush()
        if parent_run_id is not None:
            audit.emit(s, audit.HandedOff(to_scenario=loaded.id, to_run=run.id), actor="dew", run_id=parent_run_id)
        audit.emit(
            s,
            audit.RunRequested(
                scenario=loaded.id,
                version=loaded.spec.version,
                scenario_sha256=loaded.sha256,
                inputs_sha256=audit.sha256_text(audit.canonical(values)),
                input_names=sorted(values),
                parent_run=parent_run_id,
                origin=origin,
            ),
            actor=requester,
            run_id=run.id,
        )
    return drive(ws, run.id, lambda rt, sc: rt.start(sc, run.id, values))


def _require_guardians(session, loaded: LoadedScenario) -> None:
    spec = loaded.spec
    for person in [spec.guardian, *spec.backups]:
        row = session.get(Guardian, person)
        if row is None or not row.active:
            role = "guardian" if person == spec.guardian else "backup"
            raise InvalidState(
                f"scenario '{spec.id}' names {role} '{person}', who is not on the roster; "
                f"add them with: dew guardians add {person} --name NAME"
            )


def drive(ws, run_id: int, step: Callable[[Runtime, LoadedScenario], Outcome], *, actor: str = "dew") -> RunResult:
    """Let the runtime take the run as far as it goes, then record where it stopped.

    A failure of any kind leaves the run `failed` with its reason and nothing queued or released;
    `retry` continues it from its last checkpoint.
    """
    with transaction(ws.engine) as s:
        run = s.get(Run, run_id)
    scenario = ws.stored_scenario(run.scenario_sha256)
    try:
        outcome = step(ws.runtime, scenario)
        if outcome.status == "awaiting_decision":
            return _queue(ws, run_id, scenario, outcome)
    except DewError as e:
        return RunResult(run=_fail(ws, run_id, e.message))
    except Exception as e:  # a bug or a storage fault: the run must not stay 'running' for ever
        return RunResult(run=_fail(ws, run_id, f"internal error: {type(e).__name__}: {e}"))
    except BaseException:  # Ctrl-C or shutdown while drafting: record it, then let it propagate
        _fail(ws, run_id, "interrupted while drafting")
        raise
    from .release import RELEASABLE, release_run

    if (outcome.decision or {}).get("action") in RELEASABLE:
        return release_run(ws, run_id, actor=actor)  # the graph ended on an approval: deliver it
    with transaction(ws.engine) as s:
        return RunResult(run=s.get(Run, run_id))


def _queue(ws, run_id: int, scenario: LoadedScenario, outcome: Outcome) -> RunResult:
    spec = scenario.spec
    with transaction(ws.engine) as s:
        run = lock_row(s, Run, run_id)
        existing = s.exec(
            select(WorkItem).where(WorkItem.run_id == run_id, WorkItem.revision == outcome.revisions)
        ).first()
        if existing is not None:  # a retry reached a gate whose draft is already queued
            return RunResult(run=run, item=existing)
        item = WorkItem(
            run_id=run_id,
            revision=outcome.revisions,
            scenario_id=spec.id,
            guardian=spec.guardian,
            backups=list(spec.backups),
            risk=spec.risk,
            draft=outcome.draft or "",
            findings=outcome.findings,
            provenance=outcome.provenance,
        )
        s.add(item)
        run.status, run.error, run.updated_at = "awaiting_decision", None, utcnow()
        s.add(run)
        s.flush()
        models = [{k: p.get(k) for k in ("step", "model", "endpoint", "at")} for p in outcome.provenance]
        audit.emit(
            s,
            audit.DraftQueued(
                scenario=spec.id,
                revision=outcome.revisions,
                guardian=spec.guardian,
                backups=list(spec.backups),
                draft_sha256=audit.sha256_text(item.draft),
                findings=outcome.findings,
                models=models,
            ),
            actor=f"agent:{spec.id}",
            run_id=run_id,
            item_id=item.id,
        )
    return RunResult(run=run, item=item)


def _fail(ws, run_id: int, reason: str) -> Run:
    with transaction(ws.engine) as s:
        run = lock_row(s, Run, run_id)
        run.status, run.error, run.updated_at = "failed", reason, utcnow()
        s.add(run)
        audit.emit(s, audit.RunFailed(reason=reason, attempt=run.attempts), actor="dew", run_id=run_id)
    return run


def retry_run(ws, run_id: int, *, actor: str, force: bool = False) -> RunResult:
    """Continue a failed run, or deliver an approved one whose release did not complete.

    A run left `running` by a process that died (killed, power loss) is retried only with
    `force`, because a live process may still be driving it.
    """
    with transaction(ws.engine) as s:
        run = lock_row(s, Run, run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
        if run.status in ("approved", "released"):
            pass  # decided but not (fully) delivered: the graph ends and release completes delivery
        elif run.status == "running" and not force:
            raise InvalidState(
                f"run {run_id} is running (since {run.updated_at:%Y-%m-%d %H:%M:%S} UTC); "
                f"if the process driving it died, retry with --force"
            )
        elif run.status not in ("failed", "running"):
            raise InvalidState(f"run {run_id} is {run.status}; only a failed run can be retried")
        else:
            run.status, run.attempts, run.updated_at = "running", run.attempts + 1, utcnow()
            s.add(run)
            audit.emit(s, audit.RunRetried(attempt=run.attempts), actor=actor, run_id=run_id)
        pending = _unapplied_decision(s, run_id)
    return drive(ws, run_id, lambda rt, sc: rt.retry(sc, run_id, pending), actor=actor)


def _unapplied_decision(session, run_id: int) -> dict | None:
    """The decision on the run's newest work item, which the graph may not have received yet."""
    item = session.exec(select(WorkItem).where(WorkItem.run_id == run_id).order_by(WorkItem.revision.desc())).first()
    if item is None or item.status == "pending":
        return None
    decision = session.exec(select(Decision).where(Decision.item_id == item.id)).first()
    return decision_payload(decision, item.revision) if decision else None


def decision_payload(decision: Decision, revision: int) -> dict:
    """What the graph's approval gate receives. `revision` says which draft it decides on, so a
    retry never applies it to a later draft the guardian has not seen."""
    return {
        "action": decision.action,
        "feedback": decision.note if decision.action == "revise" else None,
        "item_id": decision.item_id,
        "actor": decision.actor,
        "revision": revision,
    }


def list_runs(ws, status: str | None = None) -> list[Run]:
    with transaction(ws.engine) as s:
        query = select(Run).order_by(Run.id)
        if status:
            query = query.where(Run.status == status)
        return list(s.exec(query).all())


def get_run(ws, run_id: int) -> Run:
    with transaction(ws.engine) as s:
        run = s.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    return run
