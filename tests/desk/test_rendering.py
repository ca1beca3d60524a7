"""How untrusted text becomes a page: drafts rendered as documents or shown as text, always
escaped, with the phrases checker findings point at marked."""

from __future__ import annotations

from dew.guardians.desk.web import diff_lines, highlight_terms, json_table, marked, rendered_markdown


def test_findings_point_at_phrases_in_the_draft():
    findings = ["must not contain: 保证, 绝对", "the phrase “立即执行” needs a legal basis", "missing: Legal basis"]
    assert highlight_terms(findings) == ["立即执行", "保证", "绝对"]
    html = str(marked("本局保证立即执行，绝对<不会>错。", highlight_terms(findings)))
    assert html == "本局<mark>保证</mark><mark>立即执行</mark>，<mark>绝对</mark>&lt;不会&gt;错。"


def test_a_markdown_draft_is_a_document_and_raw_html_stays_text():
    html = str(
        rendered_markdown(
            "# 决定书\n\n| a | b |\n|---|---|\n| 1 | <b>2</b> |\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1))",
            ["决定"],
        )
    )
    assert "<h1><mark>决定</mark>书</h1>" in html and "<table>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;2&lt;/b&gt;" in html
    assert 'href="javascript' not in html


def test_hidden_characters_are_shown_not_hidden():
    assert "\\u202e" in str(marked("evil\u202etxt.exe", []))
    assert "\\x1b" in str(rendered_markdown("a\x1b[31mred", []))


def test_json_drafts_read_as_tables_only_when_they_are_records():
    assert json_table('{"company": "甲公司", "score": 3}') == {"company": "甲公司", "score": 3}
    assert json_table('[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]
    assert json_table("[1, 2]") is None and json_table("not json") is None


def test_a_diff_marks_what_was_added_and_removed():
    kinds = [k for k, _ in diff_lines("一\n二\n三\n", "一\n贰\n三\n")]
    assert kinds.count("del") == 1 and kinds.count("add") == 1
