"""`dew stats`: the figures programme owners quote, from this workspace's own records."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from .common import JsonOption, add_row, console, print_json, workspace


def register(app: typer.Typer) -> None:
    @app.command()
    def stats(
        ctx: typer.Context,
        by: Annotated[
            str, typer.Option("--by", metavar="scenario|guardian|model", help="How to group the figures.")
        ] = "scenario",
        since: Annotated[
            str | None,
            typer.Option(
                "--since",
                metavar="DATE",
                help="Only items queued from this date (YYYY-MM-DD) or ISO date and time (UTC).",
            ),
        ] = None,
        until: Annotated[
            str | None,
            typer.Option(
                "--until",
                metavar="DATE",
                help="Only items queued up to this date, inclusive (or before this date and time).",
            ),
        ] = None,
        as_json: JsonOption = False,
    ):
        """Items, approval and edit rates, revision rounds, time to decision, overdue items,
        escalations, recalls and findings per draft, by scenario, guardian or model.

        Each work item counts in the period it was queued in; definitions: docs/stats.md."""
        from dew.guardians.stats import compute, parse_moment

        report = compute(workspace(ctx), by=by, since=parse_moment(since), until=parse_moment(until, end=True))
        if as_json:
            return print_json(report.to_dict())
        print_report(report)


def print_report(report) -> None:
    period = f"{_day(report.since) or 'the beginning'} to {_day(report.until, end=True) or 'now'}"
    if not report.groups:
        console.print(f"No work items were queued from {period}.")
        return
    none = "(no model)" if report.by == "model" else "(none)"
    rows = [(g.key if g.key is not None else none, g.to_dict()) for g in report.groups]
    rows.append(("total", report.total.to_dict()))
    # Three narrow tables rather than one wide one: each fits an 80-column terminal.
    outcomes = _table(f"Decisions by {report.by}, items queued from {period}",
                      report.by, "items", "pending", "approved", "edited", "rejected", "revised")  # fmt: skip
    rates = _table("Rates and sizes", report.by, "approval", "edit rate", "edit size", "rounds", "findings")
    timing = _table("Time to decision and follow-up", report.by, "median", "p90", "overdue", "escalated", "recalled")
    for label, r in rows:
        if r is rows[-1][1]:
            for table in (outcomes, rates, timing):
                table.add_section()
        counts = ("items", "pending", "approved", "edited", "rejected", "revised")
        add_row(outcomes, label, *(str(r[k]) for k in counts))
        add_row(rates, label, _pct(r["approval_rate"]), _pct(r["edit_rate"]), _edit(r), _num(r["revision_rounds"]),
                _num(r["findings_per_draft"]))  # fmt: skip
        add_row(timing, label, duration(r["median_decision_seconds"]), duration(r["p90_decision_seconds"]),
                str(r["overdue"]), str(r["escalated"]), f"{r['recalled']}/{r['released']}")  # fmt: skip
    for table in (outcomes, rates, timing):
        console.print(table)
    console.print(
        "approval = (approved + edited) / decided; edit rate = edited / (approved + edited); edit size = mean "
        "characters/lines changed per edit; rounds = revisions per run; findings = per draft; recalled = of "
        "released. Definitions: docs/stats.md",
        style="dim",
    )
    if report.by == "model":
        console.print("An item drafted by several models counts for each of them, so the groups may add up to more.")


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title)
    for n, name in enumerate(columns):
        table.add_column(name, justify="left" if n == 0 else "right", overflow="fold")
    return table


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")


def _edit(row: dict[str, Any]) -> str:
    if row["mean_edit_chars"] is None:
        return "–"
    return f"{_num(row['mean_edit_chars'])}c/{_num(row['mean_edit_lines'])}l"


def duration(seconds: float | None) -> str:
    """A time to decision as a person says it: 45s, 12m, 3h 05m, 2d 4h."""
    if seconds is None:
        return "–"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _day(moment, *, end: bool = False) -> str | None:
    if moment is None:
        return None
    if end and (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0):
        from datetime import timedelta

        return (moment - timedelta(days=1)).date().isoformat()  # the last day included
    if (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0):
        return moment.date().isoformat()
    return moment.isoformat(timespec="minutes")
