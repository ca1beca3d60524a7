"""Retention: `dew retention show|set|apply` (guardians/retention.py says what is cleared and why)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from .common import AsOption, DewGroup, JsonOption, console, print_json, require_identity, workspace

app = typer.Typer(
    cls=DewGroup,
    help="How long texts that may hold personal data are kept; the audit trail's hashes are kept for good.",
    no_args_is_help=True,
)


@app.command("show")
def show(ctx: typer.Context, as_json: JsonOption = False):
    """The retention period, and how many finished runs are past it now."""
    from dew.guardians import retention
    from dew.guardians.db import transaction
    from dew.guardians.models import utcnow

    ws = workspace(ctx)
    with transaction(ws.engine) as s:
        days = retention.period(s)
        waiting = len(retention.due(s, utcnow() - timedelta(days=days))) if days else 0
    if as_json:
        return print_json({"days": days, "due": waiting})
    if days is None:
        console.print("No retention period is set: every text is kept. An admin sets one with: dew retention set DAYS")
    else:
        console.print(
            f"Texts of finished runs are kept {days} days; {waiting} run(s) are past it (dew retention apply)."
        )


@app.command("set")
def set_(
    ctx: typer.Context,
    days: Annotated[int, typer.Argument(metavar="DAYS", help="Days to keep texts after a run ends (at least 183).")],
    actor: AsOption = None,
):
    """Set the retention period (admins; at least six months)."""
    from dew.guardians import retention

    retention.set_period(workspace(ctx), days, actor=require_identity(actor, "set the retention period"))
    console.print(f"Retention period set: the texts of finished runs are kept {days} days.")


@app.command("apply")
def apply(
    ctx: typer.Context,
    actor: AsOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say which runs would be cleared.")] = False,
    as_json: JsonOption = False,
):
    """Clear the inputs, drafts, edits and checkpoints of finished runs older than the period
    (admins). Every hash stays in the trail, so `dew audit verify` still verifies; the clearing is
    itself an audit event."""
    from dew.guardians import retention

    ws = workspace(ctx)
    done = retention.apply(ws, actor=require_identity(actor, "apply retention"), dry_run=dry_run)
    if as_json:
        return print_json({"days": done.days, "cutoff": done.cutoff.isoformat(), "runs": done.runs,
                           "items": done.items, "decisions": done.decisions, "dry_run": dry_run})  # fmt: skip
    what = "would be cleared" if dry_run else "cleared"
    console.print(f"{len(done.runs)} finished run(s) that ended before {done.cutoff:%Y-%m-%d} {what}"
                  + ("" if dry_run else f" ({done.items} draft(s), {done.decisions} decision edit(s))") + ".")  # fmt: skip
