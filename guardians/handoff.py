"""Hand-off: a released output starts a run of another scenario, recorded as one audited chain.

The next run sees only what the guardian approved (the released text) and the first run's
inputs, never the agent's intermediate state. Its requester is the first run's requester, so the
four-eyes rule holds along the whole chain. A hand-off that cannot start (bad inputs, unknown
scenario) never undoes the release: it is recorded and reported.
"""

from __future__ import annotations

import json

from sqlmodel import select

from dew.agents.errors import DewError, InvalidState
from dew.agents.templating import evaluate, render

from . import audit
from .db import transaction
from .models import Run


def handoff_context(spec, run: Run, content: str) -> dict:
    try:
        parsed = json.loads(content) if spec.output.format == "json" else None
    except json.JSONDecodeError:
        parsed = None
    return {
        "output": content,
        "output_json": parsed,
        "inputs": run.inputs,
        "run": {"id": run.id, "date": run.created_at.date().isoformat()},
        "scenario": {"id": spec.id, "name": spec.name, "version": spec.version},
    }


def hand_off(ws, run: Run, spec, content: str):
    """Start the configured next run, once. Returns (RunResult | None, error | None)."""
    from .runs import start_run

    h = spec.release.handoff
    if h is None:
        return None, None
    with transaction(ws.engine) as s:
        if s.exec(select(Run).where(Run.parent_run_id == run.id)).first() is not None:
            return None, None  # already handed off (a retry of the release)
    where = f"scenario '{spec.id}': release.handoff"
    try:
        ctx = handoff_context(spec, run, content)
        if h.when and not evaluate(h.when, ctx, where=f"{where}.when"):
            return None, None
        inputs = {k: render(v, ctx, where=f"{where}.inputs.{k}") for k, v in h.inputs.items()}
        return start_run(ws, h.scenario, inputs, requester=run.requester, parent_run_id=run.id), None
    except InvalidState as e:
        if "already handed off" in e.message:
            return None, None
        reason = e.message
    except DewError as e:
        reason = e.message
    except Exception as e:  # whatever goes wrong, the release stands and the failure is on record
        reason = f"{type(e).__name__}: {e}"
    with transaction(ws.engine) as s:
        audit.emit(s, audit.HandoffFailed(to_scenario=h.scenario, reason=reason), actor="dew", run_id=run.id)
    return None, reason
