"""Release: deliver an approved output, exactly once, to its destination.

What is released is what the guardian approved, byte for byte: the draft as queued, or the
guardian's edit. It is read from the decision record, never from the agent's state, so nothing
the model says after the decision can change or trigger a release.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from sqlmodel import select

from agents.errors import InvalidState, NotFound, ReleaseError
from agents.templating import render

from . import audit
from .db import lock_row, transaction
from .models import Decision, Release, Run, WorkItem, utcnow

RELEASABLE = {"approve", "edit"}


def released_content(item: WorkItem, decision: Decision) -> str:
    if decision.action not in RELEASABLE:
        raise ReleaseError(f"work item {item.id} was not approved ({decision.action}); nothing is released")
    return decision.edited_output if decision.action == "edit" else item.draft


def release_run(ws, run_id: int, *, actor: str):
    from .runs import RunResult

    with transaction(ws.engine) as s:
        run = s.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    scenario = ws.stored_scenario(run.scenario_sha256).spec  # read before taking the write lock
    with transaction(ws.engine) as s:
        run = lock_row(s, Run, run_id)
        existing = s.exec(select(Release).where(Release.run_id == run_id)).first()
        if existing is not None:
            return RunResult(run=run, item=s.get(WorkItem, existing.item_id), release=existing)
        decision = s.exec(select(Decision).where(Decision.run_id == run_id, Decision.action.in_(RELEASABLE))).first()
        if decision is None:
            raise InvalidState(f"run {run_id} has no approved work item; nothing can be released")
        item = s.get(WorkItem, decision.item_id)
        content = released_content(item, decision)
        name = _file_name(scenario, run)
        folder = ws.settings.outbox / scenario.id
        path = folder / f"{name}.{scenario.extension}"
        digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
        location = str(path.relative_to(ws.settings.home))
        rel = Release(run_id=run_id, item_id=item.id, destination=scenario.release.to, location=location, sha256=digest)
        s.add(rel)
        run.status, run.error, run.updated_at = "released", None, utcnow()
        s.add(run)
        audit.emit(s, audit.OutputReleased(destination=rel.destination, location=location, sha256=digest,
                                           decision=decision.action), actor=actor, run_id=run_id, item_id=item.id)
        s.flush()
        # The file is written last inside the transaction: if it fails nothing is recorded; if the
        # commit fails after it, a retry writes the same bytes to the same path.
        _write_once(path, content, digest)
    return RunResult(run=run, item=item, release=rel)


def _file_name(spec, run: Run) -> str:
    context = {"run": {"id": run.id, "date": run.created_at.date().isoformat()},
               "scenario": {"id": spec.id, "name": spec.name, "version": spec.version}, "inputs": run.inputs}
    name = render(spec.release.filename, context, where=f"scenario '{spec.id}': release.filename")
    name = re.sub(r"[^\w.\-]+", "-", name, flags=re.UNICODE).strip(".-")[:120]
    return name or f"run-{run.id}"


def _write_once(path: Path, content: str, digest: str) -> None:
    data = content.encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            if hashlib.sha256(path.read_bytes()).hexdigest() == digest:
                return
            raise ReleaseError(f"{path} already exists with other content; refusing to overwrite a released file")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise ReleaseError(f"cannot write {path}: {e.strerror or e}") from None


def list_releases(ws) -> list[Release]:
    with transaction(ws.engine) as s:
        return list(s.exec(select(Release).order_by(Release.id)).all())
