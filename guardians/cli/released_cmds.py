"""`dew released`: what was released, and whether a file someone holds is what was released."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dew.agents.errors import InputInvalid

from .common import (
    BeforeOption,
    DewGroup,
    JsonOption,
    LimitOption,
    add_row,
    console,
    earlier_hint,
    err_console,
    print_json,
    state,
    styled,
    workspace,
)

app = typer.Typer(
    cls=DewGroup,
    help="List released outputs and where they went; `dew released verify FILE` checks a released file.",
    invoke_without_command=True,
)


@app.callback(invoke_without_command=True)
def released(ctx: typer.Context, limit: LimitOption = 100, before: BeforeOption = None, as_json: JsonOption = False):
    """List the newest released outputs and where they went, a page at a time (`dew released
    verify FILE` checks one)."""
    if ctx.invoked_subcommand is not None:
        return
    from dew.guardians.queue import released as load_released

    rows = load_released(workspace(ctx), before=before, limit=limit)
    if as_json:
        print_json(rows)
        return earlier_hint("dew released", rows, "id", limit, as_json)
    table = Table("run", "item", "scenario", "location", "sha256", "at", title="Released")
    for r in rows:
        add_row(
            table, str(r["run_id"]), str(r["item_id"]), r["scenario"], r["location"], r["sha256"][:12], r["at"][:19]
        )
    console.print(table)
    earlier_hint("dew released", rows, "id", limit)


@app.command()
def verify(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A released file, as someone holds it.")],
    sidecar: Annotated[
        Path | None,
        typer.Option("--sidecar", help="Its label's sidecar, when not beside it as FILE.label.json."),
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(
            "--public-key",
            help="The releasing workspace's public key (base64, as `dew released key` prints it), or a file "
            "holding it: the label must be signed by it.",
        ),
    ] = None,
    use_workspace: Annotated[
        bool,
        typer.Option(
            "--workspace",
            help="Insist on checking against the workspace's trail (used anyway when --home, DEW_HOME, "
            "DEW_DATABASE_URL or ./.dew names one that exists).",
        ),
    ] = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="Check the file and its label only, even where a workspace is at hand.")
    ] = False,
    as_json: JsonOption = False,
):
    """Is FILE exactly what dew released, and who approved it?

    Checks, without a network: the file's text against its label's hashes, the explicit label
    (AI-generated, approved by whom) at its place, the sidecar FILE.label.json (or, in Markdown,
    the label embedded at the file's end) and the label's Ed25519 signature. The signer is checked
    against --public-key, and against the workspace's trail when one is at hand: a key it recorded,
    the label and hash its release event recorded, and that the release was not recalled.

    Exits 0 when all of that holds; 7 saying precisely what does not (a changed text, label or
    sidecar, a signature that fails, another workspace's file, a recall)."""
    from dew.guardians import labels
    from dew.guardians.db import transaction
    from dew.guardians.errors import NotAsReleased

    if offline and use_workspace:
        raise InputInvalid("--offline and --workspace contradict each other: choose one")
    ws = None if offline else _workspace_at_hand(ctx, required=use_workspace)
    trusted = _read_key(public_key) if public_key else None
    try:
        checked = labels.check_path(file, sidecar, unlabelled=ws is not None)
        if trusted is not None:
            labels.check_key(checked, trusted)
        trail = None
        if ws is not None:
            with transaction(ws.engine) as s:
                trail = labels.check_trail(s, checked)
    except NotAsReleased as e:
        if as_json:
            print_json({"ok": False, "file": str(file), "error": e.message})
        raise
    label = checked.label or (trail.label if trail else None)
    report: dict[str, Any] = {
        "ok": True,
        "file": str(file),
        "sha256": checked.sha256,
        "label_from": checked.source,
        "label": label,
        "key_checked_against": "workspace" if trail else "public key given" if trusted else None,
        "trail": {"release": trail.release.id, "run": trail.release.run_id, "event": trail.event_seq}
        if trail
        else None,
    }
    if as_json:
        return print_json(report)
    _print_report(file, checked, label, trail, trusted is not None)


def _print_report(file: Path, checked, label: dict | None, trail, trusted: bool) -> None:
    from dew.guardians.labels import label_names, when

    def say(text: str) -> None:
        console.print(text, soft_wrap=True)

    if label is None:  # found in the trail by its hash: a release made before labels
        console.print(styled(("OK", "bold green"), f": {file.name} is the file released as run {trail.release.run_id}"
                             f" on {when(trail.release.created_at):%Y-%m-%d %H:%M} UTC, before released texts were "
                             "labelled: it carries no label."), soft_wrap=True)  # fmt: skip
        return
    facts = label_names(label)
    approval = label["approval"]
    console.print(styled(("OK", "bold green"), f": {file.name} is as released: its text and its label are unchanged."),
                  soft_wrap=True)  # fmt: skip
    say(f"  AI-generated by: {label['scenario']['name']} ({facts['scenario']})")
    say(f"  approved by:     {facts['approved_by']} on {_minute(approval['at'])} UTC ({approval['decision']}; "
        f"{approval['rule']}, {approval['auth_method']})")  # fmt: skip
    for so in approval["signoffs"]:
        say(f"  signed off:      {so['stage']}: {so['name']} ({so['by']}) on {_minute(so['at'])} UTC")
    say(f"  released as:     run {label['work_item']['run']}, work item {label['work_item']['id']}, by "
        f"{facts['producer']} (ProduceID {facts['produce_id']})")  # fmt: skip
    if checked.source == "none":
        say("  label:           not with the file (no sidecar beside it); this workspace's trail holds it")
    elif checked.source == "embedded":
        say("  label:           read from inside the file (no sidecar beside it)")
    if trail is not None:
        say(f"  signed by:       key {label['public_key']}: this workspace's, and its trail agrees (release "
            f"{trail.release.id}, audit event {trail.event_seq})")  # fmt: skip
    else:
        say(f"  signed by:       key {label['public_key']}" + (", the key given" if trusted else ""))
    if trail is None and not trusted:
        err_console.print("Note: whose key that is was not checked: pass --public-key KEY (the releasing workspace's, "
                          "from `dew released key`), or run this where the workspace is. Without either, the label "
                          "proves only that nothing changed since that key signed it.", soft_wrap=True)  # fmt: skip


def _minute(iso: str) -> str:
    return iso[:16].replace("T", " ")


def _workspace_at_hand(ctx: typer.Context, *, required: bool):
    """The workspace to check against: the one named or the default, if it exists; never a new one."""
    from sqlalchemy.engine import make_url

    settings = state(ctx).settings
    url = make_url(settings.database_url)  # not SQLite: DEW_DATABASE_URL names a server's database
    exists = url.get_backend_name() != "sqlite" or Path(url.database or "").is_file()
    if not exists:
        if required:
            raise InputInvalid(f"no workspace at {settings.home} (--workspace asks for one): pass --home DIR")
        return None
    return workspace(ctx)


def _read_key(given: str) -> str:
    path = Path(given).expanduser()
    return path.read_text(encoding="utf-8").strip() if path.is_file() else given.strip()


@app.command()
def key(ctx: typer.Context, as_json: JsonOption = False):
    """Print the workspace's public key, for holders of released files: `dew released verify FILE --public-key KEY`."""
    from dew.guardians.chainhead import public_key_text, workspace_key
    from dew.guardians.labels import workspace_id

    public = public_key_text(workspace_key(workspace(ctx)).public_key())
    if as_json:
        return print_json({"public_key": public, "workspace": workspace_id(public)})
    console.print(public)
