"""The JSON API, `/api/v1`. Every route authenticates the caller and calls `guardians/`; the
rules of who may do what are there, not here. Errors come back as `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from dew.guardians import access, audit, auth, brake, deadlines, delegation, queue, users
from dew.guardians.db import must_get, reading, transaction
from dew.guardians.decisions import record_decision
from dew.guardians.execution import Job, JobKind, start_waiting
from dew.guardians.models import Role, Run, utcnow
from dew.guardians.runs import begin_retry, request_run
from dew.guardians.signing import SignedStatement

from .security import CallerDep, RowId, client_address

router = APIRouter(prefix="/api/v1")


def _ws(request: Request):
    return request.app.state.ws


def _submit(request: Request, job: Job) -> None:
    request.app.state.executor.submit(job)


# --- health -------------------------------------------------------------------------------------
@router.get("/health", tags=["health"])
def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/ready", tags=["health"])
def ready(request: Request) -> JSONResponse:
    """The database answers and the workers are running."""
    from sqlalchemy import text

    problems = []
    try:
        with request.app.state.ws.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as e:  # any database fault means not ready; say which kind
        problems.append(f"database: {type(e).__name__}")
    pool = request.app.state.executor
    if not pool.alive:
        problems.append("workers: not running")
    body = {"status": "ready" if not problems else "not ready", "problems": problems, "jobs_pending": pool.pending}
    return JSONResponse(body, status_code=200 if not problems else 503)


# --- who am I -----------------------------------------------------------------------------------
class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(max_length=200)
    password: str = Field(max_length=1000)
    name: str = Field(default="", max_length=200)
    expires_days: int | None = Field(default=90, ge=1, le=3650)


@router.post("/auth/token", tags=["auth"], status_code=201)
def token_for_password(body: TokenRequest, request: Request) -> dict[str, Any]:
    """Exchange a user name and password for a new API token (what `dew login` does). Shown once."""
    ws = _ws(request)
    principal = auth.sign_in(ws, body.user, body.password, client=client_address(request))
    expires = utcnow() + timedelta(days=body.expires_days) if body.expires_days else None
    token, secret = auth.create_token(
        ws, principal.id, actor=principal.id, name=body.name or "dew login", expires_at=expires
    )
    return {"token": secret, "id": token.id, "user": principal.id, "expires_at": _iso(token.expires_at)}


@router.get("/me", tags=["auth"])
def me(caller: CallerDep) -> dict[str, Any]:
    p = caller.principal
    return {"id": p.id, "name": p.name, "roles": sorted(p.roles), "auth_method": p.method}


# --- scenarios ----------------------------------------------------------------------------------
@router.get("/scenarios", tags=["scenarios"])
def scenarios(request: Request, caller: CallerDep) -> list[dict[str, Any]]:
    """The digital employees: each scenario with its guardian, backups, risk and declared inputs."""
    return [scenario_summary(loaded.spec) for loaded in _ws(request).catalogue.values()]


@router.get("/scenarios/{scenario_id}", tags=["scenarios"])
def scenario(scenario_id: str, request: Request, caller: CallerDep) -> dict[str, Any]:
    spec = _ws(request).scenario(scenario_id).spec
    return {**scenario_summary(spec), "inputs": inputs_of(spec), "examples": [e.model_dump() for e in spec.examples]}


def scenario_summary(spec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "name": spec.name,
        "description": spec.description,
        "version": spec.version,
        "guardian": spec.guardian,
        "backups": list(spec.backups),
        "risk": spec.risk,
    }


def inputs_of(spec) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "type": i.type,
            "description": i.description,
            "required": i.required,
            "default": i.default,
            "max_chars": i.max_chars,
        }
        for name, i in spec.inputs.items()
    ]


# --- runs ---------------------------------------------------------------------------------------
class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scenario: str = Field(max_length=200)
    inputs: dict[str, Any] = Field(default_factory=dict)


def _paged(
    request: Request, response: Response, rows: list[dict[str, Any]], limit: int, cursor: str, **filters: str | None
) -> list[dict[str, Any]]:
    """A page of rows as the listing returns it; a full one with a `Link: <...>; rel="next"`
    header whose `cursor` (after/before) is the last row's id, the filters kept."""
    if len(rows) == limit:
        query = {cursor: rows[-1]["id"], "limit": limit} | {k: v for k, v in filters.items() if v}
        response.headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
    return rows


@router.post("/runs", tags=["runs"], status_code=202)
def start(
    body: RunRequest,
    request: Request,
    caller: CallerDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="Your key for this request: asking again with it (an answer that "
            "was lost) returns the run it started instead of starting another.",
        ),
    ] = None,
) -> dict[str, Any]:
    """Start a run. It is queued at once and executed in the background; poll `GET /runs/{id}`."""
    p = caller.principal
    run = request_run(_ws(request), body.scenario, body.inputs, requester=p.id, method=p.method,
                      request_key=idempotency_key or None)  # fmt: skip
    _submit(request, Job(JobKind.START, run.key))  # a repeated request's job is absorbed by the one waiting
    return {"run_id": run.id, "status": run.status, "scenario": run.scenario_id}


@router.get("/runs", tags=["runs"])
def runs(
    request: Request,
    response: Response,
    caller: CallerDep,
    status: Annotated[str | None, Query(max_length=40)] = None,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="Only runs before this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Runs per page.")] = 200,
) -> list[dict[str, Any]]:
    """The runs you may see, newest first: your own as a requester, your queues' as a guardian, all
    as an auditor; a page at a time, a full page with a `Link: <...>; rel="next"` header."""
    rows = queue.runs_for(_ws(request), caller.principal, status=status, before=before, limit=limit)
    return _paged(request, response, rows, limit, "before", status=status)


@router.get("/runs/{run_id}", tags=["runs"])
def run(run_id: RowId, request: Request, caller: CallerDep) -> dict[str, Any]:
    return queue.run_view(_ws(request), caller.principal, run_id)


@router.post("/runs/{run_id}/retry", tags=["runs"], status_code=202)
def retry(run_id: RowId, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Continue a failed run from its last checkpoint (its requester or an admin)."""
    ws, p = _ws(request), caller.principal
    with transaction(ws.engine) as s:
        access.check_retry(s, p, must_get(s, Run, run_id))
    begin_retry(ws, run_id, actor=p.id)
    _submit(request, Job(JobKind.RECOVER, run_id))
    return {"run_id": run_id, "status": "running"}


# --- queue and decisions ------------------------------------------------------------------------
@router.get("/queue", tags=["queue"])
def my_queue(
    request: Request,
    response: Response,
    caller: CallerDep,
    scenario: Annotated[str | None, Query(max_length=200)] = None,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="Start after this item id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Items per page.")] = 100,
) -> list[dict[str, Any]]:
    """Items waiting for your decision (as guardian, backup, delegate or escalation contact),
    oldest first, a page at a time: a full page carries a `Link: <...>; rel="next"` header to the
    next (the last id as `after`)."""
    rows = queue.queue_for(_ws(request), caller.principal, scenario, after=after, limit=limit)
    return _paged(request, response, rows, limit, "after", scenario=scenario)


@router.get("/items/{item_id}", tags=["queue"])
def item(item_id: RowId, request: Request, caller: CallerDep) -> dict[str, Any]:
    return queue.item_for(_ws(request), caller.principal, item_id)


@router.get("/items/{item_id}/trace", tags=["audit"])
def item_trace(item_id: RowId, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Everything that happened to the run behind an item, across hand-offs."""
    return queue.trace_for(_ws(request), caller.principal, item_id)


class SignatureIn(BaseModel):
    """A decision signed with your key: the statement signed (see guardians/signing.py) and the
    base64 Ed25519 signature over its UTF-8 bytes."""

    model_config = ConfigDict(extra="forbid")
    key_id: int = Field(ge=1, le=2**53)
    statement: str = Field(max_length=2000)
    signature: str = Field(max_length=200)

    def signed(self) -> SignedStatement:
        return SignedStatement(self.key_id, self.statement, self.signature)


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(description="approve | reject | edit | revise", max_length=20)
    note: str | None = Field(
        default=None, description="comment, reason (reject) or feedback (revise)", max_length=20000
    )
    edited: str | None = Field(default=None, description="the edited output (edit)", max_length=2_000_000)
    signature: SignatureIn | None = Field(default=None, description="your signature over this decision")


@router.post("/items/{item_id}/decision", tags=["queue"], status_code=202)
def decide(item_id: RowId, body: DecisionRequest, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Decide on a work item. The decision is recorded at once; the run resumes in the background
    (an approval is released, a revision drafts again)."""
    p = caller.principal
    signed = body.signature.signed() if body.signature else None
    recorded = record_decision(_ws(request), item_id, actor=p.id, action=body.action, note=body.note,
                               edited=body.edited, method=p.method, signed=signed)  # fmt: skip
    it, decision, signoff = recorded.item, recorded.decision, recorded.signoff
    if decision is not None:
        _submit(request, Job(JobKind.DECISION, it.run_id, item_id))
        return {"decision_id": decision.id, "item_id": item_id, "run_id": it.run_id, "action": decision.action,
                "rule": decision.rule, "auth_method": decision.auth_method, "signing_key": decision.signing_key_id,
                "signed_off": None}  # fmt: skip
    assert signoff is not None
    return {
        "decision_id": None, "item_id": item_id, "run_id": it.run_id, "action": body.action, "rule": signoff.rule,
        "auth_method": signoff.auth_method, "signing_key": signoff.signing_key_id,
        "signed_off": {"stage": signoff.stage, "name": signoff.stage_name, "next_guardian": it.guardian},
    }  # fmt: skip


# --- the brake and the clock ----------------------------------------------------------------------
class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(max_length=2000)


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=2000)


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(default=None, max_length=200, description="whom overdue items escalate to; null clears")


@router.post("/scenarios/{scenario_id}/pause", tags=["brake"])
def pause(scenario_id: str, body: Reason, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Brake a digital employee: no new runs start, pending items are held (its guardians or an admin)."""
    row = brake.pause(_ws(request), scenario_id, actor=caller.principal.id, reason=body.reason)
    return state_dict(row)


@router.post("/scenarios/{scenario_id}/resume", tags=["brake"])
def resume(scenario_id: str, body: Note, request: Request, caller: CallerDep) -> dict[str, Any]:
    ws = _ws(request)
    row = brake.resume(ws, scenario_id, actor=caller.principal.id, note=body.note)
    start_waiting(ws, request.app.state.executor, scenario_id)
    return state_dict(row)


@router.put("/scenarios/{scenario_id}/escalation-contact", tags=["brake"])
def escalation_contact(scenario_id: str, body: Contact, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Name whom the scenario's overdue items escalate to after its backups (admins)."""
    return state_dict(brake.set_escalation_contact(_ws(request), scenario_id, body.user, actor=caller.principal.id))


def state_dict(row) -> dict[str, Any]:
    return {"scenario": row.scenario_id, "paused": row.paused, "reason": row.paused_reason,
            "changed_by": row.changed_by, "changed_at": _iso(row.changed_at), "escalate_to": row.escalate_to}  # fmt: skip


@router.post("/releases/{release_id}/recall", tags=["brake"])
def recall(release_id: RowId, body: Reason, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Recall a released output: marked recalled beside the outbox file, and audited."""
    r = brake.recall(_ws(request), release_id, actor=caller.principal.id, reason=body.reason)
    return {"id": r.id, "location": r.location, "recalled_at": _iso(r.recalled_at), "recalled_by": r.recalled_by}


@router.post("/escalate", tags=["brake"])
def escalate(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Send due reminders and escalate overdue items now (the server also does it on a timer)."""
    access.require_role(caller.principal, Role.ADMIN, doing="run the deadline sweep")
    report = deadlines.sweep(_ws(request))
    return {"reminded": report.reminded, "escalated": [{"item": i, "level": lv} for i, lv in report.escalated]}


# --- releases -----------------------------------------------------------------------------------
@router.get("/releases", tags=["releases"])
def releases(
    request: Request,
    response: Response,
    caller: CallerDep,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="Only releases before this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Releases per page.")] = 100,
) -> list[dict[str, Any]]:
    """The releases you may see, newest first, a page at a time: a full page carries a
    `Link: <...>; rel="next"` header to the next (its last id as `before`)."""
    rows = queue.released_for(_ws(request), caller.principal, before=before, limit=limit)
    return _paged(request, response, rows, limit, "before")


@router.get("/releases/{release_id}/content", tags=["releases"], response_class=PlainTextResponse)
def release_content(release_id: RowId, request: Request, caller: CallerDep) -> PlainTextResponse:
    """The released output exactly as released: the approved text with its AI-content label (and, in
    Markdown, the signed implicit label at its end); `X-Sha256` is the file's recorded hash."""
    return release_download(*queue.released_text(_ws(request), caller.principal, release_id))


def release_download(release, text: str) -> PlainTextResponse:
    """A released output as a file to save (the API's and the pages'), named as in the outbox."""
    name = release.location.rsplit("/", 1)[-1]
    return PlainTextResponse(
        text,
        media_type="text/plain; charset=utf-8",
        headers={"content-disposition": f"attachment; filename*=UTF-8''{_quote(name)}", "x-sha256": release.sha256},
    )


# --- audit --------------------------------------------------------------------------------------
@router.get("/audit/events", tags=["audit"])
def audit_events(
    request: Request,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="Only events before this seq.")] = None,
) -> list[dict[str, Any]]:
    """The newest `limit` events (before `before`, for the page after), oldest of them first."""
    access.require_role(caller.principal, Role.AUDITOR, Role.ADMIN, doing="read the audit trail")
    return queue.audit_log(_ws(request), limit, before=before)


@router.get("/audit/verify", tags=["audit"])
def audit_verify(request: Request, caller: CallerDep) -> dict[str, Any]:
    """Check the whole hash chain; a broken chain answers 500 with the first bad event."""
    access.require_role(caller.principal, Role.AUDITOR, Role.ADMIN, doing="verify the audit trail")
    with reading(_ws(request).engine) as s:
        v = audit.verify(s)
    return {"status": "intact", "events": v.events, "head": v.head, "anchor": v.anchor}


@router.get("/audit/items", tags=["audit"])
def audit_items(
    request: Request,
    caller: CallerDep,
    scenario: Annotated[str | None, Query(max_length=200)] = None,
    guardian: Annotated[str | None, Query(max_length=200)] = None,
    requester: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[str | None, Query(max_length=40)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Search work items by scenario, guardian, requester, status and date (auditors and admins)."""
    access.require_role(caller.principal, Role.AUDITOR, Role.ADMIN, doing="search all work items")
    return queue.search_items(
        _ws(request),
        scenario=scenario,
        guardian=guardian,
        requester=requester,
        status=status,
        since=since,
        until=until,
    )


# --- people -------------------------------------------------------------------------------------
class UserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(max_length=200)
    name: str = Field(max_length=200)
    roles: list[str] = Field(max_length=4)
    password: str | None = Field(default=None, max_length=1000)
    locale: str = Field(default="zh", max_length=5)


class RolesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: list[str] = Field(max_length=4)


@router.get("/users", tags=["people"])
def list_users(request: Request, caller: CallerDep) -> list[dict[str, Any]]:
    access.require_role(caller.principal, Role.ADMIN, Role.AUDITOR, doing="list users")
    return [user_dict(u) for u in users.list_users(_ws(request))]


@router.post("/users", tags=["people"], status_code=201)
def add_user(body: UserRequest, request: Request, caller: CallerDep) -> dict[str, Any]:
    u = users.add_user(
        _ws(request), body.id, body.name, body.roles, actor=caller.principal.id, password=body.password,
        locale=body.locale,
    )  # fmt: skip
    return user_dict(u)


@router.put("/users/{user_id}/roles", tags=["people"])
def set_roles(user_id: str, body: RolesRequest, request: Request, caller: CallerDep) -> dict[str, Any]:
    return user_dict(users.set_roles(_ws(request), user_id, body.roles, actor=caller.principal.id))


@router.post("/users/{user_id}/disable", tags=["people"])
def disable(user_id: str, request: Request, caller: CallerDep) -> dict[str, Any]:
    return user_dict(users.disable_user(_ws(request), user_id, actor=caller.principal.id))


def user_dict(u) -> dict[str, Any]:
    return {"id": u.id, "name": u.name, "roles": u.roles, "active": u.active, "locale": u.locale}


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(default=None, max_length=200, description="whose token (admins only; default: yours)")
    name: str = Field(default="", max_length=200)
    expires_days: int | None = Field(default=90, ge=1, le=3650)


@router.post("/tokens", tags=["people"], status_code=201)
def create_token(body: NewToken, request: Request, caller: CallerDep) -> dict[str, Any]:
    p = caller.principal
    expires = utcnow() + timedelta(days=body.expires_days) if body.expires_days else None
    token, secret = auth.create_token(_ws(request), body.user or p.id, actor=p.id, name=body.name, expires_at=expires)
    return {"token": secret, "id": token.id, "user": token.user_id, "expires_at": _iso(token.expires_at)}


@router.delete("/tokens/{token_id}", tags=["people"])
def revoke_token(token_id: RowId, request: Request, caller: CallerDep) -> dict[str, Any]:
    token = auth.revoke_token(_ws(request), token_id, actor=caller.principal.id)
    return {"id": token.id, "revoked_at": _iso(token.revoked_at)}


class DelegationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    guardian: str | None = Field(default=None, max_length=200, description="whose queue (default: yours)")
    delegate: str = Field(max_length=200)
    ends_at: datetime
    starts_at: datetime | None = None
    reason: str = Field(default="", max_length=2000)


@router.get("/delegations", tags=["people"])
def delegations(request: Request, caller: CallerDep) -> list[dict[str, Any]]:
    scope = access.delegations_scope(caller.principal)
    return [delegation_dict(d) for d in delegation.list_delegations(_ws(request), involving=scope)]


@router.post("/delegations", tags=["people"], status_code=201)
def delegate(body: DelegationRequest, request: Request, caller: CallerDep) -> dict[str, Any]:
    p = caller.principal
    d = delegation.delegate(
        _ws(request), body.guardian or p.id, body.delegate, ends_at=_aware(body.ends_at),
        starts_at=_aware(body.starts_at) if body.starts_at else None, reason=body.reason, actor=p.id,
    )  # fmt: skip
    return delegation_dict(d)


@router.delete("/delegations/{delegation_id}", tags=["people"])
def end_delegation(delegation_id: RowId, request: Request, caller: CallerDep) -> dict[str, Any]:
    return delegation_dict(delegation.end_delegation(_ws(request), delegation_id, actor=caller.principal.id))


def delegation_dict(d) -> dict[str, Any]:
    return {
        "id": d.id,
        "guardian": d.guardian,
        "delegate": d.delegate,
        "starts_at": _iso(d.starts_at),
        "ends_at": _iso(d.ends_at),
        "reason": d.reason,
        "created_by": d.created_by,
        "ended_at": _iso(d.revoked_at),
    }


# --- helpers ------------------------------------------------------------------------------------
def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
