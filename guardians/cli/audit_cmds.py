"""`dew audit ...`: read-only tracing and verification of the audit trail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from dew.guardians.errors import AuditBroken, DeliveryIncomplete

from . import report_cmds
from .common import (
    DewGroup,
    JsonOption,
    LimitOption,
    add_row,
    console,
    cores,
    earlier_hint,
    print_json,
    safe,
    short,
    styled,
    workspace,
)

# A checkpoint is signed only after the whole chain verifies: both commands check it in parts.
ProcessesOption = Annotated[
    int | None,
    typer.Option(
        "--processes",
        min=1,
        help="How many processes check a long chain, a part each, at once. Default: one per core.",
    ),
]

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
    if isinstance(d.get("signed"), dict):  # the statement and signature are in --json
        d["signed"] = f"key {d['signed'].get('key')}"
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
    limit: LimitOption = 100,
    before: Annotated[
        int | None,
        typer.Option("--before", min=1, metavar="SEQ", help="Only events before this one (the page before)."),
    ] = None,
):
    """The newest events of the audit trail, oldest of them first, a page at a time (`dew audit
    export` writes the whole trail)."""
    from dew.guardians.queue import audit_log

    events = audit_log(workspace(ctx), limit, before=before)
    if as_json:
        print_json(events)
    else:
        console.print(_events_table(events, "Audit log"))
    earlier_hint("dew audit log", events, "seq", limit, as_json)


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
    export: Annotated[
        list[Path] | None,
        typer.Option(
            "--export",
            metavar="MANIFEST",
            help="The manifest of an export written by `dew audit export`: the file must match it and every "
            "record the trail, as it was when exported. Repeatable.",
        ),
    ] = None,
    processes: ProcessesOption = None,
):
    """Recompute the hash chain, check every run, draft, decision and release against the events
    that recorded them, every signed decision against the signer's key recorded in the trail, and
    every release against the outbox.

    Exits 0 when all agree; 5 naming the first bad event, or each row that disagrees with its
    event; 6 listing each release whose file is missing or changed, whose hand-off never started,
    and each stray staging file (`dew repair` completes what it can)."""
    from dew.guardians import audit
    from dew.guardians.chainhead import read_checkpoint, verify_checkpoints
    from dew.guardians.crosscheck import check_rows
    from dew.guardians.db import reading
    from dew.guardians.export import check_exports, read_manifest
    from dew.guardians.reconcile import find_problems
    from dew.guardians.signing import check_trail

    ws = workspace(ctx)
    anchors = [audit.parse_anchor(a) for a in anchor or []]
    checkpoints = [read_checkpoint(p) for p in checkpoint or []]
    exports = [read_manifest(p) for p in export or []]
    try:
        with reading(ws.engine) as s:
            result = audit.verify(s, anchors, processes=processes or cores())
            verify_checkpoints(s, checkpoints, result)
            check_exports(s, exports)
            rows = check_rows(s)
            signatures, bad = check_trail(s)
    except AuditBroken as e:
        if as_json:
            print_json({"ok": False, "first_bad_event": e.seq, "error": e.message})
        raise
    if rows or bad:
        mismatches = [str(m) for m in rows] + [str(b) for b in bad]
        if as_json:
            print_json({"ok": False, "events": result.events, "rows": mismatches})
        first = min([m.seq for m in rows if m.seq is not None] + [b.seq for b in bad], default=0)
        raise AuditBroken(
            first,
            "\n".join(mismatches) + f"\nthe audit chain is intact, but {len(mismatches)} record(s) disagree with it: "
            "rows that differ from the events that recorded them, or signatures that do not hold",
        )
    problems = find_problems(ws)
    if as_json:
        print_json({"ok": not problems, "events": result.events, "head": result.head, "anchor": result.anchor,
                    "signatures": signatures, "problems": [p.to_dict() for p in problems]})  # fmt: skip
    else:
        console.print(f"Audit chain intact: {result.events} events; {signatures} signed decisions verified.")
        console.print(f"Anchor (keep it outside this database; check it later with --anchor): {result.anchor}")
        if exports:
            console.print(f"{len(exports)} audit export(s) match their manifests and the trail.")
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
    processes: ProcessesOption = None,
):
    """Sign the chain's head with the workspace key and write it to a file to keep elsewhere.

    Store the file outside this system (another organisation, write-once storage): `dew audit
    verify --checkpoint FILE` then proves the trail still extends it, so a truncated or rewritten
    history is caught without trusting the database."""
    from dew.guardians.chainhead import key_path, write_checkpoint

    ws = workspace(ctx)
    path, body = write_checkpoint(ws, out, processes=processes or cores())
    if as_json:
        return print_json({**body, "file": str(path)})
    console.print(f"Checkpoint of event {body['seq']} ({body['hash'][:16]}…) signed and written to {path}")
    console.print(f"Keep it outside this system. Signing key: {key_path(ws)} (public key {body['public_key']})")


@app.command("export")
def export_(
    ctx: typer.Context,
    out: Annotated[
        Path,
        typer.Option("--out", help="The file to write; its manifest is written beside it as FILE.manifest.json."),
    ],
    fmt: Annotated[Literal["jsonl", "csv"], typer.Option("--format", help="One JSON record a line, or CSV.")] = "jsonl",
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only events from this date (YYYY-MM-DD) or ISO date and time (UTC unless it says)."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Only events up to this date, inclusive (or before this date and time)."),
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option("--scenario", help="Only the events of this scenario's runs, and its own (paused, resumed…)."),
    ] = None,
    guardian: Annotated[
        str | None,
        typer.Option(
            "--guardian",
            help="Only the events of the work items this guardian owned at any stage and of their runs, and their "
            "own (added, delegations).",
        ),
    ] = None,
    as_json: JsonOption = False,
):
    """Write the audit trail, or the part the filters select, to a file an auditor can check without dew.

    Every record holds all the fields its hash covers, so each hash can be recomputed from the file
    alone; the manifest beside it records the filters, the count, the first and last event, the
    file's SHA-256 and the trail's head when the export began (events recorded later are left
    out). `dew audit verify --export FILE.manifest.json` later proves the file is unchanged and
    that the trail still holds every record as exported. Never overwrites a file."""
    from dew.guardians.export import Filters, export_events, manifest_path, parse_time

    filters = Filters(
        since=parse_time(since, "--since") if since is not None else None,
        until=parse_time(until, "--until", end=True) if until is not None else None,
        scenario=scenario,
        guardian=guardian,
    )
    manifest = export_events(workspace(ctx).engine, out, fmt, filters)
    if as_json:
        return print_json({**manifest.to_dict(), "file": str(out), "manifest": str(manifest_path(out))})
    span = f" (events {manifest.first['seq']}–{manifest.last['seq']})" if manifest.first and manifest.last else ""
    console.print(f"Exported {manifest.count} audit events{span} to {out} (sha256 {manifest.sha256}).", soft_wrap=True)
    console.print(
        f"Manifest: {manifest_path(out)}; check both later with: dew audit verify --export {manifest_path(out)}",
        soft_wrap=True,
    )


report_cmds.register(app)  # `dew audit report`: its own module, as it is long
