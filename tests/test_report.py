"""`dew audit report`: a chain-of-custody report an inspector can read, in HTML and PDF.

A real history (a hotline case handed off to the enforcement writer, signed off by the legal
reviewer and signed, edited and approved by the guardian; a drill script sent back and then
rejected) is reported on; the HTML must state its key facts, and the PDF is rendered to images and
its text read back. A changed record must make the report's verification section say so."""

from __future__ import annotations

import hashlib
import html
import json
import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import text
from sqlmodel import select

from dew.agents.loader import load_directory
from dew.guardians import audit, report, retention
from dew.guardians.db import transaction
from dew.guardians.errors import NotFound
from dew.guardians.flow import decide
from dew.guardians.models import Action, AuthMethod, DecideRule, Decision, Release, RunStatus, SigningKey, utcnow
from dew.guardians.queue import item_view, trace
from dew.guardians.runs import start_run

from . import signatures
from .conftest import SCENARIOS

HOTLINE = {e.name: e.inputs for e in load_directory(SCENARIOS)["hotline-intake"].spec.examples}
# Untrusted text: markup, and a right-to-left override that would reorder what an inspector reads.
DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift A <script>alert(1)</script>\u202e",
         "duration_minutes": 20}  # fmt: skip


def _history(ws) -> SimpleNamespace:
    hotline = start_run(ws, "hotline-intake", dict(HOTLINE["饭店占道经营"]), requester="operator.gao")
    child = decide(ws, hotline.item.id, actor="xu.jie", action="approve").handoff
    assert child is not None
    item = child.item.key
    signatures.decide(ws, item, actor="zhang.min", action="approve", note="事实清楚，程序合法")
    edited = child.item.draft + "\n附：承办人已核对现场照片。\n"
    done = signatures.decide(ws, item, actor="li.wei", action="edit", edited=edited, note="补充附注")
    assert done.run.status == "released"
    drill = start_run(ws, "drill-script", DRILL, requester="alice")
    decide(ws, drill.item.key, actor="zhao.lei", action="revise", note="add an inject about a blocked fire exit")
    second = item_view(ws, drill.item.key)["item"]["next_item"]
    decide(ws, second, actor="zhao.lei", action="reject", note="figures not checked against the site plan")
    with transaction(ws.engine) as s:
        keys = {k.person: k.fingerprint for k in s.exec(select(SigningKey)).all()}
        release = s.exec(select(Release).where(Release.item_id == item)).one()
        decision = s.exec(select(Decision).where(Decision.item_id == item)).one()
        requested = audit.events(s, run_ids=[child.run.key], kinds=["run.requested"])
        inputs_sha256 = json.loads(next(requested).data)["inputs_sha256"]
    return SimpleNamespace(
        hotline=hotline,
        child=child,
        item=item,
        draft_sha256=audit.sha256_text(child.item.draft),
        edited_sha256=audit.sha256_text(edited),
        keys=keys,
        release=release,
        decision=decision,
        inputs_sha256=inputs_sha256,
        drill=drill,
        drill_second=second,
    )


def _html(ws, item: int, lang: str = "zh") -> str:
    return "".join(report.render_html(report.item_report(ws, item), lang))


def _read(page: str) -> str:
    """What a reader of the HTML sees: its text without the tags, entities resolved."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_the_item_report_says_who_signed_what_they_saw_and_what_the_machine_did(ws):
    h = _history(ws)
    data = report.item_report(ws, h.item)
    assert data["chain"] == [h.hotline.run.key, h.child.run.key]  # the hand-off chain, from its start
    assert data["verification"]["ok"] is True
    page = _html(ws, h.item)
    text_ = _read(page)

    assert "监管链审计报告 · 工作项 " + str(h.item) in text_
    for fact in (
        "hotline-intake", "enforcement-document", "operator.gao", "xu.jie",  # the chain and who asked
        h.child.run.scenario_sha256, h.inputs_sha256, h.draft_sha256, h.edited_sha256,
        "zhang.min (张敏)", "li.wei (李伟)", "法制审核 · legal review", "事实清楚，程序合法", "补充附注",
        "监护人本人 (owner)", "自述身份（未验证） (declared)", "修改后批准 (edit)",
        h.keys["zhang.min"], h.keys["li.wei"], h.decision.signed_statement, h.decision.signature,
        "签名有效（以审计链登记的公钥核验）", "与本轮草稿一致",
        "+附：承办人已核对现场照片。",  # the edit, as its diff
        "scripted", "in-process",  # the model calls behind the draft
        h.release.location, h.release.sha256, "ProduceID",
        "审计链完整", "全部核验通过", "记录与审计链一致", "2 个签名均以审计链登记的公钥核验有效。",
        "发件箱中的文件与记录一致",
    ):  # fmt: skip
        assert fact in text_, fact
    for e in trace(ws, h.item)["events"]:  # every event behind it, by its hash
        assert e["hash"] in page
    head = data["verification"]["head"]
    assert head.startswith(f"{head.split(':')[0]}:") and f"dew audit verify --anchor {head}" in text_

    english = _read(_html(ws, h.item, "en"))
    for fact in ("Chain-of-custody report · work item", "Audit chain intact", "Everything verified",
                 "li.wei (李伟)", "edit and approve", "How authenticated", h.keys["li.wei"]):  # fmt: skip
        assert fact in english, fact


def test_inputs_and_drafts_are_escaped_and_hidden_characters_shown(ws):
    h = _history(ws)
    page = _html(ws, h.drill_second)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\u202e" not in page and "\\u202e" in page
    text_ = _read(page)
    # Both rounds of the run: the revision with its feedback, then the rejection with its reason.
    for fact in ("第 1 轮草稿", "第 2 轮草稿", "退回修改", "add an inject about a blocked fire exit", "驳回",
                 "figures not checked against the site plan", "未签名", "未发布。"):  # fmt: skip
        assert fact in text_, fact


def test_the_pdf_is_a4_with_page_numbers_and_its_key_facts_read_back(ws, tmp_path):
    pdfium = pytest.importorskip("pypdfium2")
    h = _history(ws)
    data = report.item_report(ws, h.item)
    body, pages = report.render_pdf("".join(report.render_html(data, "zh")))
    assert body.startswith(b"%PDF") and pages >= 2
    document = pdfium.PdfDocument(body)
    assert len(document) == pages
    texts = []
    for n, page in enumerate(document, start=1):
        width, height = page.get_size()
        assert (round(width), round(height)) == (595, 842)  # A4 in points
        image = page.render(scale=1).to_pil().convert("L")
        image.save(tmp_path / f"item-{n}.png")
        assert image.getextrema()[0] < 80  # something dark was drawn: text, not a blank page
        texts.append(page.get_textpage().get_text_range())
    head_seq, head_hash = data["verification"]["head"].split(":")
    for n, page_text in enumerate(texts, start=1):
        assert f"第 {n} 页 / 共 {pages} 页" in page_text  # the footer
        assert f"审计链头 {head_seq}:{head_hash[:24]}" in page_text  # the header: the trail's head
    whole = "\n".join(texts)
    for fact in (
        f"监管链审计报告 · 工作项 {h.item}", "签发与决定", "电子签名", "核验", "审计链完整", "全部核验通过",
        "zhang.min", "li.wei", "operator.gao", h.draft_sha256[:24], h.release.sha256[:24],
        h.keys["zhang.min"][:24], h.keys["li.wei"][:24], h.child.run.scenario_sha256[:24],
    ):  # fmt: skip
        assert fact in whole, fact


def test_a_changed_record_makes_the_verification_section_say_so(ws):
    h = _history(ws)
    with ws.engine.begin() as db:
        db.execute(
            text("UPDATE decisions SET note = 'approved without review' WHERE item_id = :item"), {"item": h.item}
        )
    data = report.item_report(ws, h.item)
    checks = data["verification"]
    assert checks["ok"] is False and checks["chain"]["ok"] is True and checks["signatures"]["ok"] is True
    assert checks["rows"]["problems"] == [
        f"decisions {h.decision.id} (audit event {_decision_seq(ws, h.item)}): the note (reason, feedback) differs "
        "from the one recorded"
    ]
    page = _read(_html(ws, h.item))
    assert "发现问题，详见下文" in page and "1 条记录与审计链不一致" in page
    assert "补充附注" in page and "approved without review" not in page  # it states what the trail recorded
    assert report.item_report(ws, h.drill_second)["verification"]["rows"]["elsewhere"] == 1  # not this chain's

    (ws.settings.home / h.release.location).unlink()
    page = _read(_html(ws, h.item, "en"))
    assert "Release problems:" in page and "file_missing" in page

    with ws.engine.begin() as db:
        db.execute(text("UPDATE audit_events SET data = replace(data, 'zhang.min', 'liu.yang') "
                        "WHERE kind = 'decision.signed_off'"))  # fmt: skip
        seq = db.execute(text("SELECT seq FROM audit_events WHERE kind = 'decision.signed_off'")).scalar_one()
    page = _read(_html(ws, h.item))
    assert f"审计链已被破坏（第一个异常事件：{seq}）" in page


def _decision_seq(ws, item: int) -> int:
    with transaction(ws.engine) as s:
        return next(e.seq for e in audit.events(s, kinds=["decision.edited"]) if e.item_id == item)


def test_after_retention_the_report_keeps_the_hashes_and_says_the_texts_were_cleared(ws):
    h = _history(ws)
    retention.set_period(ws, 183, actor="root")
    cleared = retention.apply(ws, actor="root", now=utcnow() + timedelta(days=400))
    assert h.child.run.key in cleared.runs
    data = report.item_report(ws, h.item)
    assert data["verification"]["ok"] is True
    enforcement = data["runs"][1]
    assert enforcement["inputs"] is None and enforcement["inputs_sha256"] == h.inputs_sha256
    assert "retention.cleared" in [e["kind"] for e in data["events"]]
    page = _read(_html(ws, h.item))
    assert "按保存期限清除" in page and h.draft_sha256 in page and h.inputs_sha256 in page


def test_the_period_report_counts_per_scenario_and_lists_every_decision(ws):
    h = _history(ws)
    now = utcnow()
    data = report.period_report(ws, since=now - timedelta(days=1), until=now + timedelta(days=1))
    rows = {r["scenario"]: r for r in data["summary"]}
    assert rows["enforcement-document"] == {
        "scenario": "enforcement-document", "items": 1, "approved": 0, "edited": 1, "rejected": 0, "revised": 0,
        "released": 1, "recalled": 0, "decisions": 2, "signed": 2,
    }  # fmt: skip
    assert (rows["drill-script"]["items"], rows["drill-script"]["revised"], rows["drill-script"]["rejected"]) == (
        2,
        1,
        1,
    )
    assert (rows["drill-script"]["decisions"], rows["drill-script"]["signed"]) == (2, 0)
    assert (rows["hotline-intake"]["approved"], rows["hotline-intake"]["released"]) == (1, 1)
    assert data["total"]["decisions"] == 5 and data["total"]["signed"] == 2
    listed = list(data["decisions"])
    assert [(d["item"], d["actor"], d["action"], d["signed"]) for d in listed] == [
        (h.hotline.item.key, "xu.jie", "approve", False),
        (h.item, "zhang.min", "approve", True),  # the legal review's sign-off
        (h.item, "li.wei", "edit", True),
        (h.drill.item.key, "zhao.lei", "revise", False),
        (h.drill_second, "zhao.lei", "reject", False),
    ]
    assert [d["signoff"] for d in listed] == [False, True, False, False, False]
    paged = report.decisions_in(ws, since=now - timedelta(days=1), until=now + timedelta(days=1), batch=1)
    assert list(paged) == listed  # read a row at a time, the same list
    assert data["verification"]["ok"] is True and data["verification"]["scope"] == "all"

    only = report.period_report(ws, since=None, until=None, scenario="drill-script")
    assert [r["scenario"] for r in only["summary"]] == ["drill-script"]
    assert {d["scenario"] for d in only["decisions"]} == {"drill-script"}
    before = report.period_report(ws, since=now - timedelta(days=3), until=now - timedelta(days=2))
    assert before["summary"] == [] and list(before["decisions"]) == []

    page = _read("".join(report.render_html(report.period_report(ws, since=None, until=None), "zh")))
    for fact in ("期间审计报告", "按场景汇总", "期间内的决定与签发", "阶段签发：法制审核 · legal review", "修改后批准",
                 "审计链完整", "全部核验通过", "2 个签名均以审计链登记的公钥核验有效"):  # fmt: skip
        assert fact in page, fact


def test_an_unknown_item_is_not_found(ws):
    with pytest.raises(NotFound, match="no work item 999"):
        report.item_report(ws, 999)


# --- the command ------------------------------------------------------------------------------------
def _run_and_approve(dew) -> int:
    out = dew("run", "drill-script", "--example", "first", "--as", "alice", "--json")
    assert out.exit_code == 0, out.output
    item = json.loads(out.stdout)["item_id"]
    assert dew("approve", item, "--as", "zhao.lei", "--comment", "ok").exit_code == 0
    return item


def test_dew_audit_report_writes_html_and_pdf_and_says_where(dew, tmp_path):
    pdfium = pytest.importorskip("pypdfium2")
    item = _run_and_approve(dew)
    out = tmp_path / "reports" / "item.html"
    result = dew("audit", "report", item, "--out", out)
    assert result.exit_code == 0, result.output
    written = out.read_bytes()
    assert f"Wrote the report of work item {item} to {out} (HTML, sha256 {hashlib.sha256(written).hexdigest()})" in (
        result.stdout
    )
    assert "everything verified" in result.stdout and "Audit trail head at report time: " in result.stdout
    assert "zhao.lei (赵磊)" in written.decode("utf-8")

    pdf = tmp_path / "item.pdf"
    result = dew("audit", "report", item, "--out", pdf, "--lang", "en")
    assert result.exit_code == 0, result.output
    assert "(PDF, " in result.stdout
    document = pdfium.PdfDocument(pdf.read_bytes())
    first = document[0].get_textpage().get_text_range()
    assert f"Chain-of-custody report · work item {item}" in first and f"Page 1 of {len(document)}" in first

    stdout = dew("audit", "report", item)  # HTML on standard output
    assert stdout.exit_code == 0 and stdout.stdout.startswith("<!DOCTYPE html>")

    period = tmp_path / "period.pdf"
    result = dew("audit", "report", "--since", "2000-01-01", "--until", "2999-12-31", "--scenario", "drill-script",
                 "--out", period)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "审计链完整" in pdfium.PdfDocument(period.read_bytes())[0].get_textpage().get_text_range()


@pytest.mark.parametrize(
    "args, message",
    [
        (["999"], "Error: no work item 999"),
        ([], "Error: give a work item (dew audit report ITEM) or a period"),
        (["1", "--since", "2026-01-01"], "Error: give a work item or a period"),
        (["1", "--out", "report.txt"], "Error: a report is written as .html or .pdf, not 'report.txt'"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "Error: the period is empty"),
        (["--since", "yesterday"], "Error: 'yesterday' is not a date"),
    ],
)
def test_dew_audit_report_refusals_are_one_line(dew, args, message):
    result = dew("audit", "report", *args)
    assert result.exit_code == 1 and result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_every_label_a_template_uses_is_in_both_languages():
    folder = Path(report.__file__).parent / "report_templates"
    used = {key for f in folder.glob("*.html") for key in re.findall(r"\bt\(\"([a-z_.]+)\"", f.read_text("utf-8"))}
    assert len(used) > 50 and used <= set(report.T), used - set(report.T)
    # Every recorded action, rule, sign-in method and run status has words in both languages.
    recorded = {f"action.{a}" for a in Action} | {f"rule.{r}" for r in DecideRule} | {f"auth.{m}" for m in AuthMethod}
    recorded |= {f"status.{s}" for s in RunStatus}
    assert recorded <= set(report.T), recorded - set(report.T)
    assert set(report.T) - used - recorded == set()  # and no label is left over
    assert all(len(pair) == 2 and all(pair) for pair in report.T.values())
