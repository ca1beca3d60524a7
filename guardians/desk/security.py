"""Who is asking: an API token, a trusted proxy's header, or a browser session (with CSRF)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Path, Request

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
        return Caller(auth.proxy_principal(ws, request.headers[proxy]))
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        principal, csrf = auth.session_principal(ws, cookie)
        return Caller(principal, csrf_token=csrf, cookie=cookie)
    return None


def require_caller(request: Request) -> Caller:
    caller = identify(request)
    if caller is None:
        raise IdentityRequired(
            "sign in first: send 'Authorization: Bearer <token>' (dew tokens create) or use the web desk"
        )
    if caller.csrf_token is not None and request.method not in SAFE_METHODS:
        check_csrf(caller, request.headers.get(CSRF_HEADER))
    return caller


def check_csrf(caller: Caller, given: str | None) -> None:
    """A browser session's state-changing request must echo the session's CSRF token."""
    if caller.csrf_token is None:
        return
    if not given or not hmac.compare_digest(given, caller.csrf_token):
        raise CsrfRefused("this form has expired or did not come from dew (missing CSRF token); reload the page")
