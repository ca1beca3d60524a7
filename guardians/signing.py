"""Signed decisions: each person's own Ed25519 key, and the statement a signature covers.

An electronic signature is reliable only when the signing key is controlled by the signer alone
and a later change to what was signed is detectable (PRC Electronic Signature Law, art. 13). So
the private half of a key never reaches the server: it lives in a passphrase-protected file the
CLI made (`dew keys create`), or as a non-extractable WebCrypto key in the person's browser. The
server holds public keys only, registered by their owner, recorded in the trail and revocable.

What a signature covers is a small JSON statement, built by the signer over exactly what they
saw and decided:

    {"dew_decision": 1, "item": 12, "stage": 0, "action": "approve", "signer": "li.wei",
     "draft_sha256": "…", "edited_sha256": null, "note_sha256": null, "at": "2026-11-24T03:00:00Z"}

The server parses the statement it was sent, compares every field with the decision it is about
to record, and verifies the signature over the bytes it received, so a request altered on its way
(another action, another reason, another edit) is refused; the statement and signature are kept
with the decision and in its audit event. `dew audit verify` later checks each signature again
against the key the *trail* recorded (not the mutable keys table), valid when it was made.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlmodel import Session, col, select

from dew.agents.errors import InputInvalid
from dew.guardians.errors import NotAuthorized, NotFound, SignatureRefused

from . import audit
from .db import locked, transaction
from .identity import person_id, same_person
from .models import AuthMethod, Guardian, Role, SigningKey, utcnow
from .users import has_users, is_admin, require_signed_in

if TYPE_CHECKING:
    from .workspace import Workspace

FORMAT = 1
KINDS = ("file", "browser")
# How far the time a signer put in a statement may be from the server's clock when it arrives;
# a signature is made the moment the person decides, so this only absorbs clock drift.
CLOCK_SKEW = timedelta(minutes=10)


@dataclass(frozen=True)
class SignedStatement:
    """A statement, the Ed25519 signature over its UTF-8 bytes (base64) and the key that made it."""

    key_id: int
    statement: str
    signature: str

    def to_record(self) -> dict[str, Any]:
        return {"key": self.key_id, "statement": self.statement, "signature": self.signature}


def _sha(text: str | None) -> str | None:
    return audit.sha256_text(text) if text is not None else None


def expected_fields(
    *, item_id: int, stage: int, action: str, signer: str, draft: str, note: str | None, edited: str | None
) -> dict[str, Any]:
    """Every field of a statement but its time: what the signer must have signed for this decision."""
    return _fields(item_id, stage, action, signer, audit.sha256_text(draft), _sha(edited), _sha(note))


def _fields(
    item_id: int | None, stage: int, action: str | None, signer: str, draft_sha256: str | None,
    edited_sha256: str | None, note_sha256: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The statement's fields from the hashes (what a decision event keeps): the one definition of
    what a signature covers, for recording a decision and for checking the trail later."""
    return {
        "dew_decision": FORMAT,
        "item": item_id,
        "stage": stage,
        "action": action,
        "signer": signer,
        "draft_sha256": draft_sha256,
        "edited_sha256": edited_sha256 if action == "edit" else None,
        "note_sha256": note_sha256,
    }


def normal_note(note: str | None) -> str | None:
    """A note as a decision records it (and so as a signer must sign it): trimmed, empty is none."""
    return (note or "").strip() or None


def statement_text(fields: dict[str, Any], at: str) -> str:
    return audit.canonical({**fields, "at": at})


def sign(key: Ed25519PrivateKey, key_id: int, fields: dict[str, Any], at: datetime | None = None) -> SignedStatement:
    """Sign a statement with a private key the caller holds (the CLI; browsers do this in WebCrypto)."""
    moment = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    text = statement_text(fields, moment)
    return SignedStatement(key_id, text, base64.b64encode(key.sign(text.encode("utf-8"))).decode("ascii"))


# --- keys ----------------------------------------------------------------------------------------
def raw_public_key(text: str) -> bytes:
    """The 32 bytes of an Ed25519 public key given as base64 (raw), or InputInvalid."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise InputInvalid("a public key is the base64 of a raw 32-byte Ed25519 key") from None
    return raw


def public_key_of(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def fingerprint(public_key: str) -> str:
    return hashlib.sha256(base64.b64decode(public_key)).hexdigest()


def register_key(
    ws: Workspace, *, person: str, public_key: str, kind: str, label: str = "", method: str = AuthMethod.DECLARED
) -> SigningKey:
    """Register a public key for the person registering it: nobody registers a key for someone else,
    because whoever holds the private half could then sign in their name."""
    person = person_id(person, what="whose key")
    if kind not in KINDS:
        raise InputInvalid(f"a signing key is kept in a file or a browser, not '{kind}'")
    encoded = base64.b64encode(raw_public_key(public_key)).decode("ascii")
    with transaction(ws.engine) as s:
        if method == AuthMethod.ISSUED_TOKEN:
            raise NotAuthorized(
                "a token issued by someone else cannot register a signing key: sign in as yourself "
                "(the web desk, or a token you created with dew login)"
            )
        user = require_signed_in(s, person, method, "register a signing key")
        if (user is not None and Role.GUARDIAN not in user.roles) or (user is None and s.get(Guardian, person) is None):
            raise NotAuthorized(f"'{person}' is not a guardian; signing keys are for the people who decide")
        if s.exec(select(SigningKey).where(SigningKey.public_key == encoded)).first() is not None:
            raise InputInvalid("that public key is already registered")
        row = SigningKey(person=person, public_key=encoded, fingerprint=fingerprint(encoded), kind=kind,
                         label=label.strip()[:100])  # fmt: skip
        s.add(row)
        s.flush()
        event = audit.SigningKeyRegistered(
            person=person,
            key_id=row.key,
            public_key=encoded,
            fingerprint=row.fingerprint,
            key_kind=kind,
            label=row.label,
            auth_method=method,
        )
        audit.emit(s, event, actor=person)
        return row


def revoke_key(ws: Workspace, key_id: int, *, actor: str, reason: str, method: str = AuthMethod.DECLARED) -> SigningKey:
    """End a key (lost, rotated, its owner left). Its owner or an admin may; what it signed stays valid."""
    actor = person_id(actor, what="who revokes")
    reason = reason.strip()
    if not reason:
        raise InputInvalid("say why the key is revoked (--reason): lost, rotated, left the office…")
    with transaction(ws.engine) as s:
        row = s.get(SigningKey, key_id)
        if row is None:
            raise NotFound(f"no signing key {key_id}")
        row = locked(s, SigningKey, key_id)
        if has_users(s):
            require_signed_in(s, actor, method, "revoke a signing key")
        if not same_person(actor, row.person) and not is_admin(s, actor):
            raise NotAuthorized(f"signing key {key_id} is {row.person}'s; only they or an admin may revoke it")
        if row.revoked_at is not None:
            raise InputInvalid(f"signing key {key_id} was already revoked")
        row.revoked_at, row.revoked_by, row.revoke_reason = utcnow(), actor, reason
        s.add(row)
        audit.emit(s, audit.SigningKeyRevoked(person=row.person, key_id=row.key, reason=reason), actor=actor)
        return row


def key_view(k: SigningKey) -> dict[str, Any]:
    return {
        "id": k.id, "person": k.person, "public_key": k.public_key, "fingerprint": k.fingerprint, "kind": k.kind,
        "label": k.label, "created_at": k.created_at.isoformat(),
        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None, "revoked_by": k.revoked_by,
        "revoke_reason": k.revoke_reason,
    }  # fmt: skip


def list_keys(ws: Workspace, person: str | None = None) -> list[SigningKey]:
    with transaction(ws.engine) as s:
        query = select(SigningKey).order_by(col(SigningKey.id))
        if person is not None:
            query = query.where(SigningKey.person == person)
        return list(s.exec(query).all())


def active_keys(session: Session, person: str) -> list[SigningKey]:
    rows = session.exec(select(SigningKey).where(SigningKey.person == person, col(SigningKey.revoked_at).is_(None)))
    return list(rows.all())


# --- checking a signature as a decision is recorded ---------------------------------------------
def parse_time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError("no time")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("a time without its zone")
    return moment.astimezone(UTC)


def _parse(text: str) -> dict[str, Any]:
    """A statement as a JSON object whose keys each appear once."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("a field appears twice")
        return dict(pairs)

    value = json.loads(text, object_pairs_hook=unique)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _differs(statement: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """The first field in which a signed statement is not the decision being recorded."""
    if set(statement) != {*expected, "at"}:
        return "its fields are not those of a dew decision statement"
    for name, value in expected.items():
        if statement[name] != value:
            return f"it says {name} {statement[name]!r}, the decision {value!r}"
    return None


def _signature_holds(public_key: str, statement: str, signature: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(base64.b64decode(signature, validate=True), statement.encode("utf-8"))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def check(
    session: Session,
    signed: SignedStatement | None,
    *,
    required: bool,
    scenario: str,
    expected: dict[str, Any],
    now: datetime | None = None,
) -> SigningKey | None:
    """The key that signed this decision, after checking it signed exactly this decision; None for an
    unsigned decision where none is required; SignatureRefused saying what is wrong otherwise."""
    signer, item = expected["signer"], expected["item"]
    if signed is None:
        if not required:
            return None
        how = (
            "with your key: create one with 'dew keys create' (CLI) or on the web desk's Signing keys page"
            if not active_keys(session, signer)
            else "with your key (dew approve … --sign, or the web desk, which signs in your browser)"
        )
        raise SignatureRefused(
            f"scenario '{scenario}' requires signed decisions; sign the decision on item {item} {how}"
        )
    key = session.get(SigningKey, signed.key_id)
    if key is None or not same_person(key.person, signer):
        raise SignatureRefused(f"signing key {signed.key_id} is not one of {signer}'s keys")
    key = locked(session, SigningKey, key.key)  # a revocation racing this decision lands before it or after
    if key.revoked_at is not None:
        raise SignatureRefused(f"signing key {key.id} was revoked ({key.revoke_reason}); it signs nothing new")
    try:
        statement = _parse(signed.statement)
        at = parse_time(statement.get("at"))
    except (ValueError, RecursionError) as e:
        raise SignatureRefused(f"the signed statement is not readable: {e}") from None
    wrong = _differs(statement, expected)
    if wrong:
        raise SignatureRefused(f"the signature covers another decision than the one sent: {wrong}")
    if signed.statement != statement_text(expected, statement["at"]):
        # One text, one reading: no duplicate keys, no 1.0 for 1 or true for 1, no spacing to vary.
        raise SignatureRefused("the signed statement is not in its one canonical form (sorted keys, no spaces)")
    now = now or datetime.now(UTC)
    if abs(now - at) > CLOCK_SKEW:
        raise SignatureRefused(
            f"the signed statement is dated {statement['at']}, too far from now ({now.isoformat(timespec='seconds')}): "
            "sign again (and check the clock of the signing machine)"
        )
    if not _signature_holds(key.public_key, signed.statement, signed.signature):
        raise SignatureRefused(f"the signature does not verify with {signer}'s key {key.id}: the statement was altered "
                               "or signed with another key")  # fmt: skip
    return key


# --- checking every signature against the trail -------------------------------------------------
@dataclass
class _TrailKey:
    person: str
    public_key: str
    registered: datetime
    revoked: datetime | None = None


@dataclass(frozen=True)
class SignatureProblem:
    seq: int
    detail: str

    def __str__(self) -> str:
        return f"audit event {self.seq}: {self.detail}"


def check_trail(session: Session) -> tuple[int, list[SignatureProblem]]:
    """Check every signature the trail holds against the key the trail recorded, valid at the time.

    Reads only the (hash-chained) trail: a key row or a decision row changed later cannot make a
    bad signature pass. Returns how many signatures were checked, and each problem found."""
    keys: dict[int, _TrailKey] = {}
    stages: dict[int, int] = {}  # item → sign-offs seen so far, the stage of its final decision
    problems: list[SignatureProblem] = []
    checked = 0
    kinds = ["signing_key.registered", "signing_key.revoked", "decision.signed_off",
             *(f"decision.{s}" for s in ("approved", "edited", "rejected", "revised"))]  # fmt: skip
    for ev in audit.events(session, kinds=kinds):
        data = json.loads(ev.data)
        at = parse_time(ev.at)
        if ev.kind == "signing_key.registered":
            if data["key_id"] in keys:
                problems.append(SignatureProblem(ev.seq, f"signing key {data['key_id']} is registered a second time"))
                continue
            if not same_person(ev.actor, data["person"]):
                problems.append(SignatureProblem(ev.seq, f"{ev.actor} registered a key for {data['person']}"))
                continue
            keys[data["key_id"]] = _TrailKey(data["person"], data["public_key"], at)
            continue
        if ev.kind == "signing_key.revoked":
            if data["key_id"] in keys:
                keys[data["key_id"]].revoked = at
            continue
        item = ev.item_id if ev.item_id is not None else -1
        stage = stages.get(item, 0)
        if ev.kind == "decision.signed_off":
            stages[item] = stage + 1
        signed = data.get("signed")
        if not signed:
            continue
        checked += 1
        problem = _check_event(ev, data, signed, keys, stage, at)
        if problem:
            problems.append(SignatureProblem(ev.seq, problem))
    return checked, problems


def _check_event(ev: Any, data: dict, signed: dict, keys: dict[int, _TrailKey], stage: int, at: datetime) -> str | None:
    key = keys.get(signed.get("key", -1))
    if key is None:
        return f"signed with key {signed.get('key')}, which the trail never registered"
    if not same_person(key.person, ev.actor):
        return f"signed with {key.person}'s key {signed['key']}, but decided by {ev.actor}"
    try:
        statement = _parse(signed["statement"])
        signed_at = parse_time(statement.get("at"))
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        return f"its signed statement is not readable: {e}"
    action = "approve" if ev.kind == "decision.signed_off" else data.get("action")
    expected = _fields(ev.item_id, data.get("stage", stage), action, ev.actor, data.get("draft_sha256"),
                       data.get("edited_sha256"), _sha(data.get("note")))  # fmt: skip
    wrong = _differs(statement, expected)
    if wrong:
        return f"the signature covers another decision than the one recorded: {wrong}"
    if signed["statement"] != statement_text(expected, statement["at"]):
        return "its signed statement is not in its one canonical form"
    if signed_at < key.registered - CLOCK_SKEW or (key.revoked is not None and at >= key.revoked):
        return f"signed with key {signed['key']} outside the time it was valid"
    if abs(at - signed_at) > CLOCK_SKEW:
        return f"the statement is dated {statement['at']}, far from when the decision was recorded ({ev.at})"
    if not _signature_holds(key.public_key, signed["statement"], signed.get("signature", "")):
        return f"the signature does not verify with {key.person}'s key {signed['key']}"
    return None
