"""Scenario files: the shipped ones load; broken ones are refused naming file, line and field."""

from __future__ import annotations

import pytest

from dew.agents.errors import ScenarioInvalid
from dew.agents.loader import load_directory, load_file, load_text
from tests.conftest import SCENARIOS

GOOD = """\
dew: 1
id: memo
name: Memo writer
description: Writes a memo.
version: "1"
guardian: li.wei
risk: low
inputs:
  topic:
    type: string
steps:
  - id: draft
    kind: llm
    role: You write memos.
    prompt: "Write a memo about {{ inputs.topic }}."
  - id: review
    kind: review
    target: draft
    role: You review memos.
    prompt: "{{ steps.draft }}"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ScenarioInvalid) as e:
        load_text(text, "memo.yaml")
    return e.value.problems


def test_shipped_scenarios_load():
    catalogue = load_directory(SCENARIOS)
    assert {"enforcement-document", "investment-screener", "drill-script"} <= set(catalogue)
    for loaded in catalogue.values():
        assert loaded.spec.examples, f"{loaded.id} ships no sample inputs"
        assert len(loaded.sha256) == 64


def test_a_good_file_loads_with_derived_defaults():
    spec = load_text(GOOD, "memo.yaml").spec
    assert spec.draft_step == "draft" and spec.revise_step == "draft"
    assert spec.output.format == "markdown" and spec.extension == "md"


def test_a_recorded_version_is_validated_but_not_checked_across_fields_again():
    """A run's recorded scenario text stays readable if a rule was added or a tool removed since it
    started; its fields are still validated."""
    uses_a_gone_tool = GOOD.replace(
        "  - id: review\n", "  - id: rank\n    kind: tool\n    tool: no-longer-installed\n  - id: review\n"
    )
    assert any("no-longer-installed" in p for p in problems(uses_a_gone_tool))
    assert load_text(uses_a_gone_tool, "memo@1234", recorded=True).spec.steps[1].id == "rank"
    with pytest.raises(ScenarioInvalid):
        load_text(GOOD.replace("risk: low", "risk: extreme"), "memo@1234", recorded=True)


def test_invalid_yaml_names_the_line():
    [p] = problems(GOOD.replace("risk: low", "risk: [low"))
    assert p.startswith("memo.yaml:") and "invalid YAML" in p


def test_missing_field_names_file_line_and_field():
    [p] = problems(GOOD.replace("    role: You write memos.\n", ""))
    assert p == "memo.yaml:12: steps[0].role: required field is missing"


def test_unknown_field_is_a_typo_with_its_line():
    ps = problems(GOOD.replace('    prompt: "Write', '    promt: "Write'))
    assert "memo.yaml:12: steps[0].prompt: required field is missing" in ps
    assert any(p.startswith("memo.yaml:15: steps[0].promt: unknown field") for p in ps)


def test_wrong_value_names_the_field():
    [p] = problems(GOOD.replace("risk: low", "risk: extreme"))
    assert p.startswith("memo.yaml:7: risk: Input should be 'low', 'medium' or 'high'")


def test_wrong_step_kind_is_explained():
    [p] = problems(GOOD.replace("kind: llm", "kind: magic"))
    assert p.startswith("memo.yaml:12: steps[0]") and "magic" in p


def test_references_must_point_to_earlier_steps():
    bad = GOOD.replace("    target: draft\n", "    target: later\n")
    [p] = problems(bad)
    assert p.startswith("memo.yaml:18: steps[1].target: target 'later' is not an earlier step")


def test_templates_are_checked_for_syntax_and_names():
    ps = problems(GOOD.replace("{{ inputs.topic }}", "{{ inputs.subject }} {% if %}"))
    assert any("template error" in p for p in ps)
    [p] = problems(GOOD.replace("{{ inputs.topic }}", "{{ inputs.subject }}"))
    assert p == "memo.yaml:15: steps[0].prompt: refers to inputs.subject, which is not a declared input"
    [p] = problems(GOOD.replace('prompt: "{{ steps.draft }}"', 'prompt: "{{ steps.nothing }}"'))
    assert "refers to steps.nothing" in p


def test_duplicate_step_ids_and_self_backup_are_refused():
    text = GOOD.replace("  - id: review", "  - id: draft").replace("risk: low", "risk: low\nbackups: [li.wei]")
    ps = problems(text)
    assert any("step id 'draft' is used twice" in p for p in ps)
    assert any("backups" in p and "is the guardian" in p for p in ps)


def test_examples_must_supply_required_inputs():
    ps = problems(GOOD + "examples:\n  - name: empty\n    inputs: {colour: red}\n")
    assert ps == [
        "memo.yaml:23: examples[0].inputs.colour: 'colour' is not a declared input",
        "memo.yaml:23: examples[0].inputs: required input 'topic' is missing",
    ]


def test_every_problem_of_a_directory_is_reported_together(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD.replace("risk: low", "risk: x"), encoding="utf-8")
    (tmp_path / "b.yaml").write_text(GOOD.replace("id: memo", "id: Bad Id"), encoding="utf-8")
    (tmp_path / "guardians.yaml").write_text("guardians: []\n", encoding="utf-8")  # the roster is not a scenario
    with pytest.raises(ScenarioInvalid) as e:
        load_directory(tmp_path)
    assert [p.split(":")[0].rsplit("/", 1)[-1] for p in e.value.problems] == ["a.yaml", "b.yaml"]


def test_load_file_reports_a_missing_file(tmp_path):
    from dew.agents.errors import ScenarioNotFound

    with pytest.raises(ScenarioNotFound, match="no such file"):
        load_file(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            ("{{ inputs.topic }}", "{{ input.topic }}"),
            "memo.yaml:15: steps[0].prompt: refers to 'input', which a template here cannot see",
        ),
        (
            ('prompt: "{{ steps.draft }}"', 'prompt: "{{ steps.review }}"'),
            "memo.yaml:20: steps[1].prompt: refers to steps.review, which is not an earlier step",
        ),
        (
            ("    type: string\n", "    type: integer\n    required: false\n    default: sixty\n"),
            "memo.yaml:12: inputs.topic.default: the default does not fit the type",
        ),
        (
            ("risk: low\n", "risk: low\nrisk: high\n"),
            "memo.yaml:8: risk: invalid YAML: duplicate key 'risk' (first given on line 7)",
        ),
        (
            ("risk: low\n", "risk: low\nrelease: {filename: '{{ steps.draft }}'}\n"),
            "memo.yaml:8: release.filename: refers to 'steps', which a template here cannot see",
        ),
    ],
)
def test_mistakes_that_would_only_fail_at_run_time_are_caught_at_load(change, expected):
    ps = problems(GOOD.replace(*change))
    assert any(p.startswith(expected) for p in ps), ps


def test_a_step_cannot_read_the_output_of_a_check():
    text = (
        GOOD
        + """  - id: check
    kind: check
    target: draft
    checks: [{min_chars: 1}]
  - id: final
    kind: template
    template: "{{ steps.check }}"
"""
    )
    assert any("refers to steps.check, a check step, which has no output" in p for p in problems(text))


def test_examples_are_type_checked_and_revise_to_must_be_an_agent():
    text = (
        GOOD.replace("    type: string\n", "    type: integer\n")
        + "examples:\n  - name: bad\n    inputs: {topic: many}\n"
    )
    assert any("must be integer" in p for p in problems(text))
    text = (
        GOOD.replace("risk: low\n", "risk: low\noutput: {revise_to: fixed}\n")
        + """  - id: fixed
    kind: template
    template: "x"
"""
    )
    assert any("output.revise_to" in p for p in problems(text))


def test_an_alias_bomb_is_refused_before_it_expands():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )
    [p] = problems(GOOD + bomb)
    assert p.startswith("memo.yaml:22:") and "aliases (*a) are not allowed" in p


def test_values_yaml_cannot_build_and_deep_nesting_name_their_line():
    [p] = problems(GOOD.replace('version: "1"', "version: !!int 1.5"))
    assert p.startswith("memo.yaml:5:") and "tags (tag:yaml.org,2002:int) are not allowed" in p
    [p] = problems(GOOD.replace("risk: low", "risk: !!float abc"))
    assert p.startswith("memo.yaml:7:")
    [p] = problems(GOOD + "extra: " + "[" * 600 + "]" * 600 + "\n")
    assert p.startswith("memo.yaml:21:") and "nested deeper than 50 levels" in p
    [p] = problems(GOOD.replace("risk: low", "risk: !!python/object:os.system ls"))
    assert p.startswith("memo.yaml:7:") and "invalid YAML" in p


def test_yaml_that_does_not_parse_still_names_the_field_from_indentation():
    from dew.agents.loader import field_at

    lines = (SCENARIOS / "drill-script.yaml").read_text(encoding="utf-8").splitlines()
    at = {n + 1: line for n, line in enumerate(lines)}
    steps = [n for n, line in at.items() if line.startswith("  - id:")]
    assert [field_at(lines, n) for n in steps] == [f"steps[{i}].id" for i in range(len(steps))]
    assert [field_at(lines, n + 1) for n in steps] == [f"steps[{i}].kind" for i in range(len(steps))]
    role = next(n for n, line in at.items() if line.strip() == "role: >")
    assert field_at(lines, role + 1) == "steps[0].role"  # text inside a block is the block's field
    assert field_at(lines, 1) == "(file)"  # a comment before any field
    [p] = problems(GOOD.replace("risk: low", "risk: low\n  oops: [1"))
    assert p.startswith("memo.yaml:") and ": risk" in p.split("invalid YAML")[0]
