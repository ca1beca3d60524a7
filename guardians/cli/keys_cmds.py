"""Signing keys: `dew keys create|list|revoke|rotate`, and signing a decision with one.

The private key stays in the person's own config folder (keyfile.py); only its public half is
registered, with the workspace (declared identity) or, once logged in with `dew login`, with the
server as the authenticated person.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from dew.guardians.errors import SignatureRefused

from . import keyfile, remote
from .common import (
    AsOption,
    DewGroup,
    JsonOption,
    add_row,
    console,
    err_console,
    print_json,
    require_identity,
    workspace,
)

app = typer.Typer(
    cls=DewGroup,
    help="Signing keys: your own Ed25519 key signs your decisions; the server keeps only its public half.",
    no_args_is_help=True,
)


def _who(actor: str | None, doing: str) -> str:
    login = remote.current()
    if login is not None:
        if actor and actor != login.user:
            raise SignatureRefused(f"you are signed in to {login.server} as {login.user}, not {actor}")
        return login.user
    return require_identity(actor, doing)


def _register(ctx: typer.Context, person: str, public_key: str, label: str) -> dict[str, Any]:
    login = remote.current()
    if login is not None:
        body = {"public_key": public_key, "kind": "file", "label": label}
        return remote.Client(login).call("POST", "/keys", json=body)
    from dew.guardians import signing

    return signing.key_view(
        signing.register_key(workspace(ctx), person=person, public_key=public_key, kind="file", label=label)
    )


def _revoke(ctx: typer.Context, key_id: int, actor: str, reason: str) -> dict[str, Any]:
    login = remote.current()
    if login is not None:
        return remote.Client(login).call("POST", f"/keys/{key_id}/revoke", json={"reason": reason})
    from dew.guardians import signing

    return signing.key_view(signing.revoke_key(workspace(ctx), key_id, actor=actor, reason=reason))


def _registered(ctx: typer.Context, person: str) -> list[dict[str, Any]]:
    login = remote.current()
    if login is not None:
        return remote.Client(login).call("GET", "/keys")
    from dew.guardians import signing

    return [signing.key_view(k) for k in signing.list_keys(workspace(ctx), person)]


LabelOption = Annotated[str, typer.Option("--label", help="Which device or file, so you can tell keys apart.")]


@app.command("create")
def create(ctx: typer.Context, actor: AsOption = None, label: LabelOption = "", as_json: JsonOption = False):
    """Create your signing key (a passphrase-protected file in your config folder) and register its
    public half. Decisions on scenarios that require signatures are then signed with it."""
    from dew.guardians.signing import public_key_of

    person = _who(actor, "create a signing key")
    key, path = keyfile.create(person)
    try:
        row = _register(ctx, person, public_key_of(key), label or f"dew CLI ({path.name})")
    except BaseException:
        path.unlink(missing_ok=True)  # a key nobody registered would only confuse
        raise
    if as_json:
        return print_json({**row, "file": str(path)})
    console.print(f"Signing key {row['id']} created for {person} and registered; fingerprint {row['fingerprint']}.")
    console.print(f"The private key is {path} (mode 600, under your passphrase); it never leaves this machine.")


@app.command("list")
def list_(ctx: typer.Context, actor: AsOption = None, as_json: JsonOption = False):
    """Signing keys: yours (--as, or your login), with when each was registered or revoked."""
    person = _who(actor, "list your signing keys")
    rows = _registered(ctx, person)
    if as_json:
        return print_json(rows)
    table = Table(title=f"Signing keys of {person}")
    for column in ("id", "kind", "label", "fingerprint", "created", "revoked"):
        table.add_column(column)
    for r in rows:
        revoked = f"{r['revoked_at'][:19]} by {r['revoked_by']}: {r['revoke_reason']}" if r["revoked_at"] else ""
        add_row(table, str(r["id"]), r["kind"], r["label"], r["fingerprint"][:16], r["created_at"][:19], revoked)
    console.print(table)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[int, typer.Argument(metavar="KEY", help="Key id (dew keys list).")],
    reason: Annotated[str, typer.Option("--reason", help="Why: lost, rotated, left the office…")],
    actor: AsOption = None,
    as_json: JsonOption = False,
):
    """Revoke a signing key (yours, or anyone's as an admin): it signs nothing new, and what it
    signed before stays verifiable."""
    person = _who(actor, "revoke a signing key")
    row = _revoke(ctx, key_id, person, reason)
    if as_json:
        return print_json(row)
    console.print(f"Signing key {row['id']} of {row['person']} revoked.")


@app.command("rotate")
def rotate(ctx: typer.Context, actor: AsOption = None, label: LabelOption = "", as_json: JsonOption = False):
    """Replace your key file with a new key: the new one is registered, the old one revoked."""
    from dew.guardians.signing import public_key_of

    person = _who(actor, "rotate your signing key")
    path = keyfile.key_file(person)
    old_public = public_key_of(keyfile.load(person))
    fresh = path.with_name(path.name + ".new")
    fresh.unlink(missing_ok=True)
    key, _ = keyfile.create(person, fresh)
    try:
        row = _register(ctx, person, public_key_of(key), label or f"dew CLI ({path.name})")
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise
    # The old key is revoked before its file is replaced: if that fails, both files are still there
    # and the message says so, rather than an old key left in force with nobody holding it.
    old = [k for k in _registered(ctx, person) if k["public_key"] == old_public and not k["revoked_at"]]
    try:
        for k in old:
            _revoke(ctx, k["id"], person, f"rotated to key {row['id']}")
    except Exception as e:
        raise SignatureRefused(
            f"new key {row['id']} is registered (its file is {fresh}), but revoking the old one failed: {e}; "
            "revoke it with dew keys revoke, then move the new file over the old"
        ) from e
    fresh.replace(path)
    if as_json:
        return print_json({"new": row, "revoked": [k["id"] for k in old]})
    console.print(f"Signing key {row['id']} now signs for {person}; revoked: {', '.join(str(k['id']) for k in old)}.")


def signature_for(
    ctx: typer.Context, item: dict[str, Any], *, actor: str, action: str, note: str | None = None,
    edited: str | None = None, force: bool = False,
):  # fmt: skip
    """The signature over this decision if one is wanted (--sign, or the scenario requires it), made
    with the actor's key file; None otherwise."""
    from dew.guardians import signing

    if not (force or item["sign_required"]):
        return None
    if not keyfile.key_file(actor).exists():
        why = f"work item {item['id']} requires signed decisions" if item["sign_required"] else "--sign was asked"
        raise SignatureRefused(
            f"{why}, and {actor} has no signing key at {keyfile.key_file(actor)}: create one with 'dew keys create'"
        )
    key = keyfile.load(actor)
    public = signing.public_key_of(key)
    match = [k for k in _registered(ctx, actor) if k["public_key"] == public and not k["revoked_at"]]
    if not match:
        raise SignatureRefused(
            f"the key in {keyfile.key_file(actor)} is not registered for {actor} here, or was revoked: "
            "dew keys rotate (or dew keys create after moving the old file away)"
        )
    fields = signing.expected_fields(item_id=item["id"], stage=item["stage"], action=action, signer=actor,
                                     draft=item["draft"], note=signing.normal_note(note), edited=edited)  # fmt: skip
    return signing.sign(key, match[0]["id"], fields)


def say_signed(signed, item_id: int) -> None:
    """After a signed decision is recorded: which key signed which draft (the draft as stored,
    which `dew show ITEM --draft` prints), on stderr so that --json output stays JSON."""
    if signed is None:
        return
    draft = json.loads(signed.statement)["draft_sha256"]
    err_console.print(f"Signed with key {signed.key_id}: work item {item_id}, draft sha256 {draft} "
                      f"(dew show {item_id} --draft)")  # fmt: skip
