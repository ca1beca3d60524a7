"""The web desk as people use it, in real headless Chromium: a guardian approves, rejects, edits
(seeing the diff first) and sends back; a requester starts a run from the generated form and is
never offered a decision; an auditor reads the trace; model output stays inert text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlmodel import select

from dew.guardians.db import transaction
from dew.guardians.models import Decision, Run, WorkItem

from .browser import DRILL_ZH, XSS, chromium, chromium_path, new_page, office, sign_in, start_runs, take_screenshots

if chromium_path() is None:
    if os.environ.get("DEW_REQUIRE_BROWSER"):
        raise RuntimeError("DEW_REQUIRE_BROWSER is set but there is no chromium (apt-get install chromium)")
    pytest.skip("no chromium on this machine: apt-get install chromium fonts-noto-cjk", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def server(tmp_path):
    with office(tmp_path) as s:
        yield s


def _decisions(server) -> dict[int, Decision]:
    with transaction(server.ws.engine) as s:
        return {d.item_id: d for d in s.exec(select(Decision)).all()}


def test_a_guardian_approves_rejects_edits_and_sends_back(server, browser):
    start_runs(server, 4)
    page = new_page(browser, server.url, lang="zh")
    sign_in(page, "zhao.lei")
    assert page.url.endswith("/inbox")
    assert page.title().startswith("(4) 待办")
    assert page.locator("table.list tbody tr").count() == 4

    page.click("a[href='/items/1']")
    assert "危险化学品仓库" in page.locator(".inputs-col").inner_text()  # the source beside the draft
    assert "二号仓库溶剂桶起火" in page.locator("#draft").inner_text()
    page.fill("form.approve input[name=note]", "同意")
    page.click("#approve")
    assert "已批准" in page.locator(".notice").inner_text()
    assert page.title().startswith("(3)")

    page.goto("/items/2")
    page.fill("form.reject textarea[name=note]", "参演单位缺少中控室")
    page.click("#reject")
    assert "已驳回" in page.locator(".notice").inner_text()

    page.goto("/items/3")
    page.click("details.edit summary")
    draft = page.input_value("textarea.editor")
    page.fill("textarea.editor", draft.replace("东侧通道", "西侧通道"))
    page.click("#preview")
    diff = page.locator("#edit-diff").inner_text()
    assert "-" in diff and "西侧通道" in page.locator("#edit-diff .add").inner_text()
    assert "东侧通道" in page.locator("#edit-diff .del").inner_text()
    page.click("#confirm-edit")
    assert (
        "修改后批准" in page.locator(".notice").inner_text()
        or "已按您的修改批准" in page.locator(".notice").inner_text()
    )

    page.goto("/items/4")
    page.fill("form.revise textarea[name=note]", "请加入夜班场景")
    page.click("#revise")
    assert "已退回" in page.locator(".notice").inner_text()
    server.wait()

    decisions = _decisions(server)
    assert {i: (d.action, d.actor, d.auth_method, d.rule) for i, d in decisions.items()} == {
        1: ("approve", "zhao.lei", "password", "owner"),
        2: ("reject", "zhao.lei", "password", "owner"),
        3: ("edit", "zhao.lei", "password", "owner"),
        4: ("revise", "zhao.lei", "password", "owner"),
    }
    assert "+" in decisions[3].diff and "西侧通道" in decisions[3].edited_output
    assert decisions[3].edited_output == draft.replace("东侧通道", "西侧通道")  # byte for byte, no CRLF
    with transaction(server.ws.engine) as s:
        statuses = {r.id: r.status for r in s.exec(select(Run)).all()}
        revised = s.exec(select(WorkItem).where(WorkItem.revision == 1)).one()
    # Runs draft in parallel, so item ids need not follow run ids: go through each decision's run.
    assert {i: statuses[d.run_id] for i, d in decisions.items()} == {
        1: "released", 2: "rejected", 3: "released", 4: "awaiting_decision"}  # fmt: skip
    page.goto("/inbox")
    assert page.title().startswith("(1)")
    page.goto(f"/items/{revised.id}")
    assert "请加入夜班场景" in page.locator("#earlier").text_content()  # the earlier round and its feedback


def test_a_requester_starts_a_run_from_the_form_and_is_never_offered_a_decision(server, browser):
    page = new_page(browser, server.url, lang="en")
    sign_in(page, "alice")
    assert page.url.endswith("/request")
    page.click("a[href='/request/drill-script']")
    page.click("text=Fill with sample")
    assert page.input_value("#in-hazard") == "solvent fire"
    page.click("#start-run")
    assert "/runs/1" in page.url
    server.wait()
    page.reload()
    assert page.locator("#run-status").inner_text() == "awaiting decision"
    assert page.locator("form[action*='/decide']").count() == 0

    page.goto("/items/1")
    assert "Could not do that" in page.content() and "does not work on that queue" in page.content()
    csrf = page.locator("input[name=csrf]").first.input_value()
    forced = page.request.post(f"{server.url}/items/1/decide", form={"csrf": csrf, "action": "approve"})
    assert forced.status == 403 and "does not hold the guardian role" in forced.text()
    without_csrf = page.request.post(f"{server.url}/items/1/decide", form={"action": "approve"})
    assert without_csrf.status == 403 and "CSRF" in without_csrf.text()
    assert _decisions(server) == {}


def test_an_auditor_sees_the_chain_and_a_trace(server, browser):
    start_runs(server, 1)
    page = new_page(browser, server.url, lang="zh")
    sign_in(page, "zhao.lei")
    page.goto("/items/1")
    page.click("#approve")
    server.wait()
    page.context.close()

    page = new_page(browser, server.url, lang="en")
    sign_in(page, "audrey")
    assert page.url.endswith("/audit")
    assert "Audit chain intact" in page.locator("#chain-status").inner_text()
    page.fill("input[name=requester]", "alice")
    page.click("text=Search")
    page.click("a[href='/items/1/trace']")
    kinds = page.locator("ol.timeline strong").all_inner_texts()
    assert kinds[:2] == ["run.requested", "run.drafted"] and "decision.approved" in kinds and "output.released" in kinds
    assert page.locator("form[action*='/decide']").count() == 0


def test_model_output_and_inputs_are_shown_as_inert_text(server, browser):
    start_runs(server, 1, inputs={"facility_type": XSS, "hazard": "xss-test", "participants": XSS})
    page = new_page(browser, server.url, lang="en")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, "zhao.lei")
    for path in ("/inbox", "/items/1", "/items/1/trace", "/runs/1"):
        page.goto(path)
        assert page.title() != "pwned", path
    page.goto("/items/1")
    assert "<script>document.title='pwned'</script>" in page.locator("#draft").inner_text()
    assert page.locator("#draft script, #draft img, .inputs-col img").count() == 0
    assert dialogs == []


def test_screenshots_are_taken_by_the_documented_command(tmp_path, browser):
    shots = take_screenshots(tmp_path / "shots", tmp_path / "office", browser)
    assert [p.name for p in shots] == ["inbox-zh.png", "item-zh.png", "inbox-en.png", "item-en.png", "stats-zh.png",
                                       "stats-en.png"]  # fmt: skip
    assert all(p.stat().st_size > 20_000 for p in shots)


def test_a_digital_employee_page_draws_its_graph_from_vendored_mermaid(server, browser):
    page = new_page(browser, server.url, lang="en")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    sign_in(page, "zhao.lei")
    page.goto("/catalogue")
    page.click("a[href='/catalogue/drill-script']")
    page.wait_for_selector("#graph svg", timeout=20_000)
    assert page.locator("#graph svg .node").count() >= 4
    assert errors == []
    assert all(u.startswith(server.url) for u in requests)  # nothing fetched from elsewhere


def test_a_guardian_brakes_a_digital_employee_and_its_items_are_held(server, browser):
    start_runs(server, 1)
    page = new_page(browser, server.url, lang="zh")
    sign_in(page, "zhao.lei")
    page.goto("/catalogue")
    page.click("text=暂停（踩刹车）")
    page.fill("form[action='/scenarios/drill-script/pause'] input[name=reason]", "模型输出异常，暂停核查")
    page.click("form[action='/scenarios/drill-script/pause'] button")
    assert "已暂停" in page.locator(".notice").inner_text()
    page.goto("/items/1")
    assert "暂停" in page.locator("#held").inner_text()
    assert (
        page.locator("form[action*='/decide']").count() == 0
        and "is paused" in page.locator("#cannot-decide").inner_text()
    )
    page.goto("/catalogue")
    page.click("form[action='/scenarios/drill-script/resume'] button")
    page.goto("/items/1")
    assert page.locator("#approve").count() == 1


def test_the_guardian_sees_what_the_model_saw(server, browser, tmp_path):
    """Under each model call, the item page shows the messages as the model got them: placeholders
    for personal data, material fenced, and everything as inert text."""
    participants = f"仓库当班班组（8 人），联系人：王建国 13826549071\n{XSS}"
    start_runs(server, 1, inputs={**DRILL_ZH, "participants": participants})
    shots = Path(os.environ.get("DEW_SCREENSHOTS") or tmp_path)
    for lang, summary in (("zh", "模型所见"), ("en", "What the model saw")):
        page = new_page(browser, server.url, lang=lang)
        sign_in(page, "zhao.lei")
        page.goto("/items/1")
        seen = page.locator("details.seen").first
        assert summary in seen.locator("summary").inner_text()
        seen.locator("summary").click()
        text = seen.inner_text()
        assert "[PHONE_1]" in text and "[PERSON_1]" in text and "⟦DATA" in text
        assert "13826549071" not in text and "王建国" not in text
        assert "13826549071" in page.locator(".inputs-col").inner_text()  # the guardian still sees the input itself
        assert seen.locator("script, img").count() == 0 and page.title() != "pwned"
        seen.screenshot(path=str(shots / f"model-view-{lang}.png"))
        page.context.close()


@pytest.mark.parametrize("lang, next_page, first_page", [("zh", "下一页", "第一页"), ("en", "Next page", "First page")])
def test_a_long_inbox_comes_a_page_at_a_time(server, browser, monkeypatch, tmp_path, lang, next_page, first_page):
    from dew.guardians.desk import web

    monkeypatch.setattr(web, "INBOX_PAGE", 2)
    start_runs(server, 5)
    page = new_page(browser, server.url, lang=lang)
    sign_in(page, "zhao.lei")
    seen = []
    for shown in (2, 2, 1):
        assert page.title().startswith("(5) ")  # the count is of everything waiting, not of the page
        rows = page.locator("table.list tbody tr td:first-child a")
        assert rows.count() == shown
        seen += [rows.nth(i).inner_text() for i in range(shown)]
        if shown == 2:
            page.screenshot(path=str(tmp_path / f"inbox-page-{lang}-{len(seen)}.png"))
            page.click(f"nav.pages a:text('{next_page}')")
            page.wait_for_load_state()
    assert seen == ["#1", "#2", "#3", "#4", "#5"]  # oldest first, none twice, none left out
    assert page.locator("nav.pages a[rel=next]").count() == 0
    page.click(f"nav.pages a:text('{first_page}')")
    assert page.locator("table.list tbody tr td:first-child a").first.inner_text() == "#1"
