"""Decisions: `dew approve`, `dew reject`, `dew edit`, `dew revise`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dew.agents.errors import DewError
from dew.guardians.errors import DecisionInvalid, IdentityInvalid

from . import remote
from .common import AsOption, JsonOption, console, print_json, progress_line, require_identity, workspace
from .keys_cmds import say_signed, signature_for
from .run_cmds import report


def decide(ctx, item: int, as_json: bool, sign: bool, **kwargs) -> None:
    """Decide locally (a workspace without users: declared identity), or through the server the
    user signed in to with `dew login`, as that authenticated person. The decision is signed with
    the decider's key file when they ask (--sign) or the scenario requires it."""
    login = remote.current()
    if login is not None:
        return decide_remotely(ctx, login, item, as_json, sign, **kwargs)
    from dew.guardians.flow import decide as record  # imported here: `dew --help` stays fast
    from dew.guardians.queue import item_view

    doing = {"revise": "ask for a revision"}.get(kwargs["action"], kwargs["action"])
    actor = require_identity(kwargs.pop("actor"), doing)
    ws = workspace(ctx)
    view = item_view(ws, item)["item"]
    signed = signature_for(ctx, view, actor=actor, force=sign, **kwargs)
    with progress_line(ws, f"work item {item}: {kwargs['action']}"):
        report(record(ws, item, actor=actor, signed=signed, **kwargs), as_json)
    say_signed(signed, item)


def decide_remotely(ctx, login: remote.Login, item: int, as_json: bool, sign: bool, *, actor, action, note=None,
                    edited=None) -> None:  # fmt: skip
    if actor and actor != login.user:
        raise IdentityInvalid(
            f"you are signed in to {login.server} as {login.user}; --as {actor} cannot speak for someone else "
            "(dew logout, then dew login as them)"
        )
    client = remote.Client(login)
    try:
        view = client.call("GET", f"/items/{item}")["item"]
    except DewError:
        if sign:
            raise
        view = None  # the item is not for this person: the server's refusal of the decision says why
    signed = view and signature_for(ctx, view, actor=login.user, action=action, note=note, edited=edited, force=sign)
    body: dict = {"action": action, "note": note, "edited": edited}
    if signed is not None:
        body["signature"] = {"key_id": signed.key_id, "statement": signed.statement, "signature": signed.signature}
    decision = client.call("POST", f"/items/{item}/decision", json=body)
    say_signed(signed or None, item)
    run = client.wait_for_run(decision["run_id"])
    if as_json:
        return print_json({"decision": decision, "run": run})
    console.print(
        f"{login.user} ({decision['rule']}, signed in by {decision['auth_method']}) decided '{action}' on "
        f"work item {item} through {login.server}. Run {run['id']} is {run['status']}."
    )


ItemArg = Annotated[int, typer.Argument(metavar="ITEM", help="Work item id.")]
SignOption = Annotated[
    bool,
    typer.Option(
        "--sign",
        help="Sign the decision with your key (dew keys create). Scenarios that require signatures are always signed.",
    ),
]


def register(app: typer.Typer) -> None:
    @app.command()
    def approve(
        ctx: typer.Context,
        item: ItemArg,
        actor: AsOption = None,
        comment: Annotated[str | None, typer.Option("--comment", help="Note kept with the decision.")] = None,
        as_json: JsonOption = False,
        sign: SignOption = False,
    ):
        """Approve a draft as it stands; it is released."""
        decide(ctx, item, as_json, sign, actor=actor, action="approve", note=comment)

    @app.command()
    def reject(
        ctx: typer.Context,
        item: ItemArg,
        reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
        actor: AsOption = None,
        as_json: JsonOption = False,
        sign: SignOption = False,
    ):
        """Reject a draft; nothing is released."""
        decide(ctx, item, as_json, sign, actor=actor, action="reject", note=reason)

    @app.command()
    def edit(
        ctx: typer.Context,
        item: ItemArg,
        file: Annotated[Path, typer.Option("--file", help="The edited output.")],
        actor: AsOption = None,
        comment: Annotated[str | None, typer.Option("--comment", help="Note kept with the decision.")] = None,
        as_json: JsonOption = False,
        sign: SignOption = False,
    ):
        """Approve your edited version of a draft; the edit is kept as a diff."""
        try:
            edited = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DecisionInvalid(f"cannot read {file}: {e}") from None
        decide(ctx, item, as_json, sign, actor=actor, action="edit", note=comment, edited=edited)

    @app.command()
    def revise(
        ctx: typer.Context,
        item: ItemArg,
        feedback: Annotated[str, typer.Option("--feedback", help="What the agent must change (required).")],
        actor: AsOption = None,
        as_json: JsonOption = False,
        sign: SignOption = False,
    ):
        """Send a draft back with feedback; the agent drafts again and a new work item appears."""
        decide(ctx, item, as_json, sign, actor=actor, action="revise", note=feedback)
