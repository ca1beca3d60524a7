"""Audit exports on every backend: what they hold, what their filters select, and how the check of
an export against its manifest and the trail names each way it was tampered with."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from typer.testing import CliRunner

from dew.agents.errors import InputInvalid
from dew.guardians import audit
from dew.guardians.cli.main import app
from dew.guardians.db import transaction
from dew.guardians.errors import AuditBroken
from dew.guardians.export import (
    FIELDS,
    Filters,
    check_exports,
    export_events,
    manifest_path,
    parse_time,
    read_manifest,
)
from dew.guardians.flow import decide
from dew.guardians.runs import start_run

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}
QUESTION = {"question": "小微企业有哪些减税政策？\u2028第二行", "company": "某某科技"}


@pytest.fixture
def trail(make_workspace, database_url):
    """Two drill-script runs (one approved and released), a policy-qa run, and events that
    stress the format: Chinese text, U+2028, quotes, commas and newlines in the data."""
    ws = make_workspace(database_url)
    first = start_run(ws, "drill-script", DRILL, requester="alice")
    decide(ws, first.item.id, actor="zhao.lei", action="approve", note='好的, "批准"\n第二行')
    start_run(ws, "drill-script", DRILL, requester="bob")
    start_run(ws, "policy-qa", QUESTION, requester="carol")
    with transaction(ws.engine) as s:
        audit.emit(s, audit.ScenarioPaused(scenario="drill-script", reason="演练暂停, 等待\r\n通知"), actor="admin")
        audit.emit(s, audit.ScenarioPaused(scenario="policy-qa", reason="x"), actor="admin")
    return ws


def stored(ws) -> list[tuple]:
    with transaction(ws.engine) as s:
        return [tuple(r) for r in s.exec(text(f"SELECT {', '.join(FIELDS)} FROM audit_events ORDER BY seq")).all()]


def parse(path: Path, fmt: str) -> list[tuple]:
    if fmt == "jsonl":
        return [tuple(json.loads(line)[f] for f in FIELDS) for line in path.read_bytes().split(b"\n") if line]
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == FIELDS
    return [
        (int(r[0]), r[1], r[2], r[3], int(r[4]) if r[4] else None, int(r[5]) if r[5] else None, r[6], r[7], r[8])
        for r in rows[1:]
    ]


def check(ws, *paths: Path) -> None:
    with transaction(ws.engine) as s:
        check_exports(s, [read_manifest(manifest_path(p)) for p in paths])


def problems(ws, path: Path) -> str:
    with pytest.raises(AuditBroken) as e:
        check(ws, path)
    return e.value.message


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_holds_every_event_as_stored_and_each_hash_recomputes(trail, tmp_path, fmt):
    out = tmp_path / f"trail.{fmt}"
    manifest = export_events(trail.engine, out, fmt)
    records = parse(out, fmt)
    assert records == stored(trail) and manifest.count == len(records)
    for r in records:  # anyone can recompute each hash from the file alone, with json.dumps
        body = json.dumps(dict(zip(FIELDS[:-1], r[:-1], strict=True)), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)  # fmt: skip
        assert hashlib.sha256(body.encode("utf-8")).hexdigest() == r[-1]
    written = json.loads(manifest_path(out).read_text(encoding="utf-8"))
    assert written["file"] == out.name and written["format"] == fmt and written["count"] == len(records)
    assert written["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert written["first"] == {"seq": 1, "hash": records[0][-1]}
    assert written["last"] == {"seq": records[-1][0], "hash": records[-1][-1]}
    assert written["head"] == written["last"]  # the whole trail, up to its head
    assert written["filters"] == {"since": None, "until": None, "scenario": None, "guardian": None}
    check(trail, out)  # a fresh export checks out


def test_an_export_stops_at_the_head_it_began_with_and_never_overwrites(trail, tmp_path):
    out = tmp_path / "trail.jsonl"
    manifest = export_events(trail.engine, out)
    start_run(trail, "drill-script", DRILL, requester="dave")  # the trail goes on
    check(trail, out)  # the export still proves what the trail held up to its head
    assert manifest.head["seq"] < len(stored(trail))
    with pytest.raises(InputInvalid, match="never overwrites"):
        export_events(trail.engine, out)
    assert not list(tmp_path.glob("*.partial"))


def test_filters_select_by_time_scenario_and_guardian(trail, tmp_path):
    events = stored(trail)
    runs = {r[4]: json.loads(r[6])["scenario"] for r in events if r[2] == "run.requested"}

    def exported(name, **filters) -> list[tuple]:
        out = tmp_path / f"{name}.jsonl"
        manifest = export_events(trail.engine, out, "jsonl", Filters(**filters))
        assert manifest.filters == Filters(**filters)
        check(trail, out)
        return parse(out, "jsonl")

    drill = exported("drill", scenario="drill-script")
    assert drill == [e for e in events if (runs.get(e[4]) if e[4] is not None else json.loads(e[6]).get("scenario"))
                     == "drill-script"]  # fmt: skip
    assert {e[2] for e in drill} >= {"run.requested", "run.drafted", "decision.approved", "scenario.paused"}
    assert len({e[4] for e in drill if e[4] is not None}) == 2
    assert exported("none", scenario="no-such-scenario") == []

    zhao = exported("zhao", guardian="zhao.lei")  # owns the drill-script queue
    assert [e for e in zhao if e[4] is not None] == [e for e in drill if e[4] is not None]
    assert [json.loads(e[6])["guardian"] for e in zhao if e[4] is None] == ["zhao.lei"]  # added to the roster
    assert {e[2] for e in exported("lin", guardian="lin.na") if e[4] is not None} == {"run.requested", "run.drafted"}
    assert exported("both", scenario="policy-qa", guardian="zhao.lei") == []

    middle = events[len(events) // 2]
    since = exported("since", since=middle[1])
    assert since == events[len(events) // 2 :]
    assert exported("until", until=middle[1]) == events[: len(events) // 2]
    with pytest.raises(InputInvalid, match="the period is empty"):
        export_events(trail.engine, tmp_path / "empty.jsonl", "jsonl", Filters(since=middle[1], until=middle[1]))


def test_a_guardian_owns_the_items_the_trail_queued_or_passed_to_them(make_workspace, database_url, tmp_path):
    """Staged sign-off: the first stage's guardian and the one it passed the item on to both own it;
    a backup who decided does not."""
    ws = make_workspace(database_url)
    with transaction(ws.engine) as s:
        queued = audit.DraftQueued(scenario="s", revision=0, guardian="first.one", backups=["backup.one"],
                                   draft_sha256="0" * 64, findings=[], models=[])  # fmt: skip
        audit.emit(s, audit.RunRequested(scenario="s", version="1", scenario_sha256="a", inputs_sha256="b",
                                         input_names=[]), actor="alice", run_id=900)  # fmt: skip
        audit.emit(s, queued, actor="agent:s", run_id=900, item_id=901)
        audit.emit(s, audit.SignedOff(stage=0, stage_name="review", rule="backup", auth_method="declared",
                                      next_stage="final", next_guardian="second.one"),
                   actor="backup.one", run_id=900, item_id=901)  # fmt: skip
        audit.emit(s, audit.RunFailed(reason="x", attempt=1), actor="dew", run_id=902)  # another run
    for person, expected in (("first.one", 3), ("second.one", 3), ("backup.one", 0)):
        out = tmp_path / f"{person}.jsonl"
        assert export_events(ws.engine, out, "jsonl", Filters(guardian=person)).count == expected
        assert {r[4] for r in parse(out, "jsonl")} <= {900}


def test_times_are_read_as_utc_and_refused_when_not_iso(tmp_path):
    assert parse_time("2026-11-24", "--since") == "2026-11-24T00:00:00.000000+00:00"
    assert parse_time("2026-11-24T09:30+08:00", "--since") == "2026-11-24T01:30:00.000000+00:00"
    assert parse_time("2026-11-24", "--until", end=True) == "2026-11-25T00:00:00.000000+00:00"  # the day included
    assert parse_time("2026-11-24T09:30", "--until", end=True) == "2026-11-24T09:30:00.000000+00:00"
    for wrong in ("yesterday", "9999-12-31"):
        with pytest.raises(InputInvalid, match="--until takes a date"):
            parse_time(wrong, "--until", end=True)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_edited_record_is_named(trail, tmp_path, fmt):
    out = tmp_path / f"trail.{fmt}"
    export_events(trail.engine, out, fmt)
    body = out.read_text(encoding="utf-8")
    victim = next(r for r in parse(out, fmt) if r[2] == "decision.approved")
    out.write_text(body.replace("zhao.lei", "liu.yang", 1) if fmt == "csv" else body.replace(
        f'"actor":"{victim[3]}"', '"actor":"liu.yang"'), encoding="utf-8")  # fmt: skip
    message = problems(trail, out)
    assert "was changed after the export: its SHA-256 is" in message
    assert "its fields do not hash to its hash: the record was edited" in message
    if fmt == "jsonl":
        assert f"(audit event {victim[0]}, decision.approved): its fields do not hash" in message


def test_a_dropped_record_is_named(trail, tmp_path):
    out = tmp_path / "trail.jsonl"
    export_events(trail.engine, out)
    lines = out.read_bytes().split(b"\n")
    dropped = json.loads(lines.pop(3))
    out.write_bytes(b"\n".join(lines))
    with pytest.raises(AuditBroken) as e:
        check(trail, out)
    assert e.value.seq == dropped["seq"]
    assert (f"audit event {dropped['seq']} ({dropped['kind']}) is selected by the manifest's filters but missing "
            "from the export: a record was removed") in e.value.message  # fmt: skip
    assert "the export holds" in e.value.message and "its manifest says" in e.value.message


def test_a_changed_file_and_a_changed_manifest_are_named(trail, tmp_path):
    out = tmp_path / "trail.jsonl"
    export_events(trail.engine, out)
    out.write_bytes(out.read_bytes() + b"\n")  # a blank line: every record intact, the file not
    assert "was changed after the export" in problems(trail, out)
    out.write_bytes(out.read_bytes()[:-1])
    manifest = json.loads(manifest_path(out).read_text(encoding="utf-8"))
    manifest_path(out).write_text(json.dumps({**manifest, "count": 1}), encoding="utf-8")
    assert f"the export holds {manifest['count']} records, its manifest says 1" in problems(trail, out)
    manifest_path(out).write_text("{}", encoding="utf-8")
    with pytest.raises(InputInvalid, match="not a readable audit export manifest"):
        check(trail, out)
    manifest_path(out).unlink()
    with pytest.raises(InputInvalid, match="not a readable audit export manifest"):
        check(trail, out)


def test_an_added_or_reordered_record_is_named(trail, tmp_path):
    out = tmp_path / "drill.jsonl"
    export_events(trail.engine, out, "jsonl", Filters(scenario="drill-script"))
    lines = out.read_bytes().split(b"\n")[:-1]
    other = next(r for r in stored(trail) if r[2] == "scenario.paused" and "policy-qa" in r[6])
    intruder = json.dumps(dict(zip(FIELDS, other, strict=True)), ensure_ascii=False).encode("utf-8")
    out.write_bytes(b"\n".join([*lines, intruder, b""]))
    assert f"(audit event {other[0]}, scenario.paused) is not one the manifest's filters select" in problems(trail, out)
    out.write_bytes(b"\n".join([lines[1], lines[0], *lines[2:], b""]))
    assert "is out of order: it comes after event" in problems(trail, out)


def test_a_trail_rewritten_after_the_export_is_caught(trail, tmp_path):
    out = tmp_path / "trail.jsonl"
    manifest = export_events(trail.engine, out)
    victim = next(r for r in stored(trail) if r[2] == "decision.approved")
    with transaction(trail.engine) as s:  # rewrite the event and rehash the chain from it on: consistent again
        s.exec(text("UPDATE audit_events SET actor = 'liu.yang' WHERE seq = :n").bindparams(n=victim[0]))
        rows = s.exec(text(f"SELECT {', '.join(FIELDS[:-1])} FROM audit_events WHERE seq >= :n ORDER BY seq")
                      .bindparams(n=victim[0])).all()  # fmt: skip
        prev = victim[7]
        for r in rows:
            digest = audit.event_hash(r[0], r[1], r[2], r[3], r[4], r[5], r[6], prev)
            s.exec(text("UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :n")
                   .bindparams(p=prev, h=digest, n=r[0]))  # fmt: skip
            prev = digest
        s.exec(text("UPDATE audit_head SET hash = :h").bindparams(h=prev))
    with transaction(trail.engine) as s:
        audit.verify(s)  # consistent on its own…
    with pytest.raises(AuditBroken) as e:  # …but not with the export kept elsewhere
        check(trail, out)
    assert e.value.seq == victim[0]
    assert (f"line {victim[0]} (audit event {victim[0]}, decision.approved): the trail's event {victim[0]} now hashes "
            "to") in e.value.message  # fmt: skip
    assert "the trail was rewritten after the export" in e.value.message
    assert f"audit event {manifest.head['seq']} is not the trail's head at the export" in e.value.message


def test_a_truncated_trail_is_caught(trail, tmp_path):
    out = tmp_path / "trail.jsonl"
    manifest = export_events(trail.engine, out)
    last = manifest.head["seq"]
    with transaction(trail.engine) as s:
        s.exec(text("DELETE FROM audit_events WHERE seq = :n").bindparams(n=last))
    message = problems(trail, out)
    assert f"audit event {last}, the trail's head at the export, is gone: the trail was truncated" in message
    assert f"the trail has no event {last}: the trail was rewritten after the export" in message


# --- the command line ---------------------------------------------------------------------------------
@pytest.fixture
def dew(trail, database_url, scenarios_dir, monkeypatch):
    env = {
        "DEW_HOME": str(trail.settings.home),
        "DEW_DATABASE_URL": database_url,
        "DEW_SCENARIOS": str(scenarios_dir),
        "DEW_USER": "",
        "DEW_SERVER": "",
        "COLUMNS": "200",
    }
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, [str(a) for a in args], env=env)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run


def test_the_cli_exports_and_verify_checks_the_export(dew, trail, tmp_path):
    out = tmp_path / "drill.csv"
    result = dew("audit", "export", "--format", "csv", "--scenario", "drill-script", "--since", "2000-01-01",
                 "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"to {out}" in result.stdout and f"dew audit verify --export {manifest_path(out)}" in result.stdout
    manifest = json.loads(manifest_path(out).read_text(encoding="utf-8"))
    assert manifest["filters"]["since"] == "2000-01-01T00:00:00.000000+00:00"
    as_json = dew("audit", "export", "--out", tmp_path / "all.jsonl", "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["format"] == "jsonl"

    verified = dew("audit", "verify", "--export", manifest_path(out), "--export", manifest_path(tmp_path / "all.jsonl"))
    assert verified.exit_code == 0, verified.output
    assert "2 audit export(s) match" in verified.stdout

    out.write_text(out.read_text(encoding="utf-8").replace("zhao.lei", "liu.yang"), encoding="utf-8")
    broken = dew("audit", "verify", "--export", manifest_path(out))
    assert broken.exit_code == 5
    assert "its fields do not hash to its hash: the record was edited" in broken.stderr
    as_json = dew("audit", "verify", "--json", "--export", manifest_path(out))
    assert as_json.exit_code == 5 and json.loads(as_json.stdout)["ok"] is False


def test_the_cli_refuses_what_it_cannot_do(dew, tmp_path):
    assert dew("audit", "export").exit_code == 2  # --out is required: the manifest needs a place
    wrong = dew("audit", "export", "--format", "xml", "--out", tmp_path / "x")
    assert wrong.exit_code == 2 and "xml" in wrong.output
    late = dew("audit", "export", "--since", "tomorrow", "--out", tmp_path / "x")
    assert late.exit_code == 1 and "--since takes a date (YYYY-MM-DD) or an ISO 8601 date and time" in late.stderr
    (tmp_path / "taken.jsonl").write_text("", encoding="utf-8")
    taken = dew("audit", "export", "--out", tmp_path / "taken.jsonl")
    assert taken.exit_code == 1 and "an export never overwrites a file" in taken.stderr
    missing = dew("audit", "verify", "--export", tmp_path / "none.manifest.json")
    assert missing.exit_code == 1 and "not a readable audit export manifest" in missing.stderr


# --- verify's fast reading ----------------------------------------------------------------------------
ODD = [  # (actor, at, kind, data): every kind of text verify's fast path must hash as canonical() does
    ("张三", "2026-11-24T00:00:00.000000+00:00", "k", "{}"),
    ('a"b\\c', "t\n", "k\t", '{"note":"第二行\u2028第三行 😀 \x7f \\"quoted\\""}'),
    ("dew", "t", "decision.approved", "\x01\x1f plain text, not JSON"),
]


def test_verify_reads_every_kind_of_text_as_canonical_hashes_it(make_workspace, database_url):
    ws = make_workspace(database_url)
    with transaction(ws.engine) as s:
        head = s.exec(text("SELECT seq, hash FROM audit_head")).one()
        seq, prev = head[0], head[1]
        for i, (actor, at, kind, data) in enumerate(ODD):
            seq += 1
            record = {"seq": seq, "at": at, "kind": kind, "actor": actor, "run_id": i or None, "item_id": None,
                      "data": data, "prev_hash": prev}  # fmt: skip
            digest = audit.sha256_text(audit.canonical(record))  # the reference, not the fast path
            s.exec(text("INSERT INTO audit_events (seq, at, kind, actor, run_id, item_id, data, prev_hash, hash) "
                        "VALUES (:seq, :at, :kind, :actor, :run_id, :item_id, :data, :prev_hash, :hash)")
                   .bindparams(**record, hash=digest))  # fmt: skip
            prev = digest
        s.exec(text("UPDATE audit_head SET seq = :n, hash = :h").bindparams(n=seq, h=prev))
    with transaction(ws.engine) as s:
        assert audit.verify(s).events == seq
    if database_url.startswith("sqlite"):  # a text replaced by bytes that are not UTF-8 is altered, not a crash
        with transaction(ws.engine) as s:
            s.exec(text("UPDATE audit_events SET data = X'ff22' WHERE seq = :n").bindparams(n=seq))
        with transaction(ws.engine) as s, pytest.raises(AuditBroken, match=f"audit event {seq} .* was altered"):
            audit.verify(s)


# --- the fast canonical encoding ----------------------------------------------------------------------
texts = st.text()  # any unicode but lone surrogates, which no stored text holds (UTF-8 cannot)
numbers = st.one_of(st.none(), st.integers(), st.booleans(), st.floats(allow_nan=False), st.text())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seq=st.one_of(st.integers(), st.booleans(), st.text()), at=st.one_of(texts, st.none(), st.integers()),
       kind=texts, actor=texts, run_id=numbers, item_id=numbers, data=texts, prev_hash=texts)  # fmt: skip
def test_the_fast_canonical_encoding_is_canonical_byte_for_byte(seq, at, kind, actor, run_id, item_id, data, prev_hash):
    record = {"seq": seq, "at": at, "kind": kind, "actor": actor, "run_id": run_id, "item_id": item_id,
              "data": data, "prev_hash": prev_hash}  # fmt: skip
    expected = audit.canonical(record).encode("utf-8")
    fields = (seq, at, kind, actor, run_id, item_id)
    assert audit._canonical_utf8(*fields, data, prev_hash) == expected
    assert audit._canonical_utf8(*fields, data.encode("utf-8"), prev_hash) == expected  # as read from SQLite
    assert audit.event_hash(*fields, data, prev_hash) == hashlib.sha256(expected).hexdigest()


@given(data=st.binary())
def test_stored_bytes_are_hashed_as_the_text_they_encode(data):
    fast = audit._canonical_utf8(1, "t", "k", "a", None, None, data, "p")
    try:
        as_text = data.decode("utf-8")
    except UnicodeDecodeError:  # not text: its record is no text's canonical form, so no hash emit made matches
        with pytest.raises(UnicodeDecodeError):
            fast.decode("utf-8")
        return
    record = {"seq": 1, "at": "t", "kind": "k", "actor": "a", "run_id": None, "item_id": None, "data": as_text,
              "prev_hash": "p"}  # fmt: skip
    assert fast == audit.canonical(record).encode("utf-8")
