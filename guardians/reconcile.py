"""Reconciliation: is every release delivered as recorded? Found by `dew audit verify`, repaired by `dew repair`.

A release is recorded (and its file staged) in one transaction and published into the outbox
after it commits; a hand-off starts after that. A process killed between those steps leaves a
release whose file is missing, or whose hand-off never started, and stray staging files. Each is
found here from the records themselves, so nothing ends in that state silently:

- `file_missing`: a release whose file is not in the outbox (repaired: published again from the
  recorded, approved content);
- `file_differs`: a released file whose bytes no longer match the approved hash (reported, never
  overwritten: a person must look at who changed it);
- `label_missing`: a released file whose label's sidecar (`<file>.label.json`) is not beside it
  (repaired: written again from the label the trail recorded);
- `label_differs`: a sidecar that is not the one released (reported, never overwritten);
- `handoff_missing`: a released run whose scenario hands off, with no hand-off run and no record
  of it being skipped or failing (repaired: the hand-off is started);
- `stray_file`: a staging or temporary file with no release behind it (repaired: removed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import col, select

from . import audit, labels
from .db import transaction
from .models import AuditEvent, Release, Run
from .release import file_sha256

if TYPE_CHECKING:
    from .workspace import Workspace

HANDOFF_SETTLED = ("run.handed_off", "run.handoff_skipped", "run.handoff_failed")


@dataclass(frozen=True)
class Problem:
    kind: str  # file_missing | file_differs | label_missing | label_differs | handoff_missing | stray_file
    detail: str
    run_id: int | None = None
    location: str | None = None

    @property
    def repairable(self) -> bool:
        return self.kind not in ("file_differs", "label_differs")

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "run_id": self.run_id, "location": self.location, "detail": self.detail,
                "repairable": self.repairable}  # fmt: skip


def find_problems(ws: Workspace) -> list[Problem]:
    home = ws.settings.home
    problems: list[Problem] = []
    with transaction(ws.engine) as s:
        releases = s.exec(select(Release, Run).where(Release.run_id == Run.id).order_by(col(Release.id))).all()
        settled = set(s.exec(select(AuditEvent.run_id).where(col(AuditEvent.kind).in_(HANDOFF_SETTLED))).all())
        children = set(s.exec(select(Run.parent_run_id).where(col(Run.parent_run_id).is_not(None))).all())
        released = {ev.run_id: json.loads(ev.data).get("label") for ev in audit.events(s, kinds=["output.released"])}
    recorded = set()
    for rel, run in releases:
        recorded.add(rel.location)
        path = home / rel.location
        label = released.get(run.id)
        if label is not None:
            recorded.add(labels.sidecar_location(rel.location))
        if not path.exists():
            problems.append(Problem("file_missing", f"run {run.id} was released to {rel.location}, which is not there",
                                    run.id, rel.location))  # fmt: skip
        elif file_sha256(path) != rel.sha256:
            problems.append(Problem("file_differs", f"{rel.location} is not what was approved (sha256 {rel.sha256[:12]}…)"
                                    "; it was changed after release: find out by whom, then move it aside and repair",
                                    run.id, rel.location))  # fmt: skip
        if label is not None and path.exists():  # a missing file is repaired with its sidecar
            problems += _sidecar_problems(home, rel.location, label, run.key)
        spec = ws.stored_scenario(run.scenario_sha256).spec
        if spec.release.handoff and run.id not in children and run.id not in settled:
            problems.append(Problem("handoff_missing", f"run {run.id} was released but its hand-off to "
                                    f"'{spec.release.handoff.scenario}' never started", run.id))  # fmt: skip
    for stray in _staging_files(ws):
        location = stray.relative_to(home).as_posix()
        staged_for = stray.relative_to(ws.settings.outbox / ".staging").as_posix() if _in_staging(ws, stray) else None
        if staged_for is not None and staged_for in recorded and not (home / staged_for).exists():
            continue  # the staged copy of a missing file: publishing it is the repair of that file
        problems.append(Problem("stray_file", f"{location} has no release behind it (left by an interrupted write)",
                                location=location))  # fmt: skip
    return problems


def _sidecar_problems(home: Path, location: str, label: dict, run_id: int) -> list[Problem]:
    where = labels.sidecar_location(location)
    sidecar = home / where
    if not sidecar.is_file():
        return [Problem("label_missing", f"{where}, the label of run {run_id}'s release, is not there", run_id, where)]
    if sidecar.read_bytes() != labels.sidecar_text(label).encode("utf-8"):
        return [Problem("label_differs", f"{where} is not the label released with run {run_id}; it was changed after "
                        "release: find out by whom, then move it aside and repair", run_id, where)]  # fmt: skip
    return []


def _staging_files(ws: Workspace) -> list[Path]:
    outbox = ws.settings.outbox
    if not outbox.exists():
        return []
    staged = [p for p in (outbox / ".staging").rglob("*") if p.is_file()] if (outbox / ".staging").exists() else []
    temps = [p for p in outbox.rglob(".*.tmp") if p.is_file() and not _in_staging(ws, p)]
    return sorted(staged + temps)


def _in_staging(ws: Workspace, path: Path) -> bool:
    return path.is_relative_to(ws.settings.outbox / ".staging")


def repair(ws: Workspace, *, actor: str) -> list[tuple[Problem, str]]:
    """Repair what can be repaired; return each problem with what was done about it."""
    from .flow import retry_run

    done: list[tuple[Problem, str]] = []
    runs_repaired: set[int] = set()
    for p in find_problems(ws):
        if p.kind in ("file_missing", "label_missing", "handoff_missing") and p.run_id is not None:
            if p.run_id not in runs_repaired:
                result = retry_run(ws, p.run_id, actor=actor)
                runs_repaired.add(p.run_id)
                outcome = "delivered" + (f"; handed off to run {result.handoff.run.id}" if result.handoff else "")
                if result.handoff_error:
                    outcome += f"; the hand-off failed: {result.handoff_error}"
            else:
                outcome = "repaired with the run's other problem"
        elif p.kind == "stray_file" and p.location is not None:
            (ws.settings.home / p.location).unlink(missing_ok=True)
            outcome = "removed"
        else:
            outcome = "not repaired: needs a person"
        done.append((p, outcome))
    return done
