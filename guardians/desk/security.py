"""Who is asking: an API token, a trusted proxy's header, or a browser session (with CSRF)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from dew.guardians import auth
from dew.guardians.auth import Principal
from dew.guardians.errors import CsrfRefused, IdentityRequired, NotAuthenticated

SESSION_COOKIE = "dew_session"
# A row id in a path: the databases' 64-bit range, so a huge number is a 422, not an overflow.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Caller:
    principal: Principal
    csrf_token: str | None = None  # set for browser sessions: their forms must carry it
    cookie: str | None = None
    browser: bool = False  # a session cookie or a proxy's header: a browser sends them by itself


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def identify(request: Request) -> Caller | None:
    """The caller, or None when the request carries no credentials at all."""
    ws = request.app.state.ws
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise NotAuthenticated("the Authorization header must be 'Bearer <token>'")
        return Caller(auth.token_principal(ws, value.strip()))
    proxy = request.app.state.config.proxy_user_header
    if proxy and request.headers.get(proxy):
        return Caller(auth.proxy_principal(ws, request.headers[proxy]), browser=True)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        principal, csrf = auth.session_principal(ws, cookie)
        return Caller(principal, csrf_token=csrf, cookie=cookie, browser=True)
    return None


def require_caller(request: Request) -> Caller:
    caller = identify(request)
    if caller is None:
        raise IdentityRequired(
            "sign in first: send 'Authorization: Bearer <token>' (dew tokens create) or use the web desk"
        )
    if request.method not in SAFE_METHODS:
        check_csrf(caller, request, request.headers.get(CSRF_HEADER))
    return caller


# What every /api/v1 route takes: the person calling, identified (and CSRF-checked) or refused.
CallerDep = Annotated[Caller, Depends(require_caller)]


def check_csrf(caller: Caller, request: Request, given: str | None) -> None:
    """A state-changing request that a browser could have sent on its own (it carries the session
    cookie, or passes a single-sign-on proxy that adds the user header) must come from dew's own
    pages: from this origin, and, for a session, echoing its CSRF token. A bearer token is never
    sent by a browser by itself, so an API client needs neither."""
    if not caller.browser:
        return
    # Behind a proxy there is no session token to echo, so the browser must vouch for the origin.
    if not same_origin(request, strict=caller.csrf_token is None):
        raise CsrfRefused("this request came from another site; dew's forms only accept requests from its own pages")
    if caller.csrf_token is not None and not (given and _equal(given, caller.csrf_token)):
        raise CsrfRefused("this form has expired or did not come from dew (missing CSRF token); reload the page")


def same_origin(request: Request, *, strict: bool) -> bool:
    """What the browser says about where a request comes from (Fetch metadata, then Origin). A
    request that says nothing passes only when not `strict` (then the CSRF token decides)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None and not strict
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
