"""People who sign in: users, their roles and passwords.

A user's id is the same person id the roster, runs and decisions use (`identity.person_id`), so
"li.wei approved item 7" means the li.wei who signed in. Giving someone the guardian role puts
them on the roster too. Once a workspace has users, nobody acts on it by merely declaring a name
(see `require_signed_in`); until then, a single-user workspace and the demo work as before.

Who may manage people: an admin, or, for the very first user of a workspace, whoever can open
its database (that first user must be an admin, so the workspace is never left without one).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from dew.agents.errors import InputInvalid
from dew.guardians.errors import IdentityRequired, NotAuthorized, NotFound

from . import audit
from .db import lock_row, transaction
from .identity import person_id
from .models import AuditHead, AuthMethod, Guardian, Role, User

if TYPE_CHECKING:
    from argon2 import PasswordHasher

    from .workspace import Workspace

MIN_PASSWORD = 10


@functools.cache
def _hasher() -> PasswordHasher:
    """argon2id with the library's defaults (RFC 9106's second recommendation: 64 MiB, 3 passes),
    imported on first use: most commands check no password."""
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InputInvalid(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher().hash(password)


def password_matches(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    try:
        return _hasher().verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# Verifying against this when the account does not exist keeps the time a wrong name takes the
# same as a wrong password's, so timing does not tell which accounts exist.
@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown names against (made on first use: 0.1 s that most commands never need)."""
    return _hasher().hash("dew-no-such-account")


def check_password(user: User | None, password: str) -> bool:
    if user is None or not user.password_hash:
        password_matches(_dummy_hash(), password)
        return False
    return password_matches(user.password_hash, password)


def parse_roles(raw: Iterable[str]) -> list[str]:
    roles: list[str] = []
    for r in raw:
        for part in str(r).split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part not in tuple(Role):
                raise InputInvalid(f"unknown role '{part}' (one of: {', '.join(Role)})")
            if part not in roles:
                roles.append(part)
    return roles


def has_users(session: Session) -> bool:
    return session.exec(select(User.id).limit(1)).first() is not None


def workspace_has_users(ws: Workspace) -> bool:
    with transaction(ws.engine) as s:
        return has_users(s)


def require_signed_in(session: Session, actor: str, method: str, doing: str) -> User | None:
    """The rule that binds actions to people: in a workspace with users, an action needs a signed-in
    user (password session, token or trusted proxy), never a declared name. Returns the user, or
    None in a workspace without users (declared identity is all there is)."""
    if not has_users(session):
        return None
    if method == AuthMethod.DECLARED:
        raise IdentityRequired(
            f"this workspace has users, so a declared name (--as {actor}) cannot {doing}: sign in first with "
            "'dew login --server URL' (the CLI then acts through the server as you), or use the web desk"
        )
    user = session.get(User, actor)
    if user is None or not user.active:
        raise NotAuthorized(f"'{actor}' is not an active user of this workspace")
    return user


def is_admin(session: Session, actor: str) -> bool:
    """Whether `actor` is an active user holding the admin role (the one test every rule uses)."""
    user = session.get(User, actor)
    return user is not None and user.active and Role.ADMIN in user.roles


def require_admin(session: Session, actor: str, doing: str) -> None:
    """Only an admin may, once there are users (before, identities are declared and nobody could
    prove otherwise)."""
    if has_users(session) and not is_admin(session, actor):
        raise NotAuthorized(f"only an admin may {doing}; '{actor}' is not an active admin")


def require_self_or_admin(session: Session, actor: str, user_id: str, doing: str) -> None:
    """A person's own things (tokens, channels) are theirs or an admin's to manage."""
    if actor == user_id or not has_users(session) or is_admin(session, actor):
        return
    raise NotAuthorized(f"only {user_id} or an admin may {doing} {user_id}")


def add_user(
    ws: Workspace,
    user_id: str,
    name: str,
    roles: Iterable[str],
    *,
    actor: str,
    password: str | None = None,
    locale: str = "zh",
) -> User:
    actor = person_id(actor, what="who adds a user")
    user_id = person_id(user_id, what="the new user's id")
    roles = parse_roles(roles)
    name = " ".join(name.split())
    if not name:
        raise InputInvalid("a user needs a name (--name)")
    if locale not in ("zh", "en"):
        raise InputInvalid(f"unknown language '{locale}' (zh or en)")
    hashed = hash_password(password) if password else None
    with transaction(ws.engine) as s:
        lock_row(s, AuditHead, 1)  # two admins adding the first user at once: one wins
        if not has_users(s):
            if Role.ADMIN not in roles:
                raise InputInvalid(
                    "the first user of a workspace must be an admin (--role admin), "
                    "so that someone can manage the others"
                )
        else:
            require_admin(s, actor, "add users")
        if s.get(User, user_id) is not None:
            raise InputInvalid(f"'{user_id}' is already a user")
        user = User(id=user_id, name=name, roles=roles, password_hash=hashed, locale=locale)
        s.add(user)
        audit.emit(s, audit.UserAdded(user=user_id, name=name, roles=roles), actor=actor)
        if Role.GUARDIAN in roles:
            _ensure_on_roster(s, user, actor)
    return user


def _ensure_on_roster(s: Session, user: User, actor: str) -> None:
    row = s.get(Guardian, user.id)
    if row is None:
        s.add(Guardian(id=user.id, name=user.name))
        audit.emit(s, audit.GuardianAdded(guardian=user.id, name=user.name, title="", source="user"), actor=actor)
    elif not row.active:
        row.active = True
        s.add(row)


def set_roles(ws: Workspace, user_id: str, roles: Iterable[str], *, actor: str) -> User:
    actor = person_id(actor, what="who changes roles")
    roles = parse_roles(roles)
    with transaction(ws.engine) as s:
        require_admin(s, actor, "change roles")
        user = _must_user(s, user_id, lock=True)
        if Role.ADMIN in user.roles and Role.ADMIN not in roles:
            _keep_an_admin(s, user.id)
        before = list(user.roles)
        user.roles = roles
        s.add(user)
        audit.emit(s, audit.UserRolesChanged(user=user.id, before=before, after=roles), actor=actor)
        if Role.GUARDIAN in roles:
            _ensure_on_roster(s, user, actor)
    return user


def disable_user(ws: Workspace, user_id: str, *, actor: str, reason: str = "") -> User:
    """A disabled user cannot sign in; their tokens and sessions stop working at once."""
    actor = person_id(actor, what="who disables a user")
    with transaction(ws.engine) as s:
        require_admin(s, actor, "disable users")
        user = _must_user(s, user_id, lock=True)
        if not user.active:
            raise InputInvalid(f"'{user.id}' is already disabled")
        if Role.ADMIN in user.roles:
            _keep_an_admin(s, user.id)
        user.active = False
        s.add(user)
        audit.emit(s, audit.UserDisabled(user=user.id, reason=reason), actor=actor)
    return user


def enable_user(ws: Workspace, user_id: str, *, actor: str) -> User:
    actor = person_id(actor, what="who enables a user")
    with transaction(ws.engine) as s:
        require_admin(s, actor, "enable users")
        user = _must_user(s, user_id, lock=True)
        user.active = True
        s.add(user)
        audit.emit(s, audit.UserEnabled(user=user.id), actor=actor)
    return user


def set_password(ws: Workspace, user_id: str, password: str, *, actor: str) -> None:
    """An admin sets anyone's password; a user sets their own."""
    actor = person_id(actor, what="who sets a password")
    hashed = hash_password(password)
    with transaction(ws.engine) as s:
        user = _must_user(s, user_id, lock=True)
        if actor != user.id:
            require_admin(s, actor, "set another person's password")
        user.password_hash = hashed
        s.add(user)
        audit.emit(s, audit.PasswordSet(user=user.id), actor=actor)


def _keep_an_admin(s: Session, leaving: str) -> None:
    others = [
        u for u in s.exec(select(User).where(col(User.active))).all() if Role.ADMIN in u.roles and u.id != leaving
    ]
    if not others:
        raise InputInvalid(f"'{leaving}' is the last active admin; make someone else an admin first")


def _must_user(s: Session, user_id: str, *, lock: bool = False) -> User:
    user_id = person_id(user_id, what="the user id")
    user = s.get(User, user_id, with_for_update=lock)
    if user is None:
        raise NotFound(f"no user '{user_id}'")
    return user


def get_user(ws: Workspace, user_id: str) -> User:
    with transaction(ws.engine) as s:
        return _must_user(s, user_id)


def list_users(ws: Workspace) -> list[User]:
    with transaction(ws.engine) as s:
        return list(s.exec(select(User).order_by(col(User.id))).all())
