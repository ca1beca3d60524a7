"""`dew guardians ...`: the roster."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .common import AsOption, DewGroup, JsonOption, add_row, console, print_json, require_identity, workspace

app = typer.Typer(cls=DewGroup, help="The roster of guardians.", no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOption = False):
    """List the guardians on the roster."""
    from dew.guardians.roster import list_guardians

    people = list_guardians(workspace(ctx))
    if as_json:
        return print_json([{"id": g.id, "name": g.name, "title": g.title, "active": g.active} for g in people])
    table = Table("id", "name", "title", title="Guardians")
    for g in people:
        add_row(table, g.id, g.name, g.title)
    console.print(table)


@app.command()
def add(
    ctx: typer.Context,
    guardian_id: Annotated[str, typer.Argument(metavar="ID", help="Roster id, e.g. li.wei")],
    name: Annotated[str, typer.Option("--name", help="Full name.")],
    title: Annotated[str, typer.Option("--title", help="Job title.")] = "",
    actor: AsOption = None,
):
    """Add a guardian to the roster."""
    from dew.guardians.roster import add_guardian

    g = add_guardian(workspace(ctx), guardian_id, name, title, actor=require_identity(actor, "change the roster"))
    console.print(f"Added guardian {g.id} ({g.name}).")
