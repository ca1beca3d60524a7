"""Hand-off: a released output starts a run of another scenario, recorded as one audited chain.

The next run sees only what the guardian approved (the released text) and the first run's
inputs, never the agent's intermediate state. Its requester is the first run's requester, so the
four-eyes rule holds along the whole chain. A hand-off that cannot start (bad inputs, unknown
scenario) never undoes the release: it is recorded and reported.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from sqlmodel import select

from dew.agents.errors import DewError
from dew.agents.spec import Scenario
from dew.agents.templating import evaluate, render, run_values, scenario_context
from dew.guardians.errors import AlreadyHandedOff

from . import audit
from .db import transaction
from .models import Run
from .runs import RunResult, request_run, start_run

if TYPE_CHECKING:
    from .workspace import Workspace


log = logging.getLogger("dew.handoff")


def handoff_context(spec: Scenario, run: Run, content: str) -> dict[str, Any]:
    try:
        parsed = json.loads(content) if spec.output.format == "json" else None
    except json.JSONDecodeError:
        parsed = None
    return scenario_context(
        spec, run=run_values(run.id, run.created_at.date()), inputs=run.inputs, output=content, output_json=parsed
    )


def hand_off(
    ws: Workspace, run: Run, spec: Scenario, content: str, steps: dict[str, Any]
) -> tuple[RunResult | None, str | None]:
    """Start the configured next run, once. Returns (the new run, or None; why it failed, or None).

    `steps` are the run's step outputs: the condition reads them, and only them."""
    h = spec.release.handoff
    if h is None:
        return None, None
    with transaction(ws.engine) as s:
        if s.exec(select(Run).where(Run.parent_run_id == run.id)).first() is not None:
            return None, None  # already handed off (a retry of the release)
    where = f"scenario '{spec.id}': release.handoff"
    try:
        ctx = handoff_context(spec, run, content)
        when = {"steps": steps, "run": ctx["run"], "scenario": ctx["scenario"]}
        if h.when and not evaluate(h.when, when, where=f"{where}.when"):
            with transaction(ws.engine) as s:
                audit.emit(s, audit.HandoffSkipped(to_scenario=h.scenario, reason="its condition is false"),
                           actor="dew", run_id=run.id)  # fmt: skip
            return None, None
        inputs = {k: render(v, ctx, where=f"{where}.inputs.{k}") for k, v in h.inputs.items()}
        from .engine import distributed, executor_for  # the engine reaches hand_off through execution
        from .execution import Job, JobKind

        if distributed(ws.settings):  # a job of its own, for whichever worker is free: never wait on one
            child = request_run(ws, h.scenario, inputs, requester=run.requester, parent_run_id=run.id)
            try:
                executor_for(ws.settings).submit(Job(JobKind.START, child.key))
            except Exception:  # the child is recorded: the workers' sweep gives it its job
                log.exception("hand-off recorded, its job not deferred", extra={"run_id": child.key})
            return RunResult(run=child), None
        return start_run(ws, h.scenario, inputs, requester=run.requester, parent_run_id=run.id), None
    except AlreadyHandedOff:
        return None, None  # a concurrent retry started it first
    except DewError as e:
        reason = e.message
    except Exception as e:  # whatever goes wrong, the release stands and the failure is on record
        reason = f"internal error: {type(e).__name__}"
    with transaction(ws.engine) as s:
        audit.emit(s, audit.HandoffFailed(to_scenario=h.scenario, reason=reason), actor="dew", run_id=run.id)
    return None, reason
