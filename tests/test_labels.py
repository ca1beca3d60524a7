"""Labelled releases (China's AI-content labelling measures, GB 45438-2025): every released text
says that AI drafted it and who approved it, carries a signed implicit label beside it (and inside
Markdown), and `dew released verify` tells a holder whether a file is as released. Any edit to a
released file or its label is detected."""

from __future__ import annotations

import base64
import json
import re
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select
from typer.testing import CliRunner

from dew.agents.errors import ScenarioInvalid
from dew.agents.loader import load_text
from dew.guardians import audit, labels
from dew.guardians.auth import Principal
from dew.guardians.brake import recall
from dew.guardians.chainhead import public_key_text, workspace_key
from dew.guardians.cli.main import app
from dew.guardians.crosscheck import check_rows
from dew.guardians.db import transaction
from dew.guardians.errors import NotAsReleased
from dew.guardians.flow import decide
from dew.guardians.models import AuditEvent, AuditHead, Decision
from dew.guardians.queue import released_text
from dew.guardians.reconcile import find_problems, repair
from dew.guardians.runs import start_run

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}
NAME = "安全生产助手 · Safety-drill script generator"
AT = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"
ZH = f"【人工智能生成内容】本文由数字员工「{NAME}」起草，经赵磊（zhao.lei）于 {AT} 审核批准发布。"
EN = f'\\[AI-generated content\\] Drafted by the digital employee "{NAME}"; approved for release by 赵磊 \\(zhao.lei\\) on {AT}\\.'
EMBEDDED = r"\n<!-- dew-label \{[^\n]*\} -->\n"


def drill(scenarios_dir: Path, *, fmt: str = "markdown", label: str = "", extra: str = "") -> None:
    """Give the drill-script scenario another output format, label settings or top-level fields."""
    path = scenarios_dir / "drill-script.yaml"
    source = path.read_text(encoding="utf-8").replace("  format: markdown\n", f"  format: {fmt}\n")
    source = source.replace("release:\n  to: outbox\n", "release:\n  to: outbox\n" + label)
    path.write_text(source.replace("risk: medium\n", "risk: medium\n" + extra), encoding="utf-8")


def release(ws, actor: str = "zhao.lei", edited: str | None = None):
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    action = "edit" if edited is not None else "approve"
    done = decide(ws, r.item.id, actor=actor, action=action, edited=edited)
    return r, done, ws.settings.home / done.release.location


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + ".label.json")


# --- the explicit label: where, in which words ------------------------------------------------------
def test_markdown_carries_the_label_on_top_and_the_signed_label_at_its_end(ws):
    r, _, path = release(ws)
    released = path.read_text(encoding="utf-8")
    head, rest = released.split("\n\n", 1)
    assert re.fullmatch("> " + ZH, head), head
    assert rest.startswith(r.item.draft) and re.fullmatch(EMBEDDED, rest[len(r.item.draft) :])
    assert labels.approved_text(path) == r.item.draft


def test_both_languages_at_the_bottom(make_workspace, scenarios_dir):
    drill(scenarios_dir, label="  label:\n    placement: bottom\n    language: both\n")
    ws = make_workspace()
    r, _, path = release(ws)
    released = path.read_text(encoding="utf-8")
    assert released.startswith(r.item.draft)
    tail = released[len(r.item.draft) :]
    sep = "\n" if r.item.draft.endswith("\n") else "\n\n"
    assert re.fullmatch(re.escape(sep) + f"> {ZH}\n>\n> {EN}\n" + EMBEDDED, tail), tail


@pytest.mark.parametrize(("placement", "language"), [("top", "en"), ("bottom", "zh")])
def test_plain_text_is_exactly_the_label_and_the_approved_text(make_workspace, scenarios_dir, placement, language):
    drill(scenarios_dir, fmt="text", label=f"  label:\n    placement: {placement}\n    language: {language}\n")
    ws = make_workspace()
    r, _, path = release(ws)
    assert path.suffix == ".txt"
    released, line = path.read_text(encoding="utf-8"), {"zh": ZH, "en": EN}[language]
    label = json.loads(sidecar_of(path).read_text(encoding="utf-8"))
    inserted = label["explicit"]["inserted"]
    if placement == "top":
        assert released == inserted + r.item.draft and re.fullmatch(line + "\n\n", inserted)
    else:
        assert released == r.item.draft + inserted and re.fullmatch("\n{1,2}" + line + "\n", inserted)
    assert "<!--" not in released  # plain text has no place for metadata: the sidecar holds it


def test_custom_wording_and_an_edited_approval(make_workspace, scenarios_dir):
    custom = (
        '  label:\n    text:\n      zh: "AI生成（运行 {{ run.id }}），{{ guardian.name }}批准于{{ approved_at }}"\n'
    )
    drill(scenarios_dir, fmt="text", label=custom)
    ws = make_workspace()
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    edited = r.item.draft.replace("First point", "Alarm sounds in bay 3")
    done = decide(ws, r.item.id, actor="liu.yang", action="edit", edited=edited)  # the backup, 刘洋
    path = ws.settings.home / done.release.location
    assert re.fullmatch(
        f"AI生成（运行 {r.run.id}），刘洋批准于{AT}\n\n", path.read_text(encoding="utf-8")[: -len(edited)]
    )
    label = json.loads(sidecar_of(path).read_text(encoding="utf-8"))
    assert label["approval"]["decision"] == "edit" and label["approval"]["rule"] == "backup"
    assert label["file"]["approved_sha256"] == audit.sha256_text(edited) != audit.sha256_text(r.item.draft)


@pytest.mark.parametrize(
    ("label", "problem"),
    [
        (
            "    text:\n      zh: '本文经{{ guardian.name }}批准'\n",
            "text.zh: a zh label must say the text is AI-generated",
        ),
        ("    text:\n      zh: '人工智能生成，已批准'\n", "text.zh: the label must name who approved it"),
        ("    language: both\n    text:\n      en: 'Approved by {{ guardian.id }}'\n", "text.en: a en label must say"),
        ("    text:\n      zh: '人工智能生成 {{ guardian.name }} {{ inputs.party }}'\n", "refers to 'inputs'"),
        ("    text:\n      en: 'AI-generated, {{ guardian.name }}'\n", "text.en is given but language is zh"),
        ("    placement: middle\n", "release.label.placement: Input should be 'top' or 'bottom'"),
    ],
)
def test_a_label_that_does_not_say_what_it_must_is_refused_at_its_line(scenarios_dir, label, problem):
    drill(scenarios_dir, label="  label:\n" + label)
    source = (scenarios_dir / "drill-script.yaml").read_text(encoding="utf-8")
    with pytest.raises(ScenarioInvalid) as e:
        load_text(source, "drill-script.yaml")
    [shown] = e.value.problems
    first = source.splitlines().index("  label:") + 1
    line = int(shown.split(":")[1])  # the line of the field at fault, within the label's block
    assert shown.startswith("drill-script.yaml:") and first <= line <= first + label.count("\n"), shown
    field = shown.split(": ")[1].rsplit(".", 1)[-1]
    assert field == "label" or source.splitlines()[line - 1].strip().startswith(f"{field}:"), shown
    assert "release.label" in shown and problem in shown, shown


# --- the implicit label ----------------------------------------------------------------------------
def test_the_sidecar_holds_the_standard_fields_and_is_signed_by_the_workspace_key(ws, monkeypatch):
    monkeypatch.setenv("DEW_CONTENT_PRODUCER", "某市城市管理局 · 91440300MA5XXXXXX")
    r, done, path = release(ws)
    raw = sidecar_of(path).read_text(encoding="utf-8")
    label = json.loads(raw)
    public = public_key_text(workspace_key(ws).public_key())
    ws_id = labels.workspace_id(public)
    body = path.read_text(encoding="utf-8")
    body = body[: body.index("\n<!-- dew-label ")]
    assert label["AIGC"] == {
        "Label": "1",
        "ContentProducer": "某市城市管理局 · 91440300MA5XXXXXX",
        "ProduceID": f"{ws_id}-{r.run.id}",
        "ReservedCode1": f"sha256:{audit.sha256_text(body)}",
        "ContentPropagator": "",
        "PropagateID": "",
        "ReservedCode2": "",
    }
    assert label["file"] == {"name": path.name, "format": "markdown", "approved_sha256": audit.sha256_text(r.item.draft),
                             "labelled_sha256": audit.sha256_text(body), "embedded": True}  # fmt: skip
    assert label["scenario"] == {
        "id": "drill-script",
        "name": NAME,
        "version": "1.0.0",
        "sha256": r.run.scenario_sha256,
    }
    assert label["work_item"] == {"id": r.item.id, "run": r.run.id}
    assert label["approval"]["guardian"] == {"id": "zhao.lei", "name": "赵磊"}
    assert (label["approval"]["decision"], label["approval"]["rule"], label["approval"]["auth_method"]) == (
        "approve", "owner", "declared")  # fmt: skip
    assert label["trail"] == {"workspace": ws_id, "event": "output.released"} and label["public_key"] == public
    unsigned = audit.canonical({k: v for k, v in label.items() if k != "signature"}).encode("utf-8")
    Ed25519PublicKey.from_public_bytes(base64.b64decode(public)).verify(base64.b64decode(label["signature"]), unsigned)
    assert raw == json.dumps(label, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    with transaction(ws.engine) as s:  # the trail holds the whole label, and the key that signed it
        event = s.exec(select(AuditEvent).where(AuditEvent.kind == "output.released")).one()
        keys = [json.loads(e.data)["public_key"] for e in audit.events(s, kinds=["workspace.key_created"])]
    data = json.loads(event.data)
    assert data["label"] == label and data["content_sha256"] == audit.sha256_text(r.item.draft)
    assert data["sha256"] == done.release.sha256 == labels.sha256_text(path.read_text(encoding="utf-8"))
    assert keys == [public]


def test_sign_offs_before_the_last_are_in_the_label(make_workspace, scenarios_dir):
    drill(scenarios_dir, extra="two_person: true\n")
    ws = make_workspace()
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    decide(ws, r.item.id, actor="zhao.lei", action="approve")  # the first sign-off
    done = decide(ws, r.item.id, actor="liu.yang", action="approve")
    path = ws.settings.home / done.release.location
    label = json.loads(sidecar_of(path).read_text(encoding="utf-8"))
    assert label["approval"]["guardian"] == {"id": "liu.yang", "name": "刘洋"}
    [first] = label["approval"]["signoffs"]
    assert (first["by"], first["name"], first["stage"]) == ("zhao.lei", "赵磊", "第一签 · first sign-off")
    assert "经刘洋（liu.yang）于" in path.read_text(encoding="utf-8").splitlines()[0]


def test_json_outputs_stay_the_approved_data_and_their_label_travels_beside_them(make_workspace, scenarios_dir):
    from dew.agents.testing import ScriptedModelProvider
    from tests.test_governed_run import JSON_SCENARIO

    (scenarios_dir / "triage.yaml").write_text(JSON_SCENARIO, encoding="utf-8")
    ws = make_workspace(provider=ScriptedModelProvider(reply=lambda s, p: '{"category": "noise", "urgency": 2}'))
    r = start_run(ws, "triage", {"complaint": "loud music"}, requester="alice")
    done = decide(ws, r.item.id, actor="li.wei", action="approve")
    path = ws.settings.home / done.release.location
    assert path.read_text(encoding="utf-8") == r.item.draft
    label = json.loads(sidecar_of(path).read_text(encoding="utf-8"))
    assert label["explicit"]["placement"] == "sidecar" and label["explicit"]["inserted"] == ""
    assert label["explicit"]["text"][0].startswith("【人工智能生成内容】") and not label["file"]["embedded"]
    assert labels.approved_text(path) == r.item.draft


def test_the_download_is_the_released_file_byte_for_byte(ws):
    _, done, path = release(ws)
    release_row, served = released_text(ws, Principal.declared("audrey"), done.release.key)
    assert served == path.read_text(encoding="utf-8") and audit.sha256_text(served) == release_row.sha256


def test_two_workers_making_the_workspace_key_at_once_agree_on_one(ws):
    keys: list[str] = []
    threads = [threading.Thread(target=lambda: keys.append(public_key_text(workspace_key(ws).public_key())))
               for _ in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with transaction(ws.engine) as s:
        recorded = [json.loads(e.data)["public_key"] for e in audit.events(s, kinds=["workspace.key_created"])]
    assert len(set(keys)) == 1 and recorded == keys[:1]


# --- dew released verify ------------------------------------------------------------------------------
@pytest.fixture
def dew(tmp_path, monkeypatch):
    """`dew ARGS` in-process, against a workspace (`ws=`) or with none at hand."""
    for name in ("DEW_DATABASE_URL", "DEW_HOME", "DEW_WORKSPACE_KEY", "DEW_SCENARIOS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no ./.dew here

    def run(*args, ws=None):
        env = {"COLUMNS": "200"}
        if ws is not None:
            env |= {"DEW_HOME": str(ws.settings.home), "DEW_DATABASE_URL": ws.settings.database_url,
                    "DEW_SCENARIOS": str(ws.settings.scenarios_dir)}  # fmt: skip
        else:
            env |= {"DEW_HOME": str(tmp_path / "nowhere")}
        result = CliRunner().invoke(app, [str(a) for a in args], env=env)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run


def _fails(result, reason: str) -> None:
    assert result.exit_code == 7, result.output
    assert result.stderr.startswith("Error: ") and reason in result.stderr, result.stderr


def test_verify_an_unchanged_file_offline_with_its_key_and_against_the_trail(ws, dew):
    r, _done, path = release(ws)
    offline = dew("released", "verify", path)
    assert offline.exit_code == 0, offline.output
    assert "is as released" in offline.stdout and "approved by:     赵磊 (zhao.lei)" in offline.stdout
    assert "whose key that is was not checked" in offline.stderr
    key = dew("released", "key", ws=ws).stdout.strip()
    given = dew("released", "verify", path, "--public-key", key)
    assert given.exit_code == 0 and "the key given" in given.stdout and not given.stderr
    trail = dew("released", "verify", path, "--json", ws=ws)
    out = json.loads(trail.stdout)
    assert out["ok"] and out["trail"]["run"] == r.run.id and out["key_checked_against"] == "workspace"
    assert out["label"]["approval"]["guardian"]["id"] == "zhao.lei"
    listed = dew("released", "--json", ws=ws)  # the group still lists what was released
    assert [x["run_id"] for x in json.loads(listed.stdout)] == [r.run.id]


def test_verify_names_each_change(make_workspace, scenarios_dir, dew, tmp_path):
    drill(scenarios_dir, fmt="text")
    ws = make_workspace()
    _r, _, path = release(ws)
    original, side = path.read_text(encoding="utf-8"), sidecar_of(path).read_text(encoding="utf-8")
    copy = tmp_path / "held" / path.name
    copy.parent.mkdir()

    def holding(file_text: str, sidecar_text: str | None = side) -> Path:
        copy.write_text(file_text, encoding="utf-8")
        sidecar_of(copy).unlink(missing_ok=True)
        if sidecar_text is not None:
            sidecar_of(copy).write_text(sidecar_text, encoding="utf-8")
        return copy

    assert dew("released", "verify", holding(original)).exit_code == 0
    body_at = original.index("warehouse")
    one_byte = original[:body_at] + "W" + original[body_at + 1 :]
    _fails(dew("released", "verify", holding(one_byte)), f"the text of {path.name} was changed after release: "
                                                          "it is not what 赵磊 (zhao.lei) approved")  # fmt: skip
    _fails(dew("released", "verify", holding(original.replace("赵磊", "李伟", 1))), "the label at the top of")
    _fails(dew("released", "verify", holding(original.split("\n\n", 1)[1])), "the label at the top of")
    forged = side.replace('"name": "赵磊"', '"name": "李伟"')
    _fails(dew("released", "verify", holding(original, forged)), "its signature does not match its content")
    _fails(dew("released", "verify", holding(original, side.replace("  ", "   ", 1))), "not byte for byte what dew")
    _fails(dew("released", "verify", holding(original, None)), "has no label: no sidecar")
    found = dew("released", "verify", holding(original, None), ws=ws)  # the trail still knows it, by its hash
    assert found.exit_code == 0 and "not with the file (no sidecar beside it)" in found.stdout
    _fails(dew("released", "verify", holding(one_byte, None), ws=ws), "no release of this workspace has its hash")
    other_key = public_key_text(Ed25519PrivateKey.generate().public_key())
    _fails(dew("released", "verify", holding(original), "--public-key", other_key), "not by the key given")


def test_markdown_verifies_from_the_label_inside_it_but_not_against_another_sidecar(ws, dew, tmp_path):
    _r, _, path = release(ws)
    _, _, second = release(ws)
    copy = tmp_path / path.name
    copy.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    alone = dew("released", "verify", copy)
    assert alone.exit_code == 0 and "read from inside the file" in alone.stdout
    wrong = dew("released", "verify", copy, "--sidecar", sidecar_of(second))
    _fails(wrong, "the label embedded at the end of")


def test_a_file_from_another_workspace_or_a_recalled_one_is_refused(make_workspace, dew, tmp_path):
    ws = make_workspace()
    other = make_workspace(database_url=f"sqlite:///{tmp_path / 'other.db'}", home=tmp_path / "other")
    _, _, theirs = release(other)
    _fails(dew("released", "verify", theirs, ws=ws), "signed by a key this workspace never recorded")
    _, done, ours = release(ws)
    recall(ws, done.release.key, actor="zhao.lei", reason="wrong facility")
    _fails(dew("released", "verify", ours, ws=ws), "was recalled on")
    assert dew("released", "verify", ours).exit_code == 0  # offline, only the trail knows of the recall
    assert dew("released", "verify", ours, "--offline", ws=ws).exit_code == 0
    assert dew("released", "verify", theirs, "--offline", ws=ws).exit_code == 0  # consistent, and signed by its key


# --- any edit is detected ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["markdown", "text"])
def test_any_single_character_edit_to_the_file_or_its_sidecar_is_detected(make_workspace, scenarios_dir, fmt):
    drill(scenarios_dir, fmt=fmt, label="  label:\n    language: both\n")
    ws = make_workspace()
    _, _, path = release(ws)
    released, side = path.read_text(encoding="utf-8"), sidecar_of(path).read_text(encoding="utf-8")
    labels.check(released.encode("utf-8"), side.encode("utf-8"))  # as released, it holds
    label_end = len(json.loads(side)["explicit"]["inserted"])
    embedded_at = released.find("\n<!-- dew-label ")
    ends = [side.index(f'"{v}"') + len(v) for v in (json.loads(side)["signature"], json.loads(side)["public_key"])]

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def edited_is_detected(data):
        target = data.draw(
            st.sampled_from(["file", "sidecar", "file alone"] if fmt == "markdown" else ["file", "sidecar"])
        )
        original = side if target == "sidecar" else released
        op = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        last = len(original) - (0 if op == "insert" else 1)
        regions = [st.integers(0, last), st.integers(0, min(label_end, last))]  # anywhere; the explicit label
        if target != "sidecar" and embedded_at > 0:
            regions.append(st.integers(embedded_at, last))  # the label inside the file
        if target == "sidecar":  # the ends of the key and the signature, where base64 has spare bits
            regions += [st.integers(max(0, end - 4), min(end, last)) for end in ends]
        i = data.draw(st.one_of(regions))
        if op == "delete":
            changed = original[:i] + original[i + 1 :]
        else:
            c = data.draw(st.characters(codec="utf-8").filter(lambda c: op == "insert" or c != original[i]))
            changed = original[:i] + c + original[i + (op == "replace") :]
        file_text, sidecar_text = (released, changed) if target == "sidecar" else (changed, side)
        with pytest.raises(NotAsReleased):
            labels.check(file_text.encode("utf-8"), None if target == "file alone" else sidecar_text.encode("utf-8"))

    edited_is_detected()


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_a_key_or_signature_spelt_another_way_in_base64_is_a_changed_label(make_workspace, scenarios_dir, fmt):
    """Base64's last character has spare bits: another letter there may decode to the same bytes."""
    drill(scenarios_dir, fmt=fmt)
    ws = make_workspace()
    _, _, path = release(ws)
    released, side = path.read_text(encoding="utf-8"), sidecar_of(path).read_text(encoding="utf-8")
    label = json.loads(side)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for field in ("signature", "public_key"):
        value = label[field]
        cut = len(value.rstrip("="))
        for c in alphabet.replace(value[cut - 1], ""):
            variant = value[: cut - 1] + c + value[cut:]
            with pytest.raises(NotAsReleased):  # in the sidecar, or (Markdown) inside a file without one
                if fmt == "text":
                    labels.check(released.encode("utf-8"), side.replace(value, variant).encode("utf-8"))
                else:
                    labels.check(released.replace(value, variant).encode("utf-8"), None)


def test_a_label_signed_by_another_key_with_fields_missing_is_unreadable_not_a_crash(ws, dew, tmp_path):
    _, _, path = release(ws)
    forged = json.loads(sidecar_of(path).read_text(encoding="utf-8"))
    del forged["approval"]["guardian"]
    key = Ed25519PrivateKey.generate()
    forged["public_key"] = public_key_text(key.public_key())
    unsigned = audit.canonical({k: v for k, v in forged.items() if k != "signature"}).encode("utf-8")
    forged["signature"] = base64.b64encode(key.sign(unsigned)).decode("ascii")
    copy = tmp_path / "forged.md"
    copy.write_bytes(path.read_bytes())
    sidecar_of(copy).write_text(labels.sidecar_text(forged), encoding="utf-8")
    _fails(dew("released", "verify", copy), "is not a readable dew label ('approval.guardian' is missing")


# --- the trail and the outbox ------------------------------------------------------------------------
def test_a_missing_sidecar_is_repaired_and_a_changed_one_reported(ws):
    _, _, path = release(ws)
    side = sidecar_of(path)
    original = side.read_bytes()
    side.unlink()
    [problem] = find_problems(ws)
    assert problem.kind == "label_missing" and problem.repairable
    [(_, outcome)] = repair(ws, actor="zhao.lei")
    assert outcome == "delivered" and side.read_bytes() == original and find_problems(ws) == []
    side.write_bytes(original.replace(b'"decision": "approve"', b'"decision": "edit"'))
    [problem] = find_problems(ws)
    assert problem.kind == "label_differs" and not problem.repairable


def test_a_missing_file_is_delivered_again_with_its_sidecar(ws):
    _, _, path = release(ws)
    released, side = path.read_bytes(), sidecar_of(path).read_bytes()
    path.unlink()
    sidecar_of(path).unlink()
    assert [p.kind for p in find_problems(ws)] == ["file_missing"]  # one problem: its repair brings both
    repair(ws, actor="zhao.lei")
    assert path.read_bytes() == released and sidecar_of(path).read_bytes() == side


def _rewrite_release_event(ws, change) -> None:
    """What someone with the whole database could do: change the release event, redo every hash after it."""
    with transaction(ws.engine) as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.kind == "output.released")).one()
        data = json.loads(event.data)
        change(data)
        event.data = audit.canonical(data)
        prev = event.prev_hash
        for ev in s.exec(select(AuditEvent).where(AuditEvent.seq >= event.seq).order_by(AuditEvent.seq)).all():
            ev.prev_hash = prev
            ev.hash = prev = audit.event_hash(ev.seq, ev.at, ev.kind, ev.actor, ev.run_id, ev.item_id, ev.data, prev)
            s.add(ev)
        head = s.get(AuditHead, 1)
        head.hash = prev
        s.add(head)
    with transaction(ws.engine) as s:
        audit.verify(s)  # the chain alone is fooled


@pytest.mark.parametrize("resign", [False, True])
def test_the_trail_proves_the_file_is_the_approved_text_with_its_label(ws, resign):
    release(ws)
    with transaction(ws.engine) as s:
        assert check_rows(s) == []
    key = workspace_key(ws)

    def another_label(data):
        label = data["label"]
        label["explicit"]["inserted"] = label["explicit"]["inserted"].replace("赵磊", "李伟")
        if resign:  # even with the workspace key, a label must fit the text and the file recorded
            unsigned = audit.canonical({k: v for k, v in label.items() if k != "signature"}).encode("utf-8")
            label["signature"] = base64.b64encode(key.sign(unsigned)).decode("ascii")

    _rewrite_release_event(ws, another_label)
    with transaction(ws.engine) as s:
        [found] = [str(m) for m in check_rows(s)]
    expected = "is not the approved text with the label" if resign else "is not validly signed"
    assert found.startswith("releases 1 (audit event") and expected in found, found


def test_releases_made_before_labels_still_verify(ws, dew, monkeypatch):
    """An `output.released` event of before this change has no label and no content hash."""
    import dew.guardians.release as release_module

    real = audit.OutputReleased

    def unlabelled_event(**fields):
        event = real(**{k: fields[k] for k in ("destination", "location", "sha256", "decision")})
        event.data = lambda: {k: fields[k] for k in ("destination", "location", "sha256", "decision")}  # type: ignore[method-assign]
        return event

    monkeypatch.setattr(release_module.labels, "make_label", lambda *a, **k: None)
    monkeypatch.setattr(release_module.audit, "OutputReleased", unlabelled_event)
    r, done, path = release(ws)
    monkeypatch.undo()
    assert path.read_text(encoding="utf-8") == r.item.draft and not sidecar_of(path).exists()
    with transaction(ws.engine) as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.kind == "output.released")).one()
        assert set(json.loads(event.data)) == {"destination", "location", "sha256", "decision"}
        assert check_rows(s) == []
    assert find_problems(ws) == []
    assert released_text(ws, Principal.declared("audrey"), done.release.key)[1] == r.item.draft
    old = dew("released", "verify", path, ws=ws)
    assert old.exit_code == 0 and "before released texts were labelled" in old.stdout
    _fails(dew("released", "verify", path), "has no label")
    _, _, labelled = release(ws)  # later releases of the same workspace are labelled
    assert sidecar_of(labelled).exists() and dew("released", "verify", labelled, ws=ws).exit_code == 0


def test_the_decision_time_in_the_label_is_the_decision_s(ws):
    _, _done, path = release(ws)
    with transaction(ws.engine) as s:
        decision = s.exec(select(Decision)).one()
    label = json.loads(sidecar_of(path).read_text(encoding="utf-8"))
    assert label["approval"]["at"] == labels.when(decision.created_at).isoformat()
    assert f"{labels.when(decision.created_at):%Y-%m-%d %H:%M} UTC" in path.read_text(encoding="utf-8").splitlines()[0]
