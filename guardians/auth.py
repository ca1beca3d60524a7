"""Proving who someone is: password sign-in, API tokens, browser sessions, a trusted proxy.

Each way in ends in a `Principal`: a user id, the roles they hold now, and how they proved it
(recorded with every decision). Secrets are never stored: passwords as argon2id hashes
(`users.py`), tokens and session cookies as SHA-256 of 256 random bits, which is as good as a
KDF for values nobody can guess.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlmodel import Session, col, delete, func, select

from dew.agents.errors import InputInvalid
from dew.guardians.errors import NotAuthenticated, NotFound, TooManyAttempts

from . import audit
from .db import transaction
from .identity import person_id
from .models import ApiToken, AuthMethod, LoginAttempt, User, WebSession, utcnow
from .users import check_password, require_self_or_admin

if TYPE_CHECKING:
    from .workspace import Workspace

TOKEN_PREFIX = "dew_"
SESSION_HOURS = 12  # a working day; a session also ends at sign-out or when the user is disabled
FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_CLIENT = 20


@dataclass(frozen=True)
class Principal:
    """Someone acting now: who, with which roles, proved how."""

    id: str
    name: str
    roles: frozenset[str]
    method: str  # an AuthMethod

    def has(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)

    @classmethod
    def declared(cls, actor: str) -> Principal:
        """A name typed at a terminal of a workspace without users: it proves nothing, so it
        holds no roles; the roster rules alone decide what it may do."""
        actor = person_id(actor)
        return cls(id=actor, name=actor, roles=frozenset(), method=AuthMethod.DECLARED)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _principal(user: User, method: str) -> Principal:
    return Principal(id=user.id, name=user.name, roles=frozenset(user.roles), method=method)


def _active_user(s: Session, user_id: str) -> User:
    user = s.get(User, user_id)
    if user is None or not user.active:
        raise NotAuthenticated("this account is disabled or no longer exists")
    return user


# --- passwords ------------------------------------------------------------------------------------
def sign_in(ws: Workspace, user_id: str, password: str, *, client: str = "unknown") -> Principal:
    """Check a password, slowing guessers down: after 5 failures for an account (or 20 from one
    client address) in 15 minutes, further attempts are refused until the window passes."""
    try:
        user_id = person_id(user_id, what="the user name")
    except Exception:
        raise NotAuthenticated("wrong user name or password") from None
    keys = [f"user:{user_id}", f"ip:{client}"]
    now = utcnow()
    with transaction(ws.engine) as s:
        _check_throttle(s, keys, now)
        user = s.get(User, user_id)
    # argon2 takes tens of milliseconds on purpose: outside any transaction, so that a sign-in never
    # holds SQLite's write lock (or a PostgreSQL connection) while it hashes.
    ok = check_password(user, password) and user is not None and user.active
    with transaction(ws.engine) as s:
        if not ok:
            for key in keys:
                s.add(LoginAttempt(subject=key, at=now))
        else:
            s.exec(delete(LoginAttempt).where(col(LoginAttempt.subject) == keys[0]))
    if not ok or user is None:
        raise NotAuthenticated("wrong user name or password")
    return _principal(user, AuthMethod.PASSWORD)


def _check_throttle(s: Session, keys: list[str], now: datetime) -> None:
    since = now - FAILURE_WINDOW
    for key, limit in zip(keys, (MAX_FAILURES_PER_USER, MAX_FAILURES_PER_CLIENT), strict=True):
        count, first = s.exec(
            select(func.count(), func.min(LoginAttempt.at)).where(
                LoginAttempt.subject == key, col(LoginAttempt.at) > since
            )
        ).one()
        if count >= limit:
            wait = int(((first + FAILURE_WINDOW) - now).total_seconds()) + 1 if first else 60
            raise TooManyAttempts(
                f"too many failed sign-ins; try again in {max(wait, 1) // 60 + 1} minutes", retry_after=max(wait, 1)
            )


# --- API tokens -----------------------------------------------------------------------------------
def create_token(
    ws: Workspace, user_id: str, *, actor: str, name: str = "", expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """A new token for a user (by the user themselves or an admin). The secret is returned once."""
    user_id = person_id(user_id, what="the user id")
    actor = person_id(actor, what="who creates the token")
    if expires_at is not None and expires_at <= utcnow():
        raise InputInvalid("a token's expiry must be in the future")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction(ws.engine) as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user '{user_id}'")
        if not user.active:
            raise InputInvalid(f"'{user_id}' is disabled")
        require_self_or_admin(s, actor, user_id, "create a token for")
        token = ApiToken(
            user_id=user_id,
            name=name.strip(),
            prefix=secret[:12],
            token_sha256=_digest(secret),
            expires_at=expires_at,
            created_by=actor if actor != user_id else None,
        )
        s.add(token)
        s.flush()
        audit.emit(
            s,
            audit.TokenCreated(
                user=user_id,
                token_id=token.key,
                prefix=token.prefix,
                name=token.name,
                expires_at=expires_at.isoformat() if expires_at else None,
            ),
            actor=actor,
        )
    return token, secret


def token_principal(ws: Workspace, secret: str) -> Principal:
    """The person an API token speaks for; wrong, expired and revoked tokens are refused alike
    in what they say, so a caller learns nothing about tokens it does not hold."""
    if not secret.startswith(TOKEN_PREFIX):
        raise NotAuthenticated("not a dew API token")
    now = utcnow()
    with transaction(ws.engine) as s:
        token = s.exec(select(ApiToken).where(ApiToken.token_sha256 == _digest(secret))).first()
        if token is None or token.revoked_at is not None:
            raise NotAuthenticated("this token is not valid (unknown or revoked)")
        if token.expires_at is not None and token.expires_at <= now:
            raise NotAuthenticated("this token has expired; create a new one with: dew tokens create")
        user = _active_user(s, token.user_id)
        if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
            token.last_used_at = now  # at most once a minute: a busy client should not write every call
            s.add(token)
    # A token someone else created for this user (an admin, for an integration) speaks for the
    # user's system, not the person: it may start runs and read, never decide (decisions.authorize).
    return _principal(user, AuthMethod.TOKEN if token.created_by is None else AuthMethod.ISSUED_TOKEN)


def revoke_token(ws: Workspace, token_id: int, *, actor: str) -> ApiToken:
    actor = person_id(actor, what="who revokes the token")
    with transaction(ws.engine) as s:
        token = s.get(ApiToken, token_id, with_for_update=True)
        if token is None:
            raise NotFound(f"no token {token_id}")
        require_self_or_admin(s, actor, token.user_id, "revoke a token of")
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            s.add(token)
            audit.emit(s, audit.TokenRevoked(user=token.user_id, token_id=token_id), actor=actor)
    return token


def list_tokens(ws: Workspace, user_id: str | None = None) -> list[ApiToken]:
    with transaction(ws.engine) as s:
        query = select(ApiToken).order_by(col(ApiToken.id))
        if user_id:
            query = query.where(ApiToken.user_id == person_id(user_id))
        return list(s.exec(query).all())


# --- browser sessions -----------------------------------------------------------------------------
@dataclass(frozen=True)
class OpenSession:
    cookie: str  # goes to the browser, HttpOnly
    csrf_token: str  # goes into every form of the session's pages
    principal: Principal


def open_session(ws: Workspace, principal: Principal, *, client: str = "unknown") -> OpenSession:
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with transaction(ws.engine) as s:
        s.add(
            WebSession(
                id=_digest(cookie),
                user_id=principal.id,
                csrf_token=csrf,
                method=principal.method,
                expires_at=utcnow() + timedelta(hours=SESSION_HOURS),
            )
        )
        audit.emit(s, audit.SignedIn(method=principal.method, client=client), actor=principal.id)
    return OpenSession(cookie=cookie, csrf_token=csrf, principal=principal)


def session_principal(ws: Workspace, cookie: str) -> tuple[Principal, str]:
    """The person a session cookie belongs to, and the session's CSRF token."""
    with transaction(ws.engine) as s:
        row = s.get(WebSession, _digest(cookie))
        if row is None or row.ended_at is not None or row.expires_at <= utcnow():
            raise NotAuthenticated("your session has ended; sign in again")
        user = _active_user(s, row.user_id)
    return _principal(user, row.method), row.csrf_token


def end_session(ws: Workspace, cookie: str) -> None:
    with transaction(ws.engine) as s:
        row = s.get(WebSession, _digest(cookie))
        if row is not None and row.ended_at is None:
            row.ended_at = utcnow()
            s.add(row)


# --- a trusted reverse proxy ------------------------------------------------------------------------
def proxy_principal(ws: Workspace, user_header: str) -> Principal:
    """The user a trusted single sign-on proxy says is there. Only used when the server is told
    to trust a header (it must then be unreachable except through that proxy)."""
    try:
        user_id = person_id(user_header.strip(), what="the proxy's user header")
    except Exception:
        raise NotAuthenticated("the proxy's user header does not name a user") from None
    with transaction(ws.engine) as s:
        user = s.get(User, user_id)
        if user is None or not user.active:
            raise NotAuthenticated(f"the proxy signed in '{user_id}', who is not an active user of this workspace")
    return _principal(user, AuthMethod.PROXY)
