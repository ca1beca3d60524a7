"""Decisions: `dew approve`, `dew reject`, `dew edit`, `dew revise`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dew.guardians.errors import DecisionInvalid, IdentityInvalid

from . import remote
from .common import AsOption, JsonOption, console, print_json, progress_line, require_identity, workspace
from .run_cmds import report


def decide(ctx, item: int, as_json: bool, **kwargs) -> None:
    """Decide locally (a workspace without users: declared identity), or through the server the
    user signed in to with `dew login`, as that authenticated person."""
    login = remote.current()
    if login is not None:
        return decide_remotely(login, item, as_json, **kwargs)
    from dew.guardians.flow import decide as record  # imported here: `dew --help` stays fast

    doing = {"revise": "ask for a revision"}.get(kwargs["action"], kwargs["action"])
    actor = require_identity(kwargs.pop("actor"), doing)
    ws = workspace(ctx)
    with progress_line(ws, f"work item {item}: {kwargs['action']}"):
        report(record(ws, item, actor=actor, **kwargs), as_json)


def decide_remotely(login: remote.Login, item: int, as_json: bool, *, actor, action, note=None, edited=None) -> None:
    if actor and actor != login.user:
        raise IdentityInvalid(
            f"you are signed in to {login.server} as {login.user}; --as {actor} cannot speak for someone else "
            "(dew logout, then dew login as them)"
        )
    client = remote.Client(login)
    body = {"action": action, "note": note, "edited": edited}
    decision = client.call("POST", f"/items/{item}/decision", json=body)
    run = client.wait_for_run(decision["run_id"])
    if as_json:
        return print_json({"decision": decision, "run": run})
    console.print(
        f"{login.user} ({decision['rule']}, signed in by {decision['auth_method']}) decided '{action}' on "
        f"work item {item} through {login.server}. Run {run['id']} is {run['status']}."
    )


ItemArg = Annotated[int, typer.Argument(metavar="ITEM", help="Work item id.")]


def register(app: typer.Typer) -> None:
    @app.command()
    def approve(
        ctx: typer.Context,
        item: ItemArg,
        actor: AsOption = None,
        comment: Annotated[str | None, typer.Option("--comment", help="Note kept with the decision.")] = None,
        as_json: JsonOption = False,
    ):
        """Approve a draft as it stands; it is released."""
        decide(ctx, item, as_json, actor=actor, action="approve", note=comment)

    @app.command()
    def reject(
        ctx: typer.Context,
        item: ItemArg,
        reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
        actor: AsOption = None,
        as_json: JsonOption = False,
    ):
        """Reject a draft; nothing is released."""
        decide(ctx, item, as_json, actor=actor, action="reject", note=reason)

    @app.command()
    def edit(
        ctx: typer.Context,
        item: ItemArg,
        file: Annotated[Path, typer.Option("--file", help="The edited output.")],
        actor: AsOption = None,
        comment: Annotated[str | None, typer.Option("--comment", help="Note kept with the decision.")] = None,
        as_json: JsonOption = False,
    ):
        """Approve your edited version of a draft; the edit is kept as a diff."""
        try:
            edited = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DecisionInvalid(f"cannot read {file}: {e}") from None
        decide(ctx, item, as_json, actor=actor, action="edit", note=comment, edited=edited)

    @app.command()
    def revise(
        ctx: typer.Context,
        item: ItemArg,
        feedback: Annotated[str, typer.Option("--feedback", help="What the agent must change (required).")],
        actor: AsOption = None,
        as_json: JsonOption = False,
    ):
        """Send a draft back with feedback; the agent drafts again and a new work item appears."""
        decide(ctx, item, as_json, actor=actor, action="revise", note=feedback)
