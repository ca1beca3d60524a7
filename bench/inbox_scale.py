"""How fast is one guardian's inbox when the office has a million work items? Page it.

    python bench/inbox_scale.py [--items 1000000] [--guardians 1000] [--database-url postgresql://...]

Builds a workspace (a SQLite file, or a fresh PostgreSQL database beside --database-url) holding
N work items across G guardians, each item with its guardian and one backup, half of them still
pending, a tenth escalated, with their runs and decider rows, bulk-inserted (one real run first,
so the scenario version is dew's own). Then, in the same run, for randomly chosen guardians:

  page      `queue.queue_for`, the desk's and the API's inbox: the first page of 50 (the rows
            the page shows, their runs' requesters, whether their scenario is paused); every
            guardian is also the next one's backup, so the page merges two index ranges
  later     a page from the middle of an inbox (`after` = a pending item half-way)
  count     `queue.waiting_for`: how many wait and in which scenarios (the page's heading)
  cli       `queue.inbox` for `dew inbox --as`, the first page
  dew inbox the whole command, `dew inbox --as GUARDIAN`, as a new process (a few times)

Each is timed over --samples calls (median, p95, max), and the peak of memory Python allocated
during one page is measured with tracemalloc (run with a small --items to see it does not grow).
PostgreSQL tables are ANALYZEd after the bulk load, as autovacuum would.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch import create_database, drop_database
from sqlalchemy import insert, text

from dew.agents.names import shipped_directory
from dew.agents.testing import ScriptedModelProvider
from dew.guardians import queue
from dew.guardians.auth import Principal
from dew.guardians.db import transaction
from dew.guardians.identity import person_key
from dew.guardians.models import ItemDecider, Run, WorkItem
from dew.guardians.runs import start_run
from dew.guardians.workspace import Settings, Workspace

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}
DRAFT = "消防疏散演练脚本：一、演练目的……二、组织分工……三、疏散路线与集合点……" * 3


def guardian(k: int) -> str:
    return f"guardian.{k:04d}"


def fill(ws: Workspace, items: int, guardians: int, chunk: int = 20_000) -> None:
    """N runs and their items after the one real run, with decider rows as inboxes.record writes."""
    with transaction(ws.engine) as s:
        real = s.get(Run, 1)
        assert real is not None
        sha = real.scenario_sha256
        start = (s.exec(text("SELECT max(id) FROM work_items")).one()[0] or 0) + 1
        run_start = (s.exec(text("SELECT max(id) FROM runs")).one()[0] or 0) + 1
    postgres = ws.engine.dialect.name == "postgresql"
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for offset in range(0, items, chunk):
        runs, work, deciders = [], [], []
        for n in range(offset, min(items, offset + chunk)):
            run_id, item_id, k = run_start + n, start + n, n % guardians
            pending = n % 2 == 0
            at = base + timedelta(seconds=n)
            owner, backup = guardian(k), guardian((k + 1) % guardians)
            escalated = ["chen.jing"] if pending and n % 10 == 0 else []
            status = "pending" if pending else "approved"
            runs.append({"id": run_id, "scenario_id": "drill-script", "scenario_sha256": sha,
                         "requester": f"requester.{n % 97}", "inputs": DRILL,
                         "status": "awaiting_decision" if pending else "released", "attempts": 1, "priority": 0,
                         "created_at": at, "updated_at": at})  # fmt: skip
            work.append({"id": item_id, "run_id": run_id, "revision": 0, "scenario_id": "drill-script",
                         "guardian": owner, "backups": [backup], "risk": "medium", "draft": DRAFT, "findings": [],
                         "provenance": [], "status": status, "created_at": at, "escalation": 2 if escalated else 0,
                         "escalated_to": escalated, "stage": 0, "decided_at": None if pending else at})  # fmt: skip
            deciders += [{"item_id": item_id, "person": person_key(owner), "rule": "owner", "status": status},
                         {"item_id": item_id, "person": person_key(backup), "rule": "backup", "status": status}]  # fmt: skip
            deciders += [{"item_id": item_id, "person": p, "rule": "escalation", "status": status} for p in escalated]
        with ws.engine.begin() as conn:
            if postgres:
                _copy(conn, Run.__table__, runs)  # type: ignore[attr-defined]
                _copy(conn, WorkItem.__table__, work)  # type: ignore[attr-defined]
                _copy(conn, ItemDecider.__table__, deciders)  # type: ignore[attr-defined]
            else:
                conn.execute(insert(Run), runs)
                conn.execute(insert(WorkItem), work)
                conn.execute(insert(ItemDecider), deciders)
        print(f"\r  {min(items, offset + chunk):,} of {items:,} items", end="", flush=True)
    print()
    if postgres:  # COPY took the ids as given: move the sequences past them, and let the planner see the rows
        with ws.engine.begin() as conn:
            for table in ("runs", "work_items"):
                conn.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                )
            conn.execute(text("ANALYZE"))


def _copy(conn: Any, table: Any, rows: list[dict]) -> None:
    """COPY rows into a table through the psycopg connection under SQLAlchemy's."""
    columns = list(rows[0])
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                            for v in (row[c] for c in columns)])  # fmt: skip


def timed(samples: int, fn: Callable[[int], Any]) -> dict[str, float]:
    durations = []
    for i in range(samples):
        t0 = time.perf_counter()
        fn(i)
        durations.append((time.perf_counter() - t0) * 1000)
    durations.sort()
    return {
        "median_ms": statistics.median(durations),
        "p95_ms": durations[int(len(durations) * 0.95) - 1],
        "max_ms": durations[-1],
    }


def peak_kib(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1024
    finally:
        tracemalloc.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--guardians", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--database-url", help="PostgreSQL admin URL: build the workspace in a fresh database there")
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dew-bench-inbox-"))
    name = None
    if args.database_url:
        name, url = create_database(args.database_url, "dew_bench_inbox")
    else:
        url = f"sqlite:///{tmp / 'dew.db'}"
    scenarios = tmp / "scenarios"
    shutil.copytree(shipped_directory(), scenarios)
    ws = Workspace(Settings(home=tmp, scenarios_dir=scenarios, database_url=url), provider=ScriptedModelProvider())
    results: dict[str, Any] = {"backend": ws.engine.dialect.name, "items": args.items, "guardians": args.guardians}
    try:
        start_run(ws, "drill-script", DRILL, requester="alice")  # the scenario version, as dew records it
        t0 = time.perf_counter()
        fill(ws, args.items, args.guardians)
        results["build_s"] = time.perf_counter() - t0
        rng = random.Random(7)
        people = [Principal.declared(guardian(rng.randrange(args.guardians))) for _ in range(args.samples)]

        def page(i: int) -> None:
            rows = queue.queue_for(ws, people[i], limit=50)
            assert len(rows) == 50 and all(r["status"] == "pending" for r in rows), len(rows)

        def later(i: int) -> None:
            first = queue.queue_for(ws, people[i], limit=1)[0]["id"]
            middle = first + args.items // 2  # its owner's items recur every `guardians` ids
            assert len(queue.queue_for(ws, people[i], after=middle, limit=50)) > 0

        def count(i: int) -> None:
            total, scenarios = queue.waiting_for(ws, people[i])
            assert total > 0 and scenarios == ["drill-script"]

        def cli(i: int) -> None:
            assert len(queue.inbox(ws, people[i].id, limit=50)) == 50

        page(0)  # warm: the first call of a process pays for SQLAlchemy's statement compilation
        results["page"] = timed(args.samples, page)
        results["later"] = timed(args.samples, later)
        results["count"] = timed(args.samples, count)
        results["cli"] = timed(args.samples, cli)
        results["page_peak_kib"] = peak_kib(lambda: page(1))
        env = {**os.environ, "DEW_HOME": str(tmp), "DEW_SCENARIOS": str(scenarios), "DEW_DATABASE_URL": url}
        dew = Path(sys.executable).parent / "dew"
        whole = []
        for k in range(5):
            t0 = time.perf_counter()
            done = subprocess.run([str(dew), "inbox", "--as", guardian(k)], env=env, capture_output=True, text=True)
            whole.append(time.perf_counter() - t0)
            assert done.returncode == 0 and "More: dew inbox" in done.stdout, done.stdout + done.stderr
        results["dew_inbox_s"] = {"median": statistics.median(whole), "max": max(whole)}
    finally:
        ws.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if name:
            drop_database(args.database_url, name)

    print(f"inbox benchmark · {args.items:,} items · {args.guardians:,} guardians · {results['backend']} "
          f"(built in {results['build_s']:.0f} s) · {args.samples} samples")  # fmt: skip
    print(f"{'what':<44}{'median ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for key, label in (("page", "first page of 50 (desk, API)"), ("later", "a page from the middle"),
                       ("count", "count and scenarios (the heading)"), ("cli", "first page (dew inbox)")):  # fmt: skip
        r = results[key]
        print(f"{label:<44}{r['median_ms']:>10.2f}{r['p95_ms']:>10.2f}{r['max_ms']:>10.2f}")
    print(f"peak memory allocated during one page: {results['page_peak_kib']:.0f} KiB")
    print(f"`dew inbox --as GUARDIAN`, a new process: median {results['dew_inbox_s']['median']:.2f} s, "
          f"max {results['dew_inbox_s']['max']:.2f} s")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
