"""Telling guardians that an item waits: channels (a webhook, a DingTalk or WeCom group robot,
email) and an outbox of notifications delivered with retries.

A notification is written by `enqueue` in the transaction that queues, reminds of or escalates an
item, so it exists exactly when what it announces does; `deliver_due` sends it afterwards, outside
any transaction (no database lock is held while a robot or a mail server takes its time), and
records the outcome. A failed delivery is retried with back-off and never blocks a run or a
decision. Delivery is at least once: a process that dies after sending and before recording sends
again when its claim lapses, so a receiver should treat `X-Dew-Delivery` as an idempotency key.

What a message says: the scenario, the item, its risk, guardian, revision and deadline, whom it
is for, and a link to the desk. Never the draft or the run's inputs: they hold personal data of
citizens and companies, and a message goes to IM groups and mailboxes outside dew's access rules.

Verifying a webhook (for receivers). Each POST has a JSON body {"event", "item": {id, run_id,
revision, scenario, scenario_name, risk, guardian, guardian_name, due_at, recipient,
recipient_name}, "url", "text": {"zh", "en"}} and carries the headers
    X-Dew-Event: item.queued | item.reminder | item.escalated
    X-Dew-Delivery: the notification's id (the same on every retry)
    X-Dew-Timestamp: unix seconds when it was sent
    X-Dew-Signature: sha256=<hex>   (only when the channel has a secret)
where <hex> is HMAC-SHA256, keyed with the channel's secret, over the timestamp, a full stop and
the raw body bytes exactly as received: f"{timestamp}.".encode() + body. A receiver recomputes it,
compares in constant time, and refuses a timestamp more than a few minutes old (a replay);
`verify_signature` does all three.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import smtplib
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote_plus, urlsplit, urlunsplit

import yaml
from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from dew.agents.errors import InputInvalid
from dew.guardians.errors import InvalidState, NotAuthorized, NotFound

from .db import transaction
from .identity import person_id
from .models import Guardian, Notification, NotificationChannel, Run, ScenarioVersion, User, WorkItem, utcnow
from .users import has_users, is_admin, require_admin, require_self_or_admin

if TYPE_CHECKING:
    import httpx

    from .workspace import Workspace

log = logging.getLogger("dew.notify")

KINDS = ("webhook", "dingtalk", "wecom", "email")
EVENTS = ("item.queued", "item.reminder", "item.escalated")
SIGNED_KINDS = ("webhook", "dingtalk")  # WeCom robots and email have no signing of their own
PENDING, SENT, FAILED = "pending", "sent", "failed"

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
TIMEOUT = 10.0  # seconds, per request: a slow robot must not hold the others up for long
MAX_ATTEMPTS = 8  # with the back-off below, about an hour of trying before a delivery is failed
FIRST_BACKOFF = 30  # seconds; doubled after each failed attempt
MAX_BACKOFF = 3600
# How long a claimed notification is left to the process that claimed it; if that process dies
# mid-send, another sends it once this has passed (longer than any one send can take).
CLAIM = timedelta(minutes=10)
MAX_ERROR = 300

_RISK_ZH = {"low": "低", "medium": "中", "high": "高"}
# Loose on purpose: a plausible address, and nothing that could start another mail header.
_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"\\]{1,64}@(?:[^@\s<>()\[\],;:\"\\.]+\.)+[^@\s<>()\[\],;:\"\\.]{2,}")


# --- channels -------------------------------------------------------------------------------------
def add_channel(
    ws: Workspace,
    user_id: str,
    kind: str,
    target: str,
    *,
    actor: str,
    secret: str | None = None,
    scenario: str | None = None,
    events: Iterable[str] | None = None,
) -> NotificationChannel:
    """A new channel for a user's queue events (the user themselves or an admin)."""
    actor = person_id(actor, what="who adds the channel")
    user_id = person_id(user_id, what="whose channel")
    kind = (kind or "").strip().lower()
    if kind not in KINDS:
        raise InputInvalid(f"unknown channel kind '{kind}' (one of: {', '.join(KINDS)})")
    target = check_target(kind, target)
    secret = _check_secret(kind, secret)
    wanted = parse_events(events or [])
    scenario = (scenario or "").strip() or None
    if scenario is not None and scenario not in ws.catalogue:
        known = ", ".join(sorted(ws.catalogue)) or "none"
        raise InputInvalid(f"no scenario '{scenario}' (known: {known})")
    with transaction(ws.engine) as s:
        require_self_or_admin(s, actor, user_id, "add notification channels for")
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user '{user_id}': a channel belongs to a user (dew users add)")
        if not user.active:
            raise InputInvalid(f"'{user_id}' is disabled")
        channel = NotificationChannel(
            user_id=user_id, kind=kind, target=target, secret=secret, scenario_id=scenario, events=wanted
        )
        s.add(channel)
        s.flush()
    return channel


def list_channels(
    ws: Workspace, user_id: str | None = None, *, include_removed: bool = False
) -> list[NotificationChannel]:
    with transaction(ws.engine) as s:
        query = select(NotificationChannel).order_by(col(NotificationChannel.id))
        if user_id:
            query = query.where(NotificationChannel.user_id == person_id(user_id, what="whose channels"))
        if not include_removed:
            query = query.where(col(NotificationChannel.active))
        return list(s.exec(query).all())


def visible_channels(ws: Workspace, actor: str, user_id: str | None = None) -> list[NotificationChannel]:
    """The channels `actor` may see: their own; an admin's, anyone's (all, or `user_id`'s)."""
    actor = person_id(actor, what="who lists channels")
    whose = person_id(user_id, what="whose channels") if user_id else None
    with transaction(ws.engine) as s:
        admin = not has_users(s) or is_admin(s, actor)
    if not admin:
        if whose not in (None, actor):
            raise NotAuthorized(f"only {whose} or an admin may see the notification channels of {whose}")
        whose = actor
    return list_channels(ws, whose)


def remove_channel(ws: Workspace, channel_id: int, *, actor: str) -> NotificationChannel:
    """Switch a channel off (the row stays, for the deliveries that name it). What it had still
    to deliver is failed at once rather than sent to a place its owner no longer wants."""
    actor = person_id(actor, what="who removes the channel")
    with transaction(ws.engine) as s:
        channel = s.get(NotificationChannel, channel_id, with_for_update=True)
        if channel is None:
            raise NotFound(f"no notification channel {channel_id}")
        require_self_or_admin(s, actor, channel.user_id, "remove notification channels of")
        if channel.active:
            channel.active = False
            s.add(channel)
            s.connection().execute(
                update(Notification)
                .where(col(Notification.channel_id) == channel_id, col(Notification.status) == PENDING)
                .values(status=FAILED, last_error="the channel was removed before delivery")
            )
    return channel


def parse_events(raw: Iterable[str]) -> list[str]:
    """Event names, repeated or comma-separated, in their canonical order; empty means all."""
    wanted: set[str] = set()
    for r in raw:
        for part in str(r).split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part not in EVENTS:
                raise InputInvalid(f"unknown event '{part}' (one of: {', '.join(EVENTS)})")
            wanted.add(part)
    return [e for e in EVENTS if e in wanted]


def check_target(kind: str, target: str) -> str:
    """A channel's target: an http(s) URL for the robots and webhooks, an address for email."""
    target = (target or "").strip()
    if not target:
        raise InputInvalid(f"a {kind} channel needs a target (--target)")
    if len(target) > 2000:
        raise InputInvalid("a channel's target is longer than 2000 characters")
    if any(c.isspace() or not c.isprintable() for c in target):
        raise InputInvalid("a channel's target may not hold spaces or control characters")
    if kind == "email":
        if len(target) > 254 or not _EMAIL.fullmatch(target):
            raise InputInvalid(f"'{target}' is not an email address")
        return target
    try:
        parts = urlsplit(target)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        raise InputInvalid(f"a {kind} channel's target is not a URL: '{redact_target(target)}'") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputInvalid(
            f"a {kind} channel's target must be an http:// or https:// URL, not '{redact_target(target)}'"
        )
    return target


def _check_secret(kind: str, secret: str | None) -> str | None:
    secret = (secret or "").strip() or None
    if secret is None:
        return None
    if kind not in SIGNED_KINDS:
        raise InputInvalid(f"a {kind} channel takes no secret (only {' and '.join(SIGNED_KINDS)} channels sign)")
    if len(secret) > 500 or not secret.isprintable():
        raise InputInvalid("a channel's secret must be at most 500 printable characters")
    return secret


def redact_target(target: str) -> str:
    """A target fit to show: robot URLs carry their access token in the query, which is as good
    as a password, so query values are cut to their first characters and credentials dropped."""
    try:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https"):
            return target
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "…"
    query = "&".join(f"{k}={v[:6]}…" if len(v) > 6 else f"{k}={v}" for k, v in parse_qsl(parts.query))
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def channel_view(channel: NotificationChannel) -> dict[str, Any]:
    """A channel as the edges show it: never its secret, only whether it has one."""
    return {
        "id": channel.id,
        "user": channel.user_id,
        "kind": channel.kind,
        "target": redact_target(channel.target),
        "secret_set": bool(channel.secret),
        "scenario": channel.scenario_id,
        "events": list(channel.events),
        "active": channel.active,
        "created_at": _iso(channel.created_at),
    }


# --- writing notifications ------------------------------------------------------------------------
def enqueue(session: Session, event: str, item: WorkItem, recipients: list[str], *, extra: dict | None = None) -> int:
    """Add a notification for each active channel of the recipients that wants this event and
    this item's scenario, in the caller's transaction; return how many.

    Called where an item is queued, reminded of or escalated. A problem with one message is
    logged and skipped, never raised: notifying must not cost a run its queueing or a guardian
    their decision. A database error does propagate (the caller's transaction is failing anyway).
    `extra` adds small facts to the message (e.g. the escalation level); never draft text."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event '{event}' (one of: {', '.join(EVENTS)})")
    people = list(dict.fromkeys(r for r in recipients if r))
    if not people:
        return 0
    if item.id is None:
        session.flush()  # the message links to the item: it needs its id
    channels = session.exec(
        select(NotificationChannel)
        .join(User, col(User.id) == col(NotificationChannel.user_id))
        .where(
            col(NotificationChannel.active),
            col(User.active),  # a disabled user's channels fall silent
            col(NotificationChannel.user_id).in_(people),
            or_(
                col(NotificationChannel.scenario_id).is_(None), col(NotificationChannel.scenario_id) == item.scenario_id
            ),
        )
        .order_by(col(NotificationChannel.id))
    ).all()
    chosen = [c for c in channels if not c.events or event in c.events]
    if not chosen:
        return 0
    names = {who: _person_name(session, who) for who in {item.guardian, *(c.user_id for c in chosen)}}
    scenario_name = _scenario_name(session, item)
    now = utcnow()
    count = 0
    for channel in chosen:
        try:
            payload = build_payload(event, item, channel.user_id, names=names, scenario_name=scenario_name, extra=extra)
        except Exception:  # one bad message must not block what it announces; the log says which
            log.exception("notification skipped", extra={"item_id": item.id, "channel_id": channel.id})
            continue
        session.add(
            Notification(
                channel_id=channel.key, event=event, item_id=item.id, payload=payload, next_at=now, created_at=now
            )
        )
        count += 1
    return count


def public_url() -> str:
    """Where people open the desk, for links in messages: DEW_PUBLIC_URL, else the local default."""
    return (os.environ.get("DEW_PUBLIC_URL") or DEFAULT_PUBLIC_URL).strip().rstrip("/")


def build_payload(
    event: str,
    item: WorkItem,
    recipient: str,
    *,
    names: dict[str, str] | None = None,
    scenario_name: str | None = None,
    extra: dict | None = None,
) -> dict[str, Any]:
    """What a message says, fixed when it is written. Facts about the item only: no draft, no inputs."""
    names = names or {}
    facts: dict[str, Any] = {
        "id": item.id,
        "run_id": item.run_id,
        "revision": item.revision,
        "scenario": item.scenario_id,
        "scenario_name": scenario_name or item.scenario_id,
        "risk": item.risk,
        "guardian": item.guardian,
        "guardian_name": names.get(item.guardian, item.guardian),
        "due_at": _iso(item.due_at),
        "recipient": recipient,
        "recipient_name": names.get(recipient, recipient),
    }
    if extra:
        # Round-trip through JSON so whatever the caller passed is storable; core facts win.
        added = json.loads(json.dumps(extra, default=str))
        facts.update({k: v for k, v in added.items() if k not in facts})
    url = f"{public_url()}/items/{item.id}"
    zh, en = _texts(event, facts)
    return {"event": event, "item": facts, "url": url, "text": {"zh": zh, "en": en}}


def _texts(event: str, f: dict[str, Any]) -> tuple[str, str]:
    """One line in Chinese, one in English."""
    name = str(f["scenario_name"]).split(" · ")[0]  # shipped names read "中文名 · English name"
    n, sid, risk = f["id"], f["scenario"], f["risk"]
    head = f"{name} 事项 #{n}（风险：{_RISK_ZH.get(risk, risk)}）"
    what = f"work item #{n} ({sid}, risk {risk})"
    due = _shown_time(f.get("due_at"))
    if event == "item.reminder":
        return (
            f"【催办】{head}仍在等待 {f['guardian_name']} 决定" + (f"，期限 {due}" if due else ""),
            f"Reminder: {what} still waits for {f['guardian']}" + (f", due {due}" if due else ""),
        )
    if event == "item.escalated":
        return (
            f"【已升级】{head}已逾期，现由 {f['recipient_name']} 决定",
            f"Escalated: {what} is overdue and now waits for {f['recipient']}",
        )
    return (
        f"【待审核】{head}等待 {f['guardian_name']} 决定",
        f"Work item #{n} ({sid}, risk {risk}) waits for {f['guardian']}",
    )


def _person_name(s: Session, who: str) -> str:
    user = s.get(User, who)
    if user is not None:
        return " ".join(user.name.split()) or who
    guardian = s.get(Guardian, who)
    return (" ".join(guardian.name.split()) if guardian else "") or who


def _scenario_name(s: Session, item: WorkItem) -> str:
    """The name in the scenario version the run was started with (the text dew keeps of it)."""
    run = s.get(Run, item.run_id)
    version = s.get(ScenarioVersion, run.scenario_sha256) if run is not None else None
    if version is None:
        return item.scenario_id
    try:
        name = yaml.safe_load(version.text).get("name")
    except Exception:  # a name is a nicety; the id says the same
        return item.scenario_id
    return " ".join(name.split()) if isinstance(name, str) and name.strip() else item.scenario_id


# --- delivering -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Claim:
    """What one send needs, copied out of the claiming transaction."""

    id: int
    attempts: int
    event: str
    payload: dict[str, Any]
    kind: str
    target: str
    secret: str | None


def deliver_due(
    ws: Workspace, *, now: datetime | None = None, limit: int = 100, client: httpx.Client | None = None
) -> dict[str, int]:
    """Send up to `limit` notifications that are due; return how many were sent, failed for good,
    and failed for now (to be retried after a back-off). Never raises for a delivery problem.

    Each notification is claimed in a short transaction of its own (its attempt counted and its
    next try moved past the claim's lease), sent with no transaction open, and its outcome
    recorded in another short one. Two processes may call this at once: on PostgreSQL the claim
    skips rows another claim has locked, on SQLite the write lock takes claims in turn."""
    now = now or utcnow()
    counts = {"sent": 0, "failed": 0, "retrying": 0}
    import httpx  # here: every decision imports this module, only deliveries speak HTTP

    http = client or httpx.Client(timeout=TIMEOUT)
    try:
        for _ in range(limit):
            claim = _claim(ws, now)
            if claim is None:
                break
            if isinstance(claim, str):
                counts[claim] += 1
                continue
            counts[_record(ws, claim, _send(http, claim), now)] += 1
    finally:
        if client is None:
            http.close()
    return counts


def _claim(ws: Workspace, now: datetime) -> _Claim | str | None:
    with transaction(ws.engine) as s:
        note = s.exec(
            select(Notification)
            .where(col(Notification.status) == PENDING, col(Notification.next_at) <= now)
            .order_by(col(Notification.next_at), col(Notification.id))
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if note is None:
            return None
        channel = s.get(NotificationChannel, note.channel_id)
        if channel is None or not channel.active:
            note.status, note.last_error = FAILED, "the channel was removed before delivery"
            s.add(note)
            return "failed"
        # Counted now, not after the send: a send that kills its process still uses up an attempt.
        note.attempts += 1
        note.next_at = now + CLAIM
        s.add(note)
        return _Claim(
            note.key, note.attempts, note.event, dict(note.payload), channel.kind, channel.target, channel.secret
        )


def _record(ws: Workspace, claim: _Claim, error: str | None, now: datetime) -> str:
    if error is None:
        outcome, values = "sent", {"status": SENT, "sent_at": now, "last_error": None}
    elif claim.attempts >= MAX_ATTEMPTS:
        outcome, values = "failed", {"status": FAILED, "last_error": error}
    else:
        wait = min(FIRST_BACKOFF * 2 ** (claim.attempts - 1), MAX_BACKOFF)
        outcome, values = "retrying", {"next_at": now + timedelta(seconds=wait), "last_error": error}
    with transaction(ws.engine) as s:
        # Only if the row is still as claimed: an admin's retry meanwhile starts a fresh count.
        s.connection().execute(
            update(Notification)
            .where(
                col(Notification.id) == claim.id,
                col(Notification.attempts) == claim.attempts,
                col(Notification.status) == PENDING,
            )
            .values(**values)
        )
    if error is not None:
        log.warning(
            "notification %s not delivered: %s", claim.id, error, extra={"notification_id": claim.id, "error": error}
        )
    return outcome


def _send(http: httpx.Client, claim: _Claim) -> str | None:
    """Send one notification; None when it was accepted, else why not (short, without secrets)."""
    import httpx

    try:
        if claim.kind == "webhook":
            error = _send_webhook(http, claim)
        elif claim.kind == "dingtalk":
            error = _post_robot(
                http, dingtalk_url(claim.target, claim.secret), dingtalk_body(claim.payload), "DingTalk"
            )
        elif claim.kind == "wecom":
            error = _post_robot(http, claim.target, wecom_body(claim.payload), "WeCom")
        elif claim.kind == "email":
            error = _send_email(claim.target, claim.payload)
        else:
            error = f"unknown channel kind '{claim.kind}'"
    except httpx.TimeoutException:
        error = f"no answer within {TIMEOUT:g} s"
    except Exception as e:  # whatever goes wrong is this delivery's problem, recorded for a retry
        error = f"{type(e).__name__}: {e}"
    return _scrub(error, claim) if error is not None else None


def _scrub(error: str, claim: _Claim) -> str:
    """An error fit to store and show: no secret, no access token, one short line."""
    text = " ".join(error.split())
    hidden = [claim.secret, claim.target, os.environ.get("DEW_SMTP_PASSWORD")]
    if claim.kind != "email":
        parts = urlsplit(claim.target)  # validated when the channel was added
        hidden += [parts.password, *(v for _, v in parse_qsl(parts.query))]
    for value in sorted((h for h in hidden if h and len(h) >= 4), key=len, reverse=True):
        text = text.replace(value, "…")
    return text[:MAX_ERROR]


# --- formats --------------------------------------------------------------------------------------
def webhook_body(payload: dict[str, Any]) -> bytes:
    body = {"event": payload["event"], "item": payload["item"], "url": payload["url"], "text": payload["text"]}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(secret: str, timestamp: str | int, body: bytes) -> str:
    """The X-Dew-Signature value: sha256=HMAC-SHA256(secret, f"{timestamp}." + body) in hex."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes,
    signature: str,
    *,
    max_age: float | None = 300,
    now: float | None = None,
) -> bool:
    """Whether a webhook request is dew's: the signature matches the raw body and timestamp, and
    the timestamp is within `max_age` seconds of now (None: any age)."""
    ts = str(timestamp).strip()
    if not ts.isdigit():
        return False
    if max_age is not None and abs((time.time() if now is None else now) - int(ts)) > max_age:
        return False
    return hmac.compare_digest(sign(secret, ts, body).encode("utf-8"), (signature or "").strip().encode("utf-8"))


def _send_webhook(http: httpx.Client, claim: _Claim) -> str | None:
    body = webhook_body(claim.payload)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Dew-Event": claim.event,
        "X-Dew-Delivery": str(claim.id),
        "X-Dew-Timestamp": timestamp,
    }
    if claim.secret:
        headers["X-Dew-Signature"] = sign(claim.secret, timestamp, body)
    response = http.post(claim.target, content=body, headers=headers)
    return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"


def dingtalk_sign(secret: str, timestamp_ms: str | int) -> str:
    """DingTalk's robot signature (before URL-quoting): base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}"))."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def dingtalk_url(target: str, secret: str | None, *, timestamp_ms: int | None = None) -> str:
    """A robot's URL with `timestamp` (ms) and `sign` appended when it signs (DingTalk's "加签")."""
    if not secret:
        return target
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    joiner = "&" if urlsplit(target).query else ("" if target.endswith("?") else "?")
    return f"{target}{joiner}timestamp={ts}&sign={quote_plus(dingtalk_sign(secret, ts))}"


def _markdown(payload: dict[str, Any]) -> str:
    f, text = payload["item"], payload["text"]
    lines = [f"#### {text['zh']}", "", text["en"], ""]
    if f.get("due_at"):
        lines += [f"期限 / Due: {_shown_time(f['due_at'])}", ""]
    lines.append(f"[打开事项 #{f['id']} / Open work item #{f['id']}]({payload['url']})")
    return "\n".join(lines)


def dingtalk_body(payload: dict[str, Any]) -> dict[str, Any]:
    return {"msgtype": "markdown", "markdown": {"title": payload["text"]["zh"], "text": _markdown(payload)}}


def wecom_body(payload: dict[str, Any]) -> dict[str, Any]:
    return {"msgtype": "markdown", "markdown": {"content": _markdown(payload)}}


def _post_robot(http: httpx.Client, url: str, body: dict[str, Any], name: str) -> str | None:
    """DingTalk and WeCom answer 200 even when they refuse; `errcode` 0 is the only success."""
    response = http.post(url, json=body)
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or "errcode" not in answer:
        return f"{name} answered without an errcode"
    if answer["errcode"] != 0:
        return f"{name} errcode {answer['errcode']}: {str(answer.get('errmsg', ''))[:200]}"
    return None


def email_message(payload: dict[str, Any], to: str, sender: str) -> EmailMessage:
    f, text = payload["item"], payload["text"]
    msg = EmailMessage()
    msg["Subject"] = f"{text['zh']} / {text['en']}"
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="dew.local")
    msg["X-Dew-Event"] = payload["event"]
    msg.set_content(
        "\n".join(
            [
                text["zh"],
                text["en"],
                "",
                f"打开事项 / Open the item: {payload['url']}",
                "",
                f"场景 / Scenario: {f['scenario_name']} ({f['scenario']})",
                f"风险 / Risk: {_RISK_ZH.get(f['risk'], f['risk'])} / {f['risk']}",
                f"监护人 / Guardian: {f['guardian_name']} ({f['guardian']})",
                f"期限 / Due: {_shown_time(f.get('due_at')) or '—'}",
                f"运行 / Run: #{f['run_id']}，修订 / revision {f['revision']}",
                "",
                "此邮件由 dew 自动发送，不含草稿内容；请在工作台查看并决定。",
                "Sent by dew. It holds no draft text: read and decide on the desk.",
            ]
        ),
        charset="utf-8",
    )
    return msg


def _send_email(to: str, payload: dict[str, Any]) -> str | None:
    host = os.environ.get("DEW_SMTP_HOST", "").strip()
    if not host:
        return "DEW_SMTP_HOST is not set"
    try:
        port = int(os.environ.get("DEW_SMTP_PORT") or 25)
    except ValueError:
        return "DEW_SMTP_PORT is not a number"
    msg = email_message(payload, to, os.environ.get("DEW_SMTP_FROM") or "dew@localhost")
    user, password = os.environ.get("DEW_SMTP_USER"), os.environ.get("DEW_SMTP_PASSWORD") or ""
    if _flag("DEW_SMTP_SSL"):  # implicit TLS (port 465), as many providers in China require
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT, context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(host, port, timeout=TIMEOUT)
    with smtp:
        if _flag("DEW_SMTP_STARTTLS") and not _flag("DEW_SMTP_SSL"):
            smtp.starttls(context=ssl.create_default_context())
        if user:
            smtp.login(user, password)
        smtp.send_message(msg)
    return None


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# --- watching deliveries --------------------------------------------------------------------------
def status(ws: Workspace, *, actor: str | None = None, limit: int = 500) -> list[Notification]:
    """Deliveries still pending or failed for good, oldest first. With `actor`, only an admin may
    look (the API passes the caller; the local CLI acts with the database's own authority)."""
    with transaction(ws.engine) as s:
        if actor is not None:
            require_admin(s, person_id(actor, what="who looks at deliveries"), "see notification deliveries")
        return list(
            s.exec(
                select(Notification)
                .where(col(Notification.status).in_([PENDING, FAILED]))
                .order_by(col(Notification.id))
                .limit(limit)
            ).all()
        )


def retry(ws: Workspace, notification_id: int, *, actor: str) -> Notification:
    """Try a failed (or waiting) delivery again now, with a fresh count of attempts (an admin)."""
    actor = person_id(actor, what="who retries the delivery")
    with transaction(ws.engine) as s:
        require_admin(s, actor, "retry notification deliveries")
        note = s.get(Notification, notification_id, with_for_update=True)
        if note is None:
            raise NotFound(f"no notification {notification_id}")
        if note.status == SENT:
            raise InvalidState(f"notification {notification_id} has been delivered")
        channel = s.get(NotificationChannel, note.channel_id)
        if channel is None or not channel.active:
            raise InvalidState(f"the channel of notification {notification_id} has been removed")
        note.status, note.attempts, note.next_at = PENDING, 0, utcnow()
        s.add(note)
    return note


def notification_view(note: Notification, channel: NotificationChannel | None = None) -> dict[str, Any]:
    """A delivery as the edges show it (its channel without the secret, when given)."""
    view = {
        "id": note.id,
        "event": note.event,
        "item_id": note.item_id,
        "channel_id": note.channel_id,
        "status": note.status,
        "attempts": note.attempts,
        "next_at": _iso(note.next_at),
        "last_error": note.last_error,
        "created_at": _iso(note.created_at),
        "sent_at": _iso(note.sent_at),
    }
    if channel is not None:
        view.update(user=channel.user_id, kind=channel.kind, target=redact_target(channel.target))
    return view


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def _iso(value: datetime | None) -> str | None:
    return _aware(value).isoformat() if value is not None else None


def _shown_time(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        return f"{_aware(datetime.fromisoformat(iso)).astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    except ValueError:
        return iso
