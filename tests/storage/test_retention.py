"""Retention clears the texts of finished runs past the period and keeps every hash: the trail
still verifies, rows still agree with it, and a run blanked without a retention event is named."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import select

from dew.agents.errors import InputInvalid
from dew.agents.runtime import thread_id
from dew.guardians import audit, retention, signing
from dew.guardians.crosscheck import check_rows
from dew.guardians.db import transaction
from dew.guardians.errors import NotAuthorized
from dew.guardians.flow import decide
from dew.guardians.models import Decision, Run, WorkItem, utcnow
from dew.guardians.runs import start_run
from dew.guardians.users import add_user

from .. import signatures

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}
LATER = timedelta(days=200)


@pytest.fixture
def history(make_workspace):
    ws = make_workspace()
    released = start_run(ws, "drill-script", DRILL, requester="alice")
    decide(ws, released.item.id, actor="zhao.lei", action="approve")
    edited = start_run(ws, "drill-script", {**DRILL, "hazard": "flood"}, requester="alice")
    signatures.decide(ws, edited.item.id, actor="zhao.lei", action="edit", edited=edited.item.draft + "\n补充。")
    rejected = start_run(ws, "drill-script", DRILL, requester="bob")
    decide(ws, rejected.item.id, actor="zhao.lei", action="reject", note="wrong site")
    waiting = start_run(ws, "drill-script", DRILL, requester="bob")
    return ws, [released.run.key, edited.run.key, rejected.run.key], waiting.run.key


def test_the_period_is_at_least_six_months_and_an_admins_to_set(make_workspace):
    ws = make_workspace()
    with pytest.raises(InputInvalid, match="no retention period is set"):
        retention.apply(ws, actor="root")
    with pytest.raises(InputInvalid, match="at least 183 days"):
        retention.set_period(ws, 90, actor="root")
    add_user(ws, "root", "Root", ["admin"], actor="root")
    add_user(ws, "zhao.lei", "赵磊", ["guardian"], actor="root")
    with pytest.raises(NotAuthorized, match="only an admin"):
        retention.set_period(ws, 365, actor="zhao.lei")
    assert retention.set_period(ws, 365, actor="root") == 365
    with transaction(ws.engine) as s:
        assert retention.period(s) == 365
        (event,) = list(audit.events(s, kinds=["retention.set"]))
    assert json.loads(event.data) == {"days": 365, "before": None}


def test_finished_runs_past_the_period_lose_their_texts_and_keep_their_proof(history):
    ws, finished, waiting = history
    retention.set_period(ws, 183, actor="root")
    assert retention.apply(ws, actor="root").runs == []  # nothing is that old yet
    planned = retention.apply(ws, actor="root", dry_run=True, now=utcnow() + LATER)
    assert planned.runs == finished

    done = retention.apply(ws, actor="root", now=utcnow() + LATER)
    assert done.runs == finished and done.items == 3 and done.decisions == 3
    with transaction(ws.engine) as s:
        runs = {r.id: r for r in s.exec(select(Run)).all()}
        assert all(runs[i].inputs == {} and runs[i].cleared_at is not None for i in finished)
        assert runs[waiting].inputs == DRILL and runs[waiting].cleared_at is None  # unfinished work stays
        items = s.exec(select(WorkItem)).all()
        assert {i.run_id for i in items if i.draft == ""} == set(finished)
        assert all(d.edited_output is None and d.diff is None for d in s.exec(select(Decision)).all())
        assert {d.note for d in s.exec(select(Decision)).all()} == {None, "wrong site"}  # reasons stay
        audit.verify(s)
        assert check_rows(s) == []
        assert signing.check_trail(s) == (1, [])  # the signed edit still verifies: it signed hashes
        (cleared,) = list(audit.events(s, kinds=["retention.cleared"]))
    assert json.loads(cleared.data)["runs"] == finished
    saver = ws.runtime.checkpointer
    assert all(saver.get_tuple({"configurable": {"thread_id": thread_id(i)}}) is None for i in finished)
    assert saver.get_tuple({"configurable": {"thread_id": thread_id(waiting)}}) is not None
    assert retention.apply(ws, actor="root", now=utcnow() + LATER).runs == []  # once only


def test_a_run_blanked_without_a_retention_event_is_named(history):
    ws, finished, _ = history
    with transaction(ws.engine) as s:
        s.execute(text("UPDATE runs SET inputs = '{}', cleared_at = :t WHERE id = :id"),
                  {"t": utcnow(), "id": finished[0]})  # fmt: skip
    with transaction(ws.engine) as s:
        found = [str(m) for m in check_rows(s)]
    assert any("no retention event clears it" in f for f in found), found


def test_a_cleared_release_is_not_rebuilt_from_what_is_left(history):
    from dew.guardians.auth import Principal
    from dew.guardians.errors import InvalidState, NotFound
    from dew.guardians.queue import released_text
    from dew.guardians.release import list_releases, release_run
    from dew.guardians.runs import get_run

    ws, _, _ = history
    before = get_run(ws, list_releases(ws)[0].run_id)  # as a caller read it before retention ran
    retention.set_period(ws, 183, actor="root")
    retention.apply(ws, actor="root", now=utcnow() + LATER)
    release = list_releases(ws)[0]
    with pytest.raises(InvalidState, match="cleared by retention"):
        release_run(ws, release.run_id, actor="root")
    with pytest.raises(InvalidState, match="cleared by retention"):  # checked again under the run's lock
        release_run(ws, release.run_id, actor="root", run=before)
    with pytest.raises(NotFound, match="cleared by retention"):
        released_text(ws, Principal(id="root", name="Root", roles=frozenset({"admin"}), method="declared"), release.key)
