"""The brake and the clock: `dew pause`, `dew resume`, `dew recall`, `dew escalate`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from dew.agents.errors import InputInvalid

from .common import AsOption, JsonOption, console, print_json, require_identity, workspace

ScenarioArg = Annotated[str, typer.Argument(metavar="SCENARIO", help="Scenario id.")]


def register(app: typer.Typer) -> None:
    @app.command()
    def pause(
        ctx: typer.Context,
        scenario: ScenarioArg,
        reason: Annotated[str, typer.Option("--reason", help="Why (required; kept in the audit trail).")],
        actor: AsOption = None,
    ):
        """Brake a digital employee: no new runs start and its pending items are held until resumed."""
        from dew.guardians.brake import pause as do_pause

        do_pause(workspace(ctx), scenario, actor=require_identity(actor, "pause a digital employee"), reason=reason)
        console.print(
            f"{scenario} is paused: no new runs start, its pending items are held. Resume with: dew resume {scenario}"
        )

    @app.command()
    def resume(
        ctx: typer.Context,
        scenario: ScenarioArg,
        note: Annotated[str, typer.Option("--note", help="Kept in the audit trail.")] = "",
        actor: AsOption = None,
    ):
        """Release the brake: runs start again and held items can be decided."""
        from dew.guardians.brake import resume as do_resume

        do_resume(workspace(ctx), scenario, actor=require_identity(actor, "resume a digital employee"), note=note)
        console.print(f"{scenario} is working again.")

    @app.command()
    def recall(
        ctx: typer.Context,
        release: Annotated[int, typer.Argument(metavar="RELEASE", help="Release id (dew released).")],
        reason: Annotated[str, typer.Option("--reason", help="Why (required; kept in the audit trail).")],
        actor: AsOption = None,
    ):
        """Recall a released output: it is marked recalled in the outbox and the recall is audited."""
        from dew.guardians.brake import recall as do_recall
        from dew.guardians.brake import recall_note

        ws = workspace(ctx)
        r = do_recall(ws, release, actor=require_identity(actor, "recall an output"), reason=reason)
        console.print(f"Release {r.id} ({r.location}) is recalled; the note is {recall_note(ws, r)}")

    @app.command()
    def escalate(
        ctx: typer.Context,
        now: Annotated[str | None, typer.Option("--now", help="Sweep as if it were this time (ISO 8601).")] = None,
        as_json: JsonOption = False,
    ):
        """Send due reminders and escalate overdue items now (the server does this on a timer)."""
        from dew.guardians.deadlines import sweep

        at = None
        if now:
            try:
                at = datetime.fromisoformat(now)
            except ValueError:
                raise InputInvalid(
                    f"--now takes an ISO 8601 time such as 2026-11-24T09:00:00+08:00, not '{now}'"
                ) from None
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
        report = sweep(workspace(ctx), now=at)
        if as_json:
            return print_json(
                {"reminded": report.reminded, "escalated": [{"item": i, "level": lv} for i, lv in report.escalated]}
            )
        console.print(f"Reminded: {len(report.reminded)} item(s); escalated: {len(report.escalated)} item(s).")
        for item, level in report.escalated:
            console.print(
                f"  work item {item}: {'to its backups' if level == 1 else 'to the named escalation contact'}"
            )
