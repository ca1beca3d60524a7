"""Audit exports: the trail, or the part of it a filter selects, streamed to a JSONL or CSV file
that an auditor can check without dew, with a manifest beside it; and the check of such an
export against the trail (`dew audit verify --export MANIFEST`).

Every exported record carries every field its hash covers (seq, at, kind, actor, run_id, item_id,
data exactly as stored, prev_hash) and the hash, so anyone can recompute it from the file alone:
SHA-256 of the UTF-8 of `json.dumps(record_without_hash, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`. The manifest (`FILE.manifest.json`) records the format, the filters, the
count, the first and last event, the file's SHA-256 and the trail's head when the export began.
An export holds the events up to that head only, so it is a function of the trail as it then
was: the check selects the same events again and compares them one by one, which catches an
edited, dropped or added record, a changed file, and a trail rewritten after the export.

Which events a filter selects (filters combine: an event must pass each one given):
- `since` / `until`: the event's time `at`, from `since` (inclusive) to `until` (exclusive);
  a time without a zone is UTC; on the command line a date alone as `--until` includes that day.
- `scenario S`: the events of every run of S (the runs table's scenario id; every event of a
  run carries its run id), and the run-less events whose data names S as their `scenario`
  (paused, resumed, escalation contact set, version recorded).
- `guardian G`: the events of every work item G owned at any stage, as the trail recorded it
  (`run.drafted` queued it to G, or `decision.signed_off` passed it on to G), and every event of
  those items' runs (request, failures, hand-offs, release), and the run-less events whose data
  names G as their `guardian` (added to the roster, delegations given). A backup or a delegate
  who decided an item does not make it theirs; the trail's own record decides, not the work
  items table, which later stages rewrite.

Memory stays flat whatever the trail's length: events are read, written and checked a batch at a
time; only the ids of the runs and items a scenario or guardian filter selects are held.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dew.agents.errors import InputInvalid

from . import audit
from .db import reading, transaction
from .errors import AuditBroken
from .models import AuditEvent, AuditHead, Run
from .stats import parse_moment

FORMAT = 1
FORMATS = ("jsonl", "csv")
FIELDS = ("seq", "at", "kind", "actor", "run_id", "item_id", "data", "prev_hash", "hash")
BATCH = 5000
MAX_LISTED = 20  # problems named one by one; past that, only counted

_T = AuditEvent.__table__.c  # type: ignore[attr-defined]
_COLUMNS = [_T[name] for name in FIELDS]
_RUNS = Run.__table__.c  # type: ignore[attr-defined]
_OWNED_BY = {"run.drafted": "guardian", "decision.signed_off": "next_guardian"}
_LINE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)  # bytes a tampered row holds
_escape = json.encoder.encode_basestring  # json.dumps of a str with ensure_ascii=False, in C
_int_text = int.__repr__  # json.dumps of an int

_FIELD_SET = frozenset(FIELDS)
_fields = itemgetter(*FIELDS)
_decode = json.JSONDecoder().decode
Row = tuple[Any, ...]  # the FIELDS of one event, in that order


def manifest_path(out: Path) -> Path:
    """Where the manifest of the export `out` is written: beside it, `FILE.manifest.json`."""
    return out.with_name(out.name + ".manifest.json")


def parse_time(text: str, option: str, *, end: bool = False) -> str:
    """An ISO 8601 date or time as the trail writes `at` (UTC, microseconds), so that comparing
    the texts compares the times. A date alone is its start, or with `end` the start of the next
    day, so that `--until 2026-11-24` includes that day (as `dew stats` reads it)."""
    try:
        moment = parse_moment(text, end=end)  # the one reading of a period's bounds, as dew stats has it
    except InputInvalid:
        moment = None
    if moment is None:
        raise InputInvalid(f"{option} takes a date (YYYY-MM-DD) or an ISO 8601 date and time "
                           f"(2026-11-24T09:30+08:00), not '{text}'")  # fmt: skip
    return moment.isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Filters:
    since: str | None = None  # as `at` is written (parse_time); inclusive
    until: str | None = None  # exclusive
    scenario: str | None = None
    guardian: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass
class Manifest:
    format: str
    filters: Filters
    count: int
    first: dict[str, Any] | None  # {"seq", "hash"} of the first exported event; None when empty
    last: dict[str, Any] | None
    sha256: str  # of the export file's bytes
    size: int
    exported_at: str
    head: dict[str, Any]  # {"seq", "hash"}: the trail's head when the export began
    file: Path  # the export file (the manifest names it relative to itself)
    source: Path | None = field(default=None, compare=False)  # the manifest file, once written or read

    def to_dict(self) -> dict[str, Any]:
        return {
            "dew_audit_export": FORMAT,
            "file": self.file.name,
            "format": self.format,
            "fields": list(FIELDS),
            "filters": self.filters.to_dict(),
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "sha256": self.sha256,
            "size": self.size,
            "exported_at": self.exported_at,
            "head": self.head,
        }


# --- selecting --------------------------------------------------------------------------------------
@dataclass
class _Scope:
    """What the scenario and guardian filters let through, worked out once before streaming."""

    filters: Filters
    scenario_runs: set[int] | None = None
    guardian_runs: set[int] | None = None
    guardian_items: set[int] | None = None

    def admits(self, run_id: int | None, item_id: int | None, data: str) -> bool:
        f = self.filters
        if f.scenario is not None:
            assert self.scenario_runs is not None
            if run_id is None:
                if _named(data, "scenario") != f.scenario:
                    return False
            elif run_id not in self.scenario_runs:
                return False
        if f.guardian is not None:
            assert self.guardian_runs is not None and self.guardian_items is not None
            if run_id is None and item_id is None:
                return _named(data, "guardian") == f.guardian
            return run_id in self.guardian_runs or item_id in self.guardian_items
        return True


def _named(data: str, key: str) -> Any:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value.get(key) if isinstance(value, dict) else None


def _scope(session: Session, filters: Filters, upto: int) -> _Scope:
    scope = _Scope(filters)
    if filters.scenario is not None:
        ids = session.connection().execute(select(_RUNS.id).where(_RUNS.scenario_id == filters.scenario))
        scope.scenario_runs = {run_id for (run_id,) in ids}
    if filters.guardian is not None:
        scope.guardian_runs, scope.guardian_items = set(), set()
        owned = (
            select(_T.run_id, _T.item_id, _T.kind, _T.data)
            .where(_T.kind.in_(list(_OWNED_BY)), _T.seq <= upto)
            .execution_options(yield_per=BATCH)
        )
        for run_id, item_id, kind, data in session.connection().execute(owned):
            if _named(data, _OWNED_BY[kind]) == filters.guardian:
                if run_id is not None:
                    scope.guardian_runs.add(run_id)
                if item_id is not None:
                    scope.guardian_items.add(item_id)
    return scope


def _selected(
    open_session: Callable[[], AbstractContextManager[Session]], filters: Filters, upto: int
) -> Iterator[list[Row]]:
    """The events the filters select, up to event `upto`, oldest first: a list per batch read,
    each batch in a session of its own."""
    with open_session() as s:
        scope = _scope(s, filters, upto)
    everything = filters.scenario is None and filters.guardian is None
    after = 0
    while after < upto:
        query = select(*_COLUMNS).where(_T.seq > after, _T.seq <= upto)
        if filters.since is not None:
            query = query.where(_T.at >= filters.since)
        if filters.until is not None:
            query = query.where(_T.at < filters.until)
        with open_session() as s:
            rows: list[Row] = list(s.connection().execute(query.order_by(_T.seq).limit(BATCH)).all())
        if not rows:
            return
        yield rows if everything else [row for row in rows if scope.admits(row[4], row[5], row[6])]
        after = rows[-1][0]


def _head(session: Session) -> AuditHead:
    head = session.get(AuditHead, 1)
    if head is None:
        raise AuditBroken(1, "the audit trail's head record is missing: the trail was tampered with")
    return head


# --- writing ----------------------------------------------------------------------------------------
def _jsonl(rows: list[Row]) -> bytes:
    """One JSON object a line, its keys in FIELDS order; `data` the stored text, as a string."""
    lines = []
    for row in rows:
        seq, at, kind, actor, run_id, item_id, data, prev_hash, digest = row
        try:  # what json.dumps writes, without building a dict per event (a third of the export's time)
            lines.append(
                f'{{"seq":{_int_text(seq)},"at":{_escape(at)},"kind":{_escape(kind)},"actor":{_escape(actor)},'
                f'"run_id":{"null" if run_id is None else _int_text(run_id)},'
                f'"item_id":{"null" if item_id is None else _int_text(item_id)},"data":{_escape(data)},'
                f'"prev_hash":{_escape(prev_hash)},"hash":{_escape(digest)}}}\n'
            )
        except TypeError:  # a value of another type, as a tampered database may hold: json.dumps itself
            lines.append(_LINE.encode(dict(zip(FIELDS, row, strict=True))) + "\n")
    return "".join(lines).encode("utf-8")


def _csv(rows: list[Row], header: bool = False) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # RFC 4180: CRLF between records, fields quoted when they must be
    if header:
        writer.writerow(FIELDS)
    writer.writerows(rows)  # None (no run, no item) is written as an empty field
    return buffer.getvalue().encode("utf-8")


@dataclass
class _Written:
    """The export file so far: what the manifest says of it."""

    file: BinaryIO
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    count: int = 0
    first: dict[str, Any] | None = None
    last: dict[str, Any] | None = None

    def add(self, chunk: bytes, rows: list[Row]) -> None:
        self.file.write(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)
        if rows:
            self.first = self.first or {"seq": rows[0][0], "hash": rows[0][8]}
            self.last = {"seq": rows[-1][0], "hash": rows[-1][8]}
            self.count += len(rows)


def export_events(engine: Engine, out: Path, fmt: str = "jsonl", filters: Filters = Filters()) -> Manifest:
    """Write the events the filters select to `out` and the manifest beside it; return the manifest.

    Each batch is read in a short transaction of its own, so a long export does not hold back the
    people deciding meanwhile; events recorded after the export began are left out (they come
    after its head). Each file appears complete or not at all, the manifest last."""
    if fmt not in FORMATS:
        raise InputInvalid(f"an export is jsonl or csv, not '{fmt}'")
    if filters.since is not None and filters.until is not None and filters.since >= filters.until:
        raise InputInvalid("the period is empty: --since must come before --until")
    manifest_file = manifest_path(out)
    for path in (out, manifest_file):
        if path.exists():
            raise InputInvalid(f"{path} exists: an export never overwrites a file; choose another name")
    with transaction(engine) as s:
        head = _head(s)
        upto, head_hash = head.seq, head.hash
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:
        with open(partial, "wb") as f:
            written = _Written(f)
            if fmt == "csv":
                written.add(_csv([], header=True), [])
            for rows in _selected(lambda: reading(engine), filters, upto):
                if rows:
                    written.add(_csv(rows) if fmt == "csv" else _jsonl(rows), rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    manifest = Manifest(
        format=fmt, filters=filters, count=written.count, first=written.first, last=written.last,
        sha256=written.digest.hexdigest(), size=written.size, exported_at=audit.now_iso(),
        head={"seq": upto, "hash": head_hash}, file=out, source=manifest_file,
    )  # fmt: skip
    partial = manifest_file.with_name(manifest_file.name + ".partial")
    partial.write_text(json.dumps(manifest.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, manifest_file)
    return manifest


# --- reading and checking ---------------------------------------------------------------------------
def read_manifest(path: Path) -> Manifest:
    """A manifest as written by `export_events`, or InputInvalid saying what is wrong with it."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(body, dict) or body.get("dew_audit_export") != FORMAT:
            raise ValueError("not a dew audit export manifest (format 1)")
        if body["format"] not in FORMATS:
            raise ValueError(f"unknown export format '{body['format']}'")
        filters = Filters(**{k: body["filters"].get(k) for k in ("since", "until", "scenario", "guardian")})
        head = {"seq": int(body["head"]["seq"]), "hash": str(body["head"]["hash"])}
        name = str(body["file"])
        if Path(name).name != name:
            raise ValueError(f"the export file must be named beside the manifest, not '{name}'")
        return Manifest(
            format=body["format"], filters=filters, count=int(body["count"]), first=body["first"], last=body["last"],
            sha256=str(body["sha256"]), size=int(body["size"]), exported_at=str(body["exported_at"]), head=head,
            file=path.parent / name, source=path,
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputInvalid(f"{path}: not a readable audit export manifest: {e}") from None


class _Malformed(Exception):
    pass


def _csv_record(values: list[str]) -> Row:
    """One CSV record as the FIELDS tuple: an empty run or item is none."""
    if len(values) != len(FIELDS):
        raise _Malformed(f"{len(values)} fields, not {len(FIELDS)}")
    seq, at, kind, actor, run_id, item_id, data, prev_hash, digest = values
    try:
        return (int(seq), at, kind, actor, int(run_id) if run_id != "" else None,
                int(item_id) if item_id != "" else None, data, prev_hash, digest)  # fmt: skip
    except ValueError as e:
        raise _Malformed(str(e)) from None


def _json_record(values: Any) -> Row:
    """One JSONL record as the FIELDS tuple, its types checked."""
    if type(values) is not dict or values.keys() != _FIELD_SET:
        raise _Malformed(f"its fields are not {', '.join(FIELDS)}")
    row = _fields(values)
    seq, at, kind, actor, run_id, item_id, data, prev_hash, digest = row
    if (
        type(seq) is not int
        or (run_id is not None and type(run_id) is not int)
        or (item_id is not None and type(item_id) is not int)
        or not (type(at) is type(kind) is type(actor) is type(data) is type(prev_hash) is type(digest) is str)
    ):
        raise _Malformed("a field has the wrong type")
    return row


def _records(manifest: Manifest) -> Iterator[tuple[int, Row | str]]:
    """(line, record) for each record of the export file, or (line, what is wrong) for a bad one."""
    if manifest.format == "csv":
        with open(manifest.file, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is not None and tuple(header) != FIELDS:
                yield 1, f"the header is not {','.join(FIELDS)}"
            for values in reader:
                try:
                    yield reader.line_num, _csv_record(values)
                except _Malformed as e:
                    yield reader.line_num, f"not a record: {e}"
        return
    with open(manifest.file, "rb") as f:  # records end at b"\n" only: U+2028 in a text is not an end
        for number, line in enumerate(f, start=1):
            try:
                yield number, _json_record(_decode(line.decode("utf-8")))
            except (ValueError, _Malformed) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                yield number, f"not a record: {e}"


def _file_digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _stored_hash(session: Session, seq: int) -> str | None:
    return session.connection().execute(select(_T.hash).where(_T.seq == seq)).scalar()


def _problems(session: Session, m: Manifest) -> Iterator[tuple[int | None, str]]:
    """(event seq or None, what is wrong) for each way the export `m` differs from its manifest or the trail."""
    if not m.file.is_file():
        yield None, f"the export file {m.file} is missing"
        return
    sha, size = _file_digest(m.file)
    file_intact = sha == m.sha256 and size == m.size
    if not file_intact:
        yield None, (f"the export file {m.file.name} was changed after the export: its SHA-256 is {sha} "
                     f"({size} bytes), the manifest says {m.sha256} ({m.size} bytes)")  # fmt: skip
    head_seq, head_hash = m.head["seq"], m.head["hash"]
    if head_seq > 0:
        now = _stored_hash(session, head_seq)
        if now is None:
            yield head_seq, f"audit event {head_seq}, the trail's head at the export, is gone: the trail was truncated"
        elif now != head_hash:
            yield head_seq, (f"audit event {head_seq} is not the trail's head at the export (it hashed to "
                             f"{head_hash}, now {now}): the trail was rewritten after the export")  # fmt: skip
    rewritten = "the trail was rewritten after the export" if file_intact else "the record or the trail was changed"
    expected = chain.from_iterable(_selected(lambda: nullcontext(session), m.filters, head_seq))
    pending = next(expected, None)  # the next event the filters select that no record has matched yet
    count, previous = 0, 0
    first: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    for line, record in _records(m):
        if isinstance(record, str):
            yield None, f"line {line}: {record}"
            continue
        count += 1
        seq, kind, digest = record[0], record[2], record[8]
        where = f"line {line} (audit event {seq}, {kind})"
        first = first or {"seq": seq, "hash": digest}
        last = {"seq": seq, "hash": digest}
        if audit.event_hash(*record[:8]) != digest:
            yield seq, f"{where}: its fields do not hash to its hash: the record was edited"
        if seq <= previous:
            yield seq, f"{where} is out of order: it comes after event {previous}"
            continue
        previous = seq
        while pending is not None and pending[0] < seq:
            yield pending[0], (f"audit event {pending[0]} ({pending[2]}) is selected by the manifest's filters "
                               "but missing from the export: a record was removed")  # fmt: skip
            pending = next(expected, None)
        if pending is not None and pending[0] == seq:
            if pending[8] != digest:
                yield seq, f"{where}: the trail's event {seq} now hashes to {pending[8]}, not {digest}: {rewritten}"
            pending = next(expected, None)
            continue
        stored = _stored_hash(session, seq)
        if stored is None:
            yield seq, f"{where}: the trail has no event {seq}: {rewritten}"
        elif stored != digest:
            yield seq, f"{where}: the trail's event {seq} now hashes to {stored}, not {digest}: {rewritten}"
        else:
            yield seq, f"{where} is not one the manifest's filters select: a record was added"
    while pending is not None:
        yield pending[0], (f"audit event {pending[0]} ({pending[2]}) is selected by the manifest's filters "
                           "but missing from the export: a record was removed")  # fmt: skip
        pending = next(expected, None)
    if count != m.count:
        yield None, f"the export holds {count} records, its manifest says {m.count}"
    for name, ours, theirs in (("first", first, m.first), ("last", last, m.last)):
        if ours != theirs:
            yield None, f"the export's {name} event is {_event_text(ours)}, its manifest says {_event_text(theirs)}"


def _event_text(event: dict[str, Any] | None) -> str:
    return "none" if not event else f"{event.get('seq')}:{event.get('hash')}"


def check_exports(session: Session, manifests: list[Manifest]) -> None:
    """Raise AuditBroken listing every way an export differs from its manifest or from the trail.

    Checks the file's SHA-256, size, count and first and last events against the manifest; that
    each record's fields hash to its hash; that the trail still holds the head the export was
    made at; and, selecting again what the manifest's filters select up to that head, that each
    selected event is in the export once, in order, with the hash the trail holds for it."""
    lines: list[str] = []
    first_bad: int | None = None
    total = 0
    for m in manifests:
        for seq, problem in _problems(session, m):
            total += 1
            if seq is not None and (first_bad is None or seq < first_bad):
                first_bad = seq
            if len(lines) < MAX_LISTED:
                lines.append(f"{m.source or m.file}: {problem}")
    if not total:
        return
    more = f" ({total - len(lines)} more not listed)" if total > len(lines) else ""
    lines.append(f"{total} problem(s) with the audit export(s){more}: they do not prove what the trail holds")
    raise AuditBroken(first_bad or 0, "\n".join(lines))
