"""The figures page, `/stats`: charts and a table of the programme's figures (`guardians/stats.py`).

Admins and auditors see everyone's figures; a guardian sees those of their own queue (the rule is
`stats.scope_for`); anyone else is refused. The charts are drawn by Chart.js (vendored under
static/vendor/chartjs) from a JSON block of the page, by static/stats.js: no inline script. The
table below them holds the same figures, for screen readers and for copying.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from dew.guardians import stats

from .i18n import translate
from .web import _caller, _ws, render, templates

router = APIRouter(include_in_schema=False)


@router.get("/stats", response_class=HTMLResponse)
def stats_page(request: Request, by: str = "scenario", since: str = "", until: str = "") -> Response:
    caller = _caller(request)
    scope = stats.scope_for(caller.principal)
    report = stats.compute(
        _ws(request),
        by=by,
        since=stats.parse_moment(since),
        until=stats.parse_moment(until, end=True),
        guardian=scope,
    )
    return render(
        request,
        "stats.html",
        caller,
        report=report,
        rows=[g.to_dict() for g in report.groups],
        total=report.total.to_dict(),
        chart=chart_data(report),
        filters={"by": by, "since": since, "until": until},
        groupings=stats.GROUPINGS,
    )


def chart_data(report: stats.Report) -> dict[str, Any]:
    """What stats.js draws: one value per group for each series; times in minutes, or in hours
    when the slowest p90 is two hours or more."""
    groups = report.groups
    slowest = max((g.p90_decision_seconds or 0 for g in groups), default=0)
    unit = 3600 if slowest >= 7200 else 60

    def pct(value: float | None) -> float | None:
        return None if value is None else round(value * 100, 1)

    def span(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds / unit, 2)

    return {
        "labels": [g.key for g in groups],  # null: no model
        "outcomes": {
            "approved": [g.approved for g in groups],
            "edited": [g.edited for g in groups],
            "revised": [g.revised for g in groups],
            "rejected": [g.rejected for g in groups],
            "pending": [g.pending for g in groups],
        },
        "rates": {"approval": [pct(g.approval_rate) for g in groups], "edit": [pct(g.edit_rate) for g in groups]},
        "time": {
            "unit": "hours" if unit == 3600 else "minutes",
            "median": [span(g.median_decision_seconds) for g in groups],
            "p90": [span(g.p90_decision_seconds) for g in groups],
        },
        "follow_up": {
            "overdue": [g.overdue for g in groups],
            "escalated": [g.escalated for g in groups],
            "recalled": [g.recalled for g in groups],
        },
    }


# --- how the page writes figures ----------------------------------------------------------------------------
def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def number(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")


def duration(seconds: float | None, lang: str) -> str:
    """A time to decision as a person says it, in the page's language."""
    if seconds is None:
        return "–"
    s = round(seconds)
    if s < 60:
        return translate(lang, "stats.seconds", s=s)
    if s < 3600:
        return translate(lang, "stats.minutes", m=s // 60)
    if s < 86400:
        return translate(lang, "stats.hours", h=s // 3600, m=f"{s % 3600 // 60:02d}")
    return translate(lang, "stats.days", d=s // 86400, h=s % 86400 // 3600)


templates.env.filters["percent"] = percent
templates.env.filters["number"] = number
templates.env.globals["duration"] = duration
