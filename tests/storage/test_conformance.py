"""The storage contract, run on every backend: a SQLite file and PostgreSQL.

Like langgraph's checkpoint conformance suite: one set of tests, parametrized over backends by
the `database_url` fixture, so SQLite and PostgreSQL cannot drift apart.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import SQLModel

from dew.guardians import audit
from dew.guardians.db import transaction, upgrade
from dew.guardians.errors import AlreadyDecided, AuditBroken
from dew.guardians.flow import decide
from dew.guardians.labels import approved_text
from dew.guardians.queue import item_view
from dew.guardians.release import list_releases, release_run
from dew.guardians.roster import list_guardians
from dew.guardians.runs import start_run

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}


def _head() -> str:
    import dew.guardians.db

    return ScriptDirectory(str(Path(dew.guardians.db.__file__).parent / "migrations")).get_current_head() or ""


HEAD = _head()


def test_the_fast_upgrade_check_knows_the_newest_migration():
    import dew.guardians.db

    assert dew.guardians.db.HEAD == HEAD  # else every command would reload alembic, or skip a migration


def test_migrations_build_exactly_the_model_schema_and_rerun_safely(make_workspace, database_url):
    ws = make_workspace(database_url)
    upgrade(ws.engine)  # a second upgrade is a no-op
    with ws.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(
                conn,
                opts={
                    "include_object": lambda obj, name, type_, reflected, compare_to: (
                        not (type_ == "table" and reflected and compare_to is None)
                    )
                },
            ),
            SQLModel.metadata,
        )
        assert diff == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD


def test_the_whole_governed_cycle(make_workspace, database_url):
    ws = make_workspace(database_url)
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    revised = decide(ws, r.item.id, actor="zhao.lei", action="revise", note="more detail")
    done = decide(ws, revised.item.id, actor="liu.yang", action="approve")
    assert done.run.status == "released" and done.release is not None
    path = ws.settings.home / done.release.location
    assert approved_text(path) == revised.item.draft  # inside its label
    with transaction(ws.engine) as s:
        assert audit.verify(s).events > 6


def test_reopening_the_workspace_resumes_a_paused_run(make_workspace, database_url, tmp_path):
    first = make_workspace(database_url)
    r = start_run(first, "drill-script", DRILL, requester="alice")
    first.close()
    second = make_workspace(database_url)  # a new process would do exactly this
    done = decide(second, r.item.id, actor="zhao.lei", action="approve")
    assert done.run.status == "released"


def test_audit_chain_detects_an_altered_event(make_workspace, database_url):
    ws = make_workspace(database_url)
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    decide(ws, r.item.id, actor="zhao.lei", action="approve")
    with transaction(ws.engine) as s:
        total = audit.verify(s).events
        victim = s.exec(text("SELECT seq FROM audit_events WHERE kind = 'decision.approved'")).scalar()
        s.exec(text("UPDATE audit_events SET actor = 'liu.yang' WHERE seq = :seq").bindparams(seq=victim))
    with transaction(ws.engine) as s, pytest.raises(AuditBroken) as e:
        audit.verify(s)
    assert e.value.seq == victim and "was altered" in e.value.message
    assert total > victim


def test_audit_chain_detects_a_removed_event(make_workspace, database_url):
    ws = make_workspace(database_url)
    start_run(ws, "drill-script", DRILL, requester="alice")
    with transaction(ws.engine) as s:
        s.exec(text("DELETE FROM audit_events WHERE seq = 3"))
    with transaction(ws.engine) as s, pytest.raises(AuditBroken) as e:
        audit.verify(s)
    assert e.value.seq == 3


def test_audit_chain_detects_a_truncated_tail(make_workspace, database_url):
    ws = make_workspace(database_url)
    start_run(ws, "drill-script", DRILL, requester="alice")
    with transaction(ws.engine) as s:
        last = s.exec(text("SELECT max(seq) FROM audit_events")).scalar()
        s.exec(text("DELETE FROM audit_events WHERE seq = :seq").bindparams(seq=last))
    with transaction(ws.engine) as s, pytest.raises(AuditBroken, match="events were removed"):
        audit.verify(s)


def test_audit_chain_detects_a_rehashed_rewrite_of_the_middle(make_workspace, database_url):
    """Recomputing one event's hash after changing it still breaks the link of the next event."""
    ws = make_workspace(database_url)
    start_run(ws, "drill-script", DRILL, requester="alice")
    with transaction(ws.engine) as s:
        ev = s.exec(
            text("SELECT seq, at, kind, run_id, item_id, data, prev_hash FROM audit_events WHERE seq = 2")
        ).one()
        forged = audit.event_hash(ev.seq, ev.at, ev.kind, "forger", ev.run_id, ev.item_id, ev.data, ev.prev_hash)
        s.exec(text("UPDATE audit_events SET actor = 'forger', hash = :h WHERE seq = 2").bindparams(h=forged))
    with transaction(ws.engine) as s, pytest.raises(AuditBroken) as e:
        audit.verify(s)
    assert e.value.seq == 3 and "does not link" in e.value.message


def test_two_racing_decisions_on_one_item_cannot_both_land(make_workspace, database_url):
    ws = make_workspace(database_url)
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    barrier = threading.Barrier(2)
    outcomes: list = []

    def attempt(actor, action, note):
        barrier.wait()
        try:
            decide(ws, r.item.id, actor=actor, action=action, note=note)
            outcomes.append(action)
        except AlreadyDecided:
            outcomes.append("refused")

    threads = [
        threading.Thread(target=attempt, args=("zhao.lei", "approve", None)),
        threading.Thread(target=attempt, args=("liu.yang", "reject", "no")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) in (["approve", "refused"], ["refused", "reject"])
    view = item_view(ws, r.item.id)
    assert view["item"]["status"] in ("approved", "rejected")
    assert len(list_releases(ws)) == (1 if "approve" in outcomes else 0)
    with transaction(ws.engine) as s:
        assert audit.verify(s).events > 0


def test_twenty_racing_decisions_of_every_kind_land_exactly_once(make_workspace, database_url, tmp_path):
    """The adversary's 20-way race, kept in the suite: approve, reject and edit from the guardian
    and the backup at once; exactly one lands, every other is refused as already decided."""
    ws = make_workspace(database_url)
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    attempts = [(("zhao.lei", "liu.yang")[i % 2], ("approve", "reject", "edit")[i % 3]) for i in range(20)]
    barrier = threading.Barrier(len(attempts))
    outcomes: list = []

    def attempt(actor, action):
        barrier.wait()
        try:
            decide(ws, r.item.id, actor=actor, action=action, note="no" if action == "reject" else None,
                   edited=r.item.draft + "\nEdited." if action == "edit" else None)  # fmt: skip
            outcomes.append(action)
        except AlreadyDecided:
            outcomes.append("refused")
        except Exception as e:  # anything else is a failure of the test
            outcomes.append(f"error: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=attempt, args=a) for a in attempts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    winners = [o for o in outcomes if o != "refused"]
    assert len(outcomes) == 20 and len(winners) == 1 and winners[0] in ("approve", "reject", "edit"), outcomes
    assert len(list_releases(ws)) == (0 if winners[0] == "reject" else 1)
    with transaction(ws.engine) as s:
        assert audit.verify(s).events > 0
        kinds = [e.kind for e in audit.events(s)]
    assert sum(k.startswith("decision.") and k != "decision.refused" for k in kinds) == 1
    assert kinds.count("decision.refused") == 19


def test_concurrent_audit_writers_form_one_unbroken_chain(make_workspace, database_url):
    ws = make_workspace(database_url)
    errors: list = []

    def writer(n):
        try:
            for i in range(10):
                with transaction(ws.engine) as s:
                    audit.emit(s, audit.RunRetried(attempt=i), actor=f"writer-{n}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    with transaction(ws.engine) as s:
        result = audit.verify(s)
    roster = len(list_guardians(ws))
    assert result.events == roster + 40  # one event per roster entry, then every write


def test_release_happens_exactly_once_even_when_repeated(make_workspace, database_url):
    ws = make_workspace(database_url)
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    done = decide(ws, r.item.id, actor="zhao.lei", action="approve")
    again = release_run(ws, r.run.id, actor="zhao.lei")
    assert again.release.id == done.release.id
    assert len(list_releases(ws)) == 1
    with transaction(ws.engine) as s:
        kinds = [e.kind for e in audit.events(s)]
    assert kinds.count("output.released") == 1


def test_removing_the_tail_and_the_head_record_is_detected(make_workspace, database_url):
    ws = make_workspace(database_url)
    start_run(ws, "drill-script", DRILL, requester="alice")
    with transaction(ws.engine) as s:
        s.exec(text("DELETE FROM audit_events WHERE seq > 5"))
        s.exec(text("DELETE FROM audit_head"))
    with transaction(ws.engine) as s, pytest.raises(AuditBroken, match="head record is missing"):
        audit.verify(s)
    with pytest.raises(AuditBroken, match="head record is missing"):  # and nothing more is written
        start_run(ws, "drill-script", DRILL, requester="alice")


def test_an_event_appended_outside_dew_is_named(make_workspace, database_url):
    ws = make_workspace(database_url)
    start_run(ws, "drill-script", DRILL, requester="alice")
    with transaction(ws.engine) as s:
        last = s.exec(text("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")).one()
        seq, at, data = last.seq + 1, audit.now_iso(), "{}"
        digest = audit.event_hash(seq, at, "decision.approved", "mallory", None, None, data, last.hash)
        s.exec(
            text(
                "INSERT INTO audit_events (seq, at, kind, actor, data, prev_hash, hash) "
                "VALUES (:seq, :at, 'decision.approved', 'mallory', :data, :prev, :h)"
            ).bindparams(seq=seq, at=at, data=data, prev=last.hash, h=digest)
        )
    with transaction(ws.engine) as s, pytest.raises(AuditBroken) as e:
        audit.verify(s)
    assert e.value.seq == seq and "added outside dew" in e.value.message


def test_an_anchor_kept_outside_detects_a_rebuilt_trail(make_workspace, database_url):
    ws = make_workspace(database_url)
    start_run(ws, "drill-script", DRILL, requester="alice")
    with transaction(ws.engine) as s:
        anchor = audit.parse_anchor(audit.verify(s).anchor)
    # Someone with database access wipes the trail and rebuilds a consistent, shorter one.
    with transaction(ws.engine) as s:
        s.exec(text("DELETE FROM audit_events"))
        s.exec(text("UPDATE audit_head SET seq = 0, hash = :g").bindparams(g=audit.GENESIS))
    with transaction(ws.engine) as s:
        audit.emit(s, audit.RunRetried(attempt=1), actor="forger")
        assert audit.verify(s).events == 1  # consistent on its own…
    with transaction(ws.engine) as s, pytest.raises(AuditBroken, match=f"anchored audit event {anchor[0]} is gone"):
        audit.verify(s, [anchor])  # …but not with the anchor published earlier


def test_a_trail_checked_in_parts_at_once_agrees_with_one_checked_in_order(make_workspace, database_url, monkeypatch):
    """`dew audit verify` checks a long trail in parts, each in a forked process with its own
    connection: on every backend the parts read the same events, and a trail altered in a later
    part is reported as the ordered check reports it."""
    ws = make_workspace(database_url)
    for requester in ("alice", "bob"):
        r = start_run(ws, "drill-script", DRILL, requester=requester)
        decide(ws, r.item.id, actor="zhao.lei", action="approve")
    monkeypatch.setattr(audit, "MIN_PART", 1)
    with transaction(ws.engine) as s:
        in_order, in_parts = audit.verify(s), audit.verify(s, processes=3)
    assert (in_parts.events, in_parts.head, in_parts.parts) == (in_order.events, in_order.head, 3)
    victim = in_order.events * 2 // 3 + 1  # in the last part
    with transaction(ws.engine) as s:
        s.exec(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = :seq").bindparams(seq=victim))
    for processes in (1, 3):
        with transaction(ws.engine) as s, pytest.raises(AuditBroken) as e:
            audit.verify(s, processes=processes)
        assert e.value.seq == victim and "was altered" in e.value.message


def test_a_head_moved_far_ahead_is_reported_at_once_not_after_reading_every_empty_range(
    make_workspace, database_url, monkeypatch
):
    """Someone sets the head to a huge seq: verify must not ask for the billions of empty ranges
    in between (it would run for hours), in order or in parts."""
    ws = make_workspace(database_url)
    start_run(ws, "drill-script", DRILL, requester="alice")
    with transaction(ws.engine) as s:
        count = s.exec(text("SELECT max(seq) FROM audit_events")).scalar()
        s.exec(text("UPDATE audit_head SET seq = :far").bindparams(far=2_000_000_000))
    monkeypatch.setattr(audit, "MIN_PART", 1)
    for processes in (1, 3):
        with transaction(ws.engine) as s, pytest.raises(AuditBroken, match="events were removed") as e:
            audit.verify(s, processes=processes)
        assert e.value.seq == count + 1


def test_parts_connect_with_every_setting_of_the_database_url(make_workspace, database_url, monkeypatch):
    """The forked parts open their own connections from the workspace's URL: a query string with
    spaces (libpq options) must reach PostgreSQL as written, or every part would fail and the
    check fall back to one process."""
    if database_url.startswith("sqlite"):
        pytest.skip("a SQLite URL is a file path")
    url = database_url + "?options=-c%20search_path%3Dpublic&application_name=dew%20verify"
    ws = make_workspace(url)
    start_run(ws, "drill-script", DRILL, requester="alice")
    monkeypatch.setattr(audit, "MIN_PART", 1)
    with transaction(ws.engine) as s:
        assert audit.verify(s, processes=3).parts == 3


def test_many_processes_can_open_a_fresh_database_and_start_runs_at_once(tmp_path, scenarios_dir, database_url):
    """Each thread opens its own workspace (own engine, own checkpoint connection), as separate
    processes would: migrations, checkpoint setup and a new scenario version must not collide."""
    from dew.agents.testing import ScriptedModelProvider
    from dew.guardians.workspace import Settings, Workspace

    errors, results = [], []
    barrier = threading.Barrier(4)

    def worker(n):
        try:
            barrier.wait()
            ws = Workspace(
                Settings(home=tmp_path / f"home{n}", scenarios_dir=scenarios_dir, database_url=database_url),
                provider=ScriptedModelProvider(),
            )
            try:
                results.append(start_run(ws, "drill-script", DRILL, requester=f"r{n}").run.status)
            finally:
                ws.close()
        except Exception as e:  # reported below
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and results == ["awaiting_decision"] * 4


def test_the_database_refuses_a_second_decision_even_if_the_status_check_is_bypassed(make_workspace, database_url):
    """The unique constraint on decisions.item_id is the backstop behind the status check."""
    from dew.guardians.models import Decision

    ws = make_workspace(database_url)
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    with transaction(ws.engine) as s:  # a decision row written behind dew's back; status left pending
        s.add(Decision(item_id=r.item.id, run_id=r.run.id, action="reject", actor="zhao.lei", note="x"))
    with pytest.raises(AlreadyDecided):
        decide(ws, r.item.id, actor="zhao.lei", action="approve")
    assert list_releases(ws) == []
    with transaction(ws.engine) as s:
        assert [e.kind for e in audit.events(s)][-1] == "decision.refused"


def test_upgrading_an_older_database_keeps_its_data(database_url):
    """A workspace created by migration 0001 (before hand-offs) upgrades in place, losing nothing."""
    from pathlib import Path

    from alembic import command
    from alembic.config import Config

    from dew.guardians import db

    engine = db.make_engine(database_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO scenario_versions (sha256, scenario_id, version, text, first_seen) "
                "VALUES ('abc', 's', '1', 'x', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO runs (scenario_id, scenario_sha256, requester, inputs, status, attempts, "
                "created_at, updated_at) VALUES ('s', 'abc', 'alice', '{}', 'failed', 1, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT requester, status, parent_run_id FROM runs")).one()
        assert tuple(row) == ("alice", "failed", None)
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    engine.dispose()
