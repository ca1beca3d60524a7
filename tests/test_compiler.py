"""Scenario → LangGraph: graph shape (snapshots), routing back from checks and reviewers, bounds."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from dew.agents.checks import json_problem, run_check
from dew.agents.compiler import mermaid, parse_verdict
from dew.agents.loader import load_directory, load_text
from dew.agents.runtime import Runtime
from dew.agents.spec import Check
from dew.agents.testing import ScriptedModelProvider, unfenced
from tests.conftest import SCENARIOS

SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.mark.parametrize("scenario_id", sorted(load_directory(SCENARIOS)))
def test_compiled_graph_matches_its_snapshot(scenario_id):
    """A change to the compiler or a shipped scenario shows up here, in review. To accept it:
    DEW_UPDATE_SNAPSHOTS=1 pytest tests/test_compiler.py"""
    text = mermaid(load_directory(SCENARIOS)[scenario_id].spec)
    path = SNAPSHOTS / f"{scenario_id}.mmd"
    if os.environ.get("DEW_UPDATE_SNAPSHOTS"):
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text


SCENARIO = """\
dew: 1
id: loop
name: Loop
description: Exercises the routing.
version: "1"
guardian: li.wei
risk: low
inputs: {topic: {type: string}}
steps:
  - id: draft
    kind: llm
    role: You draft.
    prompt: "About {{ inputs.topic }}"
  - id: check
    kind: check
    target: draft
    checks:
      - contains: [DONE]
        message: say DONE
    on_fail: draft
    max_rounds: 2
  - id: review
    kind: review
    target: draft
    role: You review.
    prompt: "{{ steps.draft }}"
    max_rounds: 1
"""


@pytest.fixture
def runtime(tmp_path):
    def make(reply):
        provider = ScriptedModelProvider(reply=reply)
        conn = sqlite3.connect(tmp_path / "cp.db", check_same_thread=False)
        return Runtime(SqliteSaver(conn), provider), provider

    return make


def test_a_failing_check_sends_work_back_a_bounded_number_of_times(runtime):
    rt, provider = runtime(lambda s, p: "PASS" if "PASS, or REVISE" in s else "not yet")
    out = rt.start(load_text(SCENARIO, "loop.yaml"), 1, {"topic": "x"})
    drafts = [c for c in provider.calls if "PASS, or REVISE" not in c["system"]]
    assert len(drafts) == 3  # first draft + 2 rounds sent back
    assert "Fix each of these points:\n- say DONE (missing: DONE)" in unfenced(drafts[1]["prompt"])
    assert out.status == "awaiting_decision"
    assert out.findings == ["check: say DONE (missing: DONE)"]  # still failing: flagged to the guardian


def test_a_passing_draft_goes_straight_to_the_gate(runtime):
    rt, provider = runtime(lambda s, p: "PASS" if "PASS, or REVISE" in s else "DONE")
    out = rt.start(load_text(SCENARIO, "loop.yaml"), 1, {"topic": "x"})
    assert out.findings == [] and out.draft == "DONE" and len(provider.calls) == 2
    assert [p["step"] for p in out.provenance] == ["draft", "review"]


def test_a_reviewer_sends_back_once_then_its_notes_reach_the_guardian(runtime):
    rt, provider = runtime(lambda s, p: "REVISE: cite the source" if "PASS, or REVISE" in s else "DONE")
    out = rt.start(load_text(SCENARIO, "loop.yaml"), 1, {"topic": "x"})
    drafts = [c for c in provider.calls if "PASS, or REVISE" not in c["system"]]
    assert len(drafts) == 2 and "Reviewer: cite the source" in drafts[1]["prompt"]
    assert out.findings == ["review: reviewer still asks for changes after 1 rounds: cite the source"]


def test_revise_decision_goes_back_to_drafting_and_resets_rounds(runtime):
    rt, provider = runtime(lambda s, p: "PASS" if "PASS, or REVISE" in s else "DONE")
    sc = load_text(SCENARIO, "loop.yaml")
    rt.start(sc, 7, {"topic": "x"})
    out = rt.resume(sc, 7, {"action": "revise", "feedback": "shorter"})
    assert out.status == "awaiting_decision" and out.revisions == 1
    assert "Guardian: shorter" in provider.calls[-2]["prompt"]
    done = rt.resume(sc, 7, {"action": "approve"})
    assert done.status == "completed" and done.decision == {"action": "approve"}


@pytest.mark.parametrize(
    "reply, verdict, notes",
    [
        ("PASS", "pass", ""),
        ("**PASS**\nlooks fine", "pass", "looks fine"),
        ("REVISE: fact 2 is not in the transcript", "revise", "fact 2 is not in the transcript"),
        ("revise - dates wrong\nand amounts", "revise", "dates wrong\nand amounts"),
        ("I think it is good.", "unclear", "I think it is good."),
        ("", "unclear", ""),
    ],
)
def test_reviewer_verdicts_are_parsed(reply, verdict, notes):
    assert parse_verdict(reply) == (verdict, notes)


@pytest.mark.parametrize(
    "check, output, problem",
    [
        (Check(contains=["当事人", "处罚依据"]), "当事人：某公司", "missing: 处罚依据"),
        (Check(contains=["当事人"]), "当事人：某公司", None),
        (
            Check(not_contains=["【待承办人填写"]),
            "三、处罚依据\n【待承办人填写：条款】",
            "must not contain: 【待承办人填写",
        ),
        (Check(min_chars=10), "short", "too short: 5 characters, at least 10 needed"),
        (Check(max_chars=3), "long", "too long: 4 characters, at most 3 allowed"),
        (Check(matches=r"(^|\n)\s*1[.)、]"), "intro\n1. first", None),
        (Check(matches=r"(^|\n)\s*1[.)、]"), "no list here", r"does not match /(^|\n)\s*1[.)、]/"),
        (Check(contains=["DONE"], message="say DONE"), "x", "say DONE (missing: DONE)"),
    ],
)
def test_checks_find_real_problems(check, output, problem):
    assert run_check(check, output) == problem


def test_json_problems_name_the_place():
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    assert json_problem('{"a": 1}', schema) is None
    assert json_problem("{a: 1}", schema).startswith("not valid JSON")
    assert json_problem('{"a": "x"}', schema) == "JSON does not match the schema at a: 'x' is not of type 'integer'"


def test_an_unusable_structured_reply_can_be_flagged_instead_of_failing_the_run(runtime):
    text = SCENARIO.replace(
        '    prompt: "About {{ inputs.topic }}"\n',
        '    prompt: "About {{ inputs.topic }}"\n    output: json\n    schema: {type: object, required: [a]}\n'
        "    on_unusable: flag\n",
    )
    rt, _provider = runtime(lambda s, p: "PASS" if "PASS, or REVISE" in s else "no JSON here, DONE")
    out = rt.start(load_text(text, "loop.yaml"), 1, {"topic": "x"})
    assert out.status == "awaiting_decision"
    assert any("unusable after 2 tries" in f for f in out.findings)
    assert '"unusable_reply": "no JSON here, DONE"' in out.draft


def test_the_runtime_says_when_each_step_starts(tmp_path):
    """What the CLI's progress line shows while a model works."""
    from dew.agents.checkpoints import open_saver

    loaded = load_directory(SCENARIOS)["drill-script"]
    seen: list[tuple] = []
    with open_saver(f"sqlite:///{tmp_path / 'cp.db'}") as saver:
        runtime = Runtime(saver, ScriptedModelProvider(), data_dir=SCENARIOS)
        runtime.progress = lambda run_id, step: seen.append((run_id, step))
        outcome = runtime.start(loaded, 7, loaded.spec.examples[0].inputs)
    assert outcome.status == "awaiting_decision"
    steps = [s.id for s in loaded.spec.steps]
    assert [step for _, step in seen[: len(steps)]] == steps and {r for r, _ in seen} == {7}
    assert seen[-1] == (7, "approval_gate")
