"""Signed decisions: a scenario that requires them refuses an unsigned decision; a signature is
checked against the decision it claims to cover, the signer's own key in force and the clock;
`dew audit verify` checks every signature again against the keys the trail recorded, so a
history rebuilt with a consistent hash chain cannot change what someone signed with a registered
key (swapping the key itself is what a checkpoint kept elsewhere catches)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import select

from dew.guardians import audit, signing
from dew.guardians.crosscheck import check_rows
from dew.guardians.db import transaction
from dew.guardians.errors import IdentityRequired, NotAuthorized, SignatureRefused
from dew.guardians.flow import decide
from dew.guardians.models import AuditEvent, AuditHead, AuthMethod, Decision, WorkItem
from dew.guardians.runs import start_run
from dew.guardians.users import add_user

from . import signatures

CASE = {"transcript": "问：是否占道经营？答：是。", "party": "某某便利店"}
DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}


@pytest.fixture
def ws(make_workspace):
    return make_workspace()


def _drill(ws):
    return start_run(ws, "drill-script", DRILL, requester="alice")


def _refusals(ws) -> list[str]:
    with transaction(ws.engine) as s:
        return [json.loads(e.data)["reason"] for e in audit.events(s, kinds=["decision.refused"])]


def test_a_high_risk_decision_must_be_signed_and_a_refusal_is_recorded(ws):
    r = start_run(ws, "enforcement-document", CASE, requester="alice")
    with pytest.raises(SignatureRefused, match=r"requires signed decisions.*dew keys create"):
        decide(ws, r.item.id, actor="zhang.min", action="approve")
    assert "requires signed decisions" in _refusals(ws)[-1]

    signatures.decide(ws, r.item.id, actor="zhang.min", action="approve", note="事实清楚")  # the legal review
    done = signatures.decide(ws, r.item.id, actor="li.wei", action="approve")
    assert done.run.status == "released"
    with transaction(ws.engine) as s:
        decision = s.exec(select(Decision)).one()
        statement = json.loads(decision.signed_statement or "")
        assert statement["signer"] == "li.wei" and statement["stage"] == 1 and statement["action"] == "approve"
        assert check_rows(s) == []
        assert signing.check_trail(s) == (2, [])


def test_where_signing_is_optional_a_signature_is_kept_when_given(ws):
    plain, signed = _drill(ws), _drill(ws)
    decide(ws, plain.item.id, actor="zhao.lei", action="approve")
    signatures.decide(
        ws, signed.item.id, actor="zhao.lei", action="edit", edited=signed.item.draft + "\n附：补充说明。"
    )
    with transaction(ws.engine) as s:
        rows = {d.item_id: d for d in s.exec(select(Decision)).all()}
        assert rows[plain.item.id].signature is None
        assert rows[signed.item.id].signing_key_id is not None
        event = s.exec(select(AuditEvent).where(AuditEvent.kind == "decision.edited")).one()
        assert json.loads(event.data)["signed"]["signature"] == rows[signed.item.id].signature
        assert signing.check_trail(s) == (1, [])


def _signed_text(signed: signing.SignedStatement, key, statement: str) -> signing.SignedStatement:
    return signing.SignedStatement(signed.key_id, statement, base64.b64encode(key.sign(statement.encode())).decode())


def _resign(signed: signing.SignedStatement, key, **changes) -> signing.SignedStatement:
    statement = audit.canonical({**json.loads(signed.statement), **changes})
    return signing.SignedStatement(signed.key_id, statement, base64.b64encode(key.sign(statement.encode())).decode())


@pytest.mark.parametrize(
    "change, decision, expected",
    [
        ("nothing", {"note": "another reason"}, "it says note_sha256"),
        ("nothing", {"action": "reject", "note": "no"}, "it says action 'approve'"),
        ("stage", {}, "it says stage 3"),
        ("item", {}, "it says item"),
        ("signer", {}, "it says signer 'liu.yang'"),
        ("stale", {}, "too far from now"),
        ("signature", {}, "does not verify"),
        ("garbage", {}, "not readable"),
        ("nested", {}, "not readable"),
        ("duplicate", {}, "appears twice"),
        ("spaced", {}, "canonical form"),
        ("float", {}, "canonical form"),
        ("other_key", {}, "is not one of zhao.lei's keys"),
        ("unknown_key", {}, "is not one of zhao.lei's keys"),
    ],
)  # fmt: skip
def test_a_signature_that_does_not_cover_exactly_this_decision_is_refused(ws, change, decision, expected):
    r = _drill(ws)
    good = signatures.sign(ws, r.item.id, actor="zhao.lei", action="approve", note="fine")
    key = signatures.key_of("zhao.lei")
    signed = {
        "nothing": good,
        "stage": _resign(good, key, stage=3),
        "item": _resign(good, key, item=r.item.id + 1000),
        "signer": _resign(good, key, signer="liu.yang"),
        "stale": _resign(good, key, at=(datetime.now(UTC) - timedelta(hours=1)).isoformat()),
        "signature": signing.SignedStatement(good.key_id, good.statement, base64.b64encode(b"\0" * 64).decode()),
        "garbage": signing.SignedStatement(good.key_id, "not json", good.signature),
        "nested": signing.SignedStatement(good.key_id, "[" * 1500, good.signature),
        # Two readings of one text: the last "action" wins in json.loads, the first in a reader's eye.
        "duplicate": _signed_text(good, key, good.statement[:-1] + ',"action":"reject"}'),
        "spaced": _signed_text(good, key, json.dumps(json.loads(good.statement), sort_keys=True)),
        "float": _signed_text(good, key, good.statement.replace('"dew_decision":1', '"dew_decision":1.0')),
        "other_key": signing.SignedStatement(signatures.key_id(ws, "liu.yang"), good.statement, good.signature),
        "unknown_key": signing.SignedStatement(99999, good.statement, good.signature),
    }[change]
    args = {"action": "approve", "note": "fine", **decision}
    with pytest.raises(SignatureRefused, match=expected):
        decide(ws, r.item.id, actor="zhao.lei", signed=signed, **args)
    with transaction(ws.engine) as s:
        assert s.get(WorkItem, r.item.id).status == "pending"  # nothing recorded
    assert _refusals(ws)


def test_a_revoked_key_signs_nothing_new_and_what_it_signed_stays_verifiable(ws):
    first, second = _drill(ws), _drill(ws)
    signatures.decide(ws, first.item.id, actor="zhao.lei", action="approve")
    old = signatures.key_id(ws, "zhao.lei")
    signing.revoke_key(ws, old, actor="zhao.lei", reason="rotated")
    with pytest.raises(SignatureRefused, match="was revoked"):
        signatures.decide(ws, second.item.id, actor="zhao.lei", action="approve")

    fresh = signing.register_key(ws, person="zhao.lei", public_key=signing.public_key_of(_new_key()), kind="file")
    assert fresh.id != old
    with transaction(ws.engine) as s:
        assert signing.check_trail(s) == (1, [])  # signed before the revocation: still good


def _new_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def test_nobody_registers_or_revokes_a_key_for_someone_else(ws):
    public = signing.public_key_of(_new_key())
    with pytest.raises(NotAuthorized, match="not a guardian"):
        signing.register_key(ws, person="alice", public_key=public, kind="file")
    mine = signing.register_key(ws, person="zhao.lei", public_key=public, kind="file")
    with pytest.raises(Exception, match="already registered"):
        signing.register_key(ws, person="zhao.lei", public_key=public, kind="file")
    add_user(ws, "root", "Root", ["admin"], actor="root")
    add_user(ws, "zhao.lei", "赵磊", ["guardian"], actor="root")
    add_user(ws, "liu.yang", "刘洋", ["guardian"], actor="root")
    other = signing.public_key_of(_new_key())
    with pytest.raises(IdentityRequired):  # once there are users, a declared name registers nothing
        signing.register_key(ws, person="zhao.lei", public_key=other, kind="file")
    with pytest.raises(NotAuthorized, match="issued by someone else"):
        signing.register_key(ws, person="zhao.lei", public_key=other, kind="file", method=AuthMethod.ISSUED_TOKEN)
    with pytest.raises(NotAuthorized, match="only they or an admin"):
        signing.revoke_key(ws, mine.key, actor="liu.yang", reason="mine now", method=AuthMethod.PASSWORD)
    revoked = signing.revoke_key(ws, mine.key, actor="root", reason="left the office", method=AuthMethod.PASSWORD)
    assert revoked.revoked_by == "root"


def _rebuild_chain_from(s, seq: int) -> None:
    """What someone with the whole database could do: recompute every hash from `seq` on."""
    events = s.exec(select(AuditEvent).where(AuditEvent.seq >= seq).order_by(AuditEvent.seq)).all()
    prev = s.get(AuditEvent, seq - 1).hash
    for ev in events:
        ev.prev_hash = prev
        ev.hash = audit.event_hash(ev.seq, ev.at, ev.kind, ev.actor, ev.run_id, ev.item_id, ev.data, prev)
        prev = ev.hash
        s.add(ev)
    head = s.get(AuditHead, 1)
    head.hash = prev
    s.add(head)


def test_a_history_rebuilt_with_a_consistent_chain_still_cannot_change_what_was_signed(ws):
    r = start_run(ws, "enforcement-document", CASE, requester="alice")
    signatures.decide(ws, r.item.id, actor="zhang.min", action="approve")
    signatures.decide(ws, r.item.id, actor="li.wei", action="approve", note="核对无误")
    with transaction(ws.engine) as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.kind == "decision.approved")).one()
        data = json.loads(event.data)
        data["note"] = "未经核对"  # the row and its event changed alike, and every hash after it redone
        event.data = audit.canonical(data)
        s.add(event)
        s.execute(text("UPDATE decisions SET note = :n"), {"n": "未经核对"})
        s.flush()
        _rebuild_chain_from(s, event.seq)
    with transaction(ws.engine) as s:
        audit.verify(s)  # the chain alone is fooled
        assert check_rows(s) == []  # and so is the comparison of rows with events
        checked, problems = signing.check_trail(s)
    assert checked == 2 and len(problems) == 1
    assert problems[0].seq == event.seq and "covers another decision" in problems[0].detail


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["statement", "signature"]), position=st.integers(min_value=0), byte=st.integers(1, 255))
def test_any_single_change_to_a_signed_statement_or_its_signature_is_refused(signed_item, where, position, byte):
    ws, item_id, good = signed_item
    raw = bytearray(good.statement.encode() if where == "statement" else base64.b64decode(good.signature))
    position %= len(raw)
    raw[position] ^= byte  # a different byte, always
    if where == "statement":
        bad = signing.SignedStatement(good.key_id, raw.decode("utf-8", "replace"), good.signature)
    else:
        bad = signing.SignedStatement(good.key_id, good.statement, base64.b64encode(bytes(raw)).decode())
    with pytest.raises(SignatureRefused):
        decide(ws, item_id, actor="zhao.lei", action="approve", note="fine", signed=bad)


@pytest.fixture
def signed_item(make_workspace):
    ws = make_workspace()
    r = _drill(ws)
    return ws, r.item.id, signatures.sign(ws, r.item.id, actor="zhao.lei", action="approve", note="fine")


def test_verify_names_a_key_registered_twice_or_by_someone_else(ws):
    key = signatures.key_id(ws, "zhao.lei")
    with transaction(ws.engine) as s:  # what only someone writing to the trail directly could do
        for actor, person in (("zhao.lei", "zhao.lei"), ("li.wei", "chen.jing")):
            event = audit.SigningKeyRegistered(person=person, key_id=key if person == "zhao.lei" else 99,
                                               public_key=signing.public_key_of(_new_key()), fingerprint="x",
                                               key_kind="file", label="")  # fmt: skip
            audit.emit(s, event, actor=actor)
    with transaction(ws.engine) as s:
        _, problems = signing.check_trail(s)
    assert [p.detail for p in problems] == [f"signing key {key} is registered a second time",
                                            "li.wei registered a key for chen.jing"]  # fmt: skip
