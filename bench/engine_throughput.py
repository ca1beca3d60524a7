"""Runs through the distributed engine: throughput against the ideal, and the scale-out curve with
1, 2 and 4 `dew worker` processes on PostgreSQL.

    python bench/engine_throughput.py [--runs 200] [--workers 1,2,4] [--concurrency 8] [--delay 0.2]
                                      [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

Each round gets a fresh database. W workers start, each executing `--concurrency` jobs at once,
against an OpenAI-compatible server on loopback whose every answer takes `--delay` seconds. When
all have sent a heartbeat the clock starts: the runs (drill-script: two model calls each, the
drafter and the safety reviewer) are requested and deferred one after another, as a batch is, and
the clock stops when every draft waits in its queue. With W workers of concurrency C the ideal is runs × 2 × delay / (W × C) seconds: what the
model calls alone would take if nothing else cost anything. Peak memory is each worker's
high-water mark (VmHWM). Prints a table; --json FILE writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import create_database, drop_database

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}


def peak_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def round_(admin_url: str, runs: int, workers: int, concurrency: int, delay: float) -> dict:
    from sqlmodel import col, func, select

    from dew.agents.names import shipped_directory
    from dew.agents.testing import ScriptedModelProvider
    from dew.guardians import engine
    from dew.guardians.db import transaction
    from dew.guardians.execution import Job, JobKind
    from dew.guardians.models import Run
    from dew.guardians.runs import request_run
    from dew.guardians.workspace import Settings, Workspace
    from tests.fakellm import FakeOpenAI

    name, url = create_database(admin_url, "dew_bench")
    home = Path(tempfile.mkdtemp(prefix="dew-bench-"))
    fake = FakeOpenAI().start()
    fake.latency = delay
    procs: list[subprocess.Popen] = []
    try:
        settings = Settings(home=home, scenarios_dir=shipped_directory(), database_url=url, engine="procrastinate")
        ws = Workspace(settings, ScriptedModelProvider())
        executor = engine.executor_for(settings)
        env = {**os.environ, "DEW_HOME": str(home), "DEW_SCENARIOS": str(shipped_directory()), "DEW_DATABASE_URL": url,
               "DEW_ENGINE": "procrastinate", "DEW_LLM_BASE_URL": fake.url, "DEW_LLM_MODEL": "fake",
               "DEW_LLM_MAX_RETRIES": "0"}  # fmt: skip
        dew = shutil.which("dew", path=str(Path(sys.executable).parent)) or "dew"
        for n in range(workers):
            procs.append(subprocess.Popen([dew, "worker", "--concurrency", str(concurrency), "--name", f"w{n + 1}",
                                           "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))  # fmt: skip
        while executor.size < workers:  # every worker has started and sent its first heartbeat
            time.sleep(0.1)
        t0 = time.perf_counter()
        ids = []
        for _ in range(runs):
            run = request_run(ws, "drill-script", DRILL, requester="officer.wu", priority="batch")
            executor.submit(Job(JobKind.START, run.key))
            ids.append(run.key)
        requested = time.perf_counter() - t0
        while True:
            with transaction(ws.engine) as s:
                waiting = s.exec(
                    select(func.count()).where(col(Run.id).in_(ids), Run.status == "awaiting_decision")
                ).one()
                failed = s.exec(select(func.count()).where(col(Run.id).in_(ids), Run.status == "failed")).one()
            if waiting + failed >= runs:
                break
            if any(p.poll() is not None for p in procs):
                raise SystemExit("a worker stopped: run it by hand to see why")
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        peaks = [peak_mib(p.pid) for p in procs]
        ideal = runs * 2 * delay / (workers * concurrency)
        ws.close()
        return {
            "workers": workers, "concurrency": concurrency, "runs": runs, "failed": failed, "delay": delay,
            "seconds": round(elapsed, 2), "runs_per_s": round(runs / elapsed, 2), "ideal_seconds": round(ideal, 2),
            "ratio": round(elapsed / ideal, 2), "request_seconds": round(requested, 2),
            "peak_mib": [round(p, 1) for p in peaks], "model_calls": len(fake.requests),
            "max_in_flight": fake.max_in_flight,
        }  # fmt: skip
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()
        fake.stop()
        engine._executors.clear()
        drop_database(admin_url, name)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure, comma-separated")
    parser.add_argument("--concurrency", type=int, default=8, help="jobs at once per worker")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds per model answer")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    print(f"{'workers':>7} {'conc.':>5} {'runs':>5} {'seconds':>8} {'runs/s':>7} {'ideal s':>8} {'ratio':>6} "
          f"{'calls at once':>13} {'peak MiB per worker':>22}")  # fmt: skip
    for w in [int(x) for x in args.workers.split(",")]:
        r = round_(args.database_url, args.runs, w, args.concurrency, args.delay)
        results.append(r)
        print(f"{r['workers']:>7} {r['concurrency']:>5} {r['runs']:>5} {r['seconds']:>8} {r['runs_per_s']:>7} "
              f"{r['ideal_seconds']:>8} {r['ratio']:>6} {r['max_in_flight']:>13} "
              f"{', '.join(str(p) for p in r['peak_mib']):>22}", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
