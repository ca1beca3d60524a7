"""One pattern and one normal form for every identity: variants of one's own id cannot get past
the four-eyes rule, and malformed ids never reach the trail or a terminal (issue 7, finding 1)."""

from __future__ import annotations

import pytest

from dew.guardians import audit
from dew.guardians.db import transaction
from dew.guardians.errors import IdentityInvalid, NotAuthorized
from dew.guardians.flow import decide
from dew.guardians.identity import person_id, same_person
from dew.guardians.models import Run
from dew.guardians.runs import start_run

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}

# Each was accepted as a requester and then approved by zhao.lei, the guardian, before the fix.
REFUSED = [
    "zhao.lei ",  # a trailing space
    " zhao.lei",
    "zhao.lei\u200b",  # a zero-width space
    "zhao\u200d.lei",  # a zero-width joiner
    "zhao.lei@x",
    "zhao.lei[dim][/dim]",
    "zh\u0430o.lei",  # Cyrillic а, a look-alike
    "zhao.lei\x1b[2J",  # a terminal escape
    "zhao.lei\u202e",  # a bidirectional override
    "",
    "x" * 65,
    ".zhao.lei",
]
SAME = ["ZHAO.LEI", "Zhao.Lei", "ｚｈａｏ.ｌｅｉ"]  # capitals and full-width forms: the same person


@pytest.mark.parametrize("variant", REFUSED, ids=repr)
def test_malformed_identities_are_refused_with_a_reason(variant):
    with pytest.raises(IdentityInvalid, match=r"an identity is 1–64 of a–z|is empty"):
        person_id(variant)


@pytest.mark.parametrize("variant", SAME, ids=repr)
def test_compatibility_forms_and_capitals_are_one_person(variant):
    assert person_id(variant) == "zhao.lei"


def test_no_variant_of_the_guardians_own_id_gets_past_the_four_eyes_rule(make_workspace):
    ws = make_workspace()
    for variant in REFUSED:
        with pytest.raises(IdentityInvalid):
            start_run(ws, "drill-script", DRILL, requester=variant)
    for variant in SAME:
        r = start_run(ws, "drill-script", DRILL, requester=variant)
        assert r.run.requester == "zhao.lei"  # stored in the one normal form
        with pytest.raises(NotAuthorized, match="four-eyes"):
            decide(ws, r.item.id, actor="zhao.lei", action="approve")
        with pytest.raises(NotAuthorized, match="four-eyes"):
            decide(ws, r.item.id, actor=variant, action="approve")  # the actor is normalised too


def test_a_malformed_actor_is_refused_before_anything_is_recorded(make_workspace):
    ws = make_workspace()
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    with transaction(ws.engine) as s:
        before = sum(1 for _ in audit.events(s))
    for variant in ["liu.yang\x1b[2J", "liu.yang\u200b", "LIU.YANG "]:
        with pytest.raises(IdentityInvalid):
            decide(ws, r.item.id, actor=variant, action="reject", note="no")
    with transaction(ws.engine) as s:
        assert sum(1 for _ in audit.events(s)) == before  # not even a refusal with that text
    done = decide(ws, r.item.id, actor="LIU.YANG", action="reject", note="figures unchecked")
    assert done.run.status == "rejected"


def test_rows_written_before_validation_still_hold_the_four_eyes_rule(make_workspace):
    ws = make_workspace()
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    with transaction(ws.engine) as s:  # a requester stored by an older dew, unvalidated
        run = s.get(Run, r.run.id)
        run.requester = "ZHAO.LEI\u200b "
        s.add(run)
    assert same_person("ZHAO.LEI\u200b ", "zhao.lei")
    with pytest.raises(NotAuthorized, match="four-eyes"):
        decide(ws, r.item.id, actor="zhao.lei", action="approve")
