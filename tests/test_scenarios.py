"""Every shipped scenario, on every one of its sample inputs, runs to a work item (scripted model);
and what the deterministic steps contribute is checked on those samples."""

from __future__ import annotations

import pytest

from dew.agents.loader import load_directory
from dew.agents.testing import ScriptedModelProvider
from dew.guardians.runs import start_run
from tests.conftest import SCENARIOS

CATALOGUE = load_directory(SCENARIOS)
SAMPLES = [(sid, ex.name) for sid, sc in sorted(CATALOGUE.items()) for ex in sc.spec.examples]


def test_the_library_ships_its_scenarios_each_with_a_guardian_and_samples():
    assert {
        "enforcement-document",
        "investment-screener",
        "drill-script",
        "document-format",
        "hotline-intake",
        "policy-qa",
        "enterprise-risk",
    } <= set(CATALOGUE)
    for sc in CATALOGUE.values():
        assert sc.spec.guardian and sc.spec.backups and sc.spec.examples and sc.spec.description


@pytest.mark.parametrize("scenario_id, example", SAMPLES)
def test_every_sample_runs_to_a_work_item(make_workspace, scenario_id, example):
    ws = make_workspace()
    inputs = next(e.inputs for e in CATALOGUE[scenario_id].spec.examples if e.name == example)
    r = start_run(ws, scenario_id, dict(inputs), requester="alice")
    assert r.run.status == "awaiting_decision", r.run.error
    assert r.item.guardian == CATALOGUE[scenario_id].spec.stages()[0].guardian and r.item.draft.strip()


def _run(make_workspace, scenario_id, example_index=0, reply=None):
    ws = make_workspace(provider=ScriptedModelProvider(reply=reply) if reply else None)
    inputs = CATALOGUE[scenario_id].spec.examples[example_index].inputs
    return start_run(ws, scenario_id, dict(inputs), requester="alice")


def test_format_checker_reports_fixes_and_what_needs_a_person(make_workspace):
    draft = _run(make_workspace, "document-format").item.draft
    assert "第2行 发文字号：年份应使用六角括号〔〕，不用“[]”" in draft
    assert "深某应急〔2026〕8号" in draft and "2026年11月22日" in draft.split("## Corrected document")[1]
    still = draft.split("## Still to be fixed by the drafting office")[1].split("Advice:")[0]
    assert "附件说明" in still and "发文字号" not in still


def test_a_well_formed_letter_passes_the_format_checker(make_workspace):
    draft = _run(make_workspace, "document-format", 1).item.draft
    assert "## Problems found (0)" in draft and "## Still to be fixed by the drafting office (0)" in draft


def test_investment_ranking_is_computed_not_written(make_workspace):
    r = _run(
        make_workspace,
        "investment-screener",
        reply=lambda s, p: "1. 锐芯半导体: R&D 18.2%. Risk: check the 850 investment plan.",
    )
    assert "| 1 ★ | 锐芯半导体 | 81.43 |" in r.item.draft
    assert "Excluded: 蓝海物流 (penalties_3y 1 > 0); 恒达纺织 (penalties_3y 2 > 0)." in r.item.draft
    assert r.item.findings == []


def test_investment_rationales_citing_invented_figures_are_sent_back_then_flagged(make_workspace):
    r = _run(make_workspace, "investment-screener", reply=lambda s, p: "1. 锐芯半导体 grows 45% a year.")
    assert any("the figure 45 is not in the data" in f for f in r.item.findings)


def test_policy_answers_rest_on_the_corpus_and_out_of_scope_questions_find_nothing(make_workspace):
    r = _run(make_workspace, "policy-qa", reply=lambda s, p: "可按新增研发投入的10%申请补贴，最高300万元 [1]。")
    assert "rd-subsidy.md" in r.item.draft and r.item.findings == []
    out = _run(make_workspace, "policy-qa", 2, reply=lambda s, p: "未找到相关政策 (not found)")
    assert "No policy passage matched this question." in out.item.draft and out.item.findings == []
    invented = _run(make_workspace, "policy-qa", 2, reply=lambda s, p: "签证需要15个工作日。")
    assert any("must say 未找到" in f for f in invented.item.findings)
