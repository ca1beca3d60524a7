"""The roster: who may own queues and decide. Seeded from `guardians.yaml` next to the scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import col, select

from dew.agents.errors import InputInvalid, ScenarioInvalid
from dew.agents.names import PERSON_PATTERN, ROSTER_FILE
from dew.guardians.errors import NotAuthorized, NotFound

from .audit import GuardianAdded, emit
from .db import lock_row, transaction
from .identity import person_id
from .models import AuditHead, Guardian
from .users import has_users, is_admin

if TYPE_CHECKING:
    from .workspace import Workspace


class RosterEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=PERSON_PATTERN)
    name: str = Field(min_length=1)
    title: str = ""


class RosterFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    guardians: list[RosterEntry] = Field(default_factory=list)


def read_roster(path: Path) -> list[RosterEntry]:
    text = path.read_text(encoding="utf-8")
    try:
        # libyaml's loader where PyYAML has it: every command reads this file.
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        return RosterFile.model_validate(data).guardians
    except yaml.YAMLError as fast:
        error: yaml.YAMLError = fast
        try:  # read again by the Python loader, whose message quotes the line and points at the fault
            yaml.safe_load(text)
        except yaml.YAMLError as e:
            error = e
        mark = getattr(error, "problem_mark", None)
        raise ScenarioInvalid(str(path), [f"{path}:{mark.line + 1 if mark else 1}: invalid YAML: {error}"]) from None
    except ValidationError as e:
        problems = [f"{path}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ScenarioInvalid(str(path), problems) from None


def sync_roster_file(ws: Workspace) -> int:
    """Add or update the people the roster file lists. Returns how many changed."""
    path = ws.settings.scenarios_dir / ROSTER_FILE
    if not path.is_file():
        return 0
    changed = 0
    entries = read_roster(path)
    with transaction(ws.engine) as s:
        ids = [e.id for e in entries]
        stored = {
            g.id: g
            for at in range(0, len(ids), 500)  # a bound number of parameters per statement, for any roster
            for g in s.exec(select(Guardian).where(col(Guardian.id).in_(ids[at : at + 500])))
        }
        if all(_same(stored.get(e.id), e) for e in entries):
            return 0  # the usual case: one query, nothing to write, no lock taken
        # Processes opening the workspace at once must not both add the same person: the chain's
        # head lock serializes them, and rows are read again once it is held.
        lock_row(s, AuditHead, 1)
        s.expire_all()
        for entry in entries:
            row = s.get(Guardian, entry.id)
            if _same(row, entry):
                continue
            changed += 1
            if row is None:
                row = Guardian(id=entry.id, name=entry.name, title=entry.title)
            else:
                row.name, row.title = entry.name, entry.title
            s.add(row)
            emit(
                s,
                GuardianAdded(guardian=entry.id, name=entry.name, title=entry.title, source="roster-file"),
                actor="roster",
            )
    return changed


def _same(row: Guardian | None, entry: RosterEntry) -> bool:
    return row is not None and (row.name, row.title) == (entry.name, entry.title)


def add_guardian(ws: Workspace, guardian_id: str, name: str, title: str = "", *, actor: str) -> Guardian:
    """Add a person to the roster. In a workspace with users, only an admin may; without users,
    only someone already on the roster (the roster file, in the scenario folder, is the other way in)."""
    actor = person_id(actor, what="who adds a guardian")
    guardian_id = person_id(guardian_id, what="the new guardian's id")
    try:
        entry = RosterEntry(id=guardian_id, name=name, title=title)
    except ValidationError as e:
        raise InputInvalid(f"invalid guardian: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}") from None
    with transaction(ws.engine) as s:
        someone = s.exec(select(Guardian).where(col(Guardian.active))).first()
        adder = s.get(Guardian, actor)
        if has_users(s):
            if not is_admin(s, actor):
                raise NotAuthorized(f"only an admin may add to the roster; '{actor}' is not an active admin")
        elif someone is not None and (adder is None or not adder.active):
            raise NotAuthorized(
                f"'{actor}' is not on the guardian roster, so may not add to it; "
                "ask someone on the roster, or add the person to guardians.yaml in the scenario folder"
            )
        if s.get(Guardian, entry.id) is not None:
            raise InputInvalid(f"'{entry.id}' is already on the roster")
        row = Guardian(id=entry.id, name=entry.name, title=entry.title)
        s.add(row)
        emit(s, GuardianAdded(guardian=entry.id, name=entry.name, title=entry.title, source="cli"), actor=actor)
    return row


def list_guardians(ws: Workspace) -> list[Guardian]:
    with transaction(ws.engine) as s:
        return list(s.exec(select(Guardian).order_by(col(Guardian.id))).all())


def get_guardian(session, guardian_id: str) -> Guardian:
    row = session.get(Guardian, guardian_id)
    if row is None or not row.active:
        raise NotFound(f"'{guardian_id}' is not on the guardian roster")
    return row
