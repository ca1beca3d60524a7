"""Properties of the trail, over changes hypothesis picks: any single change, deletion, insertion or
reordering of audit rows is detected by `audit.verify`; a truncation that also rewrites the head
(so the chain alone looks whole) is detected against a checkpoint kept elsewhere.

The trail is made once through the real service (runs, decisions, a signed one, a release) and
copied per example, so each example tampers with a fresh SQLite file as someone with the file would.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from dew.agents.testing import ScriptedModelProvider
from dew.guardians import audit
from dew.guardians.chainhead import read_checkpoint, verify_checkpoints, write_checkpoint
from dew.guardians.db import transaction
from dew.guardians.errors import AuditBroken
from dew.guardians.flow import decide
from dew.guardians.runs import start_run
from dew.guardians.workspace import Settings, Workspace

from .. import signatures
from ..conftest import SCENARIOS

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}
FIELDS = ["seq", "at", "kind", "actor", "run_id", "item_id", "data", "prev_hash", "hash"]
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def trail(tmp_path_factory) -> tuple[Path, int, Path]:
    """A SQLite trail of a few dozen events, and a checkpoint of it taken half-way."""
    home = tmp_path_factory.mktemp("trail")
    scenarios = home / "scenarios"
    shutil.copytree(SCENARIOS, scenarios, ignore=shutil.ignore_patterns("__pycache__"))
    db = home / "dew.db"
    ws = Workspace(
        Settings(home=home, scenarios_dir=scenarios, database_url=f"sqlite:///{db}"), ScriptedModelProvider()
    )
    try:
        first = start_run(ws, "drill-script", DRILL, requester="alice")
        decide(ws, first.item.id, actor="zhao.lei", action="approve")
        checkpoint, _ = write_checkpoint(ws, home / "elsewhere" / "checkpoint.json")
        second = start_run(ws, "drill-script", DRILL, requester="bob")
        signatures.decide(ws, second.item.id, actor="zhao.lei", action="reject", note="no")
        third = start_run(ws, "drill-script", DRILL, requester="alice")
        decide(ws, third.item.id, actor="zhao.lei", action="revise", note="again")
        with transaction(ws.engine) as s:
            count = audit.verify(s).events
    finally:
        ws.close()
    return db, count, checkpoint


def _copy(trail, tmp_path_factory) -> tuple[Path, int]:
    db, count, _ = trail
    copy = tmp_path_factory.mktemp("copy") / "dew.db"
    shutil.copyfile(db, copy)
    return copy, count


def _verify(
    db: Path, checkpoint: Path | None = None, anchors: list[tuple[int, str]] | None = None
) -> audit.Verification:
    """Verify in order, and in three parts at once (two of them in forked processes, as
    `dew audit verify` does with a long trail): the two must agree, to the first bad event named
    and the words that name it."""
    outcomes = []
    for processes in (1, 3):
        engine = create_engine(f"sqlite:///{db}")
        try:
            with transaction(engine) as s, patch.object(audit, "MIN_PART", 1):
                result = audit.verify(s, anchors or [], processes=processes)
                if checkpoint is not None:
                    verify_checkpoints(s, [read_checkpoint(checkpoint)], result)
                outcomes.append((result.events, result.head))
        except AuditBroken as e:
            outcomes.append((e.seq, str(e)))
        finally:
            engine.dispose()
    assert outcomes[0] == outcomes[1]
    if len(outcomes[0][1]) != 64:
        raise AuditBroken(*outcomes[0])
    return result


def _row(con: sqlite3.Connection, seq: int) -> dict:
    cur = con.execute(f"SELECT {', '.join(FIELDS)} FROM audit_events WHERE seq = ?", (seq,))
    return dict(zip(FIELDS, cur.fetchone(), strict=True))


def _different(value, salt: int):
    """A value of the same kind that is certainly not `value`."""
    if value is None:
        return salt
    if isinstance(value, int):
        return value + 1 + salt % 1000
    text = str(value)
    if not text:
        return "x"
    i = salt % len(text)
    replacement = "0" if text[i] != "0" else "1"
    return text[:i] + replacement + text[i + 1 :]


def test_the_untouched_copy_verifies(trail, tmp_path_factory):
    db, count = _copy(trail, tmp_path_factory)
    result = _verify(db, trail[2])
    assert result.events == count and result.parts == 3  # checked in three parts at once, and joined


@pytest.mark.parametrize("where", ["first part", "second part", "third part", "past the head"])
def test_anchors_are_checked_in_whichever_part_holds_them(trail, tmp_path_factory, where):
    db, count = _copy(trail, tmp_path_factory)
    seq = {"first part": 1, "second part": count // 2, "third part": count, "past the head": count + 5}[where]
    with sqlite3.connect(db) as con:
        stored = _row(con, min(seq, count))["hash"]
    if seq <= count:
        assert _verify(db, anchors=[(seq, stored)]).parts == 3
    with pytest.raises(AuditBroken) as e:
        _verify(db, anchors=[(seq, "f" * 64)])
    assert e.value.seq == seq


@PROPERTY
@given(data=st.data())
def test_any_single_change_to_any_field_of_any_row_is_detected(trail, tmp_path_factory, data):
    db, count = _copy(trail, tmp_path_factory)
    seq = data.draw(st.integers(1, count), label="row")
    field = data.draw(st.sampled_from([f for f in FIELDS if f != "seq"]), label="field")
    salt = data.draw(st.integers(0, 10**6), label="salt")
    with sqlite3.connect(db) as con:
        old = _row(con, seq)[field]
        con.execute(f"UPDATE audit_events SET {field} = ? WHERE seq = ?", (_different(old, salt), seq))
    with pytest.raises(AuditBroken):
        _verify(db)


@PROPERTY
@given(data=st.data())
def test_any_deletion_insertion_or_reordering_is_detected(trail, tmp_path_factory, data):
    db, count = _copy(trail, tmp_path_factory)
    how = data.draw(st.sampled_from(["delete", "insert", "swap", "renumber"]), label="how")
    with sqlite3.connect(db) as con:
        if how == "delete":
            con.execute("DELETE FROM audit_events WHERE seq = ?", (data.draw(st.integers(1, count), label="row"),))
        elif how == "insert":  # a copy of an existing event, appended or squeezed in
            source = _row(con, data.draw(st.integers(1, count), label="copied"))
            source["seq"] = data.draw(st.sampled_from([count + 1, count + 1000]), label="at")
            con.execute(f"INSERT INTO audit_events ({', '.join(FIELDS)}) VALUES ({', '.join('?' * len(FIELDS))})",
                        [source[f] for f in FIELDS])  # fmt: skip
        elif how == "swap":  # two events change places (each keeps its own content and hashes)
            a = data.draw(st.integers(1, count - 1), label="a")
            b = data.draw(st.integers(a + 1, count), label="b")
            ra, rb = _row(con, a), _row(con, b)
            for seq, row in ((a, rb), (b, ra)):
                sets = ", ".join(f"{f} = ?" for f in FIELDS if f != "seq")
                con.execute(
                    f"UPDATE audit_events SET {sets} WHERE seq = ?", [row[f] for f in FIELDS if f != "seq"] + [seq]
                )
        else:  # the last events renumbered to close a gap left by a deletion
            gone = data.draw(st.integers(1, count - 1), label="gone")
            con.execute("DELETE FROM audit_events WHERE seq = ?", (gone,))
            con.execute("UPDATE audit_events SET seq = seq - 1 WHERE seq > ?", (gone,))
            con.execute("UPDATE audit_head SET seq = seq - 1")
    with pytest.raises(AuditBroken):
        _verify(db)


@PROPERTY
@given(keep=st.integers(1, 40))
def test_a_truncation_that_rewrites_the_head_is_caught_by_a_checkpoint(trail, tmp_path_factory, keep):
    db, count = _copy(trail, tmp_path_factory)
    cp = read_checkpoint(trail[2])
    keep = min(keep, count - 1)
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM audit_events WHERE seq > ?", (keep,))
        last = _row(con, keep)
        con.execute("UPDATE audit_head SET seq = ?, hash = ?", (keep, last["hash"]))
    _verify(db)  # the chain alone looks whole: only what was kept elsewhere can tell
    if keep >= cp.seq:
        _verify(db, trail[2])  # the checkpointed prefix is still there: nothing to catch
    else:
        with pytest.raises(AuditBroken, match="truncated"):
            _verify(db, trail[2])


def test_events_appended_while_verify_reads_are_not_taken_for_tampering(make_workspace, database_url, monkeypatch):
    """A server goes on recording while an auditor verifies: on PostgreSQL each batch reads what
    was committed when it started, so verify checks the chain up to the head it read first. (On
    SQLite a write transaction takes the lock first, so writers would wait; see the next test.)"""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite: a writer waits for a verify made in a write transaction (dew's read through db.reading)")
    ws = make_workspace()
    start_run(ws, "drill-script", DRILL, requester="alice")
    stored = audit._stored_rows

    def meanwhile(cursor, sqlite, after, upto, batch=20_000):
        for rows in stored(cursor, sqlite, after, upto, batch=2):
            with transaction(ws.engine) as other:  # another connection appends and commits
                audit.emit(other, audit.ScenarioResumed(scenario="drill-script", note="meanwhile"), actor="root")
            yield rows

    monkeypatch.setattr(audit, "_stored_rows", meanwhile)
    with transaction(ws.engine) as s:
        result = audit.verify(s)
    monkeypatch.undo()
    with transaction(ws.engine) as s:
        assert audit.verify(s).events > result.events  # and what came meanwhile verifies next time


def test_a_long_read_holds_up_no_writer_and_sees_one_snapshot(make_workspace):
    """Verify, reports, exports and checkpoints read through `reading`: people deciding meanwhile
    are not held up (SQLite would otherwise hold its write lock for the whole read), and the read
    sees the trail as it was when it began."""
    import threading

    from dew.guardians.db import reading
    from dew.guardians.models import AuditHead

    ws = make_workspace()
    start_run(ws, "drill-script", DRILL, requester="alice")
    with reading(ws.engine) as s:
        before = s.get(AuditHead, 1).seq
        audit.verify(s)
        wrote = threading.Event()

        def decide_meanwhile():
            start_run(ws, "drill-script", DRILL, requester="bob")  # its own transactions, committed
            wrote.set()

        writer = threading.Thread(target=decide_meanwhile)
        writer.start()
        writer.join(60)
        assert wrote.is_set()  # it did not wait for this read to end
        s.expire_all()
        assert s.get(AuditHead, 1).seq == before  # and this read still sees its snapshot
        assert audit.verify(s).events == before
    with transaction(ws.engine) as s:
        assert s.get(AuditHead, 1).seq > before
