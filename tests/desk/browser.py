"""Headless Chromium for the desk's page tests and screenshots, and the seeded office they show.

Playwright cannot download its own browser on these machines; Debian's `chromium` works with
Playwright's Python API (see ../shared/DESIGN.md). `.ci/run` installs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dew.agents.names import shipped_directory
from dew.agents.testing import ScriptedModelProvider
from dew.guardians.desk.app import DeskConfig, create_app
from dew.guardians.workspace import Settings, Workspace

from .conftest import PASSWORD, LiveServer, add_people

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

XSS = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"


def chromium_path() -> str | None:
    return os.environ.get("DEW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def reply(system: str, prompt: str) -> str:
    """A drafter that writes like a safety trainer (in Chinese), and echoes an attack when asked."""
    if "PASS, or REVISE" in system:
        return "PASS"
    if "xss-test" in prompt:
        return f"1. {XSS} Expected: nothing runs.\n2. Second inject. Expected: report it."
    return (
        "1. 09:02 二号仓库溶剂桶起火，烟雾报警器鸣响。Expected: 当班班长按下手动报警按钮，通知中控室。\n"
        "2. 09:05 火势蔓延至相邻货架，通道烟雾浓重。Expected: 义务消防队使用推车式灭火器控制初期火灾，其余人员沿东侧通道撤离。\n"
        "3. 09:10 一名员工在撤离中扭伤脚踝。Expected: 急救员到场处置并护送至集合点。\n"
        "4. 09:15 集合点清点人数，发现一人未到。Expected: 班长核对名单并向演练总指挥报告。\n"
        "5. 09:20 专业消防队到达。Expected: 移交现场信息（危化品种类、位置、人员情况）。"
    )


DRILL_ZH = {
    "facility_type": "危险化学品仓库（易燃溶剂，2000 平方米）",
    "hazard": "溶剂火灾",
    "participants": "仓库当班班组（8 人）\n义务消防队\n园区保安\n急救员",
    "duration_minutes": 45,
}


@contextmanager
def office(home: Path, *, workers: int = 2) -> Iterator[LiveServer]:
    """A desk on a fresh SQLite workspace with the people of conftest.PEOPLE, served on loopback."""
    scenarios = home / "scenarios"
    if not scenarios.exists():
        shutil.copytree(shipped_directory(), scenarios, ignore=shutil.ignore_patterns("__pycache__"))
    settings = Settings(home=home / "ws", scenarios_dir=scenarios, database_url=f"sqlite:///{home / 'ws' / 'dew.db'}")
    provider = ScriptedModelProvider(reply=reply)
    ws = Workspace(settings, provider)
    server = None
    try:
        tokens = add_people(ws)
        with LiveServer(create_app(settings, DeskConfig(workers=workers), provider=provider)) as server:
            server.ws, server.tokens = ws, tokens
            yield server
    finally:
        ws.close()


@contextmanager
def chromium() -> Iterator:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError("no chromium on this machine (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, base: str, *, lang: str = "zh", width: int = 1360, height: int = 900):
    context = browser.new_context(
        base_url=base, viewport={"width": width, "height": height}, locale="zh-CN" if lang == "zh" else "en-US"
    )
    context.add_cookies([{"name": "dew_lang", "value": lang, "url": base}])
    return context.new_page()


def sign_in(page, user: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def start_runs(
    server: LiveServer, count: int, who: str = "alice", inputs: dict | None = None, scenario: str = "drill-script"
) -> list[int]:
    import httpx

    ids = []
    for _ in range(count):
        r = httpx.post(
            f"{server.url}/api/v1/runs",
            json={"scenario": scenario, "inputs": inputs or DRILL_ZH},
            headers={"Authorization": f"Bearer {server.tokens[who]}"},
        )
        r.raise_for_status()
        ids.append(r.json()["run_id"])
    server.wait()
    return ids


def take_screenshots(out: Path, home: Path, browser=None) -> list[Path]:
    """The inbox and an item page, in Chinese and English, as a guardian sees them; then the figures page."""
    if browser is None:
        with chromium() as own:
            return take_screenshots(out, home, own)
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with office(home) as server:
        start_runs(server, 3)
        start_runs(server, 1, who="bob")
        for lang in ("zh", "en"):
            page = new_page(browser, server.url, lang=lang)
            sign_in(page, "zhao.lei")
            page.goto("/inbox")
            shots.append(out / f"inbox-{lang}.png")
            page.screenshot(path=str(shots[-1]), full_page=True)
            page.goto("/items/1")
            shots.append(out / f"item-{lang}.png")
            page.screenshot(path=str(shots[-1]), full_page=True)
            page.context.close()
        shots += stats_screenshots(out, server, browser)
    return shots


def stats_screenshots(out: Path, server: LiveServer, browser) -> list[Path]:
    """The figures page after a week of decisions, in Chinese and English, as an admin sees it."""
    a_week_of_decisions(server)
    shots = []
    for lang in ("zh", "en"):
        page = new_page(browser, server.url, lang=lang)
        sign_in(page, "root")
        page.goto("/stats")
        shots.append(out / f"stats-{lang}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)
        page.context.close()
    return shots


# --- the figures page (/stats): a week of decisions to show -------------------------------------------
def a_week_of_decisions(server: LiveServer) -> None:
    """Drafts of two scenarios decided every way by their guardians (through the API, as on any
    day), then moved back in time as if queued over the past week: a screenshot cannot wait a
    week for its figures. Leaves two drill scripts pending, and recalls one release."""
    from datetime import timedelta

    import httpx
    from sqlalchemy import update
    from sqlmodel import col, select

    from dew.guardians.db import transaction
    from dew.guardians.models import Decision, WorkItem, utcnow

    def call(who: str, method: str, path: str, body: dict | None = None) -> dict:
        r = httpx.request(method, f"{server.url}/api/v1{path}", json=body,
                          headers={"Authorization": f"Bearer {server.tokens[who]}"})  # fmt: skip
        r.raise_for_status()
        return r.json()

    screener = call("alice", "GET", "/scenarios/investment-screener")["examples"][0]["inputs"]
    drills = start_runs(server, 8)
    screens = start_runs(server, 3, inputs=screener, scenario="investment-screener")
    first = {run: call("root", "GET", f"/runs/{run}")["items"][0]["id"] for run in drills + screens}
    decisions = [
        ("zhao.lei", "approve"), ("zhao.lei", "approve"), ("liu.yang", "approve"), ("zhao.lei", "edit"),
        ("zhao.lei", "reject"), ("zhao.lei", "revise"), None, None,  # drills
        ("chen.jing", "approve"), ("chen.jing", "edit"), ("chen.jing", "approve"),  # screeners
    ]  # fmt: skip
    for run, decision in zip(drills + screens, decisions, strict=True):
        if decision is None:
            continue
        who, action = decision
        body: dict = {"action": action, "note": "请补充夜班场景" if action in ("reject", "revise") else None}
        if action == "edit":
            draft = call(who, "GET", f"/items/{first[run]}")["item"]["draft"]
            body["edited"] = draft.replace("Expected:", "应对：", 2) + "\n（已核对参演人员名单）\n"
        call(who, "POST", f"/items/{first[run]}/decision", body)
        server.wait()
    revised = call("root", "GET", f"/runs/{drills[5]}")["items"][-1]["id"]
    call("zhao.lei", "POST", f"/items/{revised}/decision", {"action": "approve"})
    server.wait()
    released = call("root", "GET", f"/runs/{drills[1]}")["release"]["id"]
    call("zhao.lei", "POST", f"/releases/{released}/recall", {"reason": "集合点写错，已重发"})

    waits = [0.4, 1.5, 3, 5.5, 26, 2, 0.8, 7, 1.2, 4, 0.6, 30]  # hours from queued to decided, in turn
    now = utcnow()
    with transaction(server.ws.engine) as s:
        items = s.exec(select(WorkItem).order_by(col(WorkItem.run_id), col(WorkItem.revision))).all()
        decided = {d.item_id: d for d in s.exec(select(Decision)).all()}
        queued_at: dict[int, object] = {}
        for n, item in enumerate(items):
            created = queued_at.get(item.run_id) or now - timedelta(days=7 - item.run_id % 7, hours=item.run_id)
            values: dict = {"created_at": created}
            if item.id in decided:
                at = created + timedelta(hours=waits[n % len(waits)])
                values["decided_at"] = queued_at[item.run_id] = at
                s.execute(update(Decision).where(col(Decision.item_id) == item.id).values(created_at=at))
            s.execute(update(WorkItem).where(col(WorkItem.id) == item.id).values(**values))


if __name__ == "__main__":  # python -m tests.desk.browser docs/screenshots
    import sys
    import tempfile

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    with tempfile.TemporaryDirectory() as tmp:
        for shot in take_screenshots(target, Path(tmp)):
            print(shot)
