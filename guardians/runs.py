"""Starting and driving runs; queuing each draft the runtime hands back.

Driving a run only records where it stopped: a queued draft, a failure, or the end of the graph
with a guardian's decision. What follows a decision (release, hand-off) is `flow.py`'s to do.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from dew.agents import limits
from dew.agents.errors import DewError
from dew.agents.inputs import validate_inputs
from dew.agents.loader import LoadedScenario
from dew.guardians.errors import AlreadyHandedOff, InvalidState, NotAuthorized, NotFound

from . import audit, inboxes, notify
from .brake import is_paused, refuse_if_paused
from .db import lock_row, locked, must_get, transaction
from .delegation import active_for
from .identity import person_id
from .models import (
    PRIORITIES,
    Action,
    AuthMethod,
    Decision,
    Guardian,
    ItemStatus,
    Release,
    Role,
    Run,
    RunStatus,
    ScenarioVersion,
    WorkItem,
    utcnow,
)
from .users import require_signed_in

if TYPE_CHECKING:
    from dew.agents.runtime import Outcome, Runtime

    from .workspace import Workspace


@dataclass
class RunResult:
    run: Run
    item: WorkItem | None = None
    release: Release | None = None
    handoff: RunResult | None = None  # the run this release handed off to
    handoff_error: str | None = None  # why a configured hand-off could not start
    ended_with: str | None = None  # the decision (an Action) the graph ended with, when it ended
    exception: BaseException | None = None  # what failed the run, with its cause (for callers and tests)


def start_run(
    ws: Workspace,
    scenario_id: str,
    inputs: dict,
    *,
    requester: str,
    parent_run_id: int | None = None,
    origin: dict | None = None,
    method: str = AuthMethod.DECLARED,
) -> RunResult:
    """Start a run and drive it until it waits for a guardian: here, in the caller's process, or by
    a `dew worker` when runs belong to the distributed engine (`execution.carry_out`).
    `origin` says how the request arrived when not directly (e.g. the front desk)."""
    from .execution import Job, JobKind, carry_out

    run = request_run(
        ws, scenario_id, inputs, requester=requester, parent_run_id=parent_run_id, origin=origin, method=method
    )
    return carry_out(ws, Job(JobKind.START, run.key))


def request_run(
    ws: Workspace,
    scenario_id: str,
    inputs: dict,
    *,
    requester: str,
    parent_run_id: int | None = None,
    origin: dict | None = None,
    method: str = AuthMethod.DECLARED,
    priority: str | None = None,
    request_key: str | None = None,
) -> Run:
    """Record a requested run, `queued` for whoever executes runs (this process or a worker).
    `priority` (urgent, normal, batch) overrides the scenario's: a batch of runs asks for `batch`.
    `request_key` is the client's own key for the request: the same request asked again with it
    (its answer was lost) returns the run it started; another request with it is refused.

    Everything that can be refused is refused here, before anything is queued: the scenario, the
    inputs, the roster, and (in a workspace with users) a requester who has not signed in. A
    hand-off's run is requested by dew on behalf of the first run's requester."""
    requester = person_id(requester, what="the requester")
    if parent_run_id is None:  # who asks comes first: a refusal must not depend on what was asked
        with transaction(ws.engine) as s:
            user = require_signed_in(s, requester, method, "start a run")
            if user is not None and Role.REQUESTER not in user.roles:
                raise NotAuthorized(f"'{requester}' does not hold the requester role, so may not start runs")
    loaded = ws.scenario(scenario_id)
    values = validate_inputs(loaded.spec, inputs)
    ws.runtime.admit(loaded)  # a scenario's data never goes where it may not, so no run is queued for it
    with transaction(ws.engine) as s:
        refuse_if_paused(s, loaded.id, "start a run of it")
        _require_guardians(s, loaded)
        if parent_run_id is not None:
            lock_row(s, Run, parent_run_id)  # one hand-off per parent, even when two retries race
            if s.exec(select(Run).where(Run.parent_run_id == parent_run_id)).first() is not None:
                raise AlreadyHandedOff(f"run {parent_run_id} has already handed off")
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
        if request_key is not None and (earlier := _requested(s, requester, request_key)) is not None:
            return _same_request(earlier, loaded.id, values, request_key)
        run = Run(
            scenario_id=loaded.id,
            scenario_sha256=loaded.sha256,
            requester=requester,
            inputs=values,
            parent_run_id=parent_run_id,
            status=RunStatus.QUEUED,
            priority=PRIORITIES[priority or loaded.spec.priority],
            request_key=request_key,
        )
        try:
            with s.begin_nested():
                s.add(run)
                s.flush()
        except IntegrityError:  # the same key, asked twice at once: the other request recorded it
            earlier = _requested(s, requester, request_key) if request_key is not None else None
            if earlier is None:
                raise
            return _same_request(earlier, loaded.id, values, request_key or "")
        run_id = run.key
        if parent_run_id is not None:
            audit.emit(s, audit.HandedOff(to_scenario=loaded.id, to_run=run_id), actor="dew", run_id=parent_run_id)
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
            run_id=run_id,
        )
    return run


def _requested(session, requester: str, key: str) -> Run | None:
    return session.exec(select(Run).where(Run.requester == requester, Run.request_key == key)).first()


def _same_request(earlier: Run, scenario_id: str, values: dict, key: str) -> Run:
    if earlier.scenario_id != scenario_id or earlier.inputs != values:
        raise InvalidState(
            f"the request key '{key}' was given before for another request (run {earlier.id}); "
            "use a new key for each request"
        )
    return earlier


def execute_start(ws: Workspace, run_id: int) -> RunResult:
    """Take a queued run and drive it from its first step. A run another worker has already
    taken is left to it (the claim is one conditional update, so two workers never both start it)."""
    with transaction(ws.engine) as s:
        waiting = s.get(Run, run_id)
        if waiting is not None and is_paused(s, waiting.scenario_id):
            return RunResult(run=waiting)  # stays queued until the scenario is resumed
        claimed = (
            s.connection()
            .execute(
                update(Run)
                .where(col(Run.id) == run_id, col(Run.status) == RunStatus.QUEUED)
                .values(status=RunStatus.RUNNING, updated_at=utcnow())
            )
            .rowcount
        )
        run = s.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    if not claimed:
        return RunResult(run=run)
    return drive(ws, run_id, lambda rt, sc: rt.start(sc, run_id, run.inputs), run=run)


def _model_record(p: dict[str, Any]) -> dict[str, Any]:
    """A model call as the trail keeps it: which model, where, with what settings, and the hashes
    of its prompt, reply and tool calls (the texts stay with the work item, which retention may clear)."""
    keep = ("step", "model", "endpoint", "endpoint_class", "at", "parameters", "prompt_sha256", "output_sha256")
    record = {k: p.get(k) for k in keep}
    if p.get("tool_calls"):
        record["tool_calls"] = [
            {k: c.get(k) for k in ("tool", "args_sha256", "result_sha256")} for c in p["tool_calls"]
        ]
    return record


def _require_guardians(session, loaded: LoadedScenario) -> None:
    spec = loaded.spec
    for person in spec.people():
        row = session.get(Guardian, person)
        if row is None or not row.active:
            role = "guardian" if person == spec.guardian else "backup" if person in spec.backups else "signer"
            raise InvalidState(
                f"scenario '{spec.id}' names {role} '{person}', who is not on the roster; "
                f"add them with: dew guardians add {person} --name NAME"
            )


def drive(
    ws: Workspace, run_id: int, step: Callable[[Runtime, LoadedScenario], Outcome], *, run: Run | None = None
) -> RunResult:
    """Let the runtime take the run as far as it goes, then record where it stopped.

    A failure of any kind leaves the run `failed` with its reason and nothing queued or released;
    a retry continues it from its last checkpoint. `run`: the run as the caller just read it (only
    its scenario version is used here, and that never changes), saving a transaction.
    """
    if run is None:
        run = get_run(ws, run_id)
    try:
        # Inside the try: a run whose scenario cannot be read is failed, not left running.
        scenario = ws.stored_scenario(run.scenario_sha256)
        with limits.priority(run.priority):  # its model calls wait for their endpoint in this order
            outcome = step(ws.runtime, scenario)
        if outcome.status == "awaiting_decision":
            return _queue(ws, run_id, scenario, outcome)
    except Exception as e:  # a domain error, a bug or a storage fault: the run must not stay 'running'
        return RunResult(run=_fail(ws, run_id, e), exception=e)
    except BaseException as e:  # Ctrl-C or shutdown while drafting: record it, then let it propagate
        _fail(ws, run_id, e, reason="interrupted while drafting")
        raise
    action = (outcome.decision or {}).get("action")
    target = Action(action).run_status if action in tuple(Action) else None
    with transaction(ws.engine) as s:
        run = must_get(s, Run, run_id)
    # Recording the decision set this status already, unless a retry drove the run (it is
    # `running`): only then is a write (a commit, an fsync) needed.
    if target is not None and run.status not in (target, RunStatus.RELEASED):
        with transaction(ws.engine) as s:
            run = locked(s, Run, run_id)
            if run.status != RunStatus.RELEASED:
                run.status, run.updated_at = target, utcnow()
                s.add(run)
    return RunResult(run=run, ended_with=action)


def _queue(ws: Workspace, run_id: int, scenario: LoadedScenario, outcome: Outcome) -> RunResult:
    spec = scenario.spec
    with transaction(ws.engine) as s:
        run = locked(s, Run, run_id)
        existing = s.exec(
            select(WorkItem).where(WorkItem.run_id == run_id, WorkItem.revision == outcome.revisions)
        ).first()
        if existing is not None:  # a retry reached a gate whose draft is already queued
            return RunResult(run=run, item=existing)
        first = spec.stages()[0]
        item = WorkItem(
            run_id=run_id,
            revision=outcome.revisions,
            scenario_id=spec.id,
            guardian=first.guardian,
            backups=list(first.backups),
            risk=spec.risk,
            draft=outcome.draft or "",
            findings=outcome.findings,
            provenance=outcome.provenance,
            due_at=utcnow() + spec.wait if spec.wait else None,
        )
        s.add(item)
        run.status, run.error, run.error_detail, run.updated_at = RunStatus.AWAITING_DECISION, None, None, utcnow()
        s.add(run)
        s.flush()
        inboxes.record(s, item)
        models = [_model_record(p) for p in outcome.provenance]
        audit.emit(
            s,
            audit.DraftQueued(
                scenario=spec.id,
                revision=outcome.revisions,
                guardian=item.guardian,
                backups=list(item.backups),
                draft_sha256=audit.sha256_text(item.draft),
                findings=outcome.findings,
                models=models,
            ),
            actor=f"agent:{spec.id}",
            run_id=run_id,
            item_id=item.id,
        )
        notify.enqueue(s, "item.queued", item, deciders(s, item))
    return RunResult(run=run, item=item)


def deciders(session, item: WorkItem) -> list[str]:
    """Who should hear that an item waits: its guardian, backups, delegates and escalation contact."""
    people = [item.guardian, *item.backups, *(d.delegate for d in active_for(session, item.guardian))]
    people += item.escalated_to
    return list(dict.fromkeys(people))


def failure_reason(error: BaseException) -> str:
    """What the run and its audit event say about a failure. Our own errors say what went wrong;
    anything else is named by its type only, because its text may quote a lower layer's data
    (SQL parameters, a party's name) that must never enter the immutable trail."""
    if isinstance(error, DewError):
        return error.message
    return f"internal error: {type(error).__name__} (details are kept with the run: dew runs --json)"


def _fail(ws: Workspace, run_id: int, error: BaseException, *, reason: str | None = None) -> Run:
    reason = reason or failure_reason(error)
    with transaction(ws.engine) as s:
        return _mark_failed(s, locked(s, Run, run_id), reason, "".join(traceback.format_exception(error)))


def fail_run(ws: Workspace, run_id: int, reason: str) -> Run:
    """Fail a live run from outside its driver (the engine, when its job will not be tried again).
    A run that has already ended, or waits for a guardian, is left as it is."""
    with transaction(ws.engine) as s:
        run = locked(s, Run, run_id)
        if run.status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.APPROVED):
            _mark_failed(s, run, reason)
        return run


def _mark_failed(session, run: Run, reason: str, detail: str | None = None) -> Run:
    run.status, run.error, run.updated_at = RunStatus.FAILED, reason, utcnow()
    if detail is not None:
        run.error_detail = detail
    session.add(run)
    audit.emit(session, audit.RunFailed(reason=reason, attempt=run.attempts), actor="dew", run_id=run.key)
    return run


def result_of(ws: Workspace, run_id: int, *, item_id: int | None = None) -> RunResult:
    """Where a run stands, read back from the database: for a caller whose job was performed
    elsewhere (a `dew worker`). The item is the one decided on, or else the run's newest."""
    with transaction(ws.engine) as s:
        run = must_get(s, Run, run_id)
        item = s.get(WorkItem, item_id) if item_id is not None else None
        if item is None:
            item = s.exec(
                select(WorkItem).where(WorkItem.run_id == run_id).order_by(col(WorkItem.revision).desc(),
                                                                         col(WorkItem.id).desc())
            ).first()  # fmt: skip
        elif item.status != ItemStatus.PENDING:  # a later draft (a revision) or the next stage's item
            newer = s.exec(
                select(WorkItem).where(WorkItem.run_id == run_id, col(WorkItem.id) > item.key).order_by(col(WorkItem.id).desc())
            ).first()  # fmt: skip
            item = newer or item
        release = s.exec(select(Release).where(Release.run_id == run_id)).first()
        child = s.exec(select(Run).where(Run.parent_run_id == run_id).order_by(col(Run.id))).first()
    handoff = result_of(ws, child.key) if child is not None and release is not None else None
    return RunResult(run=run, item=item, release=release, handoff=handoff)


def begin_retry(ws: Workspace, run_id: int, *, actor: str, force: bool = False) -> dict[str, Any] | None:
    """Mark a failed run as running again and return the decision its graph may not have received.

    An approved or released run passes as it is: driving it again ends its graph and the release
    completes. A run left `running` by a process that died (killed, power loss) is retried only
    with `force`, because a live process may still be driving it.
    """
    actor = person_id(actor, what="who retries")
    with transaction(ws.engine) as s:
        run = locked(s, Run, run_id)
        if run.status in (RunStatus.APPROVED, RunStatus.RELEASED):
            pass
        elif run.status == RunStatus.RUNNING and not force:
            raise InvalidState(
                f"run {run_id} is running (since {run.updated_at:%Y-%m-%d %H:%M:%S} UTC); "
                f"if the process driving it died, retry with --force"
            )
        elif run.status not in (RunStatus.FAILED, RunStatus.RUNNING):
            raise InvalidState(f"run {run_id} is {run.status}; only a failed run can be retried")
        else:
            run.status, run.attempts, run.updated_at = RunStatus.RUNNING, run.attempts + 1, utcnow()
            s.add(run)
            audit.emit(s, audit.RunRetried(attempt=run.attempts), actor=actor, run_id=run_id)
        return _unapplied_decision(s, run_id)


def _unapplied_decision(session, run_id: int) -> dict[str, Any] | None:
    """The decision on the run's newest work item, which the graph may not have received yet."""
    item = session.exec(
        select(WorkItem).where(WorkItem.run_id == run_id).order_by(col(WorkItem.revision).desc())
    ).first()
    if item is None or item.status == ItemStatus.PENDING:
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


def get_run(ws: Workspace, run_id: int) -> Run:
    with transaction(ws.engine) as s:
        run = s.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    return run
