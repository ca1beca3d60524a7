"""Signed checkpoints of the audit chain's head, to be kept outside the database.

The hash chain proves events were not changed relative to each other; whoever can rewrite the
whole database can rebuild a consistent chain. A checkpoint is a statement "the trail of this
workspace had N events and event N hashed to H, at time T", signed with the workspace's Ed25519
key and written to a file meant for another system, another organisation or write-once storage
(as transparency logs publish signed tree heads). Later, `dew audit verify --checkpoint FILE`
proves the trail still extends every saved checkpoint, without trusting the database: a
truncated or rewritten history no longer holds event N with hash H.

The workspace key is created on first use in `<workspace>/keys/` (or where `DEW_WORKSPACE_KEY`
points), readable by its owner only; its public key is recorded in the trail when it is made.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlmodel import Session

from dew.agents.errors import InputInvalid

from . import audit
from .db import reading, transaction
from .errors import AuditBroken
from .models import AuditEvent

if TYPE_CHECKING:
    from .workspace import Workspace

FORMAT = 1


def key_path(ws: Workspace) -> Path:
    configured = os.environ.get("DEW_WORKSPACE_KEY")
    return Path(configured).expanduser() if configured else ws.settings.home / "keys" / "workspace-ed25519.pem"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def public_key_text(key: Ed25519PublicKey) -> str:
    return _b64(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def workspace_key(ws: Workspace) -> Ed25519PrivateKey:
    """The workspace's signing key, created (and its public half recorded in the trail) on first use."""
    path = key_path(ws)
    if path.exists():
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise InputInvalid(f"{path} is not an Ed25519 private key")
        return loaded
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Releases sign with it too, so two workers may make it at once: each writes a whole file of its
    # own and links it into place, which only one can do; the other uses the winner's key.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-", suffix=".tmp")  # mode 600: never readable by others
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return workspace_key(ws)
    finally:
        os.unlink(tmp)
    with transaction(ws.engine) as s:
        audit.emit(s, audit.WorkspaceKeyCreated(public_key=public_key_text(key.public_key())), actor="dew")
    return key


def _statement(body: dict[str, Any]) -> bytes:
    """The exact bytes signed: the checkpoint without its signature, in canonical JSON."""
    return audit.canonical({k: v for k, v in body.items() if k != "signature"}).encode("utf-8")


def write_checkpoint(ws: Workspace, out: Path | None = None, *, processes: int = 1) -> tuple[Path, dict[str, Any]]:
    """Sign the current head (after verifying the chain up to it) and write it to a file."""
    key = workspace_key(ws)
    with reading(ws.engine) as s:
        head = audit.verify(s, processes=processes)  # never sign a broken chain
    body: dict[str, Any] = {
        "dew_checkpoint": FORMAT,
        "seq": head.events,
        "hash": head.head,
        "at": audit.now_iso(),
        "public_key": public_key_text(key.public_key()),
    }
    body["signature"] = _b64(key.sign(_statement(body)))
    path = out or ws.settings.home / "checkpoints" / f"checkpoint-{head.events:08d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    with transaction(ws.engine) as s:  # the checkpoint itself is an event of the trail it signs
        audit.emit(s, audit.CheckpointSigned(seq=head.events, hash=head.head, file=path.name), actor="dew")
    return path, body


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: str
    public_key: str
    source: str


def read_checkpoint(path: Path) -> Checkpoint:
    """A checkpoint file whose signature holds, or InputInvalid saying what is wrong with it."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        if body.get("dew_checkpoint") != FORMAT:
            raise ValueError("not a dew checkpoint (format 1)")
        seq, digest, at, public = int(body["seq"]), str(body["hash"]), str(body["at"]), str(body["public_key"])
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public))
        key.verify(base64.b64decode(body["signature"]), _statement(body))
    except InvalidSignature:
        raise InputInvalid(f"{path}: the signature does not match the checkpoint: it was altered") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputInvalid(f"{path}: not a readable checkpoint: {e}") from None
    return Checkpoint(seq=seq, hash=digest, at=at, public_key=public, source=str(path))


def verify_checkpoints(session: Session, checkpoints: list[Checkpoint], verified: audit.Verification) -> None:
    """Raise AuditBroken unless the trail extends every checkpoint, signed with a key it recorded.

    `verified` is the result of `audit.verify` on this session: the chain is checked first, so
    its events can then be trusted one by one."""
    if not checkpoints:
        return
    count = verified.events
    known = {json.loads(e.data).get("public_key") for e in audit.events(session, kinds=["workspace.key_created"])}
    for cp in checkpoints:
        event = session.get(AuditEvent, cp.seq)
        where = f"checkpoint {cp.source} (event {cp.seq}, signed {cp.at})"
        key_known = cp.public_key in known
        if event is None:
            also = "" if key_known else ", or the checkpoint is another workspace's (its key is not recorded here)"
            raise AuditBroken(cp.seq, f"{where}: audit event {cp.seq} is gone; the trail ends at event {count}: "
                                      f"it was truncated{also}")  # fmt: skip
        if not key_known:
            if event.hash == cp.hash:
                raise AuditBroken(cp.seq, f"{where}: the trail holds its event, but the record of the key that "
                                          "signed it is gone: the trail was altered")  # fmt: skip
            raise AuditBroken(cp.seq, f"{where} is signed by a key this trail never recorded, and the trail holds "
                                      "another event there: it is another workspace's checkpoint, or this trail "
                                      "was rebuilt")  # fmt: skip
        if event.hash != cp.hash:
            raise AuditBroken(cp.seq, f"{where}: audit event {cp.seq} is not the one checkpointed: "
                                      "the trail was rewritten")  # fmt: skip
