"""Decisions: `dew approve`, `dew reject`, `dew edit`, `dew revise`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dew.guardians.errors import DecisionInvalid

from .common import AsOption, JsonOption, progress_line, require_identity, workspace
from .run_cmds import report


def decide(ctx, item: int, **kwargs):
    from dew.guardians.flow import decide as record  # imported here: `dew --help` stays fast

    ws = workspace(ctx)
    with progress_line(ws, f"work item {item}: {kwargs['action']}"):
        return record(ws, item, **kwargs)


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
        actor = require_identity(actor, "approve")
        report(decide(ctx, item, actor=actor, action="approve", note=comment), as_json)

    @app.command()
    def reject(
        ctx: typer.Context,
        item: ItemArg,
        reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
        actor: AsOption = None,
        as_json: JsonOption = False,
    ):
        """Reject a draft; nothing is released."""
        actor = require_identity(actor, "reject")
        report(decide(ctx, item, actor=actor, action="reject", note=reason), as_json)

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
        actor = require_identity(actor, "edit")
        try:
            edited = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DecisionInvalid(f"cannot read {file}: {e}") from None
        report(decide(ctx, item, actor=actor, action="edit", note=comment, edited=edited), as_json)

    @app.command()
    def revise(
        ctx: typer.Context,
        item: ItemArg,
        feedback: Annotated[str, typer.Option("--feedback", help="What the agent must change (required).")],
        actor: AsOption = None,
        as_json: JsonOption = False,
    ):
        """Send a draft back with feedback; the agent drafts again and a new work item appears."""
        actor = require_identity(actor, "ask for a revision")
        report(decide(ctx, item, actor=actor, action="revise", note=feedback), as_json)
