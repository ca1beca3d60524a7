"""Release: deliver an approved output, exactly once, to its destination.

What is released is what the guardian approved, byte for byte: the draft as queued, or the
guardian's edit. It is read from the decision record, never from the agent's state, so nothing
the model says after the decision can change or trigger a release. The file carries it with its
labels (guardians/labels.py): the explicit one a reader sees, saying that AI drafted it and who
approved it, and the signed implicit one, in a sidecar beside it (and inside Markdown files).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import col, select

from dew.agents.errors import DewError
from dew.guardians.errors import InvalidState, NotFound, ReleaseError

from . import audit, labels
from .chainhead import workspace_key
from .db import locked, must_get, transaction
from .models import Action, Decision, Guardian, Release, Run, RunStatus, SignOff, User, WorkItem, utcnow

if TYPE_CHECKING:
    from dew.agents.spec import Scenario

    from .workspace import Workspace

RELEASABLE = [a.value for a in Action if a.releases]


@dataclass
class Released:
    """A delivered release: the run (now `released`), the approved item, the record and the bytes."""

    run: Run
    item: WorkItem
    release: Release
    content: str  # the approved text, without its labels (what a hand-off passes on)


def released_content(item: WorkItem, decision: Decision) -> str:
    if not Action(decision.action).releases:
        raise ReleaseError(f"work item {item.id} was not approved ({decision.action}); nothing is released")
    if decision.action == Action.EDIT:
        if decision.edited_output is None:
            raise ReleaseError(f"work item {item.id} was approved with an edit, but the edit is missing")
        return decision.edited_output
    return item.draft


def release_run(ws: Workspace, run_id: int, *, actor: str, run: Run | None = None) -> Released:
    """Release the approved output of a run, once. Calling it again only completes delivery.

    The file and its label's sidecar are staged (written and fsynced beside the outbox) inside the
    transaction that records the release, and moved into the outbox only after that transaction
    commits: a consumer of the outbox never sees an output whose release is not on record. If the
    process dies between the commit and the move, `dew retry RUN` completes the delivery, from the
    approved text and the label the trail recorded. `run`: the run as the caller just read it, for
    its scenario version (which never changes), saving a transaction.
    """
    if run is None:
        with transaction(ws.engine) as s:
            run = s.get(Run, run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
    _refuse_if_cleared(run)
    scenario = ws.stored_scenario(run.scenario_sha256).spec  # read before taking the write lock
    # Imported here: reading a release (every listing) needs no scenario model or Jinja2.
    from dew.agents.templating import run_values

    try:
        key = workspace_key(ws)  # made (and recorded) on first use, in a transaction of its own
        with transaction(ws.engine) as s:
            run = locked(s, Run, run_id)
            _refuse_if_cleared(run)  # again under the lock: retention may have cleared it since
            decision = s.exec(
                select(Decision).where(Decision.run_id == run_id, col(Decision.action).in_(RELEASABLE))
            ).first()
            if decision is None:
                raise InvalidState(f"run {run_id} has no approved work item; nothing can be released")
            item = must_get(s, WorkItem, decision.item_id)
            content = released_content(item, decision)
            rel = s.exec(select(Release).where(Release.run_id == run_id)).first()
            if rel is None:
                name = f"{_file_name(scenario, run)}.{scenario.extension}"
                location = (ws.settings.outbox / scenario.id / name).relative_to(ws.settings.home).as_posix()
                label = labels.make_label(
                    key, spec=scenario, scenario_sha256=run.scenario_sha256,
                    run=run_values(run.id, run.created_at.date()), item_id=item.key, file_name=name,
                    content=content, approval=_approval(s, item, decision),
                )  # fmt: skip
                files = labels.compose(content, label)
                rel = Release(run_id=run_id, item_id=item.key, destination=scenario.release.to, location=location,
                              sha256=files.sha256)  # fmt: skip
                s.add(rel)
                run.status, run.error, run.updated_at = RunStatus.RELEASED, None, utcnow()
                s.add(run)
                audit.emit(
                    s,
                    audit.OutputReleased(
                        destination=rel.destination, location=location, sha256=files.sha256,
                        decision=decision.action, content_sha256=labels.sha256_text(content), label=label,
                    ),
                    actor=actor,
                    run_id=run_id,
                    item_id=item.key,
                )  # fmt: skip
                s.flush()
                _stage(ws, rel.location, files)
            else:
                files = labels.released_files(s, rel, content)
                if files.sha256 != rel.sha256:
                    raise ReleaseError(f"the approved text and its recorded label do not make the file recorded "
                                       f"(sha256 {rel.sha256[:12]}…); check the trail with: dew audit verify")  # fmt: skip
        _publish(ws, rel.location, files)
    except DewError as e:
        if isinstance(e, InvalidState):
            raise
        raise ReleaseError(
            f"run {run_id}: the approval is recorded but the release failed: {e.message}; "
            f"fix the cause, then run: dew retry {run_id}"
        ) from e
    return Released(run=run, item=item, release=rel, content=content)


def _refuse_if_cleared(run: Run) -> None:
    if run.cleared_at is not None:
        raise InvalidState(
            f"run {run.key}'s texts were cleared by retention on {run.cleared_at:%Y-%m-%d}: its release cannot be "
            "written again from this workspace (the trail keeps its hashes; the recipient keeps the file)"
        )


def _approval(s, item: WorkItem, decision: Decision) -> labels.Approval:
    signoffs = s.exec(select(SignOff).where(SignOff.item_id == item.key).order_by(col(SignOff.stage))).all()
    return labels.Approval(
        guardian=decision.actor,
        name=_person_name(s, decision.actor),
        at=decision.created_at,
        action=decision.action,
        rule=decision.rule,
        auth_method=decision.auth_method,
        signoffs=[
            {
                "stage": so.stage_name,
                "by": so.actor,
                "name": _person_name(s, so.actor),
                "at": labels.when(so.created_at).isoformat(),
            }
            for so in signoffs
        ],
    )


def _person_name(s, person: str) -> str:
    """The name a label gives a person: the roster's, else the user's, else the id itself."""
    for model in (Guardian, User):
        row = s.get(model, person)
        if row is not None and row.name:
            return row.name
    return person


MAX_NAME_BYTES = 150  # well under the 255-byte limit of common filesystems, with room for the suffix


def _file_name(spec: Scenario, run: Run) -> str:
    from dew.agents.templating import render, run_values, scenario_context

    context = scenario_context(spec, run=run_values(run.id, run.created_at.date()), inputs=run.inputs)
    name = render(spec.release.filename, context, where=f"scenario '{spec.id}': release.filename")
    name = re.sub(r"[^\w.\-]+", "-", name, flags=re.UNICODE).strip(".-")
    name = name.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore").rstrip(".-")
    return name or f"run-{run.id}"


def _staging_path(ws: Workspace, location: str) -> Path:
    return ws.settings.outbox / ".staging" / location


def _stage(ws: Workspace, location: str, files: labels.Composed) -> None:
    final = ws.settings.home / location
    if final.exists() and file_sha256(final) != files.sha256:
        raise ReleaseError(f"{final} already exists with other content; refusing to overwrite a released file")
    try:  # surface a path problem now, while the release can still be rolled back
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReleaseError(f"cannot write {final}: {e.strerror or e}") from e
    if files.sidecar is not None:
        _write_synced(_staging_path(ws, labels.sidecar_location(location)), files.sidecar.encode("utf-8"))
    _write_synced(_staging_path(ws, location), files.text.encode("utf-8"))


def _publish(ws: Workspace, location: str, files: labels.Composed) -> None:
    """Move the staged files into the outbox, the sidecar first so the file never arrives without
    it; a stage that is gone is written again from the recorded content."""
    if files.sidecar is not None:
        _place(ws, labels.sidecar_location(location), files.sidecar)
    _place(ws, location, files.text)


def _place(ws: Workspace, location: str, text: str) -> None:
    final = ws.settings.home / location
    digest = labels.sha256_text(text)
    if final.exists():
        if file_sha256(final) != digest:
            raise ReleaseError(f"{final} already exists with other content; refusing to overwrite a released file")
        return
    staged = _staging_path(ws, location)
    try:
        if not (staged.exists() and file_sha256(staged) == digest):
            _write_synced(staged, text.encode("utf-8"))
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        _fsync_dir(final.parent)
    except OSError as e:
        raise ReleaseError(f"cannot write {final}: {e.strerror or e}") from e


def _write_synced(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:40]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
    except OSError as e:
        raise ReleaseError(f"cannot write {path}: {e.strerror or e}") from e


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    """The hash a released file is recorded and checked by."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def list_releases(ws: Workspace) -> list[Release]:
    with transaction(ws.engine) as s:
        return list(s.exec(select(Release).order_by(col(Release.id))).all())
