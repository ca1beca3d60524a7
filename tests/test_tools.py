"""Built-in tools on real examples, tool steps, tool-backed checks, and tool calling over HTTP."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from dew.agents.errors import ScenarioInvalid
from dew.agents.loader import load_text
from dew.agents.ranking import tokens
from dew.agents.testing import unfenced
from dew.agents.toolbox.corpus import check_citations, search_corpus
from dew.agents.toolbox.documents import check_official_document, fix_official_document
from dew.agents.toolbox.tables import check_figures, read_table, score_table
from dew.agents.tools import ToolContext, ToolFailed, get_tool, registry
from dew.guardians.db import transaction
from dew.guardians.models import AuditEvent

COMPANIES = """company,sector,revenue_million_cny,rd_ratio_pct,planned_jobs,penalties_3y
华储能源科技,energy storage systems,1820,11.5,450,0
锐芯半导体,semiconductors,960,18.2,220,0
蓝海物流,logistics,3100,1.2,900,1
恒达纺织,textiles,1250,2.3,150,2
"""


def test_builtins_are_registered_through_the_entry_point_group():
    from importlib.metadata import entry_points

    assert {
        "read_table",
        "score_table",
        "check_figures",
        "search_corpus",
        "check_official_document",
        "fix_official_document",
    } <= set(registry())
    assert {ep.value for ep in entry_points(group="dew.tools")} >= {"dew.agents.toolbox.tables"}


def test_builtins_arrive_only_through_entry_points_and_names_are_unique():
    import dew.agents.toolbox.tables as tables
    from dew.agents.errors import ToolConflict
    from dew.agents.tools import ToolRegistry, tool

    empty = ToolRegistry()
    assert len(empty) == 0  # marking a function @tool registers nothing by itself
    assert [t.name for t in empty.register_module(tables)] == ["read_table", "score_table", "check_figures"]

    @tool(name="score_table")
    def impostor(text: str) -> list[str]:
        """Claims a built-in's name."""
        return []

    with pytest.raises(ToolConflict, match="two tools are named 'score_table'"):
        empty.register(impostor)
    assert empty["score_table"].func is tables.score_table  # the built-in stays
    empty.register_module(tables)  # the same module again is no conflict


def test_tests_can_register_and_unregister_a_tool_on_the_process_registry():
    from dew.agents.tools import tool

    @tool()
    def shout(text: str) -> str:
        """Upper-case the text."""
        return text.upper()

    with registry().registered(shout):
        assert get_tool("shout").call({"text": "hi"}) == "HI"
    assert "shout" not in registry()


SHOUTER = """
dew: 1
id: shouter
name: Shouter
description: Drafts a line, then a tool upper-cases it.
version: "1"
guardian: zhao.lei
risk: low
inputs: {topic: {type: string}}
steps:
  - id: draft
    kind: llm
    role: You write one line.
    prompt: "One line about {{ inputs.topic }}"
  - id: loud
    kind: tool
    tool: shout
    args: {text: "{{ steps.draft }}"}
output: {format: text}
"""


def test_a_run_whose_tool_was_removed_since_it_started_stays_readable_and_fails_naming_it(
    make_workspace, scenarios_dir
):
    from dew.agents.testing import ScriptedModelProvider
    from dew.agents.tools import tool
    from dew.guardians.flow import decide
    from dew.guardians.queue import item_view
    from dew.guardians.runs import start_run

    @tool()
    def shout(text: str) -> str:
        """Upper-case the text."""
        return text.upper()

    (scenarios_dir / "shouter.yaml").write_text(SHOUTER, encoding="utf-8")
    ws = make_workspace(provider=ScriptedModelProvider(reply=lambda system, prompt: "a quiet line"))
    with registry().registered(shout):
        r = start_run(ws, "shouter", {"topic": "drills"}, requester="alice")
    assert r.item is not None and item_view(ws, r.item.id)["item"]["draft"] == "A QUIET LINE"  # shown without it
    again = decide(ws, r.item.id, actor="zhao.lei", action="revise", note="louder")  # drafts again: needs the tool
    assert again.run.status == "failed"
    assert "no tool named 'shout' is installed here" in (again.run.error or ""), again.run.error


def test_read_table_parses_numbers_and_names_bad_rows():
    rows = read_table(COMPANIES)
    assert rows[0] == {
        "company": "华储能源科技",
        "sector": "energy storage systems",
        "revenue_million_cny": 1820,
        "rd_ratio_pct": 11.5,
        "planned_jobs": 450,
        "penalties_3y": 0,
    }
    with pytest.raises(ValueError, match="row 3 has 2 cells"):
        read_table("a,b,c\n1,2,3\n4,5\n")


def test_score_table_ranks_with_every_point_explained():
    result = score_table(
        COMPANIES,
        weights={"rd_ratio_pct": 2, "planned_jobs": 1, "penalties_3y": -1},
        name_column="company",
        top=2,
        prefer={"sector": ["energy"]},
        exclude_if_above={"penalties_3y": 1},
    )
    assert result["shortlist"] == ["锐芯半导体", "华储能源科技"]
    assert result["excluded"] == [{"name": "恒达纺织", "reasons": ["penalties_3y 2 > 1"]}]
    assert result["ranking"][0]["score"] == pytest.approx(50 + 0 + 25)  # top R&D, fewest jobs, no penalty
    top = result["ranking"][1]
    assert top["score"] == pytest.approx(sum(p["points"] for p in top["parts"].values()))
    assert top["parts"]["prefer:sector"]["matched"] == "energy"
    # rd 11.5 of range 1.2..18.2 → 0.606 × 50 = 30.29; jobs 450 of 220..900 → 0.338 × 25 = 8.46; no penalty 25; +10
    assert top["parts"]["rd_ratio_pct"]["points"] == pytest.approx(30.29, abs=0.01)
    assert top["score"] == pytest.approx(30.29 + 8.46 + 25 + 10, abs=0.02)
    with pytest.raises(ValueError, match="no column 'profit'"):
        score_table(COMPANIES, weights={"profit": 1}, name_column="company")


def test_check_figures_flags_invented_numbers_only():
    text = (
        "1. 华储能源科技: R&D 11.5% of revenue, 450 planned jobs.\n"
        "2. 锐芯半导体: R&D ratio 18.2%, revenue 1,820 million.\n"
        "3. 蓝海物流: 2,500 jobs and 25% growth."
    )
    assert check_figures(text, COMPANIES) == ["the figure 2,500 is not in the data", "the figure 25 is not in the data"]
    assert check_figures("Shortlist of 3 companies", COMPANIES, also_allowed="pick 3") == []


def test_search_corpus_finds_the_passage_and_says_nothing_when_nothing_matches(tmp_path):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "rd.md").write_text(
        "# 研发费用补贴办法\n\n## 第三条 补贴标准\n企业年度研发投入超过500万元的，按新增研发投入的10%给予补贴，最高300万元。\n\n"
        "## 第四条 申报材料\n申报企业应提交审计报告和研发项目立项文件。\n",
        encoding="utf-8",
    )
    (tmp_path / "policies" / "rent.md").write_text(
        "# Rent subsidy\n\nStart-ups in the incubator get 50% off rent for two years.\n", encoding="utf-8"
    )
    ctx = ToolContext(scenario_dir=tmp_path)
    hits = search_corpus("研发投入补贴标准是多少", "policies", context=ctx)
    assert hits[0]["source"] == "rd.md" and hits[0]["section"] == "第三条 补贴标准"
    assert search_corpus("rent for start-ups", "policies", context=ctx)[0]["source"] == "rent.md"
    assert search_corpus("飞机航线审批", "policies", context=ctx) == []
    with pytest.raises(ValueError, match="not found next to the scenario"):
        search_corpus("x", "nope", context=ctx)
    assert "研发" in tokens("研发投入") and "the" not in tokens("the subsidy")


BAD_NOTICE = """深圳市某区应急管理局文件
深某应急[2026]008号

关于开展冬季安全生产大检查的通知。
各街道办事处,区直有关单位:
为切实做好冬季安全生产工作,现就有关事项通知如下:
一、检查时间为2026年12月1日至12月31日。
二、检查内容详见附件。

深圳市某区应急管理局
二〇二六年十一月二十二日
"""

GOOD_NOTICE = """深圳市某区应急管理局文件
深某应急〔2026〕8号

关于开展冬季安全生产大检查的通知
各街道办事处，区直有关单位：
为切实做好冬季安全生产工作，现就有关事项通知如下：
一、检查时间为2026年12月1日至12月31日。
二、检查内容见附件。

附件：冬季安全生产检查表

深圳市某区应急管理局
2026年11月22日
"""


def test_a_well_formed_notice_has_no_format_problems():
    assert check_official_document(GOOD_NOTICE) == []


def test_a_badly_formatted_notice_is_flagged_element_by_element():
    problems = check_official_document(BAD_NOTICE)
    assert problems == [
        "第2行 发文字号：年份应使用六角括号〔〕，不用“[]”",
        "第2行 发文字号：序号不编虚位（“008”应为“8”）",
        "第4行 标题：末尾不加标点",
        "第5行 主送机关：后应使用全角冒号“：”",
        "第5行 标点：中文行文中使用了半角标点“,”，应为“，”",
        "第6行 标点：中文行文中使用了半角标点“,”，应为“，”",
        "全文 附件说明：正文提到附件，但没有附件说明",
        "第11行 成文日期：应使用阿拉伯数字（GB/T 9704—2012），如“2026年11月22日”",
    ]


@pytest.mark.parametrize(
    "broken, element",
    [
        (GOOD_NOTICE.replace("深圳市某区应急管理局文件\n", ""), "发文机关标志"),
        (GOOD_NOTICE.replace("深某应急〔2026〕8号\n", ""), "发文字号"),
        (GOOD_NOTICE.replace("〔2026〕", "〔26〕"), "年份应标全称"),
        (GOOD_NOTICE.replace("关于开展冬季安全生产大检查的通知\n", ""), "标题"),
        (GOOD_NOTICE.replace("各街道办事处，区直有关单位：\n", ""), "主送机关"),
        (GOOD_NOTICE.replace("2026年11月22日", "2026年11月05日"), "不编虚位"),
        (GOOD_NOTICE.replace("\n深圳市某区应急管理局\n2026年11月22日", "\n2026年11月22日"), "发文机关署名"),
        (GOOD_NOTICE.replace("2026年11月22日\n", ""), "成文日期"),
        (GOOD_NOTICE.replace("附件：冬季", "附件:冬季"), "附件说明"),
    ],
)
def test_each_missing_or_wrong_element_is_found(broken, element):
    assert any(element in p for p in check_official_document(broken)), check_official_document(broken)


def test_fix_makes_the_mechanical_corrections_and_says_what_changed():
    fixed = fix_official_document(BAD_NOTICE)
    assert check_official_document(fixed["text"]) == ["全文 附件说明：正文提到附件，但没有附件说明"]  # needs a person
    assert "深某应急〔2026〕8号" in fixed["text"] and "2026年11月22日" in fixed["text"]
    assert len(fixed["changes"]) == 6
    assert fix_official_document(GOOD_NOTICE) == {"text": GOOD_NOTICE, "changes": []}


def test_tool_arguments_are_validated():
    with pytest.raises(ToolFailed, match="top: Input should be a valid integer"):
        get_tool("score_table").call({"csv_text": COMPANIES, "weights": {}, "name_column": "company", "top": "many"})
    with pytest.raises(ToolFailed, match="tool 'read_table' failed: the table is empty"):
        get_tool("read_table").call({"csv_text": " "})


TOOL_SCENARIO = """
dew: 1
id: ranker
name: Ranker
description: Ranks companies with a tool and lets a model explain.
version: "1"
guardian: li.wei
risk: low
inputs:
  companies: {type: text}
steps:
  - id: ranking
    kind: tool
    tool: score_table
    args:
      csv_text: "{{ inputs.companies }}"
      weights: {rd_ratio_pct: 1}
      name_column: company
      top: 2
  - id: memo
    kind: llm
    role: You explain rankings.
    prompt: "Shortlist: {{ steps.ranking.shortlist | join(', ') }}"
  - id: figures
    kind: check
    target: memo
    checks:
      - tool: check_figures
        args: {csv_text: "{{ inputs.companies }}"}
        message: cite only figures from the table
    on_fail: memo
    max_rounds: 1
"""


def test_a_tool_step_feeds_structured_results_to_later_steps(make_workspace, scenarios_dir):
    from dew.agents.testing import ScriptedModelProvider
    from dew.guardians.runs import start_run

    (scenarios_dir / "ranker.yaml").write_text(TOOL_SCENARIO, encoding="utf-8")
    replies = iter(["锐芯半导体 leads with 99.9% R&D.", "锐芯半导体 leads with 18.2% R&D."])
    provider = ScriptedModelProvider(reply=lambda system, prompt: next(replies))
    ws = make_workspace(provider=provider)
    r = start_run(ws, "ranker", {"companies": COMPANIES}, requester="alice")
    assert "Shortlist: 锐芯半导体, 华储能源科技" in unfenced(provider.calls[0]["prompt"])
    assert "the figure 99.9 is not in the data" in provider.calls[1]["prompt"]  # the check sent it back
    assert r.item.draft == "锐芯半导体 leads with 18.2% R&D." and r.item.findings == []


@pytest.mark.parametrize(
    "change, expected",
    [
        (("tool: score_table", "tool: rank_everything"), "steps[0].tool: no tool named 'rank_everything'"),
        (
            ("      top: 2\n", "      top: 2\n      colour: red\n"),
            "steps[0].args.colour: tool 'score_table' takes no argument 'colour'",
        ),
        (("      name_column: company\n", ""), "steps[0].args: tool 'score_table' needs argument 'name_column'"),
        (
            ('csv_text: "{{ inputs.companies }}"\n      weights', 'csv_text: "{{ inputs.firms }}"\n      weights'),
            "refers to inputs.firms, which is not a declared input",
        ),
    ],
)
def test_tool_mistakes_are_caught_at_load(change, expected):
    with pytest.raises(ScenarioInvalid) as e:
        load_text(TOOL_SCENARIO.replace(*change), "ranker.yaml")
    assert any(expected in p for p in e.value.problems), e.value.problems


def test_an_llm_step_with_tools_calls_them_over_http(make_workspace, scenarios_dir, fake_llm):
    from dew.agents.llm import EnvModelProvider
    from dew.guardians.runs import start_run

    (scenarios_dir / "ranker.yaml").write_text(
        TOOL_SCENARIO.replace(
            "    prompt: \"Shortlist: {{ steps.ranking.shortlist | join(', ') }}\"",
            '    prompt: "Explain the shortlist."\n    tools: [read_table]',
        ),
        encoding="utf-8",
    )
    fake_llm.call_tool("read_table", csv_text=COMPANIES)
    fake_llm.say("锐芯半导体 has 18.2% R&D.")
    provider = EnvModelProvider(env={"DEW_LLM_BASE_URL": fake_llm.url, "DEW_LLM_MAX_RETRIES": "0"})
    ws = make_workspace(provider=provider)
    r = start_run(ws, "ranker", {"companies": COMPANIES}, requester="alice")
    assert r.item.draft == "锐芯半导体 has 18.2% R&D."
    first, second = fake_llm.requests[0], fake_llm.requests[1]
    assert first["tools"][0]["function"]["name"] == "read_table"
    tool_reply = next(m for m in second["messages"] if m["role"] == "tool")
    assert json.loads(unfenced(tool_reply["content"]))[1]["company"] == "锐芯半导体"
    (used,) = r.item.provenance[0]["tool_calls"]
    assert (used["tool"], used["args"]) == ("read_table", {"csv_text": COMPANIES})
    # The trail keeps the call by hashes only (arguments may hold personal data; retention clears the item).
    with transaction(ws.engine) as s:
        drafted = json.loads(s.exec(select(AuditEvent).where(AuditEvent.kind == "run.drafted")).one().data)
    model = drafted["models"][0]
    assert model["tool_calls"] == [{"tool": "read_table", "args_sha256": used["args_sha256"],
                                    "result_sha256": used["result_sha256"]}]  # fmt: skip
    assert model["prompt_sha256"] and model["output_sha256"] and "csv_text" not in json.dumps(drafted)


def test_risk_signals_are_tied_to_the_facts_that_raised_them():
    from dew.agents.toolbox.signals import risk_signals

    rules = [
        {"field": "penalties", "op": ">=", "value": 2, "signal": "repeated penalties", "severity": "high"},
        {"field": "paid", "op": "ratio_below", "of": "registered", "value": 0.2, "signal": "thin capital"},
        {"field": "rating", "op": "missing", "signal": "no rating", "severity": "low"},
        {"field": "listed", "op": "==", "value": True, "signal": "abnormal list", "severity": "high"},
    ]
    out = risk_signals({"penalties": 3, "paid": 2, "registered": 50, "listed": False}, rules)
    assert out == [
        {"signal": "repeated penalties", "severity": "high", "fact": "penalties = 3", "field": "penalties"},
        {"signal": "thin capital", "severity": "medium", "fact": "paid / registered = 2 / 50 = 4%", "field": "paid"},
        {"signal": "no rating", "severity": "low", "fact": "rating not given", "field": "rating"},
    ]
    assert risk_signals({"penalties": "many", "rating": "A"}, rules) == []  # wrong types raise nothing


def test_check_figures_accepts_any_json_data():
    facts = {"name": "X", "established": "2021-06-18", "capital": 50, "nested": {"staff": [3, 412]}}
    assert check_figures("Founded 2021 with 50 million and 412 staff.", data=facts) == []
    assert check_figures("It has 7 lawsuits.", data=facts) == ["the figure 7 is not in the data"]


def test_render_template_fills_a_form_and_names_what_is_missing():
    tool = get_tool("render_template")
    assert tool.call({"template": "当事人：{{ party }}", "data": {"party": "某公司"}}) == "当事人：某公司"
    with pytest.raises(ToolFailed, match="'party' is undefined"):
        tool.call({"template": "当事人：{{ party }}", "data": {}})


@pytest.mark.parametrize(
    "document",
    [
        GOOD_NOTICE.replace(
            "关于开展冬季安全生产大检查的通知\n", "关于开展2026年冬季安全生产和消防安全\n大检查工作的通知\n"
        ),
        GOOD_NOTICE.replace("各街道办事处，区直有关单位：", "经济技术开发区管委会："),
        GOOD_NOTICE.replace("深圳市某区应急管理局文件", "深圳市公安局交通警察支队文件").replace(
            "\n深圳市某区应急管理局\n2026", "\n深圳市公安局交通警察支队\n2026"
        ),
    ],
)
def test_correct_documents_in_less_common_shapes_are_not_flagged(document):
    assert check_official_document(document) == []


@pytest.mark.parametrize(
    "broken, problem",
    [
        (GOOD_NOTICE.replace("2026年11月22日\n", "2026年2月30日\n"), "不是有效日期"),
        (GOOD_NOTICE.replace("二、检查内容见附件。", "二、检查内容(详见附件)。"), "半角括号"),
    ],
)
def test_impossible_dates_and_half_width_brackets_are_flagged(broken, problem):
    assert any(problem in p for p in check_official_document(broken))


def test_figures_next_to_chinese_text_and_negative_figures_are_checked():
    assert check_figures("该公司注册资本5000万元，员工300人。", data={"capital": 5000}) == [
        "the figure 300 is not in the data"
    ]
    assert check_figures("净利润为-3.2百万元", data={"profit": -3.2}) == []
    assert check_figures("1、研发占比11.5%\n2、就业450人", COMPANIES) == []


def test_corpus_search_stays_inside_the_scenario_folder(tmp_path):
    (tmp_path / "inside").mkdir()
    for corpus in ("..", "../..", "/etc", str(tmp_path.parent)):
        with pytest.raises(ValueError, match="outside the scenario folder"):
            search_corpus("x y", corpus, context=ToolContext(scenario_dir=tmp_path / "inside"))


def test_scoring_is_fair_when_a_column_does_not_tell_rows_apart_and_unknowns_are_excluded():
    table = "company,jobs,penalties\nA,100,0\nB,100,\nC,50,0\n"
    result = score_table(
        table, weights={"jobs": 1, "penalties": -1}, name_column="company", exclude_if_above={"penalties": 0}
    )
    assert result["excluded"] == [{"name": "B", "reasons": ["penalties not given ('')"]}]
    assert result["ranking"][0]["parts"]["penalties"]["points"] == 50.0  # equal for all, full points
    with pytest.raises(ValueError, match="no rows"):
        score_table("company,jobs\n", weights={"jobs": 1}, name_column="company")


def test_citations_in_chinese_brackets_count():
    passages = [{"passage": "a"}, {"passage": "b"}]
    for text in ("补贴最高300万元【1】。", "见［2］。", "两条都适用 [1,2]。", "见[１]"):
        assert check_citations(text, passages) == [], text


def test_tool_checks_and_literal_arguments_are_checked_at_load():
    bad_check = TOOL_SCENARIO.replace(
        '      - tool: check_figures\n        args: {csv_text: "{{ inputs.companies }}"}',
        "      - tool: read_table\n        args: {}",
    )
    with pytest.raises(ScenarioInvalid, match="takes no `text`, so it cannot check an output"):
        load_text(bad_check, "ranker.yaml")
    with pytest.raises(
        ScenarioInvalid, match=r"steps\[0\]\.args\.top: tool 'score_table': Input should be a valid integer"
    ):
        load_text(TOOL_SCENARIO.replace("      top: 2", "      top: five"), "ranker.yaml")


def test_a_model_cannot_exceed_its_tool_call_bound(make_workspace, scenarios_dir):
    from langchain_core.messages import AIMessage

    from dew.agents.testing import ScriptedModelProvider
    from dew.guardians.runs import start_run

    (scenarios_dir / "ranker.yaml").write_text(
        TOOL_SCENARIO.replace(
            "    prompt: \"Shortlist: {{ steps.ranking.shortlist | join(', ') }}\"",
            '    prompt: "Explain."\n    tools: [read_table]\n    max_tool_calls: 2',
        ),
        encoding="utf-8",
    )
    greedy = AIMessage(
        content="",
        tool_calls=[{"name": "read_table", "args": {"csv_text": COMPANIES}, "id": f"c{i}"} for i in range(5)],
    )
    replies = iter([greedy, "1. 锐芯半导体 18.2"])
    ws = make_workspace(provider=ScriptedModelProvider(reply=lambda s, p: next(replies)))
    r = start_run(ws, "ranker", {"companies": COMPANIES}, requester="alice")
    assert len(r.item.provenance[0]["tool_calls"]) == 2


# --- what a model may set: tools declare it, scenarios pin the rest --------------------------------
PINNED = TOOL_SCENARIO.replace(
    "    prompt: \"Shortlist: {{ steps.ranking.shortlist | join(', ') }}\"",
    '    prompt: "Score these and explain."\n'
    "    tools:\n"
    "      - tool: score_table\n"
    '        args: {weights: {rd_ratio_pct: 1}, name_column: company, csv_text: "{{ inputs.companies }}"}',
)


def test_a_tool_argument_no_model_may_set_must_be_pinned(scenarios_dir):
    text = PINNED.replace(
        '        args: {weights: {rd_ratio_pct: 1}, name_column: company, csv_text: "{{ inputs.companies }}"}\n', ""
    )
    with pytest.raises(ScenarioInvalid) as e:
        load_text(text, "ranker.yaml")
    problems = str(e.value)
    assert "ranker.yaml:25: steps[1].tools[0].args: tool 'score_table' needs argument 'name_column'" in problems
    assert "needs argument 'weights'" in problems and "csv_text" not in problems  # a model may set csv_text


def test_the_model_sees_only_what_it_may_set_and_is_refused_the_rest(make_workspace, scenarios_dir, fake_llm):
    from dew.agents.llm import EnvModelProvider
    from dew.guardians.runs import start_run

    (scenarios_dir / "ranker.yaml").write_text(PINNED, encoding="utf-8")
    fake_llm.call_tool("score_table", top=1, weights={"penalties_3y": 9})  # reaches for the scenario's weights
    fake_llm.call_tool("score_table", top=1)
    fake_llm.say("锐芯半导体 leads with 18.2% R&D.")
    provider = EnvModelProvider(env={"DEW_LLM_BASE_URL": fake_llm.url, "DEW_LLM_MAX_RETRIES": "0"})
    ws = make_workspace(provider=provider)
    r = start_run(ws, "ranker", {"companies": COMPANIES}, requester="alice")
    shown = fake_llm.requests[0]["tools"][0]["function"]["parameters"]
    assert sorted(shown["properties"]) == ["top"]  # csv_text is pinned; weights and the rest are the tool's to keep
    refused = next(m for m in fake_llm.requests[1]["messages"] if m["role"] == "tool")
    assert "you may not set weights of score_table" in refused["content"]
    answered = [m for m in fake_llm.requests[2]["messages"] if m["role"] == "tool"][-1]
    ranking = json.loads(unfenced(answered["content"]))
    assert ranking["shortlist"] == ["锐芯半导体"]  # scored by the pinned weights, with the model's `top`
    (used,) = r.item.provenance[0]["tool_calls"]
    assert used["args"] == {"top": 1}
    assert any("the model tried to set weights of tool 'score_table'" in f for f in r.item.findings)
