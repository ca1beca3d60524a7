"""Rows edited behind dew's back are caught by checking them against the events that recorded
them, on every backend (issue 7's last finding; issue 9's "the trail covers the rows")."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from dew.guardians.crosscheck import check_rows
from dew.guardians.db import transaction
from dew.guardians.flow import decide
from dew.guardians.runs import start_run

from .. import signatures as signed

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}


@pytest.fixture
def history(make_workspace, database_url):
    """Two runs: one rejected, one edited and released."""
    ws = make_workspace(database_url)
    rejected = start_run(ws, "drill-script", DRILL, requester="alice")
    decide(ws, rejected.item.id, actor="zhao.lei", action="reject", note="figures unchecked")
    released = start_run(ws, "drill-script", DRILL, requester="alice")
    decide(ws, released.item.id, actor="liu.yang", action="edit", edited=released.item.draft + "\nEdited.")
    with transaction(ws.engine) as s:
        assert check_rows(s) == []  # an honest history agrees with its trail
    return ws, rejected, released


def tampered(ws, sql: str, **params) -> list[str]:
    with transaction(ws.engine) as s:
        s.execute(text(sql), params)
    with transaction(ws.engine) as s:
        return [str(m) for m in check_rows(s)]


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("UPDATE decisions SET action = 'approve' WHERE item_id = :rejected_item",
         "action is 'approve', the trail says 'reject'"),
        ("UPDATE decisions SET actor = 'zhao.lei' WHERE item_id = :released_item",
         "decided by 'zhao.lei', the trail says 'liu.yang'"),
        ("UPDATE decisions SET note = 'looks fine' WHERE item_id = :rejected_item", "the note"),
        ("UPDATE decisions SET edited_output = 'other text' WHERE item_id = :released_item", "the edited output"),
        ("DELETE FROM decisions WHERE item_id = :rejected_item", "is recorded but its row is gone"),
        ("UPDATE work_items SET draft = 'a different draft' WHERE id = :rejected_item", "the draft is not the one queued"),
        ("UPDATE releases SET sha256 = :zeros WHERE run_id = :released_run", "the released hash differs"),
        ("UPDATE runs SET requester = 'zhao.lei' WHERE id = :rejected_run", "requester is 'zhao.lei', the trail says 'alice'"),
        ("UPDATE runs SET inputs = :inputs WHERE id = :rejected_run", "inputs differ"),
    ],
)  # fmt: skip
def test_every_kind_of_row_edit_is_named(history, sql, expected):
    ws, rejected, released = history
    params = {"rejected_item": rejected.item.id, "released_item": released.item.id, "rejected_run": rejected.run.id,
              "released_run": released.run.id, "zeros": "0" * 64, "inputs": '{"hazard": "flood"}'}  # fmt: skip
    found = tampered(ws, sql, **{k: v for k, v in params.items() if f":{k}" in sql})
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("UPDATE signoffs SET actor = 'li.wei'", "signed by 'li.wei', the trail says 'zhang.min'"),
        ("UPDATE signoffs SET auth_method = 'token'", "how or why it was signed differs"),
        ("DELETE FROM signoffs", "is recorded but its row is gone"),
        ("UPDATE decisions SET rule = 'delegate'", "rule is 'delegate', the trail says 'owner'"),
        ("UPDATE decisions SET auth_method = 'password'", "auth_method is 'password', the trail says 'declared'"),
        ("UPDATE decisions SET signature = NULL, signed_statement = NULL, signing_key_id = NULL",
         "its signature differs from the one recorded"),
        ("UPDATE signoffs SET signed_statement = '{}'", "its signature differs from the one recorded"),
    ],
)  # fmt: skip
def test_sign_offs_and_how_a_decision_was_authorized_are_checked_too(make_workspace, database_url, sql, expected):
    ws = make_workspace(database_url)
    r = start_run(
        ws, "enforcement-document", {"transcript": "问：是否占道？答：是。", "party": "某店"}, requester="alice"
    )
    signed.decide(ws, r.item.id, actor="zhang.min", action="approve")  # the legal review, then the section head
    signed.decide(ws, r.item.id, actor="li.wei", action="approve")
    with transaction(ws.engine) as s:
        assert check_rows(s) == []
    found = tampered(ws, sql)
    assert len(found) == 1 and expected in found[0], found
