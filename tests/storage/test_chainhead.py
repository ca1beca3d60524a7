"""Signed checkpoints kept outside the database catch a truncated or rebuilt trail, on every backend."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from dew.agents.errors import InputInvalid
from dew.guardians import audit
from dew.guardians.chainhead import key_path, read_checkpoint, verify_checkpoints, workspace_key, write_checkpoint
from dew.guardians.db import transaction
from dew.guardians.errors import AuditBroken
from dew.guardians.runs import start_run

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}


@pytest.fixture
def signed(make_workspace, database_url, tmp_path):
    ws = make_workspace(database_url)
    workspace_key(ws)  # made when the workspace was set up, long before the checkpoint
    start_run(ws, "drill-script", DRILL, requester="alice")
    path, body = write_checkpoint(ws, tmp_path / "elsewhere" / "cp.json")
    start_run(ws, "drill-script", DRILL, requester="bob")  # the trail goes on after the checkpoint
    return ws, path, body


def test_the_trail_extends_its_checkpoint_and_the_key_stays_private(signed):
    ws, path, body = signed
    cp = read_checkpoint(path)
    assert (cp.seq, cp.hash) == (body["seq"], body["hash"])
    with transaction(ws.engine) as s:
        verify_checkpoints(s, [cp], audit.verify(s))
        kinds = [e.kind for e in audit.events(s)]
    assert "workspace.key_created" in kinds and "audit.checkpoint_signed" in kinds
    assert key_path(ws).stat().st_mode & 0o077 == 0  # readable by its owner only
    assert "PRIVATE KEY" not in path.read_text(encoding="utf-8")


def test_an_altered_checkpoint_is_refused(signed):
    _, path, body = signed
    path.write_text(json.dumps({**body, "seq": body["seq"] - 1}), encoding="utf-8")
    with pytest.raises(InputInvalid, match="the signature does not match the checkpoint"):
        read_checkpoint(path)


def test_a_truncated_trail_is_caught(signed):
    ws, path, body = signed
    with transaction(ws.engine) as s:  # drop the checkpointed event and all after it, head included
        s.exec(text("DELETE FROM audit_events WHERE seq >= :n").bindparams(n=body["seq"]))
        prev = s.exec(text("SELECT hash FROM audit_events WHERE seq = :n").bindparams(n=body["seq"] - 1)).one()[0]
        s.exec(text("UPDATE audit_head SET seq = :n, hash = :h").bindparams(n=body["seq"] - 1, h=prev))
    with transaction(ws.engine) as s:
        verified = audit.verify(s)  # consistent on its own…
        with pytest.raises(
            AuditBroken,
            match=f"audit event {body['seq']} is gone; the trail ends at event {body['seq'] - 1}: it was truncated",
        ):
            verify_checkpoints(s, [read_checkpoint(path)], verified)  # …but not with the checkpoint kept elsewhere


def test_a_rebuilt_trail_is_caught(signed):
    ws, path, body = signed
    with transaction(ws.engine) as s:  # rebuild a consistent history from scratch, the key record kept
        keyed = s.exec(text("SELECT data FROM audit_events WHERE kind = 'workspace.key_created'")).one()[0]
        s.exec(text("DELETE FROM audit_events"))
        s.exec(text("UPDATE audit_head SET seq = 0, hash = :g").bindparams(g=audit.GENESIS))
    with transaction(ws.engine) as s:
        audit.emit(s, audit.WorkspaceKeyCreated(public_key=json.loads(keyed)["public_key"]), actor="dew")
        for _ in range(body["seq"] + 3):
            audit.emit(s, audit.RunRetried(attempt=1), actor="forger")
    with transaction(ws.engine) as s:
        verified = audit.verify(s)  # consistent on its own…
        with pytest.raises(
            AuditBroken, match=f"audit event {body['seq']} is not the one checkpointed: the trail was rewritten"
        ):
            verify_checkpoints(s, [read_checkpoint(path)], verified)


def test_a_checkpoint_of_another_workspace_is_named(signed, make_workspace, tmp_path):
    ws, _, _ = signed
    other = make_workspace(f"sqlite:///{tmp_path / 'other.db'}", home=tmp_path / "other")
    foreign, _ = write_checkpoint(other, tmp_path / "foreign.json")
    with transaction(ws.engine) as s, pytest.raises(AuditBroken, match="signed by a key this trail never recorded"):
        verify_checkpoints(s, [read_checkpoint(foreign)], audit.verify(s))


def test_the_server_signs_a_checkpoint_on_its_timer_only_when_the_trail_moved(make_workspace, tmp_path):
    import time

    from dew.guardians.clock import Clock, checkpoint_if_moved

    class Nobody:  # the clock's other work would submit jobs; none are queued here
        def submit(self, job):
            raise AssertionError(job)

    ws = make_workspace()
    start_run(ws, "drill-script", DRILL, requester="alice")
    folder = tmp_path / "write-once"
    first = checkpoint_if_moved(ws, folder)
    assert first is not None and first.parent == folder
    assert checkpoint_if_moved(ws, folder) is None  # only the checkpoint's own event since

    start_run(ws, "drill-script", DRILL, requester="bob")
    clock = Clock(ws, Nobody(), every=0.05, checkpoint_every=0.05, checkpoint_dir=folder)
    clock.start()
    try:
        deadline = time.monotonic() + 20
        while len(list(folder.glob("*.json"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        clock.stop()
    files = sorted(folder.glob("*.json"))
    assert len(files) == 2  # the trail moved once: one more checkpoint, however often the clock ticked
    with transaction(ws.engine) as s:
        verify_checkpoints(s, [read_checkpoint(f) for f in files], audit.verify(s))
