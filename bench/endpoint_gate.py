"""How many model calls a rate-limited endpoint can admit across workers, on PostgreSQL.

    python bench/endpoint_gate.py [--calls 2000] [--workers 2] [--threads 1,8,32]
                                  [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

Every call to an endpoint with `rpm` or `tpm` in DEW_LLM_LIMITS is counted under one lock of the
endpoint's (guardians/throttle.py), so the count is a ceiling on how many calls per second all the
workers together can send there, whatever the model. This bench measures that ceiling: `--workers`
gates (each a worker's own connection pool) on a fresh database, `--threads` callers spread over
them, each admitting a call to an endpoint whose limits are never reached and correcting its
tokens afterwards, as a model call does. Prints admissions per second and the median and p95
time one admission takes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import create_database, drop_database


def round_(gate_class, settings, limit, threads: int, workers: int, calls: int) -> tuple[list[float], float]:
    """`calls` admissions by `threads` callers over `workers` gates: each admission's seconds, and the round's."""
    gates = [gate_class(settings, max_connections=max(2, threads // workers + 1)) for _ in range(workers)]
    took: list[float] = []
    lock = threading.Lock()

    def caller(gate, n: int) -> None:
        mine = []
        for _ in range(n):
            t0 = time.perf_counter()
            ticket = gate.admit(limit, 100, time.monotonic() + 60)
            mine.append(time.perf_counter() - t0)
            gate.done(ticket, 80)  # the reply used fewer tokens than estimated: corrected
        with lock:
            took.extend(mine)

    callers = [threading.Thread(target=caller, args=(gates[i % workers], calls // threads)) for i in range(threads)]
    t0 = time.perf_counter()
    for c in callers:
        c.start()
    for c in callers:
        c.join()
    seconds = time.perf_counter() - t0
    for gate in gates:
        gate.close()
    return took, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", default="1,8,32", help="callers at once, comma-separated rounds")
    ap.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()

    from dew.agents.limits import Limit
    from dew.guardians.db import make_engine, upgrade
    from dew.guardians.throttle import DbGate
    from dew.guardians.workspace import Settings

    name, url = create_database(args.database_url, "dew_bench_gate")
    try:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        settings = Settings(home=Path("."), scenarios_dir=Path("."), database_url=url, engine="procrastinate")
        limit = Limit("api.example.com", rpm=10**9, tpm=10**12)  # counted, never reached
        print(f"endpoint gate · {args.calls} calls a round · {args.workers} workers' gates · PostgreSQL")
        print(f"{'callers':>8}{'calls/s':>10}{'median ms':>11}{'p95 ms':>9}")
        for threads in [int(t) for t in args.threads.split(",")]:
            took, seconds = round_(DbGate, settings, limit, threads, args.workers, args.calls)
            took.sort()
            print(
                f"{threads:>8}{len(took) / seconds:>10.0f}{statistics.median(took) * 1000:>11.2f}"
                f"{took[int(len(took) * 0.95) - 1] * 1000:>9.2f}"
            )
    finally:
        drop_database(args.database_url, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
