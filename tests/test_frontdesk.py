"""The front desk: shortlist by shared words, the model picks or says NONE, inputs extracted."""

from __future__ import annotations

import json

import pytest

from dew.agents.frontdesk import route, shortlist
from dew.agents.loader import load_directory
from dew.agents.testing import ScriptedModelProvider
from tests.conftest import SCENARIOS

CATALOGUE = load_directory(SCENARIOS)


@pytest.mark.parametrize(
    "request_text, expected",
    [
        ("根据这份询问笔录起草行政处罚决定书：问：你是否占道经营？答：是。", "enforcement-document"),
        ("帮我检查一下这份通知的公文格式：深圳市某区应急管理局文件", "document-format"),
        ("Write a fire drill for our chemical warehouse with the site fire brigade", "drill-script"),
        ("我们公司研发投入800万，能拿多少补贴？", "policy-qa"),
    ],
)
def test_the_shortlist_puts_the_right_employee_first(request_text, expected):
    assert shortlist(request_text, CATALOGUE)[0][0] == expected


def test_requests_nobody_handles_are_unroutable_without_asking_the_model():
    provider = ScriptedModelProvider()
    r = route("明天天气怎么样？", CATALOGUE, provider)
    assert r.scenario is None and not r.ready and "no digital employee" in r.reason
    assert provider.calls == []


def test_the_model_chooses_within_the_shortlist_and_extracts_inputs():
    answer = {
        "scenario": "drill-script",
        "inputs": {
            "facility_type": "chemical warehouse",
            "hazard": "fire",
            "participants": "site fire brigade",
            "colour": "red",
        },
    }
    provider = ScriptedModelProvider(reply=lambda s, p: "Sure:\n```json\n" + json.dumps(answer) + "\n```")
    r = route("Write a fire drill for our chemical warehouse with the site fire brigade", CATALOGUE, provider)
    assert r.ready and r.scenario == "drill-script" and r.decided_by == "model"
    assert r.inputs["hazard"] == "fire" and "colour" not in r.inputs and r.inputs["duration_minutes"] == 60
    assert "drill-script:" in provider.calls[0]["prompt"]


def test_an_input_that_does_not_fit_its_type_is_reported_not_a_crash():
    # Found by the type checker: this path raised TypeError before.
    answer = {"scenario": "drill-script", "inputs": {"facility_type": "warehouse", "hazard": "fire",
                                                     "participants": "brigade", "duration_minutes": "half"}}  # fmt: skip
    provider = ScriptedModelProvider(reply=lambda s, p: json.dumps(answer))
    r = route("Write a fire drill for our warehouse, fire, with the brigade, lasting half", CATALOGUE, provider)
    assert not r.ready and r.scenario == "drill-script"
    assert r.missing == ["input 'duration_minutes' of scenario 'drill-script' must be integer, got 'half'"]


def test_a_model_that_says_none_is_believed():
    provider = ScriptedModelProvider(reply=lambda s, p: '{"scenario": "NONE", "inputs": {}}')
    r = route("我们公司研发投入800万，能拿多少补贴？", CATALOGUE, provider)
    assert r.scenario is None and "no digital employee handles" in r.reason


def test_an_unusable_model_answer_falls_back_to_a_clear_winner_and_fills_the_single_text_input():
    provider = ScriptedModelProvider(reply=lambda s, p: "I think the policy one.")
    r = route("我们公司研发投入800万，能拿多少补贴？", CATALOGUE, provider)
    assert r.ready and r.scenario == "policy-qa" and r.decided_by == "shortlist"
    assert r.inputs["question"] == "我们公司研发投入800万，能拿多少补贴？"


def test_an_unusable_answer_between_close_candidates_is_not_guessed():
    provider = ScriptedModelProvider(reply=lambda s, p: "hmm")
    r = route("楼下饭店把桌椅摆到人行道上，晚上很吵，希望城管处理", CATALOGUE, provider)
    assert r.scenario is None and r.reason.startswith("unclear whether this is for")


def test_missing_inputs_are_reported_not_invented():
    provider = ScriptedModelProvider(reply=lambda s, p: '{"scenario": "drill-script", "inputs": {"hazard": "fire"}}')
    r = route("Write a fire drill for our chemical warehouse with the site fire brigade", CATALOGUE, provider)
    assert r.scenario == "drill-script" and not r.ready and set(r.missing) == {"facility_type", "participants"}


def test_values_the_model_invents_are_dropped():
    answer = {
        "scenario": "enforcement-document",
        "inputs": {"transcript": "问：是否占道？答：是。", "party": "某餐饮店", "penalty": "罚款5万元"},
    }
    provider = ScriptedModelProvider(reply=lambda s, p: json.dumps(answer, ensure_ascii=False))
    r = route("根据这份询问笔录起草行政处罚决定书，当事人某餐饮店：问：是否占道？答：是。", CATALOGUE, provider)
    assert r.scenario == "enforcement-document" and r.inputs["party"] == "某餐饮店"
    assert r.inputs["penalty"].startswith("【待承办人填写")  # the invented penalty never got in; the default stands
