"""Racing decisions: many rounds of several processes deciding the same work item at the same
instant (approve, reject and edit, as the guardian or the backup). Each round exactly one may win;
every other must be refused as already decided; an approved or edited item is released once.

    python bench/races.py [--rounds 1000] [--processes 4] [--database-url URL]

Without --database-url the workspace is a SQLite file. The harness is also the suite's
(`tests/test_races.py` runs it at a size that fits in CI, on SQLite and PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team"}
DECIDERS = ("zhao.lei", "liu.yang")  # drill-script's guardian and backup
ACTIONS = ("approve", "reject", "edit")


def _settings(home: str, url: str):
    from dew.agents.names import shipped_directory
    from dew.guardians.workspace import Settings

    return Settings(home=Path(home), scenarios_dir=shipped_directory(), database_url=url)


def _decider(n: int, home: str, url: str, items: list[int], barrier: Any, out: Any, seed: int) -> None:
    """One process: for every round, wait for the others, then decide the round's item."""
    from dew.agents.testing import ScriptedModelProvider
    from dew.guardians.errors import AlreadyDecided
    from dew.guardians.flow import decide
    from dew.guardians.workspace import Workspace

    rng = random.Random(seed * 1000 + n)
    ws = Workspace(_settings(home, url), ScriptedModelProvider(), sync_roster=False)
    results = []
    try:
        for item in items:
            action = rng.choice(ACTIONS)
            actor = DECIDERS[(n + rng.randrange(2)) % 2]
            barrier.wait(timeout=120)
            try:
                decide(ws, item, actor=actor, action=action, note="no" if action == "reject" else None,
                       edited=f"Edited by {actor} in process {n}." if action == "edit" else None)  # fmt: skip
                results.append((item, action))
            except AlreadyDecided:
                results.append((item, "refused"))
            except Exception as e:  # any other outcome is a failure the report shows
                results.append((item, f"error: {type(e).__name__}: {e}"))
    finally:
        ws.close()
        out.put((n, results))


def race(url: str | None, rounds: int, processes: int, seed: int = 1) -> dict[str, Any]:
    """Run the rounds; return what happened and every way in which it was wrong (`problems`)."""
    from sqlmodel import select

    from dew.agents.testing import ScriptedModelProvider
    from dew.guardians import audit
    from dew.guardians.db import transaction
    from dew.guardians.models import Decision, Release, WorkItem
    from dew.guardians.runs import start_run
    from dew.guardians.workspace import Workspace

    home = tempfile.mkdtemp(prefix="dew-races-")
    url = url or f"sqlite:///{home}/dew.db"
    try:
        ws = Workspace(_settings(home, url), ScriptedModelProvider())
        started = time.perf_counter()
        items = [start_run(ws, "drill-script", DRILL, requester="alice").item.key for _ in range(rounds)]  # type: ignore[union-attr]
        prepared = time.perf_counter() - started
        ctx = multiprocessing.get_context("spawn")
        barrier, out = ctx.Barrier(processes), ctx.Queue()
        procs = [ctx.Process(target=_decider, args=(n, home, url, items, barrier, out, seed)) for n in range(processes)]
        started = time.perf_counter()
        for p in procs:
            p.start()
        reports = dict(out.get(timeout=60 + rounds * 5) for _ in procs)
        for p in procs:
            p.join(60)
        raced = time.perf_counter() - started
        by_item: dict[int, list[str]] = {i: [] for i in items}
        for results in reports.values():
            for item, outcome in results:
                by_item[item].append(outcome)
        problems = []
        with transaction(ws.engine) as s:
            decisions = {d.item_id: d.action for d in s.exec(select(Decision)).all()}
            released = Counter(r.run_id for r in s.exec(select(Release)).all())
            runs = {w.key: w.run_id for w in s.exec(select(WorkItem)).all()}
            verified = audit.verify(s).events
            kinds = Counter(e.kind for e in audit.events(s))
        for item, outcomes in by_item.items():
            winners = [o for o in outcomes if o != "refused"]
            if len(outcomes) != processes:
                problems.append(f"item {item}: {len(outcomes)} outcomes for {processes} processes")
            if len(winners) != 1 or winners[0] not in ACTIONS:
                problems.append(f"item {item}: {outcomes}")
                continue
            if decisions.get(item) != winners[0]:
                problems.append(f"item {item}: {winners[0]} won but the recorded decision is {decisions.get(item)}")
            want = 0 if winners[0] == "reject" else 1
            if released[runs[item]] != want:
                problems.append(f"item {item}: {winners[0]} won and it was released {released[runs[item]]} times")
        if kinds["decision.refused"] != rounds * (processes - 1):
            problems.append(f"{kinds['decision.refused']} refusals on the trail for {rounds * (processes - 1)} losers")
        ws.close()
        return {
            "database": url.split(":", 1)[0], "rounds": rounds, "processes": processes,
            "wins": dict(Counter(o for v in by_item.values() for o in v if o != "refused")),
            "refused": sum(o == "refused" for v in by_item.values() for o in v),
            "releases": sum(released.values()), "audit_events": verified,
            "prepare_seconds": round(prepared, 1), "race_seconds": round(raced, 1), "problems": problems,
        }  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--database-url", help="a PostgreSQL database (it must be empty); default: a SQLite file")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = race(args.database_url, args.rounds, args.processes, args.seed)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    raise SystemExit(1 if report["problems"] else 0)


if __name__ == "__main__":
    main()
