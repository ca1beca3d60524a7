"""Telling guardians that an item waits: `dew notify channels-add|channels|channels-remove|status|deliver|retry`.

Like user management, these act with the database's own authority: whoever runs dew on the
server's machine can open its database, and `--as` names who is acting (the user themselves or an
admin for channels, an admin for retries). Secrets are never printed, only whether one is set.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from .common import AsOption, DewGroup, JsonOption, add_row, console, print_json, require_identity, short, workspace

app = typer.Typer(
    cls=DewGroup,
    help="Notifications that an item waits: channels (webhook, DingTalk, WeCom, email) and their deliveries.",
    no_args_is_help=True,
)


@app.command("channels-add")
def channels_add(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(metavar="USER", help="Whose queue events go to this channel.")],
    kind: Annotated[str, typer.Option("--kind", help="webhook, dingtalk, wecom or email.")],
    target: Annotated[str, typer.Option("--target", help="The http(s) URL, or the email address.")],
    secret: Annotated[
        str | None, typer.Option("--secret", help="HMAC key (webhook) or signing secret (DingTalk).")
    ] = None,
    secret_stdin: Annotated[
        bool, typer.Option("--secret-stdin", help="Read the secret from standard input (kept out of shell history).")
    ] = False,
    scenario: Annotated[str | None, typer.Option("--scenario", help="Only this scenario's items.")] = None,
    events: Annotated[
        list[str] | None,
        typer.Option("--event", help="item.queued, item.reminder or item.escalated (repeat; default: all)."),
    ] = None,
    actor: AsOption = None,
):
    """Add a notification channel for a user (the user themselves or an admin)."""
    from dew.guardians.notify import add_channel

    if secret_stdin:
        secret = sys.stdin.readline().rstrip("\n")
    c = add_channel(
        workspace(ctx), user_id, kind, target, actor=require_identity(actor or user_id, "add notification channels"),
        secret=secret, scenario=scenario, events=events or [],
    )  # fmt: skip
    what = f"{c.scenario_id}'s items" if c.scenario_id else "all scenarios"
    console.print(
        f"Channel {c.id}: {c.kind} for {c.user_id} ({what}; {', '.join(c.events) or 'all events'})"
        + ("; signed with its secret." if c.secret else ".")
    )


@app.command("channels")
def channels_list(
    ctx: typer.Context,
    user_id: Annotated[str | None, typer.Argument(metavar="[USER]", help="Only this user's channels.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Removed ones too.")] = False,
    as_json: JsonOption = False,
):
    """List notification channels (never their secrets; robot URLs shortened)."""
    from dew.guardians.notify import channel_view, list_channels

    rows = [channel_view(c) for c in list_channels(workspace(ctx), user_id, include_removed=all_)]
    if as_json:
        return print_json(rows)
    table = Table(
        "id", "user", "kind", "target", "secret", "scenario", "events", "active", title="Notification channels"
    )
    for c in rows:
        add_row(
            table,
            str(c["id"]),
            c["user"],
            c["kind"],
            c["target"],
            "set" if c["secret_set"] else "-",
            c["scenario"] or "all",
            ", ".join(c["events"]) or "all",
            "yes" if c["active"] else "no",
        )
    console.print(table)


@app.command("channels-remove")
def channels_remove(
    ctx: typer.Context, channel_id: Annotated[int, typer.Argument(metavar="ID")], actor: AsOption = None
):
    """Remove a channel (the user themselves or an admin); what it still had to send is dropped."""
    from dew.guardians.notify import remove_channel

    c = remove_channel(workspace(ctx), channel_id, actor=require_identity(actor, "remove notification channels"))
    console.print(f"Removed channel {c.id} ({c.kind} for {c.user_id}).")


@app.command("status")
def status_cmd(ctx: typer.Context, as_json: JsonOption = False):
    """Deliveries still pending (waiting for a retry) or failed for good."""
    from dew.guardians.notify import list_channels, notification_view, status

    ws = workspace(ctx)
    channels = {c.id: c for c in list_channels(ws, include_removed=True)}
    rows = [notification_view(n, channels.get(n.channel_id)) for n in status(ws)]
    if as_json:
        return print_json(rows)
    table = Table(
        "id", "event", "item", "to", "kind", "status", "attempts", "next try", "last error", title="Deliveries"
    )
    for n in rows:
        add_row(
            table,
            str(n["id"]),
            n["event"],
            str(n["item_id"] or "-"),
            n.get("user", "?"),
            n.get("kind", "?"),
            n["status"],
            str(n["attempts"]),
            (n["next_at"] or "")[:16].replace("T", " ") + " UTC" if n["status"] == "pending" else "-",
            short(n["last_error"] or "", 60),
        )
    console.print(table)
    if not rows:
        console.print("Nothing pending or failed.")


@app.command("deliver")
def deliver(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000, help="At most this many.")] = 100,
    as_json: JsonOption = False,
):
    """Send the notifications that are due now (the server does this on its timer)."""
    from dew.guardians.notify import deliver_due

    counts = deliver_due(workspace(ctx), limit=limit)
    if as_json:
        return print_json(counts)
    console.print(f"Sent {counts['sent']}, to retry later {counts['retrying']}, failed for good {counts['failed']}.")


@app.command("retry")
def retry_cmd(
    ctx: typer.Context, notification_id: Annotated[int, typer.Argument(metavar="ID")], actor: AsOption = None
):
    """Try a failed delivery again now, with a fresh count of attempts (an admin)."""
    from dew.guardians.notify import retry

    n = retry(workspace(ctx), notification_id, actor=require_identity(actor, "retry deliveries"))
    console.print(f"Notification {n.id} will be sent on the next delivery (dew notify deliver, or the server's timer).")
