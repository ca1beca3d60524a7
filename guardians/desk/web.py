"""The web desk: server-rendered pages for guardians, requesters, auditors and admins.

Pages call the same `guardians/` functions as the API and the CLI. Model output and inputs are
untrusted text: templates autoescape everything, hidden characters are shown as escapes, and the
Content-Security-Policy forbids inline script. Every form carries the session's CSRF token.
"""

from __future__ import annotations

import difflib
import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from sqlmodel import func, select

from dew.agents.errors import DewError, InputInvalid
from dew.agents.hidden import HIDDEN, visible
from dew.guardians import access, audit, auth, brake, delegation, notify, queue, users
from dew.guardians.db import must_get, reading, transaction
from dew.guardians.decisions import may_decide, record_decision
from dew.guardians.errors import NotAuthenticated, SignatureRefused
from dew.guardians.execution import Job, JobKind, start_waiting
from dew.guardians.models import Role, Run, ScenarioState, WorkItem, utcnow
from dew.guardians.runs import begin_retry, request_run
from dew.guardians.signing import SignedStatement, list_keys

from .api import release_download
from .headers import CSP
from .i18n import LANG_COOKIE, LANGUAGES, language, translate
from .security import SESSION_COOKIE, Caller, RowId, check_csrf, client_address, identify

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
LOGIN_CSRF_COOKIE = "dew_login_csrf"


class SignInRequired(Exception):
    """A page was asked for without a session: the browser is sent to the sign-in page."""

    def __init__(self, next_path: str):
        self.next_path = next_path


# --- rendering ------------------------------------------------------------------------------------
def _lang(request: Request, caller: Caller | None) -> str:
    preferred = None
    if caller is not None:
        with transaction(request.app.state.ws.engine) as s:
            from dew.guardians.models import User

            user = s.get(User, caller.principal.id)
            preferred = user.locale if user else None
    return language(request, preferred)


def render(request: Request, template: str, caller: Caller | None, status: int = 200, **values: Any) -> HTMLResponse:
    lang = _lang(request, caller)

    def t(key: str, **kw: Any) -> str:
        return translate(lang, key, **kw)

    context = {
        "t": t,
        "lang": lang,
        "other_lang": "en" if lang == "zh" else "zh",
        "caller": caller.principal if caller else None,
        "csrf": caller.csrf_token if caller else None,
        "done": request.query_params.get("done"),
        "path": request.url.path,
        **values,
    }
    response = templates.TemplateResponse(request, template, context, status_code=status)
    response.headers["content-type"] = "text/html; charset=utf-8"
    return response


def error_page(request: Request, status: int, message: str, *, code: str, headers: dict | None = None) -> Response:
    try:
        caller = identify(request)
    except DewError:
        caller = None
    response = render(request, "error.html", caller, status=status, message=message, code=code)
    if headers:
        response.headers.update(headers)
    return response


def _caller(request: Request) -> Caller:
    try:
        caller = identify(request)
    except NotAuthenticated:
        caller = None
    if caller is None:
        raise SignInRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return caller


async def _form(request: Request, caller: Caller) -> dict[str, str]:
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    check_csrf(caller, request, values.get("csrf"))
    return values


def _redirect(path: str, **params: Any) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return RedirectResponse(path + (f"?{query}" if query else ""), status_code=303)


def _ws(request: Request):
    return request.app.state.ws


# --- filters the templates use ---------------------------------------------------------------------
def shown(text: Any) -> str:
    """Untrusted text with hidden characters made visible (autoescaping does the rest)."""
    return visible(text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, indent=2))


def age(iso: str, lang: str) -> str:
    minutes = max(0, int((datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds() // 60))
    if minutes < 120:
        return translate(lang, "age.minutes", n=minutes)
    if minutes < 48 * 60:
        return translate(lang, "age.hours", n=minutes // 60)
    return translate(lang, "age.days", n=minutes // (60 * 24))


def when(iso: str | None) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


_QUOTED = re.compile(r"'([^']{2,80})'|\"([^\"]{2,80})\"|“([^”]{2,80})”|「([^」]{2,80})」")


def highlight_terms(findings: list[str]) -> list[str]:
    """The phrases findings point at: quoted text, and the words of 'must not contain: a, b'."""
    terms: list[str] = []
    for f in findings:
        terms += [next(g for g in m.groups() if g) for m in _QUOTED.finditer(f)]
        if f.startswith("must not contain: "):
            terms += [p.strip() for p in f.removeprefix("must not contain: ").split(",") if p.strip()]
    return sorted({t for t in terms if t}, key=lambda t: (-len(t), t))  # longest first: no mark inside a mark


def marked(text: str, terms: list[str]) -> Markup:
    """The draft escaped, with the phrases findings point at wrapped in <mark>."""
    safe = str(escape(visible(text)))
    for term in terms:
        needle = str(escape(visible(term)))
        if needle and needle in safe:
            safe = safe.replace(needle, f"<mark>{needle}</mark>")
    return Markup(safe)


def rendered_markdown(text: str, terms: list[str]) -> Markup:
    """A markdown draft as a document: headings, lists and tables, with the phrases findings point
    at marked. Raw HTML in the draft is not rendered (it shows as text), and links may only be
    http(s) or relative; images cannot load from elsewhere (the page's CSP)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")
    needles = [str(escape(visible(t))) for t in terms if t]

    def text_rule(renderer, tokens, idx, options, env):
        out = str(escape(tokens[idx].content))
        for needle in needles:
            if needle and needle in out:
                out = out.replace(needle, f"<mark>{needle}</mark>")
        return out

    md.add_render_rule("text", text_rule)
    return Markup(md.render(visible(text)))


def json_table(text: str) -> dict | list | None:
    """A JSON draft as rows a person can read, when it is an object or a list of objects."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError):
        return None
    if isinstance(value, dict) or (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
        return value
    return None


def diff_lines(before: str, after: str) -> list[tuple[str, str]]:
    """A line diff as (kind, text) pairs: kind is 'add', 'del', 'hunk' or 'same'."""
    out = []
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=2):
        if line.startswith(("+++", "---")):
            continue
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")
        out.append((kind, visible(line)))
    return out


templates.env.filters["shown"] = shown
templates.env.filters["when"] = when
templates.env.globals["age"] = age
templates.env.globals["json_value"] = lambda v: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


# --- sign in and out --------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, next=_local(next), login_csrf=token, failed=None)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request))
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    given = values.get("csrf", "")
    if not expected or not secrets.compare_digest(expected.encode("utf-8"), given.encode("utf-8")):
        from dew.guardians.errors import CsrfRefused

        raise CsrfRefused("the sign-in form has expired; reload the page and try again")
    next_path = _local(values.get("next", "/"))
    try:
        principal = auth.sign_in(
            _ws(request), values.get("user", ""), values.get("password", ""), client=client_address(request)
        )
    except NotAuthenticated as e:
        token = secrets.token_urlsafe(24)
        page = render(request, "login.html", None, status=401, next=next_path, login_csrf=token, failed=e.message)
        page.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request))
        return page
    opened = auth.open_session(_ws(request), principal, client=client_address(request))
    response = _redirect(next_path)
    response.set_cookie(
        SESSION_COOKIE,
        opened.cookie,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        max_age=auth.SESSION_HOURS * 3600,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    caller = _caller(request)
    await _form(request, caller)
    if caller.cookie:
        auth.end_session(_ws(request), caller.cookie)
    response = _redirect("/login")
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/lang/{code}")
def switch_language(code: str, request: Request, back: str = "/") -> Response:
    response = _redirect(_local(back))
    if code in LANGUAGES:
        response.set_cookie(LANG_COOKIE, code, samesite="lax", max_age=365 * 24 * 3600)
    return response


def _local(path: str) -> str:
    """Only paths on this server: a sign-in link must not send anyone elsewhere."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def _secure(request: Request) -> bool:
    return bool(request.app.state.config.secure_cookies)


# --- home and inbox ---------------------------------------------------------------------------------
@router.get("/")
def home(request: Request) -> Response:
    p = _caller(request).principal
    if p.has(Role.GUARDIAN):
        return _redirect("/inbox")
    if p.has(Role.REQUESTER):
        return _redirect("/request")
    if p.has(Role.AUDITOR):
        return _redirect("/audit")
    return _redirect("/catalogue")


INBOX_PAGE = 50


@router.get("/inbox", response_class=HTMLResponse)
def inbox(
    request: Request, scenario: str | None = None, after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0
) -> Response:
    caller = _caller(request)
    rows = queue.queue_for(_ws(request), caller.principal, scenario or None, after=after, limit=INBOX_PAGE)
    total, scenarios = queue.waiting_for(_ws(request), caller.principal, scenario or None)
    more = rows[-1]["id"] if len(rows) == INBOX_PAGE else None
    now = datetime.now(UTC)
    for r in rows:
        due = datetime.fromisoformat(r["due_at"]) if r["due_at"] else None
        r["late"] = due is not None and due <= now
        r["soon"] = due is not None and not r["late"] and r["reminded"]
    return render(
        request, "inbox.html", caller, rows=rows, scenarios=scenarios, scenario=scenario, total=total, after=after,
        more=more,
    )  # fmt: skip


# --- one item -----------------------------------------------------------------------------------------
@router.get("/items/{item_id}", response_class=HTMLResponse)
def item_page(item_id: RowId, request: Request) -> Response:
    caller = _caller(request)
    return _item(request, caller, item_id)


def _item(request: Request, caller: Caller, item_id: RowId, **extra: Any) -> HTMLResponse:
    ws = _ws(request)
    view = queue.item_for(ws, caller.principal, item_id)
    item = view["item"]
    spec = ws.stored_scenario(view["run"]["scenario_sha256"]).spec
    cannot = None
    if item["status"] == "pending":
        cannot = may_decide(ws, item_id, caller.principal.id, caller.principal.method)
    earlier = view["earlier"]
    rounds = []
    previous = None
    for r in earlier:
        rounds.append({**r, "diff": diff_lines(previous, r["draft"]) if previous is not None else []})
        previous = r["draft"]
    changes = diff_lines(previous, item["draft"]) if previous is not None else []
    return render(
        request,
        "item.html",
        caller,
        view=view,
        item=item,
        run=view["run"],
        spec=spec,
        draft_html=marked(item["draft"], highlight_terms(item["findings"])),
        draft_doc=rendered_markdown(item["draft"], highlight_terms(item["findings"]))
        if spec.output.format == "markdown"
        else None,
        draft_table=json_table(item["draft"]) if spec.output.format == "json" else None,
        hidden=bool(HIDDEN.search(item["draft"])),
        rounds=rounds,
        changes=changes,
        cannot=cannot,
        signing=_signing(request, caller, item),
        **extra,
    )


def _signing(request: Request, caller: Caller, item: dict[str, Any]) -> dict[str, Any]:
    """What static/sign.js needs to sign a decision on this item over exactly what was shown, and
    which of the signer's keys are in force (the browser holds the private half of some of them)."""
    person = caller.principal.id
    keys = [{"id": k.id, "public_key": k.public_key} for k in list_keys(_ws(request), person) if k.revoked_at is None]
    return {"item": item["id"], "stage": item["stage"], "signer": person, "required": item["sign_required"],
            "draft": item["draft"], "keys": keys}  # fmt: skip


@router.post("/items/{item_id}/decide")
async def decide(item_id: RowId, request: Request) -> Response:
    caller = _caller(request)
    form = await _form(request, caller)
    action = form.get("action", "")
    edited = form.get("edited") if action == "edit" else None
    if edited is not None:
        edited = edited.replace("\r\n", "\n")  # browsers send CRLF; the draft has LF
    p = caller.principal
    recorded = record_decision(_ws(request), item_id, actor=p.id, action=action, note=form.get("note"), edited=edited,
                               method=p.method, signed=_signature(form))  # fmt: skip
    if recorded.decision is None:
        return _redirect("/inbox", done="signed")
    request.app.state.executor.submit(Job(JobKind.DECISION, recorded.item.run_id, item_id))
    return _redirect("/inbox", done=action if action in ("approve", "reject", "edit", "revise") else None)


def _signature(form: dict[str, str]) -> SignedStatement | None:
    """The signature static/sign.js made in the browser, if any (the server checks it)."""
    key_id, statement, signature = form.get("key_id", ""), form.get("statement", ""), form.get("signature", "")
    if not (key_id or statement or signature):
        return None
    if not key_id.isdigit() or len(key_id) > 15 or len(statement) > 2000 or len(signature) > 200:
        raise SignatureRefused("the signature sent with the form is malformed; reload the page and decide again")
    return SignedStatement(int(key_id), statement, signature)


@router.post("/items/{item_id}/preview", response_class=HTMLResponse)
async def preview_edit(item_id: RowId, request: Request) -> Response:
    """Show the guardian the diff of their edit before they confirm it."""
    caller = _caller(request)
    form = await _form(request, caller)
    edited = form.get("edited", "").replace("\r\n", "\n")
    view = queue.item_for(_ws(request), caller.principal, item_id)
    return render(
        request,
        "preview.html",
        caller,
        item=view["item"],
        edited=edited,
        note=form.get("note", ""),
        diff=diff_lines(view["item"]["draft"], edited),
        signing=_signing(request, caller, view["item"]),
    )


@router.get("/items/{item_id}/trace", response_class=HTMLResponse)
def trace_page(item_id: RowId, request: Request) -> Response:
    caller = _caller(request)
    trace = queue.trace_for(_ws(request), caller.principal, item_id)
    return render(request, "trace.html", caller, trace=trace, item_id=item_id)


# --- requesting work ------------------------------------------------------------------------------
@router.get("/request", response_class=HTMLResponse)
def request_page(request: Request) -> Response:
    caller = _caller(request)
    catalogue = sorted(_ws(request).catalogue.values(), key=lambda x: x.id)
    return render(request, "request.html", caller, catalogue=catalogue, understood=None)


@router.post("/request/ask", response_class=HTMLResponse)
async def ask(request: Request) -> Response:
    """The front desk: free text in, a scenario and pre-filled inputs out, for the requester to check."""
    caller = _caller(request)
    form = await _form(request, caller)
    text = form.get("text", "").strip()
    if not text:
        raise InputInvalid("say what you need first")
    from dew.agents.frontdesk import route

    ws = _ws(request)
    r = route(text, ws.catalogue, ws.provider)
    if r.scenario is None:
        catalogue = sorted(ws.catalogue.values(), key=lambda x: x.id)
        return render(request, "request.html", caller, catalogue=catalogue, understood=r)
    return _request_form(request, caller, r.scenario, values=dict(r.inputs), understood=r)


@router.get("/request/{scenario_id}", response_class=HTMLResponse)
def request_form(scenario_id: str, request: Request, example: int | None = None) -> Response:
    caller = _caller(request)
    spec = _ws(request).scenario(scenario_id).spec
    values: dict[str, Any] = {}
    if example is not None and 0 <= example < len(spec.examples):
        values = dict(spec.examples[example].inputs)
    return _request_form(request, caller, scenario_id, values=values)


def _request_form(request: Request, caller: Caller, scenario_id: str, *, values: dict, understood=None, **extra):
    spec = _ws(request).scenario(scenario_id).spec
    return render(request, "request_form.html", caller, spec=spec, values=values, understood=understood, **extra)


@router.post("/request/{scenario_id}")
async def start_run(scenario_id: str, request: Request) -> Response:
    caller = _caller(request)
    form = await _form(request, caller)
    spec = _ws(request).scenario(scenario_id).spec
    inputs: dict[str, Any] = {}
    for name, declared in spec.inputs.items():
        if declared.type == "boolean":
            inputs[name] = form.get(name) == "on"
            continue
        raw = form.get(name, "").replace("\r\n", "\n")
        if raw == "" and not declared.required:
            continue  # the scenario's default applies
        if declared.type == "json":
            try:
                inputs[name] = json.loads(raw) if raw.strip() else raw
            except ValueError as e:
                raise InputInvalid(f"input '{name}' is not valid JSON: {e}") from None
        else:
            inputs[name] = raw
    p = caller.principal
    run = request_run(_ws(request), scenario_id, inputs, requester=p.id, method=p.method)
    request.app.state.executor.submit(Job(JobKind.START, run.key))
    return _redirect(f"/runs/{run.id}", done="run")


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request) -> Response:
    caller = _caller(request)
    ws = _ws(request)
    p = caller.principal
    # A requester's own runs; an auditor or admin sees the newest of everyone's.
    shown_runs = queue.runs_for(ws, p, limit=100)
    if not access.reads_everything(p):
        shown_runs = [r for r in shown_runs if r["requester"] == p.id]
    return render(request, "runs.html", caller, runs=shown_runs, released=queue.released_for(ws, p, limit=50))


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: RowId, request: Request) -> Response:
    caller = _caller(request)
    ws = _ws(request)
    run = queue.run_view(ws, caller.principal, run_id)
    p = caller.principal
    may_recall = p.has(Role.GUARDIAN, Role.ADMIN) and brake.can_brake(ws, p.id, run["scenario"])
    return render(request, "run.html", caller, run=run, may_recall=may_recall)


@router.post("/runs/{run_id}/retry")
async def retry(run_id: RowId, request: Request) -> Response:
    caller = _caller(request)
    await _form(request, caller)
    ws = _ws(request)
    with transaction(ws.engine) as s:
        access.check_retry(s, caller.principal, must_get(s, Run, run_id))
    begin_retry(ws, run_id, actor=caller.principal.id)
    request.app.state.executor.submit(Job(JobKind.RECOVER, run_id))
    return _redirect(f"/runs/{run_id}")


@router.get("/releases/{release_id}")
def download(release_id: RowId, request: Request) -> Response:
    caller = _caller(request)
    return release_download(*queue.released_text(_ws(request), caller.principal, release_id))


# --- audit ------------------------------------------------------------------------------------------
@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    scenario: str = "",
    guardian: str = "",
    requester: str = "",
    status: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    caller = _caller(request)
    access.require_role(caller.principal, Role.AUDITOR, Role.ADMIN, doing="search the audit trail")
    ws = _ws(request)
    chain: dict[str, Any]
    with reading(ws.engine) as s:
        try:
            v = audit.verify(s)
            chain = {"ok": True, "events": v.events, "head": v.head[:16]}
        except DewError as e:
            chain = {"ok": False, "why": e.message}
    items = queue.search_items(
        ws,
        scenario=scenario or None,
        guardian=guardian or None,
        requester=requester or None,
        status=status or None,
        since=_date(since),
        until=_date(until, end=True),
    )
    filters = {"scenario": scenario, "guardian": guardian, "requester": requester, "status": status,
               "since": since, "until": until}  # fmt: skip
    return render(
        request, "audit.html", caller, chain=chain, items=items, filters=filters,
        scenarios=sorted(ws.catalogue), statuses=["pending", "approved", "edited", "rejected", "revised"],
    )  # fmt: skip


def _date(text: str, *, end: bool = False) -> datetime | None:
    if not text:
        return None
    try:
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return day + timedelta(days=1) if end else day
    except (ValueError, OverflowError):
        raise InputInvalid(f"'{text}' is not a date dew can use (YYYY-MM-DD)") from None


# --- catalogue and people ---------------------------------------------------------------------------
@router.get("/catalogue", response_class=HTMLResponse)
def catalogue(request: Request) -> Response:
    caller = _caller(request)
    ws = _ws(request)
    with transaction(ws.engine) as s:
        counts = dict(
            s.exec(
                select(WorkItem.scenario_id, func.count())
                .where(WorkItem.status == "pending")
                .group_by(WorkItem.scenario_id)
            ).all()
        )
        states = {st.scenario_id: st for st in s.exec(select(ScenarioState)).all()}
    p = caller.principal
    rows = [
        {
            "spec": loaded.spec,
            "queue": counts.get(loaded.id, 0),
            "state": states.get(loaded.id),
            "may_brake": p.has(Role.GUARDIAN, Role.ADMIN) and brake.can_brake(ws, p.id, loaded.id),
        }
        for loaded in sorted(ws.catalogue.values(), key=lambda x: x.id)
    ]
    return render(request, "catalogue.html", caller, rows=rows)


# Mermaid styles the SVG it draws with <style> elements: this page alone allows inline styles
# (never inline script); graph labels are step ids and titles from the scenario file.
GRAPH_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


@router.get("/catalogue/{scenario_id}", response_class=HTMLResponse)
def scenario_page(scenario_id: str, request: Request) -> Response:
    caller = _caller(request)
    from dew.agents.compiler import mermaid

    ws = _ws(request)
    spec = ws.scenario(scenario_id).spec
    with transaction(ws.engine) as s:
        queued = s.exec(
            select(func.count())
            .select_from(WorkItem)
            .where(WorkItem.scenario_id == scenario_id, WorkItem.status == "pending")
        ).one()
        state = s.get(ScenarioState, scenario_id)
    page = render(request, "scenario.html", caller, spec=spec, graph=mermaid(spec), stages=spec.stages(), queue=queued,
                  state=state)  # fmt: skip
    page.headers["content-security-policy"] = GRAPH_CSP
    return page


@router.post("/scenarios/{scenario_id}/pause")
async def pause(scenario_id: str, request: Request) -> Response:
    caller = _caller(request)
    form = await _form(request, caller)
    brake.pause(_ws(request), scenario_id, actor=caller.principal.id, reason=form.get("reason", ""))
    return _redirect("/catalogue", done="paused")


@router.post("/scenarios/{scenario_id}/resume")
async def resume(scenario_id: str, request: Request) -> Response:
    caller = _caller(request)
    await _form(request, caller)
    ws = _ws(request)
    brake.resume(ws, scenario_id, actor=caller.principal.id)
    start_waiting(ws, request.app.state.executor, scenario_id)  # runs that waited while it was paused
    return _redirect("/catalogue", done="resumed")


@router.post("/releases/{release_id}/recall")
async def recall(release_id: RowId, request: Request) -> Response:
    caller = _caller(request)
    form = await _form(request, caller)
    r = brake.recall(_ws(request), release_id, actor=caller.principal.id, reason=form.get("reason", ""))
    return _redirect(f"/runs/{r.run_id}", done="recalled")


@router.get("/people", response_class=HTMLResponse)
def people(request: Request) -> Response:
    caller = _caller(request)
    access.require_role(caller.principal, Role.ADMIN, Role.AUDITOR, doing="see the people of this workspace")
    ws = _ws(request)
    deliveries = []
    if caller.principal.has(Role.ADMIN):  # what did not reach a guardian, for whoever can fix it
        deliveries = [notify.notification_view(n) for n in notify.status(ws, actor=caller.principal.id)]
    return render(
        request, "people.html", caller, users=users.list_users(ws), roles=[r.value for r in Role], deliveries=deliveries
    )


@router.post("/people")
async def add_person(request: Request) -> Response:
    caller = _caller(request)
    form = await _form(request, caller)
    roles = [r.value for r in Role if form.get(f"role_{r.value}") == "on"]
    users.add_user(
        _ws(request), form.get("id", ""), form.get("name", ""), roles, actor=caller.principal.id,
        password=form.get("password") or None, locale=form.get("locale", "zh"),
    )  # fmt: skip
    return _redirect("/people", done="user")


@router.post("/people/{user_id}")
async def change_person(user_id: str, request: Request) -> Response:
    caller = _caller(request)
    form = await _form(request, caller)
    ws = _ws(request)
    if form.get("disable") == "1":
        users.disable_user(ws, user_id, actor=caller.principal.id)
    else:
        users.set_roles(
            ws, user_id, [r.value for r in Role if form.get(f"role_{r.value}") == "on"], actor=caller.principal.id
        )
    return _redirect("/people", done="user")


@router.get("/delegations", response_class=HTMLResponse)
def delegations(request: Request) -> Response:
    caller = _caller(request)
    scope = access.delegations_scope(caller.principal)
    rows = delegation.list_delegations(_ws(request), current_only=True, involving=scope)
    return render(request, "delegations.html", caller, rows=rows, today=utcnow().date().isoformat())


@router.post("/delegations")
async def create_delegation(request: Request) -> Response:
    caller = _caller(request)
    form = await _form(request, caller)
    until = _date(form.get("until", ""), end=True)
    if until is None:
        raise InputInvalid("say until when the delegation lasts")
    delegation.delegate(
        _ws(request), form.get("guardian") or caller.principal.id, form.get("delegate", ""), ends_at=until,
        reason=form.get("reason", ""), actor=caller.principal.id,
    )  # fmt: skip
    return _redirect("/delegations", done="delegated")


@router.post("/delegations/{delegation_id}/end")
async def end_delegation(delegation_id: RowId, request: Request) -> Response:
    caller = _caller(request)
    await _form(request, caller)
    delegation.end_delegation(_ws(request), delegation_id, actor=caller.principal.id)
    return _redirect("/delegations", done="delegation_ended")
