"""How fast can an auditor check and export a large trail? Verify and export one million events.

    python bench/audit_verify.py [--events 1000000] [--database-url postgresql://...] [--json FILE]

Builds a workspace (a SQLite file, or a fresh PostgreSQL database with --database-url) whose
trail holds N events of a realistic mix (runs requested, drafts queued with their model
provenance, reminders, decisions with Chinese notes, releases), each hashed by `audit.event_hash`,
the function `emit` uses, and bulk-inserted, so the trail verifies as one written by dew. Then, in
the same run:

  floor    hashlib.sha256 over every event's canonical bytes, built beforehand, in a plain loop:
           the cost of the hashes alone, what no verify of this chain can beat on one core
  verify   `audit.verify` over the whole trail (reading, canonical encoding, hashing, links, head),
           in order in one process, and in parts at once, one process per core, as
           `dew audit verify` does (--processes, default the machine's cores)
  export   `dew audit export`'s code writing every event to JSONL with its manifest, and the
           check of that export (`verify --export`): events/s, and the peak of memory Python
           allocated while exporting (tracemalloc), which must not grow with the trail

Each is timed `--repeat` times (default 3), the floor and both verifies interleaved, and the best
is kept. Prints a table; --json FILE writes the numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select

from dew.agents.names import shipped_directory
from dew.guardians import audit, export
from dew.guardians.db import reading, transaction
from dew.guardians.models import AuditEvent, AuditHead
from dew.guardians.workspace import Settings, Workspace

COLUMNS = ("seq", "at", "kind", "actor", "run_id", "item_id", "data", "prev_hash", "hash")
SCENARIOS = ("drill-script", "hotline-intake", "policy-qa", "enforcement-document")
NOTES = ("同意，按期组织演练。", "Approved as drafted.", "请补充疏散路线后再报。", None)


def event_mix(start_run: int) -> Iterator[tuple[audit.Event, str, int | None, int | None]]:
    """(event, actor, run_id, item_id), in the proportions of a busy office: per run a request,
    a draft with its model provenance, sometimes a reminder, a decision and a release."""
    run = start_run
    while True:
        run += 1
        item = run
        scenario = SCENARIOS[run % len(SCENARIOS)]
        guardian = f"guardian.{run % 17}"
        digest = hashlib.sha256(str(run).encode()).hexdigest()
        yield (
            audit.RunRequested(scenario=scenario, version="3", scenario_sha256=digest, inputs_sha256=digest,
                               input_names=["facility_type", "hazard", "participants"]),
            f"requester.{run % 31}", run, None,
        )  # fmt: skip
        models = [{"step": s, "model": "smollm2-135m", "endpoint": "http://127.0.0.1:8080/v1", "at": "2026-11-24"}
                  for s in ("draft", "review")]  # fmt: skip
        yield (
            audit.DraftQueued(scenario=scenario, revision=0, guardian=guardian, backups=["backup.one"],
                              draft_sha256=digest, findings=["时间线缺少集合点"] if run % 3 else [], models=models),
            f"agent:{scenario}", run, item,
        )  # fmt: skip
        if run % 5 == 0:
            yield audit.ItemReminded(guardian=guardian, due_at="2026-11-25T09:00:00+00:00"), "dew", run, item
        yield (
            audit.DecisionMade(action="approve", guardian=guardian, as_backup=False, note=NOTES[run % 4],
                               draft_sha256=digest),
            guardian, run, item,
        )  # fmt: skip
        yield (
            audit.OutputReleased(destination="outbox", location=f"outbox/{scenario}/{run}.md", sha256=digest,
                                 decision="approve"),
            "dew", run, item,
        )  # fmt: skip


def fill(ws: Workspace, count: int, chunk: int = 20_000) -> int:
    """Append `count` events after the trail's head, hashed as `emit` hashes them; returns the total."""
    with transaction(ws.engine) as s:
        head = s.get(AuditHead, 1)
        assert head is not None
        seq, prev = head.seq, head.hash
    postgres = ws.engine.dialect.name == "postgresql"
    mix = event_mix(0)
    t0, at = time.time(), 0
    done = 0
    while done < count:
        rows = []
        for _ in range(min(chunk, count - done)):
            event, actor, run_id, item_id = next(mix)
            seq += 1
            at += 1
            when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 - 10_000_000 + at // 10)) + f".{at % 10:06d}+00:00"
            data = audit.canonical(event.data())
            digest = audit.event_hash(seq, when, event.kind, actor, run_id, item_id, data, prev)
            rows.append((seq, when, event.kind, actor, run_id, item_id, data, prev, digest))
            prev = digest
        done += len(rows)
        if postgres:
            raw = ws.engine.raw_connection()
            try:
                with raw.cursor() as cur, cur.copy(f"COPY audit_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                    for row in rows:
                        copy.write_row(row)
                raw.commit()
            finally:
                raw.close()
        else:
            with ws.engine.begin() as conn:
                conn.execute(insert(AuditEvent.__table__), [dict(zip(COLUMNS, r, strict=True)) for r in rows])  # type: ignore[arg-type]
    with transaction(ws.engine) as s:
        head = s.get(AuditHead, 1)
        assert head is not None
        head.seq, head.hash = seq, prev
        s.add(head)
    return seq


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def sha256_floor(ws: Workspace) -> Callable[[], int]:
    """The canonical bytes of every event, built beforehand; the loop then only hashes them."""
    with transaction(ws.engine) as s:
        rows = s.connection().execute(select(*(AuditEvent.__table__.c[c] for c in COLUMNS[:-1]))).all()  # type: ignore[attr-defined]
    blobs = [audit.canonical(dict(zip(COLUMNS[:-1], r, strict=True))).encode("utf-8") for r in rows]
    del rows
    sha = hashlib.sha256

    def run() -> int:
        prev = ""
        for b in blobs:
            prev = sha(b).hexdigest()
        return len(prev)

    return run


def fresh_postgres(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_postgres(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="for the verify in parts")
    ap.add_argument("--database-url", help="PostgreSQL admin URL: build the trail in a fresh database there")
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dew-bench-audit-"))
    db_name = "dew_bench_audit"
    url = fresh_postgres(args.database_url, db_name) if args.database_url else f"sqlite:///{tmp / 'dew.db'}"
    ws = Workspace(Settings(home=tmp, scenarios_dir=shipped_directory(), database_url=url))
    try:
        t0 = time.perf_counter()
        total = fill(ws, args.events)
        built = time.perf_counter() - t0
        print(f"built a trail of {total} events in {built:.1f} s ({ws.engine.dialect.name})", flush=True)

        floor = sha256_floor(ws)

        def run_verify(processes: int) -> int:
            with reading(ws.engine) as s:
                result = audit.verify(s, processes=processes)
            assert result.events == total and result.parts == min(processes, total // audit.MIN_PART or 1)
            return result.events

        floor_s = verify_s = parts_s = float("inf")
        for _ in range(args.repeat):  # interleaved: each variant sees the machine as the others do
            floor_s = min(floor_s, best_of(1, floor)[0])
            verify_s = min(verify_s, best_of(1, lambda: run_verify(1))[0])
            parts_s = min(parts_s, best_of(1, lambda: run_verify(args.processes))[0])

        out = tmp / "trail.jsonl"

        def run_export() -> int:
            for path in (out, export.manifest_path(out)):  # an export never overwrites
                path.unlink(missing_ok=True)
            return export.export_events(ws.engine, out, fmt="jsonl").count

        tracemalloc.start()
        try:
            export_s, exported = best_of(1, run_export)  # tracemalloc slows it: timed again below
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert exported == total, (exported, total)
        export_plain_s, _ = best_of(args.repeat, run_export)

        def run_check() -> None:
            with transaction(ws.engine) as s:
                export.check_exports(s, [export.read_manifest(export.manifest_path(out))])

        check_s, _ = best_of(1, run_check)
        size = out.stat().st_size
    finally:
        ws.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if args.database_url:
            drop_postgres(args.database_url, db_name)

    results = {
        "backend": "postgresql" if args.database_url else "sqlite",
        "events": total,
        "floor_events_per_s": total / floor_s,
        "verify_events_per_s": total / verify_s,
        "verify_s": verify_s,
        "verify_vs_floor": floor_s / verify_s,
        "processes": args.processes,
        "verify_parts_events_per_s": total / parts_s,
        "verify_parts_s": parts_s,
        "verify_parts_vs_floor": floor_s / parts_s,
        "export_events_per_s": total / export_plain_s,
        "export_s": export_plain_s,
        "export_traced_s": export_s,
        "export_peak_mib": peak / 2**20,
        "export_file_mib": size / 2**20,
        "check_events_per_s": total / check_s,
        "check_s": check_s,
    }
    print(f"audit trail benchmark · {total} events · {results['backend']} · best of {args.repeat}")
    print(f"{'what':<34}{'seconds':>10}{'events/s':>14}")
    print(f"{'SHA-256 chain floor (hashes only)':<34}{floor_s:>10.2f}{total / floor_s:>14,.0f}")
    print(f"{'audit.verify, in order':<34}{verify_s:>10.2f}{total / verify_s:>14,.0f}")
    print(f"{f'audit.verify, {args.processes} parts at once':<34}{parts_s:>10.2f}{total / parts_s:>14,.0f}")
    print(f"{'export to JSONL + manifest':<34}{export_plain_s:>10.2f}{total / export_plain_s:>14,.0f}")
    print(f"{'check of that export':<34}{check_s:>10.2f}{total / check_s:>14,.0f}")
    print(f"verify reaches {100 * floor_s / verify_s:.0f}% of the floor's rate in order, "
          f"{100 * floor_s / parts_s:.0f}% in parts; export file {size / 2**20:.0f} MiB, "
          f"peak memory allocated while exporting {peak / 2**20:.1f} MiB")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
