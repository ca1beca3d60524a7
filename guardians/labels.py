"""Labels of released texts: China's measures for labelling AI-generated content and the mandatory
standard GB 45438-2025 (人工智能生成合成内容标识方法) ask for two.

- The **explicit label** is text a reader sees, at the start or the end of the released text: that
  AI drafted it and who approved it (wording, place and language per scenario: `release.label`).
  Markdown gets it as a blockquote, plain text as lines of their own. A JSON output stays the
  approved data, which systems parse: its label travels in the sidecar only.
- The **implicit label** is metadata: the standard's `AIGC` fields (`Label` "1" = AI-generated,
  `ContentProducer`, `ProduceID`, `ReservedCode1` = the labelled text's hash; the propagation
  fields are left for whoever propagates the file), and what dew knows: the scenario version, the
  work item, the guardian who approved it and how, the hashes of the approved text and of the
  labelled one. It is signed with the workspace's Ed25519 key (the key that signs checkpoints),
  written beside the file as `<file>.label.json`, and, in Markdown, also at the file's end as an
  HTML comment (`<!-- dew-label {...} -->`): invisible when rendered, and it travels with the
  file when the sidecar does not. YAML front matter was not chosen: renderers that do not know
  it show it as text, and it would have to come before a label placed at the top.

The whole label is also recorded in the `output.released` event, in the transaction of the
release: the trail proves that the released file is the label plus the approved text, and the file
(and its sidecar) can be rebuilt from the trail. `check` verifies a file offline; `check_trail`
against a workspace's trail. Nothing here is trusted from the file: a label says which key signed
it, and only a key the holder trusts (given, or recorded by the workspace) says who that is.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlmodel import Session, select

from dew.agents.errors import InputInvalid

from . import audit
from .chainhead import public_key_text
from .errors import NotAsReleased, ReleaseError
from .models import AuditEvent, Release

if TYPE_CHECKING:
    from dew.agents.spec import LabelSpec, Scenario

FORMAT = 1
SIDECAR_SUFFIX = ".label.json"
_EMBED = re.compile(r"\n<!-- dew-label (\{[^\n]*\}) -->\n\Z")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def workspace_id(public_key: str) -> str:
    """A short, stable name of a workspace: the start of its public key's SHA-256."""
    return hashlib.sha256(base64.b64decode(public_key)).hexdigest()[:16]


def sidecar_location(location: str) -> str:
    return location + SIDECAR_SUFFIX


def when(at: datetime) -> datetime:
    """A timestamp in UTC; SQLite hands back naive ones, which dew always wrote in UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


# --- making a label -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Approval:
    """Who approved the released text, and how: what the label says of the decision."""

    guardian: str
    name: str
    at: datetime
    action: str
    rule: str
    auth_method: str
    signoffs: list[dict[str, Any]]


def explicit_lines(spec: Scenario, approval: Approval, run: dict[str, Any]) -> list[str]:
    """The explicit label's text, one entry per language, as the scenario words it."""
    # Imported here: reading releases (every listing) needs no scenario model or Jinja2.
    from dew.agents.spec import label_context, label_problem
    from dew.agents.templating import render

    label: LabelSpec = spec.release.label
    guardian = {"id": approval.guardian, "name": approval.name}
    context = label_context(guardian=guardian, approved_at=f"{when(approval.at):%Y-%m-%d %H:%M} UTC",
                            scenario=spec, run=run)  # fmt: skip
    lines = []
    for language in label.languages:
        where = f"scenario '{spec.id}': release.label.text.{language}"
        text = render(label.wording(language), context, where=where).strip()
        problem = label_problem(language, text, guardian)
        if problem:  # checked at load on a sample; a real name can still make a wording fail
            raise ReleaseError(f"{where}: {problem}")
        lines.append(text)
    return lines


def _inserted(fmt: str, placement: str, lines: list[str], content: str) -> str:
    """The exact text added to the approved text, separators included."""
    if fmt == "json":
        return ""
    if fmt == "markdown":
        block = "\n>\n".join("> " + line.replace("\n", "\n> ") for line in lines)
    else:
        block = "\n".join(lines)
    if placement == "top":
        return block + "\n\n"
    return ("\n" if content.endswith("\n") else "\n\n") + block + "\n"


def make_label(
    key: Ed25519PrivateKey,
    *,
    spec: Scenario,
    scenario_sha256: str,
    run: dict[str, Any],
    item_id: int,
    file_name: str,
    content: str,
    approval: Approval,
) -> dict[str, Any]:
    """The signed implicit label of one release, holding the explicit label it adds to `content`."""
    fmt = spec.output.format
    placement = "sidecar" if fmt == "json" else spec.release.label.placement
    lines = explicit_lines(spec, approval, run)
    inserted = _inserted(fmt, placement, lines, content)
    public = public_key_text(key.public_key())
    ws_id = workspace_id(public)
    labelled = _body(content, placement, inserted)
    label: dict[str, Any] = {
        "dew_label": FORMAT,
        "AIGC": {
            "Label": "1",  # GB 45438-2025: 1 = the content is AI-generated
            "ContentProducer": os.environ.get("DEW_CONTENT_PRODUCER") or f"dew workspace {ws_id}",
            "ProduceID": f"{ws_id}-{run['id']}",
            "ReservedCode1": f"sha256:{sha256_text(labelled)}",
            "ContentPropagator": "",
            "PropagateID": "",
            "ReservedCode2": "",
        },
        "file": {
            "name": file_name,
            "format": fmt,
            "approved_sha256": sha256_text(content),
            "labelled_sha256": sha256_text(labelled),
            "embedded": fmt == "markdown",
        },
        "explicit": {
            "placement": placement,
            "language": spec.release.label.language,
            "text": lines,
            "inserted": inserted,
        },
        "scenario": {"id": spec.id, "name": spec.name, "version": spec.version, "sha256": scenario_sha256},
        "work_item": {"id": item_id, "run": run["id"]},
        "approval": {
            "guardian": {"id": approval.guardian, "name": approval.name},
            "at": when(approval.at).isoformat(),
            "decision": approval.action,
            "rule": approval.rule,
            "auth_method": approval.auth_method,
            "signoffs": approval.signoffs,
        },
        "trail": {"workspace": ws_id, "event": "output.released"},
        "released_at": audit.now_iso(),
        "public_key": public,
    }
    label["signature"] = base64.b64encode(key.sign(_statement(label))).decode("ascii")
    return label


def _statement(label: dict[str, Any]) -> bytes:
    """The exact bytes signed: the label without its signature, in canonical JSON."""
    return audit.canonical({k: v for k, v in label.items() if k != "signature"}).encode("utf-8")


# --- the files of a release -----------------------------------------------------------------------
@dataclass(frozen=True)
class Composed:
    """A release's files: the text as released, and its sidecar (None: released before labels)."""

    text: str
    sidecar: str | None

    @property
    def sha256(self) -> str:
        return sha256_text(self.text)


def _body(content: str, placement: str, inserted: str) -> str:
    if placement == "top":
        return inserted + content
    if placement == "bottom":
        return content + inserted
    return content


def compose(content: str, label: dict[str, Any] | None) -> Composed:
    """The released file, exactly: the explicit label and the approved text, then (Markdown) the
    embedded implicit label; and its sidecar."""
    if label is None:
        return Composed(content, None)
    explicit = label["explicit"]
    text = _body(content, explicit["placement"], explicit["inserted"])
    if label["file"]["embedded"]:
        text += embedded_text(label)
    return Composed(text, sidecar_text(label))


def sidecar_text(label: dict[str, Any]) -> str:
    """The sidecar, byte for byte: one form only, so any change to it shows."""
    return json.dumps(label, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def embedded_text(label: dict[str, Any]) -> str:
    """The implicit label at the end of a Markdown file, as an HTML comment (which may not hold `--`)."""
    body = json.dumps(label, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return "\n<!-- dew-label " + body.replace("--", "-\\u002d") + " -->\n"


def released_label(session: Session, run_id: int) -> tuple[AuditEvent | None, dict[str, Any] | None]:
    """The `output.released` event of a run and the label it recorded (None before labels)."""
    ev = session.exec(
        select(AuditEvent).where(AuditEvent.kind == "output.released", AuditEvent.run_id == run_id)
    ).first()
    return ev, (json.loads(ev.data).get("label") if ev is not None else None)


# --- checking a file ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checked:
    """A released file whose label holds: the label, the approved text inside it, where the label came from."""

    label: dict[str, Any] | None
    content: str
    sha256: str  # of the whole file
    source: str  # sidecar | embedded | none (no label at hand: `check_trail` finds the release by hash)


def check(data: bytes, sidecar: bytes | None, *, name: str = "the file", unlabelled: bool = False) -> Checked:
    """Verify a released file (and its sidecar, when there is one) without a workspace.

    Raises NotAsReleased saying precisely what does not hold. What passes is consistent and signed
    by the key the label names; who holds that key is for `check_key` or `check_trail` to say.
    `unlabelled`: a file with no label at all passes unchecked (label None), for `check_trail` to
    find by its hash (a release made before labels, or a file whose sidecar is not at hand)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotAsReleased(f"{name} is not UTF-8 text: dew released no such file, or it was changed") from None
    label = _read_sidecar(sidecar, name) if sidecar is not None else None
    source = "sidecar"
    if label is None:
        found = _EMBED.search(text)
        if found is None and unlabelled:
            return Checked(label=None, content=text, sha256=hashlib.sha256(data).hexdigest(), source="none")
        if found is None:
            raise NotAsReleased(f"{name} has no label: no sidecar ({name}{SIDECAR_SUFFIX}) and none inside the file")
        label = _parse(found.group(1), f"the label inside {name}")
        source = "embedded"
    tail = embedded_text(label) if label["file"]["embedded"] else ""
    if not text.endswith(tail):
        raise NotAsReleased(f"the label embedded at the end of {name} was changed or removed (it differs from "
                            "its sidecar)")  # fmt: skip
    body = text[: len(text) - len(tail)]
    explicit, approver = label["explicit"], label["approval"]["guardian"]
    if sha256_text(body) != label["file"]["labelled_sha256"]:
        placement, inserted = explicit["placement"], explicit["inserted"]
        if (placement == "top" and not body.startswith(inserted)) or (
            placement == "bottom" and not body.endswith(inserted)
        ):
            raise NotAsReleased(f"the label at the {placement} of {name} was changed or removed")
        raise NotAsReleased(f"the text of {name} was changed after release: it is not what {approver['name']} "
                            f"({approver['id']}) approved")  # fmt: skip
    content = body
    if explicit["placement"] == "top":
        content = body[len(explicit["inserted"]) :]
    elif explicit["placement"] == "bottom":
        content = body[: len(body) - len(explicit["inserted"])]
    if sha256_text(content) != label["file"]["approved_sha256"]:  # a signed label that contradicts itself
        raise NotAsReleased(f"the label of {name} does not agree with its own text")
    return Checked(label=label, content=content, sha256=hashlib.sha256(data).hexdigest(), source=source)


def _read_sidecar(data: bytes, name: str) -> dict[str, Any]:
    where = f"the sidecar {name}{SIDECAR_SUFFIX}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotAsReleased(f"{where} is not UTF-8: it was changed") from None
    label = _parse(text, where)
    if sidecar_text(label) != text:
        raise NotAsReleased(f"{where} was changed: it is not byte for byte what dew wrote")
    return label


def _parse(text: str, where: str) -> dict[str, Any]:
    """A label whose signature holds over its content, or NotAsReleased."""
    try:
        label = json.loads(text)
        if not isinstance(label, dict) or label.get("dew_label") != FORMAT:
            raise ValueError("not a dew label (format 1)")
        verify_signature(label)
        _has_its_fields(label)
    except InvalidSignature:
        raise NotAsReleased(f"{where}: its signature does not match its content: the label was changed") from None
    except (ValueError, KeyError, TypeError) as e:
        raise NotAsReleased(f"{where} is not a readable dew label ({e}): it was changed") from None
    return label


# Every field a reader of a label relies on, and its type: a label signed by some other key may
# hold anything, and must be refused as unreadable rather than fail on a missing field.
_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "AIGC": {"Label": str, "ContentProducer": str, "ProduceID": str},
    "file": {"name": str, "format": str, "approved_sha256": str, "labelled_sha256": str, "embedded": bool},
    "explicit": {"placement": str, "language": str, "text": list, "inserted": str},
    "scenario": {"id": str, "name": str, "version": str, "sha256": str},
    "work_item": {"id": int, "run": int},
    "approval": {"guardian": dict, "at": str, "decision": str, "rule": str, "auth_method": str, "signoffs": list},
}


def _has_its_fields(label: dict[str, Any]) -> None:
    for part, fields in _FIELDS.items():
        if not isinstance(label.get(part), dict):
            raise ValueError(f"'{part}' is missing")
        for field, kind in fields.items():
            if not isinstance(label[part].get(field), kind):
                raise ValueError(f"'{part}.{field}' is missing or not a {getattr(kind, '__name__', kind)}")
    guardian = label["approval"]["guardian"]
    if not (isinstance(guardian.get("id"), str) and isinstance(guardian.get("name"), str)):
        raise ValueError("'approval.guardian' does not name the guardian")
    for so in label["approval"]["signoffs"]:
        if not (isinstance(so, dict) and all(isinstance(so.get(k), str) for k in ("stage", "by", "name", "at"))):
            raise ValueError("'approval.signoffs' holds an unreadable sign-off")
    if label["explicit"]["placement"] not in ("top", "bottom", "sidecar"):
        raise ValueError("'explicit.placement' is not top, bottom or sidecar")


def verify_signature(label: dict[str, Any]) -> None:
    """Raise InvalidSignature (or ValueError, KeyError) unless the label's key signed exactly this label."""
    key = Ed25519PublicKey.from_public_bytes(_strict_b64(label["public_key"]))
    key.verify(_strict_b64(label["signature"]), _statement(label))


def _strict_b64(text: Any) -> bytes:
    """Base64 in its one canonical spelling: a variant that decodes alike is still a changed label."""
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("a key or signature is not in canonical base64")
    return raw


def check_key(checked: Checked, public_key: str) -> None:
    """The label must be signed by the key the holder trusts."""
    if checked.label is not None and checked.label["public_key"] != public_key.strip():
        raise NotAsReleased(f"the label is signed by key {checked.label['public_key']}, not by the key given: it "
                            "was released by another workspace, or its label was forged")  # fmt: skip


@dataclass(frozen=True)
class InTrail:
    """What a workspace's trail says of a checked file."""

    release: Release
    event_seq: int
    label: dict[str, Any] | None


def check_trail(session: Session, checked: Checked) -> InTrail:
    """The file must be a release this workspace recorded: signed by a key it recorded, with the
    label its `output.released` event holds, the hash its release row holds, and not recalled."""
    label = checked.label
    if label is None:
        release = session.exec(select(Release).where(Release.sha256 == checked.sha256)).first()
        if release is None:
            raise NotAsReleased("the file has no label, and no release of this workspace has its hash")
    else:
        keys = {json.loads(e.data).get("public_key") for e in audit.events(session, kinds=["workspace.key_created"])}
        if label["public_key"] not in keys:
            raise NotAsReleased("the label is signed by a key this workspace never recorded: the file was released "
                                "by another workspace, or its label was forged")  # fmt: skip
        run_id = label["work_item"]["run"]
        release = session.exec(select(Release).where(Release.run_id == run_id)).first()
        if release is None:
            raise NotAsReleased(f"this workspace's trail holds no release of run {run_id}")
    event, recorded = released_label(session, release.run_id)
    if event is None:
        raise NotAsReleased(f"no output.released event records the release of run {release.run_id}")
    if label is not None and recorded != label:
        raise NotAsReleased(f"the label differs from the one the trail recorded for run {release.run_id} "
                            f"(audit event {event.seq})")  # fmt: skip
    if json.loads(event.data).get("sha256") != checked.sha256 or release.sha256 != checked.sha256:
        raise NotAsReleased(f"the file is not the one released as run {release.run_id} (by sha256)")
    if release.recalled_at is not None:
        raise NotAsReleased(f"the file is as released (run {release.run_id}), but it was recalled on "
                            f"{when(release.recalled_at):%Y-%m-%d %H:%M} UTC by {release.recalled_by}: "
                            f"{release.recall_reason}")  # fmt: skip
    return InTrail(release=release, event_seq=event.seq, label=recorded)


def check_path(path: Path, sidecar: Path | None = None, *, unlabelled: bool = False) -> Checked:
    """`check` of a file on disk, with its sidecar beside it (or the one given) when there is one."""
    sidecar = sidecar or path.with_name(path.name + SIDECAR_SUFFIX)
    try:
        data = path.read_bytes()
        side = sidecar.read_bytes() if sidecar.is_file() else None
    except OSError as e:
        raise InputInvalid(f"cannot read {e.filename}: {e.strerror}") from None
    return check(data, side, name=path.name, unlabelled=unlabelled)


def approved_text(path: Path) -> str:
    """The approved text inside a released file, once its label holds (for tools and tests)."""
    return check_path(path).content


def released_files(session: Session, release: Release, content: str) -> Composed:
    """The files of a release rebuilt from the approved text and the label its event recorded."""
    _, label = released_label(session, release.run_id)
    return compose(content, label)


def label_names(label: dict[str, Any]) -> dict[str, str]:
    """The facts a person reads in a label, flat (for listings and the CLI)."""
    approver, scenario = label["approval"]["guardian"], label["scenario"]
    return {
        "approved_by": f"{approver['name']} ({approver['id']})"
        if approver["name"] != approver["id"]
        else approver["id"],
        "approved_at": label["approval"]["at"],
        "decision": label["approval"]["decision"],
        "scenario": f"{scenario['id']} {scenario['version']}, sha256 {scenario['sha256'][:12]}",
        "producer": label["AIGC"]["ContentProducer"],
        "produce_id": label["AIGC"]["ProduceID"],
    }
