"""Signed decisions in tests: one Ed25519 key per person for the whole session, registered in a
workspace the first time that person signs there, and decisions signed with it as the CLI signs
them (from the item's view: its draft and stage)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import select

from dew.guardians import flow, signing
from dew.guardians.db import transaction
from dew.guardians.models import AuthMethod, SigningKey
from dew.guardians.queue import item_view

_KEYS: dict[str, Ed25519PrivateKey] = {}


def key_of(person: str) -> Ed25519PrivateKey:
    return _KEYS.setdefault(person, Ed25519PrivateKey.generate())


def key_id(ws, person: str, method: str = AuthMethod.DECLARED) -> int:
    """The id of `person`'s test key in this workspace, registered on first use."""
    public = signing.public_key_of(key_of(person))
    with transaction(ws.engine) as s:
        row = s.exec(select(SigningKey).where(SigningKey.public_key == public)).first()
    if row is None:
        row = signing.register_key(ws, person=person, public_key=public, kind="file", label="test", method=method)
    return row.key


def sign(ws, item_id: int, *, actor: str, action: str, note=None, edited=None, method=AuthMethod.DECLARED):
    item = item_view(ws, item_id)["item"]
    fields = signing.expected_fields(item_id=item_id, stage=item["stage"], action=action, signer=actor,
                                     draft=item["draft"], note=signing.normal_note(note), edited=edited)  # fmt: skip
    return signing.sign(key_of(actor), key_id(ws, actor, method), fields)


def decide(ws, item_id: int, *, actor: str, action: str, note=None, edited=None, method=AuthMethod.DECLARED):
    """flow.decide, signed by the actor's test key."""
    signed = sign(ws, item_id, actor=actor, action=action, note=note, edited=edited, method=method)
    return flow.decide(ws, item_id, actor=actor, action=action, note=note, edited=edited, method=method, signed=signed)


def api_body(ws, item_id: int, *, actor: str, action: str, note=None, edited=None) -> dict:
    """The JSON body of POST /api/v1/items/ID/decision, signed as the CLI signs it through a server
    (the key registered as by the signed-in person)."""
    signed = sign(ws, item_id, actor=actor, action=action, note=note, edited=edited, method=AuthMethod.TOKEN)
    body = {"action": action, "note": note, "edited": edited}
    body["signature"] = {"key_id": signed.key_id, "statement": signed.statement, "signature": signed.signature}
    return body
