"""Signing in the browser, in real Chromium: a guardian creates a non-extractable Ed25519 key on
the Signing keys page, and their decisions on a scenario that requires signatures are signed in
the page and verified by the server; a request altered on its way is refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from playwright.sync_api import expect
from sqlmodel import select

from dew.agents.names import shipped_directory
from dew.guardians import signing
from dew.guardians.db import transaction
from dew.guardians.models import Decision, SigningKey

from .browser import chromium, chromium_path, new_page, office, sign_in, start_runs

if chromium_path() is None:
    if os.environ.get("DEW_REQUIRE_BROWSER"):
        raise RuntimeError("DEW_REQUIRE_BROWSER is set but there is no chromium (apt-get install chromium)")
    pytest.skip("no chromium on this machine: apt-get install chromium fonts-noto-cjk", allow_module_level=True)

SHOTS = os.environ.get("DEW_SCREENSHOTS")  # a folder: the pages are saved there to be looked at


@pytest.fixture
def server(tmp_path):
    scenarios = tmp_path / "scenarios"
    shutil.copytree(shipped_directory(), scenarios, ignore=shutil.ignore_patterns("__pycache__"))
    drill = scenarios / "drill-script.yaml"
    drill.write_text(drill.read_text(encoding="utf-8").replace("\nrisk: medium\n", "\nrisk: medium\nsign: required\n"))
    with office(tmp_path) as s:
        yield s


def _shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def _decisions(server) -> dict[int, Decision]:
    with transaction(server.ws.engine) as s:
        return {d.item_id: d for d in s.exec(select(Decision)).all()}


def test_a_key_made_in_the_browser_signs_decisions_the_server_verifies(server):
    start_runs(server, 2)
    with chromium() as browser:
        page = new_page(browser, server.url, lang="zh")
        sign_in(page, "zhao.lei")

        page.goto("/items/1")  # no key yet: the page says so and will not send an unsigned decision
        expect(page.locator("#sign-status")).to_contain_text("要求签名")
        expect(page.locator("#approve")).to_be_disabled()
        _shot(page, "sign-required-zh")

        page.goto("/keys")
        expect(page.locator("#browser-key-status")).to_contain_text("还没有")
        page.click("#create-key-button")
        assert "签名密钥已创建" in page.locator(".notice").inner_text()
        expect(page.locator("#browser-key-status")).to_contain_text("#1")
        expect(page.locator("#key-1 .this-browser")).to_be_visible()
        _shot(page, "keys-zh")
        with transaction(server.ws.engine) as s:
            key = s.exec(select(SigningKey)).one()
        assert (key.person, key.kind) == ("zhao.lei", "browser")

        page.goto("/items/1")
        expect(page.locator("#sign-status")).to_contain_text("#1")
        page.fill("form.approve input[name=note]", "  同意发布  ")
        page.click("#approve")
        assert "已批准" in page.locator(".notice").inner_text()
        decision = _decisions(server)[1]
        assert decision.signing_key_id == key.id and decision.signature and decision.note == "同意发布"

        # The same form, its reason changed on the way to the server: the signature no longer covers it.
        def tamper(route):
            fields = dict(parse_qsl(route.request.post_data or ""))
            fields["note"] = "另一个理由"
            route.continue_(post_data=urlencode(fields))

        page.goto("/items/2")
        expect(page.locator("#sign-status")).to_contain_text("#1")  # the page is ready to sign
        page.route("**/items/2/decide", tamper)
        page.fill("form.reject textarea[name=note]", "参演单位缺少中控室")
        page.click("#reject")
        assert "covers another decision" in page.content()
        assert 2 not in _decisions(server)
        page.unroute("**/items/2/decide")

        page.goto("/items/2")  # an edit, signed over the edited text
        expect(page.locator("#sign-status")).to_contain_text("#1")
        page.click("details.edit summary")
        draft = page.input_value("textarea.editor")
        page.fill("textarea.editor", draft.replace("东侧通道", "西侧通道"))
        page.click("#preview")
        expect(page.locator("#sign-status")).to_contain_text("#1")
        page.click("#confirm-edit")
        assert "修改" in page.locator(".notice").inner_text()
        edit = _decisions(server)[2]
        assert edit.action == "edit" and edit.signature and "西侧通道" in (edit.edited_output or "")
        server.wait()

        page.goto("/items/1")
        assert "#1" in page.locator("#signed-with").inner_text()
        page.context.close()

        english = new_page(browser, server.url, lang="en")
        sign_in(english, "zhao.lei")  # a new browser profile: the key stayed in the other one
        english.goto("/keys")
        expect(english.locator("#browser-key-status")).to_contain_text("holds no key")
        assert not english.locator("#key-1 .this-browser").is_visible()
        _shot(english, "keys-en")
        english.context.close()

    with transaction(server.ws.engine) as s:
        checked, problems = signing.check_trail(s)
    assert (checked, problems) == (2, [])
