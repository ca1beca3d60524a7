"""`dew audit ...`: read-only tracing and verification of the audit trail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dew.guardians.errors import AuditBroken, DeliveryIncomplete

from .common import DewGroup, JsonOption, add_row, console, print_json, safe, short, styled, workspace

app = typer.Typer(
    cls=DewGroup,
    help="Trace and verify the audit trail; sign checkpoints of it to keep elsewhere.",
    no_args_is_help=True,
)


def _events_table(events: list[dict], title: str) -> Table:
    # Fixed widths that fill exactly 80 columns: rich cannot shrink no-wrap columns, and a table
    # wider than the terminal loses its right edge. Details only in what a wider terminal has left.
    table = Table(title=title)
    for name, width in (("seq", 4), ("at (UTC)", 14), ("event", 21), ("actor", 14), ("run", 4), ("item", 4)):
        table.add_column(name, no_wrap=True, width=width, overflow="ellipsis")
    details_width = min(120, console.width - 80 - 3)
    with_details = details_width >= 20  # --json has everything
    if with_details:
        table.add_column("details", overflow="ellipsis", no_wrap=True, width=details_width)
    for e in events:
        cells = [
            str(e["seq"]),
            e["at"][5:19].replace("T", " "),
            e["kind"],
            e["actor"],
            str(e["run_id"] or ""),
            str(e["item_id"] or ""),
        ]
        add_row(table, *cells, *([safe(short(_details(e), 200))] if with_details else []))
    return table


def _details(e: dict) -> str:
    d = dict(e["data"])
    for bulky in ("backups", "models", "findings"):
        d.pop(bulky, None)
    return json.dumps(d, ensure_ascii=False, separators=(", ", "="))[1:-1].replace('"', "")


@app.command()
def trace(
    ctx: typer.Context,
    item: Annotated[int, typer.Argument(metavar="ITEM", help="Work item id.")],
    as_json: JsonOption = False,
):
    """Everything behind a work item: requester, scenario version, models, decisions, release."""
    from dew.guardians.queue import trace as load_trace

    t = load_trace(workspace(ctx), item)
    if as_json:
        return print_json(t)
    run = t["run"]
    console.print(styled((f"Trace of work item {item}", "bold"), f" (run {run['id']}, {run['status']})"))
    console.print(
        f"requested by {run['requester']} · scenario {run['scenario']} {run['scenario_version']} "
        f"sha256 {run['scenario_sha256']}"
    )
    models = sorted({f"{p.get('model')} @ {p.get('endpoint')}" for p in t["provenance"]})
    console.print(f"drafted by: {'; '.join(models) or 'deterministic steps only'}")
    runs = " → ".join(str(r) for r in t["chain"])
    console.print(
        _events_table(
            t["events"],
            f"Audit events of run {runs}"
            if len(t["chain"]) == 1
            else f"Audit events of the hand-off chain, runs {runs}",
        )
    )


@app.command()
def log(
    ctx: typer.Context,
    as_json: JsonOption = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the newest N events.")] = None,
):
    """The whole audit trail, oldest first."""
    from dew.guardians.queue import audit_log

    events = audit_log(workspace(ctx), limit)
    if as_json:
        return print_json(events)
    console.print(_events_table(events, "Audit log"))


@app.command()
def verify(
    ctx: typer.Context,
    as_json: JsonOption = False,
    anchor: Annotated[
        list[str] | None,
        typer.Option(
            "--anchor",
            help="SEQ:SHA256 printed by an earlier verify and kept outside the database; it must still be in the chain. Repeatable.",
        ),
    ] = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            help="A signed checkpoint file written by `dew audit checkpoint`; the trail must still extend it. Repeatable.",
        ),
    ] = None,
):
    """Recompute the hash chain, check every run, draft, decision and release against the events
    that recorded them, and every release against the outbox.

    Exits 0 when all agree; 5 naming the first bad event, or each row that disagrees with its
    event; 6 listing each release whose file is missing or changed, whose hand-off never started,
    and each stray staging file (`dew repair` completes what it can)."""
    from dew.guardians import audit
    from dew.guardians.chainhead import read_checkpoint, verify_checkpoints
    from dew.guardians.crosscheck import check_rows
    from dew.guardians.db import transaction
    from dew.guardians.reconcile import find_problems

    ws = workspace(ctx)
    anchors = [audit.parse_anchor(a) for a in anchor or []]
    checkpoints = [read_checkpoint(p) for p in checkpoint or []]
    try:
        with transaction(ws.engine) as s:
            result = audit.verify(s, anchors)
            verify_checkpoints(s, checkpoints, result)
            mismatches = check_rows(s)
    except AuditBroken as e:
        if as_json:
            print_json({"ok": False, "first_bad_event": e.seq, "error": e.message})
        raise
    if mismatches:
        if as_json:
            print_json({"ok": False, "events": result.events, "rows": [str(m) for m in mismatches]})
        raise AuditBroken(
            min((m.seq for m in mismatches if m.seq is not None), default=0),
            "\n".join(f"{m}" for m in mismatches)
            + f"\nthe audit chain is intact, but {len(mismatches)} row(s) disagree with the events that recorded them",
        )
    problems = find_problems(ws)
    if as_json:
        print_json({"ok": not problems, "events": result.events, "head": result.head, "anchor": result.anchor,
                    "problems": [p.to_dict() for p in problems]})  # fmt: skip
    else:
        console.print(f"Audit chain intact: {result.events} events.")
        console.print(f"Anchor (keep it outside this database; check it later with --anchor): {result.anchor}")
        if not problems:
            console.print("Every release is delivered as recorded.")
    if problems:
        repairable = sum(p.repairable for p in problems)
        raise DeliveryIncomplete(
            "\n".join(f"{p.kind}: {p.detail}" for p in problems)
            + f"\n{len(problems)} release problem(s); {repairable} can be repaired with: dew repair --as YOU"
        )


@app.command("checkpoint")
def checkpoint_(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write it. Default: <workspace>/checkpoints/.")
    ] = None,
    as_json: JsonOption = False,
):
    """Sign the chain's head with the workspace key and write it to a file to keep elsewhere.

    Store the file outside this system (another organisation, write-once storage): `dew audit
    verify --checkpoint FILE` then proves the trail still extends it, so a truncated or rewritten
    history is caught without trusting the database."""
    from dew.guardians.chainhead import key_path, write_checkpoint

    ws = workspace(ctx)
    path, body = write_checkpoint(ws, out)
    if as_json:
        return print_json({**body, "file": str(path)})
    console.print(f"Checkpoint of event {body['seq']} ({body['hash'][:16]}…) signed and written to {path}")
    console.print(f"Keep it outside this system. Signing key: {key_path(ws)} (public key {body['public_key']})")
