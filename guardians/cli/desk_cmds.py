"""People and the server: `dew users`, `dew tokens`, `dew delegations`, `dew serve`, `dew login`.

User management from the CLI acts with the database's own authority: whoever can run dew on
the server's machine can also open its database, so the operating system account is what vouches
for the declared admin (`--as`), and the audit trail records the change under that name.
"""

from __future__ import annotations

import getpass
import re
import sys
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dew.agents.errors import DewError, InputInvalid

from . import remote
from .common import (
    AsOption,
    DewGroup,
    JsonOption,
    add_row,
    console,
    err_console,
    print_json,
    require_identity,
    workspace,
)

users_app = typer.Typer(cls=DewGroup, help="People who sign in, and their roles.", no_args_is_help=True)
tokens_app = typer.Typer(
    cls=DewGroup, help="API tokens: created per user, shown once, revocable.", no_args_is_help=True
)
delegations_app = typer.Typer(
    cls=DewGroup, help="A guardian's queue handed to a colleague for a period.", no_args_is_help=True
)

RoleOption = Annotated[
    list[str], typer.Option("--role", "-r", help="admin, guardian, requester or auditor (repeat or comma-separate).")
]


def read_password(from_stdin: bool, prompt: str = "Password") -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise InputInvalid("no terminal to ask for the password; pass it on standard input with --password-stdin")
    first = getpass.getpass(f"{prompt}: ")
    if getpass.getpass(f"{prompt} (again): ") != first:
        raise InputInvalid("the two passwords differ")
    return first


# --- users ----------------------------------------------------------------------------------------
@users_app.command("add")
def users_add(
    ctx: typer.Context,
    user_id: Annotated[
        str, typer.Argument(metavar="ID", help="Person id, e.g. li.wei (the roster's id for guardians).")
    ],
    name: Annotated[str, typer.Option("--name", help="Full name.")],
    roles: RoleOption,
    password: Annotated[bool, typer.Option("--password/--no-password", help="Ask for a web password.")] = True,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    locale: Annotated[str, typer.Option("--locale", help="Language of the web desk: zh or en.")] = "zh",
    actor: AsOption = None,
):
    """Add a user. The first user of a workspace must be an admin; after that, only admins add users."""
    from dew.guardians.users import add_user

    secret = read_password(password_stdin) if (password or password_stdin) else None
    u = add_user(
        workspace(ctx), user_id, name, roles, actor=require_identity(actor or user_id, "add users"),
        password=secret, locale=locale,
    )  # fmt: skip
    console.print(f"Added user {u.id} ({u.name}): {', '.join(u.roles)}.")


@users_app.command("list")
def users_list(ctx: typer.Context, as_json: JsonOption = False):
    """List users, their roles and whether they may sign in."""
    from dew.guardians.users import list_users

    people = list_users(workspace(ctx))
    if as_json:
        return print_json([{"id": u.id, "name": u.name, "roles": u.roles, "active": u.active, "locale": u.locale,
                            "password": bool(u.password_hash)} for u in people])  # fmt: skip
    table = Table("id", "name", "roles", "active", "web password", title="Users")
    for u in people:
        add_row(table, u.id, u.name, ", ".join(u.roles), "yes" if u.active else "no", "set" if u.password_hash else "-")
    console.print(table)


@users_app.command("roles")
def users_roles(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(metavar="ID")],
    roles: Annotated[list[str], typer.Argument(metavar="ROLE...", help="The user's roles from now on.")],
    actor: AsOption = None,
):
    """Set a user's roles (replacing the ones they had)."""
    from dew.guardians.users import set_roles

    u = set_roles(workspace(ctx), user_id, roles, actor=require_identity(actor, "change roles"))
    console.print(f"{u.id} now holds: {', '.join(u.roles) or 'no role'}.")


@users_app.command("disable")
def users_disable(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).")] = "",
    actor: AsOption = None,
):
    """Disable a user: sign-in, tokens and sessions stop working at once."""
    from dew.guardians.users import disable_user

    u = disable_user(workspace(ctx), user_id, actor=require_identity(actor, "disable users"), reason=reason)
    console.print(f"Disabled {u.id}.")


@users_app.command("enable")
def users_enable(ctx: typer.Context, user_id: Annotated[str, typer.Argument(metavar="ID")], actor: AsOption = None):
    """Enable a disabled user again."""
    from dew.guardians.users import enable_user

    u = enable_user(workspace(ctx), user_id, actor=require_identity(actor, "enable users"))
    console.print(f"Enabled {u.id}.")


@users_app.command("password")
def users_password(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(metavar="ID")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    actor: AsOption = None,
):
    """Set a user's web password (their own, or anyone's as an admin)."""
    from dew.guardians.users import set_password

    set_password(
        workspace(ctx),
        user_id,
        read_password(password_stdin),
        actor=require_identity(actor or user_id, "set passwords"),
    )
    console.print(f"Password set for {user_id}.")


# --- tokens ---------------------------------------------------------------------------------------
def parse_expiry(text: str) -> datetime | None:
    """'90d', '12h', a date (2027-01-31), or 'never'."""
    text = text.strip().lower()
    if text == "never":
        return None
    m = re.fullmatch(r"(\d{1,5})([dh])", text)
    if m:
        n = int(m.group(1))
        return datetime.now(UTC) + (timedelta(days=n) if m.group(2) == "d" else timedelta(hours=n))
    try:
        day = datetime.fromisoformat(text)
    except ValueError:
        raise InputInvalid(f"--expires takes 90d, 12h, a date (2027-01-31) or never, not '{text}'") from None
    return day if day.tzinfo else day.replace(tzinfo=UTC)


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(metavar="USER", help="Whose token.")],
    name: Annotated[str, typer.Option("--name", help="What it is for, e.g. 'case system'.")] = "",
    expires: Annotated[str, typer.Option("--expires", help="90d, 12h, a date, or never.")] = "90d",
    actor: AsOption = None,
    as_json: JsonOption = False,
):
    """Create an API token. It is shown once; only its hash is kept."""
    from dew.guardians.auth import create_token

    token, secret = create_token(
        workspace(ctx), user_id, actor=require_identity(actor or user_id, "create tokens"), name=name,
        expires_at=parse_expiry(expires),
    )  # fmt: skip
    if as_json:
        return print_json({"id": token.id, "user": token.user_id, "token": secret, "expires_at": token.expires_at})
    err_console.print(f"Token {token.id} for {token.user_id}" + (f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else ", does not expire")
                      + ". It is shown only now:")  # fmt: skip
    sys.stdout.write(secret + "\n")


@tokens_app.command("list")
def tokens_list(
    ctx: typer.Context,
    user_id: Annotated[str | None, typer.Argument(metavar="[USER]", help="Only this user's tokens.")] = None,
    as_json: JsonOption = False,
):
    """List tokens (never their secrets)."""
    from dew.guardians.auth import list_tokens

    rows = list_tokens(workspace(ctx), user_id)
    data = [{"id": t.id, "user": t.user_id, "name": t.name, "prefix": t.prefix, "created_at": t.created_at,
             "expires_at": t.expires_at, "revoked_at": t.revoked_at, "last_used_at": t.last_used_at} for t in rows]  # fmt: skip
    if as_json:
        return print_json(data)
    table = Table("id", "user", "name", "starts with", "expires", "state", title="API tokens")
    now = datetime.now(UTC)
    for t in rows:
        state = "revoked" if t.revoked_at else "expired" if t.expires_at and t.expires_at <= now else "active"
        add_row(
            table,
            str(t.id),
            t.user_id,
            t.name,
            t.prefix + "…",
            f"{t.expires_at:%Y-%m-%d}" if t.expires_at else "never",
            state,
        )
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, token_id: Annotated[int, typer.Argument(metavar="ID")], actor: AsOption = None):
    """Revoke a token at once."""
    from dew.guardians.auth import revoke_token

    t = revoke_token(workspace(ctx), token_id, actor=require_identity(actor, "revoke tokens"))
    console.print(f"Revoked token {t.id} of {t.user_id}.")


# --- delegations ----------------------------------------------------------------------------------
@delegations_app.command("add")
def delegations_add(
    ctx: typer.Context,
    guardian: Annotated[str, typer.Argument(metavar="GUARDIAN", help="Whose queue.")],
    to: Annotated[str, typer.Option("--to", help="The colleague who decides meanwhile.")],
    until: Annotated[str, typer.Option("--until", help="Last day (YYYY-MM-DD), or 7d / 12h from now.")],
    reason: Annotated[str, typer.Option("--reason", help="e.g. annual leave.")] = "",
    actor: AsOption = None,
):
    """Delegate a guardian's queue to a colleague until a date (the guardian or an admin)."""
    from dew.guardians.delegation import delegate

    ends = parse_expiry(until)
    if ends is None:
        raise InputInvalid("a delegation must end: give --until a date or a period")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", until.strip()):
        ends += timedelta(days=1)  # through the whole last day
    d = delegate(
        workspace(ctx), guardian, to, ends_at=ends, reason=reason, actor=require_identity(actor or guardian, "delegate")
    )
    console.print(f"Delegation {d.id}: {d.delegate} decides for {d.guardian} until {d.ends_at:%Y-%m-%d %H:%M} UTC.")


@delegations_app.command("list")
def delegations_list(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Ended ones too.")] = False,
    as_json: JsonOption = False,
):
    """List delegations in force (or all)."""
    from dew.guardians.delegation import list_delegations

    rows = list_delegations(workspace(ctx), current_only=not all_)
    if as_json:
        return print_json([{"id": d.id, "guardian": d.guardian, "delegate": d.delegate, "starts_at": d.starts_at,
                            "ends_at": d.ends_at, "reason": d.reason, "ended_at": d.revoked_at} for d in rows])  # fmt: skip
    table = Table("id", "guardian", "delegate", "until", "reason", title="Delegations")
    for d in rows:
        add_row(table, str(d.id), d.guardian, d.delegate, f"{d.ends_at:%Y-%m-%d %H:%M}", d.reason)
    console.print(table)


@delegations_app.command("end")
def delegations_end(
    ctx: typer.Context, delegation_id: Annotated[int, typer.Argument(metavar="ID")], actor: AsOption = None
):
    """End a delegation now."""
    from dew.guardians.delegation import end_delegation

    d = end_delegation(workspace(ctx), delegation_id, actor=require_identity(actor, "end delegations"))
    console.print(f"Delegation {d.id} ({d.guardian} → {d.delegate}) has ended.")


# --- the server -----------------------------------------------------------------------------------
def _every(text: str) -> float | None:
    from dew.agents.spec import DURATION_PATTERN, duration

    if text.strip().lower() == "off":
        return None
    if not re.match(DURATION_PATTERN, text.strip()):
        raise InputInvalid(f"--checkpoint-every takes a period such as 30m, 1h or 1d, or off; not '{text}'")
    return duration(text.strip()).total_seconds()


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        ctx: typer.Context,
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
        workers: Annotated[
            int, typer.Option("--workers", min=1, max=64, envvar="DEW_WORKERS", help="Runs executed at once.")
        ] = 2,
        proxy_user_header: Annotated[
            str | None,
            typer.Option(
                "--proxy-user-header",
                envvar="DEW_PROXY_USER_HEADER",
                help="Trust this header as the signed-in user (only behind an authenticating proxy).",
            ),
        ] = None,
        secure_cookies: Annotated[bool, typer.Option("--secure-cookies", help="Send cookies over HTTPS only.")] = False,
        log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
        checkpoint_every: Annotated[
            str,
            typer.Option(
                "--checkpoint-every",
                help="Sign a checkpoint of the audit trail's head this often when it moved (e.g. 1h, 30m), or off.",
            ),
        ] = "1h",
        checkpoint_dir: Annotated[
            Path | None,
            typer.Option(
                "--checkpoint-dir",
                help="Where the checkpoints go; keep it apart from the database. Default: <workspace>/checkpoints.",
            ),
        ] = None,
    ):
        """Serve the web desk and the API, and execute runs in the background."""
        import uvicorn

        from dew.guardians.desk.app import DeskConfig, create_app, setup_logging

        settings = ctx.find_root().obj.settings
        setup_logging(log_level)
        if proxy_user_header:
            err_console.print(f"Trusting the '{proxy_user_header}' header as the signed-in user: "
                              "this server must be reachable only through your authenticating proxy.")  # fmt: skip
        from dew.guardians.serverlock import serving

        config = DeskConfig(
            workers=workers, proxy_user_header=proxy_user_header, secure_cookies=secure_cookies, exclusive=False,
            checkpoint_seconds=_every(checkpoint_every), checkpoint_dir=checkpoint_dir,
        )  # fmt: skip
        from dew.guardians.engine import distributed

        # Refused here, in one clear line, if another server holds the workspace. With the
        # distributed engine, servers only record and defer: any number may share the database.
        with nullcontext() if distributed(settings) else serving(settings):
            err_console.print(
                f"dew desk on http://{host}:{port}/ (API docs: /api/docs), workspace {settings.home}", soft_wrap=True
            )
            uvicorn.run(create_app(settings, config), host=host, port=port, log_level=log_level, access_log=False, log_config=None,
                        timeout_graceful_shutdown=int(config.shutdown_timeout))  # fmt: skip

    @app.command()
    def worker(
        ctx: typer.Context,
        concurrency: Annotated[
            int,
            typer.Option(
                "--concurrency", min=1, max=256, envvar="DEW_WORKER_CONCURRENCY", help="Jobs executed at once."
            ),
        ] = 4,
        retries: Annotated[
            int,
            typer.Option(
                "--retries", min=0, max=20, help="Attempts after the first for a job that fails or whose worker dies."
            ),
        ] = 4,
        stalled_after: Annotated[
            float,
            typer.Option(
                "--stalled-after",
                min=2.0,
                help="Seconds without a heartbeat after which a worker is taken "
                "for dead and its jobs are retried by the others.",
            ),
        ] = 30.0,
        name: Annotated[str | None, typer.Option("--name", help="This worker's name in logs.")] = None,
        log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
    ):
        """Execute runs from the distributed engine's queue (DEW_ENGINE=procrastinate, PostgreSQL), until stopped."""
        from dew.agents.llm import EnvModelProvider
        from dew.guardians.desk.app import setup_logging
        from dew.guardians.engine import WorkerConfig, check_worker, work

        settings = ctx.find_root().obj.settings
        check_worker(settings)  # refused before the banner says it is starting
        setup_logging(log_level)
        err_console.print(f"dew worker on {settings.database_label}: {concurrency} at once; Ctrl-C stops it after "
                          "the jobs in hand", soft_wrap=True)  # fmt: skip
        config = WorkerConfig(concurrency=concurrency, retries=retries, name=name, stalled_after=stalled_after,
                              heartbeat=max(0.5, stalled_after / 6))  # fmt: skip
        work(settings, EnvModelProvider(), config)

    @app.command()
    def login(
        server: Annotated[str, typer.Option("--server", help="The dew server, e.g. http://127.0.0.1:8000")],
        user: Annotated[str | None, typer.Option("--user", help="Your user id (asked if not given).")] = None,
        password_stdin: Annotated[
            bool, typer.Option("--password-stdin", help="Read the password from standard input.")
        ] = False,
    ):
        """Sign in to a dew server; the CLI then decides through it as you (token kept in your config)."""
        import httpx

        server = remote.normal_server(server)
        if user is None:
            user = input("User: ").strip()
        secret = sys.stdin.readline().rstrip("\n") if password_stdin else getpass.getpass("Password: ")
        try:
            response = httpx.post(
                f"{server}/api/v1/auth/token", json={"user": user, "password": secret, "name": "dew login"}, timeout=30
            )
        except httpx.HTTPError as e:
            raise InputInvalid(f"cannot reach {server}: {e}") from None
        body = remote.answer(response, server)
        remote.save(remote.Login(server=server, user=body["user"], token=body["token"], token_id=body.get("id")))
        console.print(f"Signed in to {server} as {body['user']}; decisions from this CLI now go through that server.")

    @app.command()
    def logout(
        server: Annotated[str | None, typer.Option("--server", help="Which server (default: the current one).")] = None,
    ):
        """Revoke the token kept for a server, and forget it."""
        login = remote.login_for(server or None)
        revoked = ""
        if login is not None and login.token_id is not None:
            try:  # best effort: a server that is gone cannot be told, and the token still expires
                remote.Client(login, timeout=10).call("DELETE", f"/tokens/{login.token_id}")
                revoked = " (its token is revoked)"
            except DewError as e:
                err_console.print(f"Warning: could not revoke the token on {login.server}: {e.message}")
        gone = remote.forget(server)
        console.print(f"Signed out of {gone}{revoked}." if gone else "Not signed in.")
