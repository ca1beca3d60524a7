"""The figures page (/stats) and the operations metrics (/metrics): who may see them, what they
hold, and the page as people see it in real headless Chromium, in Chinese and English."""

from __future__ import annotations

import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dew.guardians import audit
from dew.guardians.db import transaction

from .browser import a_week_of_decisions, chromium, chromium_path, new_page, office, sign_in, stats_screenshots


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, keyed by name and sorted labels (parsed by prometheus_client)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _decided(desk, action: str, who: str = "zhao.lei", **body) -> int:
    run = desk.drafted()
    item = run["items"][0]["id"]
    r = desk.post(who, f"/api/v1/items/{item}/decision", {"action": action, **body})
    assert r.status_code == 202, r.text
    desk.wait()
    return item


# --- /metrics -------------------------------------------------------------------------------------------
def test_metrics_are_for_admins_and_auditors_only(desk):
    assert desk.client.get("/metrics").status_code == 401
    bad = desk.client.get("/metrics", headers={"Authorization": "Bearer dew_not-a-token"})
    assert bad.status_code == 401
    for who in ("alice", "zhao.lei", "liu.yang", "chen.jing", "bob"):
        r = desk.get(who, "/metrics")
        assert r.status_code == 403 and "only admin or auditor may read the operations metrics" in r.text, who
    for who in ("root", "audrey"):
        r = desk.get(who, "/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4"), who
    paths = desk.client.app.openapi()["paths"]
    assert "/metrics" not in paths and "/stats" not in paths  # not part of the JSON API


def test_metrics_count_the_workspace_and_the_process(desk):
    approved = _decided(desk, "approve")
    _decided(desk, "reject", note="wrong site")
    desk.drafted()  # pending
    desk.get("root", f"/api/v1/items/{approved}")
    r = desk.get("audrey", "/metrics")
    samples = _samples(r.text)
    assert samples[("dew_database_up", ())] == 1
    runs = {dict(k[1])["status"]: v for k, v in samples.items() if k[0] == "dew_runs"}
    assert runs == {"queued": 0, "running": 0, "awaiting_decision": 1, "approved": 0, "released": 1,
                    "rejected": 1, "failed": 0}  # fmt: skip
    assert samples[("dew_items_pending", (("scenario", "drill-script"),))] == 1
    assert samples[("dew_items_pending", (("scenario", "policy-qa"),))] == 0  # every scenario, even with none
    assert samples[("dew_items_overdue", (("scenario", "drill-script"),))] == 0
    assert samples[("dew_items_pending_oldest_age_seconds", (("scenario", "drill-script"),))] >= 0
    assert ("dew_items_pending_oldest_age_seconds", (("scenario", "policy-qa"),)) not in samples
    decisions = {dict(k[1])["action"]: v for k, v in samples.items() if k[0] == "dew_decisions_total"}
    assert decisions == {"approve": 1, "reject": 1, "edit": 0, "revise": 0}
    assert samples[("dew_releases_total", ())] == 1 and samples[("dew_recalls_total", ())] == 0
    with transaction(desk.ws.engine) as s:
        assert samples[("dew_audit_events_total", ())] == audit.verify(s).events
    assert {n: samples[(n, ())] for n in ("dew_workers", "dew_workers_alive", "dew_jobs_pending")} == {
        "dew_workers": 2, "dew_workers_alive": 1, "dew_jobs_pending": 0}  # fmt: skip
    assert samples[("dew_jobs_completed_total", ())] == 5  # three starts, two decisions applied
    assert samples[("dew_notifications", (("status", "failed"),))] == 0
    # Requests are counted by route template, never by path (one series per route, not per id).
    key = ("dew_http_requests_total", (("method", "GET"), ("route", "/api/v1/items/{item_id}"), ("status", "200")))
    assert samples[key] == 1
    assert not any("/api/v1/items/1" in dict(k[1]).get("route", "") for k in samples)
    assert ("process_cpu_seconds_total", ()) in samples
    assert not any(name.endswith("_created") for name, _ in samples)


def test_metrics_speak_openmetrics_when_asked(desk):
    r = desk.client.get("/metrics", headers={**desk.h("root"), "Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


# --- /stats without a browser -------------------------------------------------------------------------------
def test_the_figures_page_by_role(desk):
    _decided(desk, "approve")
    _decided(desk, "edit", edited="1. Alarm sounds in bay 3. Expected: evacuate.\n")
    assert 'href="/stats"' in desk.get("root", "/catalogue").text
    assert 'href="/stats"' not in desk.get("alice", "/catalogue").text
    refused = desk.get("alice", "/stats")
    assert refused.status_code == 403 and "only admins and auditors" in refused.text
    everyone = desk.get("audrey", "/stats")
    assert everyone.status_code == 200
    assert 'id="stats-scope"' not in everyone.text and '<canvas id="chart-outcomes"' in everyone.text
    own = desk.get("zhao.lei", "/stats")
    assert own.status_code == 200 and "仅含您本人待办（zhao.lei）的草稿" in own.text and "drill-script" in own.text
    other = desk.get("chen.jing", "/stats")
    assert other.status_code == 200 and 'id="stats-empty"' in other.text  # nothing in chen.jing's queue
    assert desk.get("root", "/stats?by=requester").status_code == 422
    assert desk.get("root", "/stats?since=soon").status_code == 422
    assert desk.get("root", "/stats?since=2026-03-02&until=2026-03-01").status_code == 422


# --- the page in a browser ------------------------------------------------------------------------------------
needs_browser = pytest.mark.skipif(
    chromium_path() is None and not os.environ.get("DEW_REQUIRE_BROWSER"),
    reason="no chromium on this machine: apt-get install chromium fonts-noto-cjk",
)


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """One office with a week of decisions behind it, shared by the page tests (it takes a while)."""
    with office(tmp_path_factory.mktemp("office")) as server:
        a_week_of_decisions(server)
        yield server


def _watched(page) -> list[str]:
    """Collect the console's errors and the page's uncaught exceptions (a CSP refusal is one)."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


@needs_browser
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_an_admin_sees_charts_and_the_same_figures_in_a_table(week, browser, lang, tmp_path):
    page = new_page(browser, week.url, lang=lang)
    problems = _watched(page)
    sign_in(page, "root")
    page.click("header nav a[href='/stats']")
    page.wait_for_load_state()
    assert page.url.endswith("/stats")
    assert page.locator("h1").inner_text() == ("运行统计" if lang == "zh" else "Figures")
    assert page.locator("canvas").count() == 4
    assert page.evaluate("Object.keys(Chart.instances).length") == 4
    # Each chart drew something: its canvas has painted pixels, not an empty box.
    painted = page.evaluate(
        """() => [...document.querySelectorAll('canvas')].map(c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })"""
    )
    assert all(n > 1000 for n in painted), painted
    rows = page.locator("#stats-table tbody tr")
    assert rows.count() == 2

    def cells(table: str, group: str) -> list[str]:
        return page.locator(f"{table} tbody tr", has_text=group).locator("td").all_inner_texts()

    # 8 drafted + 1 revision: approved 4 (one by the backup, one after the revision), edited 1,
    # rejected 1, revised 1, pending 2; approval 5 of 7 decided; edits 1 of 5 approvals.
    assert cells("#stats-table", "drill-script")[:9] == ["9", "8", "2", "4", "1", "1", "1", "71%", "20%"]
    time = cells("#stats-table-time", "drill-script")
    assert (time[0], time[3], time[4], time[5]) == ("0.12", "0", "0", "1/5")  # rounds (9 − 8) / 8; 1 of 5 recalled
    assert cells("#stats-table", "investment-screener")[:9] == ["3", "3", "0", "2", "1", "0", "0", "100%", "33%"]
    assert page.locator("#stats-table tfoot td").all_inner_texts()[:3] == ["12", "11", "2"]
    assert page.locator("#stats-summary li").first.locator(".figure").inner_text() == "12"
    page.screenshot(path=str(tmp_path / f"stats-{lang}.png"), full_page=True)
    assert problems == []


@needs_browser
def test_grouped_by_guardian_and_by_model(week, browser, tmp_path):
    page = new_page(browser, week.url, lang="en")
    problems = _watched(page)
    sign_in(page, "audrey")
    page.goto("/stats")
    page.select_option("select[name=by]", "guardian")
    page.click("#stats-filters button")
    page.wait_for_load_state()
    assert "by=guardian" in page.url
    names = page.locator("#stats-table tbody th").all_inner_texts()
    assert sorted(names) == ["chen.jing", "zhao.lei"]  # liu.yang decided as a backup: counted for zhao.lei
    page.goto("/stats?by=model")
    assert page.locator("#stats-table tbody th").all_inner_texts() == ["scripted"]
    assert "counts for each of them" in page.locator("main").inner_text()
    page.screenshot(path=str(tmp_path / "stats-by-model-en.png"), full_page=True)
    page.goto("/stats?since=2000-01-01&until=2000-01-31")
    assert page.locator("#stats-empty").is_visible() and page.locator("canvas").count() == 0
    assert problems == []


@needs_browser
def test_a_guardian_sees_their_own_queue_and_a_requester_is_refused(week, browser, tmp_path):
    page = new_page(browser, week.url, lang="zh")
    problems = _watched(page)
    sign_in(page, "chen.jing")
    page.goto("/stats")
    assert "chen.jing" in page.locator("#stats-scope").inner_text()
    assert page.locator("#stats-table tbody th").all_inner_texts() == ["investment-screener"]
    assert problems == []
    page.context.close()

    page = new_page(browser, week.url, lang="en")
    sign_in(page, "alice")
    assert page.locator("header nav a[href='/stats']").count() == 0
    response = page.goto("/stats")
    assert response is not None and response.status == 403
    assert "Could not do that" in page.content() and page.locator("canvas").count() == 0
    page.screenshot(path=str(tmp_path / "stats-refused-en.png"), full_page=True)


@needs_browser
def test_the_screenshot_generator_includes_the_figures_page(tmp_path, browser):
    with office(tmp_path / "office") as server:
        shots = stats_screenshots(tmp_path / "shots", server, browser)
    assert [p.name for p in shots] == ["stats-zh.png", "stats-en.png"]
    assert all(p.stat().st_size > 20_000 for p in shots)
