"""Notifications that an item waits: written with what they announce, delivered afterwards to real
receivers on loopback (a webhook, DingTalk and WeCom robots, an SMTP server), retried with
back-off, never carrying a draft or a secret, and managed only by their owner or an admin."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import typer
from sqlmodel import select
from typer.testing import CliRunner

from dew.agents.errors import InputInvalid
from dew.guardians import notify, users
from dew.guardians.db import transaction
from dew.guardians.errors import InvalidState, NotAuthorized, NotFound
from dew.guardians.models import AuthMethod, Notification, WorkItem, utcnow
from dew.guardians.runs import start_run

from .conftest import DRILL

HMAC_KEY = "whsec-7f3a9c0e5b"
DING_SECRET = "SEC0123456789abcdef"
DING_TOKEN = "d1ngt0ken0123456789abcdef"


# --- receivers on loopback --------------------------------------------------------------------------
class Receiver:
    """An HTTP server in a thread that records every request and answers 500 `fail` times, then
    `status` with `reply`."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail = 0
        self.status = 200
        self.reply = b'{"errcode":0,"errmsg":"ok"}'
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests.append(
                    {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                )
                if receiver.fail > 0:
                    receiver.fail -= 1
                    code, answer = 500, b"busy"
                else:
                    code, answer = receiver.status, receiver.reply
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens: connecting is refused at once."""
    return f"http://127.0.0.1:{free_port()}/hook"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or b""))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp(monkeypatch):
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    monkeypatch.setenv("DEW_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("DEW_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("DEW_SMTP_FROM", "dew@yjj.example.gov.cn")
    for name in ("DEW_SMTP_USER", "DEW_SMTP_PASSWORD", "DEW_SMTP_STARTTLS", "DEW_SMTP_SSL"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield box
    finally:
        controller.stop()


# --- a workspace with people and one waiting item ---------------------------------------------------
@pytest.fixture
def world(make_workspace, monkeypatch):
    """Users (no passwords: fast), and a drill-script item waiting for zhao.lei (backup liu.yang).
    Channels are added after the item is queued, so only the tests' own `enqueue` calls write."""
    monkeypatch.delenv("DEW_PUBLIC_URL", raising=False)
    ws = make_workspace()
    for uid, name, roles in [
        ("root", "管理员", ["admin"]),
        ("zhao.lei", "赵磊", ["guardian"]),
        ("liu.yang", "刘洋", ["guardian"]),
        ("alice", "Alice Wang", ["requester"]),
        ("bob", "Bob Li", ["requester"]),
    ]:
        users.add_user(ws, uid, name, roles, actor="root")
    result = start_run(ws, "drill-script", DRILL, requester="alice", method=AuthMethod.TOKEN)
    assert result.item is not None
    return ws, result.item


def announce(ws, item_id: int, event: str = "item.queued", recipients: list[str] | None = None, **kw) -> int:
    with transaction(ws.engine) as s:
        item = s.get(WorkItem, item_id)
        assert item is not None
        return notify.enqueue(s, event, item, recipients or [item.guardian, *item.backups], **kw)


def notes(ws) -> list[Notification]:
    with transaction(ws.engine) as s:
        return list(s.exec(select(Notification).order_by(Notification.id)).all())


def at(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


# --- what a message says ----------------------------------------------------------------------------
def test_a_message_says_which_item_waits_for_whom_but_never_the_draft_or_the_inputs(world, monkeypatch):
    ws, item = world
    monkeypatch.setenv("DEW_PUBLIC_URL", "https://dew.yjj.example.gov.cn/")
    notify.add_channel(ws, "zhao.lei", "webhook", "http://127.0.0.1:9/hook", actor="zhao.lei")
    assert announce(ws, item.key) == 1
    (note,) = notes(ws)
    p = note.payload
    assert (note.event, note.item_id, note.status, note.attempts) == ("item.queued", item.id, "pending", 0)
    assert p["url"] == f"https://dew.yjj.example.gov.cn/items/{item.id}"
    assert {k: p["item"][k] for k in ("id", "run_id", "revision", "scenario", "risk", "guardian", "due_at", "recipient")} == {
        "id": item.id, "run_id": item.run_id, "revision": 0, "scenario": "drill-script", "risk": "medium",
        "guardian": "zhao.lei", "due_at": None, "recipient": "zhao.lei",
    }  # fmt: skip
    assert p["text"]["zh"] == f"【待审核】安全生产助手 事项 #{item.id}（风险：中）等待 赵磊 决定"
    assert p["text"]["en"] == f"Work item #{item.id} (drill-script, risk medium) waits for zhao.lei"
    stored = json.dumps(p, ensure_ascii=False)
    assert item.draft[:40] not in stored
    assert not any(str(v) in stored for v in DRILL.values())


def test_channels_for_another_scenario_event_or_person_are_skipped(world):
    ws, item = world
    everything = notify.add_channel(ws, "zhao.lei", "webhook", "http://127.0.0.1:9/a", actor="zhao.lei")
    notify.add_channel(ws, "zhao.lei", "webhook", "http://127.0.0.1:9/b", actor="zhao.lei", scenario="policy-qa")
    escalations = notify.add_channel(
        ws, "zhao.lei", "webhook", "http://127.0.0.1:9/c", actor="zhao.lei", events=["item.escalated"]
    )
    this_scenario = notify.add_channel(
        ws, "liu.yang", "wecom", "http://127.0.0.1:9/d", actor="liu.yang", scenario="drill-script"
    )
    notify.add_channel(ws, "bob", "webhook", "http://127.0.0.1:9/e", actor="bob")  # not a recipient
    removed = notify.add_channel(ws, "liu.yang", "webhook", "http://127.0.0.1:9/f", actor="liu.yang")
    notify.remove_channel(ws, removed.key, actor="liu.yang")

    assert announce(ws, item.key, "item.queued") == 2
    assert announce(ws, item.key, "item.escalated", ["zhao.lei"], extra={"level": 1}) == 2
    written = notes(ws)
    assert [(n.event, n.channel_id) for n in written] == [
        ("item.queued", everything.id), ("item.queued", this_scenario.id),
        ("item.escalated", everything.id), ("item.escalated", escalations.id),
    ]  # fmt: skip
    assert written[2].payload["item"]["level"] == 1
    assert written[2].payload["text"]["en"].startswith("Escalated: work item")

    users.disable_user(ws, "liu.yang", actor="root")  # a disabled user's channels fall silent
    assert announce(ws, item.key, "item.queued") == 1
    assert announce(ws, item.key, "item.queued", ["alice"]) == 0
    with pytest.raises(ValueError, match="unknown notification event"):
        announce(ws, item.key, "item.decided")


# --- webhooks, DingTalk, WeCom ----------------------------------------------------------------------
def test_a_webhook_is_posted_as_json_and_signed_so_the_receiver_can_verify_it(world, receiver):
    ws, item = world
    notify.add_channel(ws, "zhao.lei", "webhook", receiver.url + "/dew", actor="zhao.lei", secret=HMAC_KEY)
    announce(ws, item.key)
    assert notify.deliver_due(ws) == {"sent": 1, "failed": 0, "retrying": 0}

    (req,) = receiver.requests
    body, headers = req["body"], req["headers"]
    sent = json.loads(body)
    assert set(sent) == {"event", "item", "url", "text"} and sent["event"] == "item.queued"
    assert sent["item"]["id"] == item.id and sent["url"] == f"http://127.0.0.1:8000/items/{item.id}"
    assert headers["x-dew-event"] == "item.queued" and headers["content-type"].startswith("application/json")
    assert headers["x-dew-delivery"] == str(notes(ws)[0].id)
    assert abs(int(headers["x-dew-timestamp"]) - time.time()) < 60
    assert item.draft[:40] not in body.decode("utf-8") and "Shift team" not in body.decode("utf-8")

    # What a receiver does: HMAC-SHA256 over "{timestamp}." + the raw body, with the shared secret.
    ts, signature = headers["x-dew-timestamp"], headers["x-dew-signature"]
    expected = "sha256=" + hmac.new(HMAC_KEY.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature == expected
    assert notify.verify_signature(HMAC_KEY, ts, body, signature)
    assert not notify.verify_signature("a-wrong-secret", ts, body, signature)
    assert not notify.verify_signature(HMAC_KEY, ts, body.replace(b"zhao.lei", b"chen.jing"), signature)
    assert not notify.verify_signature(HMAC_KEY, str(int(ts) + 1), body, signature)
    assert not notify.verify_signature(HMAC_KEY, ts, body, signature, now=int(ts) + 3600)  # a replay

    (note,) = notes(ws)
    assert (note.status, note.attempts, note.last_error) == ("sent", 1, None) and note.sent_at is not None
    assert notify.deliver_due(ws) == {"sent": 0, "failed": 0, "retrying": 0}  # sent once
    assert len(receiver.requests) == 1


def test_a_dingtalk_robot_gets_markdown_signed_the_way_dingtalk_checks_it(world, receiver):
    ws, item = world
    target = f"{receiver.url}/robot/send?access_token={DING_TOKEN}"
    notify.add_channel(ws, "zhao.lei", "dingtalk", target, actor="zhao.lei", secret=DING_SECRET)
    announce(ws, item.key)
    assert notify.deliver_due(ws)["sent"] == 1

    (req,) = receiver.requests
    url = urlsplit(req["path"])
    query = parse_qs(url.query)
    assert url.path == "/robot/send" and query["access_token"] == [DING_TOKEN]
    # DingTalk's check: sign == base64(HMAC-SHA256(secret, f"{timestamp}\n{secret}")), timestamp within an hour.
    ts, sign = query["timestamp"][0], query["sign"][0]
    assert abs(int(ts) - time.time() * 1000) < 3_600_000
    mac = hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
    assert sign == base64.b64encode(mac).decode()
    body = json.loads(req["body"])
    assert body["msgtype"] == "markdown" and set(body["markdown"]) == {"title", "text"}
    assert body["markdown"]["title"].startswith("【待审核】安全生产助手")
    assert f"](http://127.0.0.1:8000/items/{item.id})" in body["markdown"]["text"]
    assert item.draft[:40] not in body["markdown"]["text"]

    # DingTalk refuses with HTTP 200 and a non-zero errcode: that is a failure, retried later.
    receiver.reply = json.dumps({"errcode": 310000, "errmsg": "sign not match"}).encode()
    announce(ws, item.key)
    assert notify.deliver_due(ws) == {"sent": 0, "failed": 0, "retrying": 1}
    note = notes(ws)[-1]
    assert note.status == "pending" and note.last_error == "DingTalk errcode 310000: sign not match"
    assert DING_TOKEN not in note.last_error and DING_SECRET not in note.last_error


def test_a_wecom_robot_gets_markdown_and_an_errcode_decides_success(world, receiver):
    ws, item = world
    notify.add_channel(ws, "liu.yang", "wecom", f"{receiver.url}/cgi-bin/webhook/send?key=wecomkey42", actor="root")
    announce(ws, item.key)
    assert notify.deliver_due(ws)["sent"] == 1
    (req,) = receiver.requests
    assert parse_qs(urlsplit(req["path"]).query)["key"] == ["wecomkey42"]
    assert "x-dew-signature" not in req["headers"]
    body = json.loads(req["body"])
    assert body["msgtype"] == "markdown" and list(body["markdown"]) == ["content"]
    content = body["markdown"]["content"]
    assert "等待 赵磊 决定" in content and f"/items/{item.id})" in content and "Shift team" not in content

    receiver.reply = b"<html>gateway</html>"  # a 200 that is not the robot's answer
    announce(ws, item.key)
    assert notify.deliver_due(ws)["retrying"] == 1
    assert notes(ws)[-1].last_error == "WeCom answered without an errcode"


# --- email ------------------------------------------------------------------------------------------
def test_an_email_arrives_in_utf8_with_the_link_and_without_the_draft(world, smtp):
    ws, item = world
    notify.add_channel(ws, "zhao.lei", "email", "zhao.lei@yjj.example.gov.cn", actor="zhao.lei")
    announce(ws, item.key)
    assert notify.deliver_due(ws) == {"sent": 1, "failed": 0, "retrying": 0}

    ((sender, to, raw),) = smtp.messages
    assert sender == "dew@yjj.example.gov.cn" and to == ["zhao.lei@yjj.example.gov.cn"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == (
        f"【待审核】安全生产助手 事项 #{item.id}（风险：中）等待 赵磊 决定 / "
        f"Work item #{item.id} (drill-script, risk medium) waits for zhao.lei"
    )
    text = msg.get_content()
    assert msg.get_content_charset() == "utf-8"
    assert f"http://127.0.0.1:8000/items/{item.id}" in text and "监护人 / Guardian: 赵磊 (zhao.lei)" in text
    assert item.draft[:40] not in text and "Shift team" not in text


def test_email_without_an_smtp_host_fails_with_a_clear_reason(world, monkeypatch):
    ws, item = world
    monkeypatch.delenv("DEW_SMTP_HOST", raising=False)
    notify.add_channel(ws, "zhao.lei", "email", "zhao.lei@yjj.example.gov.cn", actor="zhao.lei")
    announce(ws, item.key)
    assert notify.deliver_due(ws) == {"sent": 0, "failed": 0, "retrying": 1}
    assert notes(ws)[0].last_error == "DEW_SMTP_HOST is not set"


# --- retries ----------------------------------------------------------------------------------------
def test_a_failing_receiver_is_retried_with_back_off_until_it_answers(world, receiver):
    ws, item = world
    receiver.fail = 2
    notify.add_channel(ws, "zhao.lei", "webhook", receiver.url, actor="zhao.lei", secret=HMAC_KEY)
    announce(ws, item.key)
    t0 = utcnow() + timedelta(seconds=1)

    assert notify.deliver_due(ws, now=t0) == {"sent": 0, "failed": 0, "retrying": 1}
    (note,) = notes(ws)
    assert (note.status, note.attempts, note.last_error) == ("pending", 1, "HTTP 500")
    assert at(note.next_at) == t0 + timedelta(seconds=30)
    assert notify.deliver_due(ws, now=t0 + timedelta(seconds=29)) == {"sent": 0, "failed": 0, "retrying": 0}

    assert notify.deliver_due(ws, now=t0 + timedelta(seconds=30))["retrying"] == 1
    (note,) = notes(ws)
    assert note.attempts == 2 and at(note.next_at) == t0 + timedelta(seconds=90)  # 30 s, then 60 s

    assert notify.deliver_due(ws, now=t0 + timedelta(seconds=90)) == {"sent": 1, "failed": 0, "retrying": 0}
    (note,) = notes(ws)
    assert (note.status, note.attempts, note.last_error) == ("sent", 3, None)
    assert len(receiver.requests) == 3
    assert len({r["headers"]["x-dew-delivery"] for r in receiver.requests}) == 1  # one key to deduplicate by


def test_a_receiver_that_is_down_never_raises_and_fails_for_good_after_eight_attempts(world, dead_url):
    ws, item = world
    notify.add_channel(ws, "zhao.lei", "webhook", dead_url, actor="zhao.lei")
    announce(ws, item.key)
    now = utcnow() + timedelta(seconds=1)
    assert notify.deliver_due(ws, now=now) == {"sent": 0, "failed": 0, "retrying": 1}
    (note,) = notes(ws)
    assert note.status == "pending" and note.last_error and note.last_error.startswith("ConnectError")

    for _ in range(6):
        now += timedelta(hours=2)
        assert notify.deliver_due(ws, now=now)["retrying"] == 1
    now += timedelta(hours=2)
    assert notify.deliver_due(ws, now=now) == {"sent": 0, "failed": 1, "retrying": 0}
    (note,) = notes(ws)
    assert (note.status, note.attempts) == ("failed", 8)
    assert [n.id for n in notify.status(ws)] == [note.id]

    with pytest.raises(NotAuthorized, match="only an admin may see"):
        notify.status(ws, actor="zhao.lei")
    with pytest.raises(NotAuthorized, match="only an admin may retry"):
        notify.retry(ws, note.key, actor="zhao.lei")
    again = notify.retry(ws, note.key, actor="root")
    assert (again.status, again.attempts) == ("pending", 0)
    assert notify.deliver_due(ws, now=now)["retrying"] == 1  # due at once, a fresh count
    assert notes(ws)[0].attempts == 1


def test_two_delivering_processes_send_each_notification_once(world, receiver):
    ws, item = world
    notify.add_channel(ws, "zhao.lei", "webhook", receiver.url, actor="zhao.lei")
    for _ in range(12):
        announce(ws, item.key)
    start = threading.Barrier(2)
    results: list[dict[str, int]] = []

    def deliver() -> None:
        start.wait()
        results.append(notify.deliver_due(ws))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(r["sent"] for r in results) == 12
    delivered = sorted(int(r["headers"]["x-dew-delivery"]) for r in receiver.requests)
    assert delivered == sorted(n.key for n in notes(ws)) and all(n.status == "sent" for n in notes(ws))


# --- who manages channels ---------------------------------------------------------------------------
def test_only_the_user_or_an_admin_manages_channels_and_targets_are_checked(world):
    ws, _ = world
    with pytest.raises(NotAuthorized, match=r"only zhao\.lei or an admin"):
        notify.add_channel(ws, "zhao.lei", "webhook", "https://hooks.example.cn/dew", actor="bob")
    own = notify.add_channel(ws, "zhao.lei", "webhook", "https://hooks.example.cn/dew", actor="zhao.lei")
    by_admin = notify.add_channel(ws, "zhao.lei", "email", "zhao.lei@example.gov.cn", actor="root")
    with pytest.raises(NotAuthorized):
        notify.remove_channel(ws, own.key, actor="bob")
    with pytest.raises(NotAuthorized):
        notify.visible_channels(ws, "bob", "zhao.lei")
    assert [c.id for c in notify.visible_channels(ws, "bob")] == []
    assert [c.id for c in notify.visible_channels(ws, "zhao.lei")] == [own.id, by_admin.id]
    assert [c.id for c in notify.visible_channels(ws, "root")] == [own.id, by_admin.id]
    assert notify.remove_channel(ws, own.key, actor="zhao.lei").active is False
    notify.remove_channel(ws, by_admin.key, actor="root")
    assert notify.list_channels(ws) == [] and len(notify.list_channels(ws, include_removed=True)) == 2
    with pytest.raises(NotFound):
        notify.remove_channel(ws, 999, actor="root")
    with pytest.raises(NotFound, match="no user 'nobody'"):
        notify.add_channel(ws, "nobody", "webhook", "https://hooks.example.cn/dew", actor="root")

    refused = [
        ("sms", "https://hooks.example.cn/dew", {}, "unknown channel kind"),
        ("webhook", "ftp://hooks.example.cn/dew", {}, "must be an http:// or https:// URL"),
        ("webhook", "https://", {}, "must be an http:// or https:// URL"),
        ("dingtalk", "https://oapi.dingtalk.com/robot/send?access_token=a b", {}, "spaces or control"),
        ("email", "zhao.lei", {}, "is not an email address"),
        ("email", "zhao.lei@example.gov.cn\r\nBcc: x@evil.cn", {}, "spaces or control"),
        ("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", {"secret": "s"}, "takes no secret"),
        ("webhook", "https://hooks.example.cn/dew", {"events": ["item.decided"]}, "unknown event"),
        ("webhook", "https://hooks.example.cn/dew", {"scenario": "no-such-scenario"}, "no scenario"),
    ]
    for kind, target, kw, message in refused:
        with pytest.raises(InputInvalid, match=re.escape(message)):
            notify.add_channel(ws, "zhao.lei", kind, target, actor="zhao.lei", **kw)
    both = notify.add_channel(
        ws,
        "zhao.lei",
        "webhook",
        "https://hooks.example.cn/dew",
        actor="zhao.lei",
        events=["item.escalated,item.queued"],
    )
    assert both.events == ["item.queued", "item.escalated"]


def test_a_removed_channel_drops_what_it_had_to_send(world, dead_url):
    ws, item = world
    channel = notify.add_channel(ws, "zhao.lei", "webhook", dead_url, actor="zhao.lei")
    announce(ws, item.key)
    notify.remove_channel(ws, channel.key, actor="zhao.lei")
    (note,) = notes(ws)
    assert (note.status, note.last_error) == ("failed", "the channel was removed before delivery")
    with pytest.raises(InvalidState, match="removed"):
        notify.retry(ws, note.key, actor="root")
    assert notify.deliver_due(ws) == {"sent": 0, "failed": 0, "retrying": 0}


# --- the API and the CLI never show a secret --------------------------------------------------------
def test_the_api_manages_own_channels_admins_see_all_and_no_secret_comes_back(desk, receiver, dead_url):
    from dew.guardians.desk import api_notify

    app = desk.client.app
    if not any(getattr(r, "path", "") == "/api/v1/notifications" for r in app.routes):
        app.include_router(api_notify.router)  # until the desk registers the router itself
    url = "/api/v1/notifications/channels"
    everything: list[str] = []

    def call(method: str, who: str, path: str, **kw):
        r = desk.client.request(method, path, headers=desk.h(who), **kw)
        everything.append(r.text)
        return r

    r = call("POST", "zhao.lei", url, json={"kind": "webhook", "target": dead_url, "secret": HMAC_KEY})
    assert r.status_code == 201, r.text
    own = r.json()
    assert own["user"] == "zhao.lei" and own["secret_set"] is True and "secret" not in own
    ding = f"{receiver.url}/robot/send?access_token={DING_TOKEN}"
    r = call("POST", "zhao.lei", url, json={"user": "liu.yang", "kind": "dingtalk", "target": ding})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_authorized"
    r = call("POST", "root", url, json={"user": "liu.yang", "kind": "dingtalk", "target": ding, "secret": DING_SECRET})
    assert r.status_code == 201 and r.json()["target"] == f"{receiver.url}/robot/send?access_token=d1ngt0…"
    theirs = r.json()
    assert (
        call("POST", "zhao.lei", url, json={"kind": "webhook", "target": dead_url, "colour": "red"}).status_code == 422
    )
    assert call("POST", "zhao.lei", url, json={"kind": "webhook", "target": "x" * 2001}).status_code == 422
    r = call("POST", "zhao.lei", url, json={"kind": "sms", "target": dead_url})
    assert r.status_code == 422 and r.json()["error"]["code"] == "input_invalid"

    assert [c["id"] for c in call("GET", "zhao.lei", url).json()] == [own["id"]]
    assert [c["id"] for c in call("GET", "root", url).json()] == [own["id"], theirs["id"]]
    assert [c["id"] for c in call("GET", "root", url, params={"user": "liu.yang"}).json()] == [theirs["id"]]
    assert call("GET", "zhao.lei", url, params={"user": "liu.yang"}).status_code == 403

    run = desk.drafted()
    item_id = next(q["id"] for q in desk.get("zhao.lei", "/api/v1/queue").json() if q["run_id"] == run["id"])
    announce(desk.ws, item_id)
    r = call("GET", "zhao.lei", "/api/v1/notifications")
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_authorized"
    rows = call("GET", "root", "/api/v1/notifications").json()
    mine = [n for n in rows if n["channel_id"] == own["id"]]
    assert mine and mine[0]["user"] == "zhao.lei" and mine[0]["item_id"] == item_id
    assert call("POST", "zhao.lei", f"/api/v1/notifications/{mine[0]['id']}/retry").status_code == 403
    assert call("POST", "root", f"/api/v1/notifications/{mine[0]['id']}/retry").status_code == 202

    assert call("DELETE", "zhao.lei", f"{url}/{theirs['id']}").status_code == 403
    r = call("DELETE", "root", f"{url}/{theirs['id']}")
    assert r.status_code == 200 and r.json()["active"] is False
    assert call("DELETE", "zhao.lei", f"{url}/{own['id']}").json()["active"] is False
    assert call("DELETE", "zhao.lei", f"{url}/99999").status_code == 404

    for text in everything:
        assert HMAC_KEY not in text and DING_SECRET not in text and DING_TOKEN not in text


@pytest.fixture
def cli(world, database_url, scenarios_dir, tmp_path):
    """`dew notify` on the world's database, through a root like `dew`'s (DewGroup, AppState)."""
    from dew.guardians.cli import notify_cmds
    from dew.guardians.cli.common import AppState, DewGroup

    root = typer.Typer(cls=DewGroup, no_args_is_help=True)

    @root.callback()
    def options(ctx: typer.Context) -> None:
        ctx.obj = AppState()
        ctx.call_on_close(ctx.obj.close)

    root.add_typer(notify_cmds.app, name="notify")
    env = {
        "DEW_HOME": str(tmp_path / "home"),
        "DEW_SCENARIOS": str(scenarios_dir),
        "DEW_DATABASE_URL": database_url,
        "DEW_USER": "",
        "COLUMNS": "250",
    }

    def run(*args: object, input: str | None = None):
        result = CliRunner().invoke(root, ["notify", *(str(a) for a in args)], env=env, input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run


def test_the_cli_adds_lists_delivers_and_retries_without_printing_a_secret(world, cli, receiver, dead_url):
    ws, item = world
    outputs: list[str] = []

    def run(*args: object, input: str | None = None, code: int = 0):
        r = cli(*args, input=input)
        outputs.append(r.stdout + r.stderr)
        assert r.exit_code == code, r.stdout + r.stderr
        return r

    r = run("channels-add", "zhao.lei", "--kind", "webhook", "--target", receiver.url, "--secret", HMAC_KEY,
            "--event", "item.queued", "--as", "zhao.lei")  # fmt: skip
    assert "Channel 1: webhook for zhao.lei (all scenarios; item.queued); signed with its secret." in r.stdout
    ding = f"{dead_url}?access_token={DING_TOKEN}"
    r = run("channels-add", "liu.yang", "--kind", "dingtalk", "--target", ding, "--as", "bob", code=3)
    assert "only liu.yang or an admin" in r.stderr
    run("channels-add", "zhao.lei", "--kind", "dingtalk", "--target", ding, "--secret-stdin",
        "--scenario", "drill-script", "--as", "root", input=DING_SECRET + "\n")  # fmt: skip
    r = run("channels-add", "zhao.lei", "--kind", "fax", "--target", ding, "--as", "root", code=1)
    assert "unknown channel kind 'fax'" in r.stderr

    table = run("channels").stdout
    assert "set" in table and "d1ngt0…" in table and "drill-script" in table
    listed = json.loads(run("channels", "zhao.lei", "--json").stdout)
    assert [(c["kind"], c["secret_set"]) for c in listed] == [("webhook", True), ("dingtalk", True)]

    announce(ws, item.key)
    assert json.loads(run("deliver", "--json").stdout) == {"sent": 1, "failed": 0, "retrying": 1}
    pending = json.loads(run("status", "--json").stdout)
    assert [(n["user"], n["kind"], n["status"], n["attempts"]) for n in pending] == [
        ("zhao.lei", "dingtalk", "pending", 1)
    ]
    assert pending[0]["last_error"].startswith("ConnectError")
    assert "dingtalk" in run("status").stdout
    assert "Sent 0, to retry later 0, failed for good 0." in run("deliver").stdout  # backing off

    r = run("retry", pending[0]["id"], "--as", "zhao.lei", code=3)
    assert "only an admin may retry" in r.stderr
    run("retry", pending[0]["id"], "--as", "root")
    r = run("channels-remove", pending[0]["channel_id"], "--as", "zhao.lei")
    assert "Removed channel 2 (dingtalk for zhao.lei)." in r.stdout
    (gone,) = json.loads(run("status", "--json").stdout)
    assert (gone["status"], gone["last_error"]) == ("failed", "the channel was removed before delivery")
    assert [c["id"] for c in json.loads(run("channels", "--json").stdout)] == [1]

    for text in outputs:
        assert HMAC_KEY not in text and DING_SECRET not in text and DING_TOKEN not in text
