"""How long do the programme's figures take on a large history? `dew stats` and a /metrics scrape.

    python bench/stats_scale.py [--items 50000] [--database-url postgresql://...] [--json FILE]

Builds a workspace (a SQLite file, or a fresh PostgreSQL database with --database-url) holding N
work items over 90 days, one run each, of three scenarios, three guardians and two models, with a
realistic mix of outcomes (a third approved, a sixth each edited, rejected, sent back and pending),
decisions 6 minutes to 2 days after queuing, releases of what was approved, findings, and an edit
diff of two Chinese lines on every edited item; bulk-inserted, not driven through runs (a run
through the flows costs far more than the figures about it). Then times, best of `--repeat`:

  stats BY      `stats.compute` over every item, grouped by scenario, guardian and model
  stats BY 30d  the same over the items of the last 30 days (a third of them)
  operations    `stats.operations`, what each /metrics scrape reads from the database

Prints a table; --json FILE writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from dew.agents.names import shipped_directory
from dew.agents.testing import ScriptedModelProvider
from dew.guardians import stats
from dew.guardians.db import transaction
from dew.guardians.models import Decision, Release, Run, ScenarioVersion, WorkItem, utcnow
from dew.guardians.workspace import Settings, Workspace

SCENARIOS = ("drill-script", "hotline-intake", "policy-qa")
GUARDIANS = ("zhao.lei", "xu.jie", "lin.na")
MODELS = ("deepseek-chat", "qwen2.5:7b")
OUTCOMES = ("approved", "approved", "edited", "rejected", "revised", "pending")
ACTIONS = {"approved": "approve", "edited": "edit", "rejected": "reject", "revised": "revise"}
DIFF = (
    "--- draft\n+++ edited\n@@ -2,3 +2,3 @@\n 二、演练时间\n-三、参演人员：仓库当班班组、义务消防队\n"
    "+三、参演人员：仓库当班班组、义务消防队、园区保安\n 四、情景设置\n"
)


def build(ws: Workspace, n: int, seed: int = 1) -> None:
    rnd = random.Random(seed)
    now = utcnow()
    runs, items, decisions, releases = [], [], [], []
    for i in range(1, n + 1):
        scenario = rnd.randrange(3)
        created = now - timedelta(days=rnd.uniform(0, 90))
        status = rnd.choice(OUTCOMES)
        decided = created + timedelta(hours=rnd.uniform(0.1, 48)) if status != "pending" else None
        runs.append({"id": i, "scenario_id": SCENARIOS[scenario], "scenario_sha256": "0" * 64, "requester": "alice",
                     "inputs": {}, "status": "awaiting_decision" if status == "pending" else "released"})  # fmt: skip
        items.append({
            "id": i, "run_id": i, "revision": 0, "scenario_id": SCENARIOS[scenario], "guardian": GUARDIANS[scenario],
            "backups": [], "risk": "medium", "draft": "草稿", "findings": ["check: 缺少附件说明"] * rnd.randint(0, 2),
            "provenance": [{"step": "draft", "model": rnd.choice(MODELS), "endpoint": "http://10.0.0.5:8000/v1"}],
            "status": status, "created_at": created, "decided_at": decided, "due_at": created + timedelta(hours=8),
            "escalation": 0, "escalated_to": [], "stage": 0,
        })  # fmt: skip
        if decided is not None:
            action = ACTIONS[status]
            decisions.append({"id": len(decisions) + 1, "item_id": i, "run_id": i, "action": action, "actor": "x",
                              "diff": DIFF if action == "edit" else None, "created_at": decided,
                              "auth_method": "password", "rule": "owner"})  # fmt: skip
            if action in ("approve", "edit"):
                releases.append({"id": len(releases) + 1, "run_id": i, "item_id": i, "destination": "outbox",
                                 "location": f"outbox/{i}.md", "sha256": "0" * 64, "created_at": decided})  # fmt: skip
    with transaction(ws.engine) as s:
        s.add(ScenarioVersion(sha256="0" * 64, scenario_id=SCENARIOS[0], version="1", text="(bench)"))
        s.flush()
        for model, rows in ((Run, runs), (WorkItem, items), (Decision, decisions), (Release, releases)):
            for start in range(0, len(rows), 5000):
                s.execute(insert(model), rows[start : start + 5000])


def best(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--database-url", help="a PostgreSQL server's URL; a fresh database is made on it")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="dew-bench-stats-"))
    url, cleanup = f"sqlite:///{tmp / 'dew.db'}", None
    if args.database_url:
        import psycopg

        name = f"dew_bench_{uuid.uuid4().hex[:10]}"
        admin = psycopg.connect(args.database_url, autocommit=True)
        admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{args.database_url.rsplit('/', 1)[0]}/{name}"

        def cleanup() -> None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()

    ws = Workspace(Settings(home=tmp / "home", scenarios_dir=shipped_directory(), database_url=url),
                   ScriptedModelProvider())  # fmt: skip
    try:
        build(ws, args.items)
        month = utcnow() - timedelta(days=30)
        results: dict[str, float] = {}
        for by in stats.GROUPINGS:
            results[f"stats {by}"] = best(args.repeat, lambda by=by: stats.compute(ws, by=by))
            results[f"stats {by} 30d"] = best(args.repeat, lambda by=by: stats.compute(ws, by=by, since=month))
        results["operations"] = best(args.repeat, lambda: stats.operations(ws))
    finally:
        ws.close()
        if cleanup:
            cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    backend = "postgresql" if args.database_url else "sqlite"
    print(f"{args.items} items on {backend}, best of {args.repeat}:")
    for what, seconds in results.items():
        print(f"  {what:<22} {seconds * 1000:8.0f} ms")
    if args.json:
        args.json.write_text(json.dumps({"items": args.items, "backend": backend, "seconds": results}, indent=2))


if __name__ == "__main__":
    main()
