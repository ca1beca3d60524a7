"""`dew audit report`: a chain-of-custody report of one work item, or of a period, in HTML or PDF."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import typer

from dew.agents.errors import InputInvalid

from .common import console, workspace


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    ctx: typer.Context,
    item: Annotated[
        int | None, typer.Argument(metavar="ITEM", help="Work item id: its report follows its run's hand-off chain.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="The file to write, FILE.html or FILE.pdf (the format follows the extension). "
            "Default: HTML on standard output.",
        ),
    ] = None,
    lang: Annotated[
        Literal["zh", "en"], typer.Option("--lang", help="The report's language: Chinese or English.")
    ] = "zh",
    since: Annotated[
        str | None,
        typer.Option("--since", help="A period report from this date or ISO 8601 time (UTC unless it says)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="A period report up to this date (included) or ISO 8601 time.")
    ] = None,
    scenario: Annotated[str | None, typer.Option("--scenario", help="A period report of this scenario only.")] = None,
):
    """A readable chain-of-custody report for an inspector, in HTML or PDF (A4).

    With ITEM: who signed off the work item and how (rule, sign-in method, signature: key
    fingerprint and signed statement), exactly what they saw (inputs, every draft round with its
    SHA-256, findings), what the machine contributed (every model call and tool call, by hash), the
    release and any recall, each audit event behind it, and a verification made now: the chain
    intact, rows agreeing with the trail, signatures valid, the released file as approved, with the
    trail's head (SEQ:SHA256) to check later with `dew audit verify --anchor`.

    With --since/--until (and --scenario): counts per scenario, every decision and sign-off of the
    period, and the same verification of the whole workspace."""
    from dew.guardians import report as reports
    from dew.guardians.stats import parse_moment

    reports.check_lang(lang)
    period = since is not None or until is not None or scenario is not None
    if item is not None and period:
        raise InputInvalid("give a work item or a period (--since/--until/--scenario), not both")
    if item is None and not period:
        raise InputInvalid("give a work item (dew audit report ITEM) or a period (--since DATE --until DATE)")
    fmt = reports.format_of(out) if out is not None else "html"
    ws = workspace(ctx)
    if item is not None:
        data = reports.item_report(ws, item)
        what = f"work item {item}"
    else:
        start, end = parse_moment(since), parse_moment(until, end=True)
        if start is not None and end is not None and start >= end:
            raise InputInvalid("the period is empty: --since must come before --until")
        data = reports.period_report(ws, since=start, until=end, scenario=scenario)
        what = f"the period {since or '…'} to {until or '…'}" + (f" of {scenario}" if scenario else "")
    pieces = reports.render_html(data, lang)
    if out is None:
        try:
            for piece in pieces:
                sys.stdout.write(piece)
            sys.stdout.flush()
        except BrokenPipeError:  # the reader stopped early (| head): nothing wrong, nothing more to write
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    if fmt == "pdf":
        body, pages = reports.render_pdf("".join(pieces))
        sha256 = _write(out, [body])
        shape = f"PDF, {pages} page{'s' if pages != 1 else ''}"
    else:
        sha256 = _write(out, (p.encode("utf-8") for p in pieces))
        shape = "HTML"
    verdict = "everything verified" if data["verification"]["ok"] else "PROBLEMS FOUND (see its verification section)"
    console.print(f"Wrote the report of {what} to {out} ({shape}, sha256 {sha256}): {verdict}.", soft_wrap=True)
    console.print(f"Audit trail head at report time: {data['verification']['head']}", soft_wrap=True)


def _write(out: Path, chunks) -> str:
    """Write the file whole or not at all (a temporary file renamed over it); return its SHA-256."""
    target = out.expanduser()
    digest = hashlib.sha256()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise InputInvalid(f"cannot write {out}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                digest.update(chunk)
                f.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()
