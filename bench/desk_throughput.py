"""The guardian desk under load: decisions per second over HTTP, and runs per second through the
server's background pool, on SQLite and PostgreSQL.

    python bench/desk_throughput.py [--runs 40] [--decisions 60] [--workers 2] [--postgres URL]

The server is `dew serve`'s app in its own process (uvicorn, one event loop, the worker pool),
driven over loopback HTTP by this process with API tokens. The model is scripted, behind a
per-call delay: 0 ms (what the desk itself costs) and 200 ms (a fast remote endpoint). The
drill-script scenario makes two model calls per run (the drafter and the safety reviewer), so with
W workers and a delay d the ideal is W / (2·d) runs per second.

Measured:
  decisions/s  approvals POSTed one after another (each is authorized and recorded at once; the
               release follows in the pool), and with 4 clients at once
  released/s   from the first approval until every approved run is released
  runs/s       from the first POST /runs until every run's draft waits in the queue
Prints a table; --json FILE writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}
PASSWORD = "bench password 1234"


def serve(home: str, url: str, port: int, workers: int, delay: float) -> None:
    """The server process: dew's app with a scripted model that takes `delay` seconds per call."""
    import uvicorn

    from dew.agents.names import shipped_directory
    from dew.agents.testing import ScriptedModelProvider, default_reply
    from dew.guardians.desk.app import DeskConfig, create_app
    from dew.guardians.workspace import Settings

    def slow(system: str, prompt: str) -> str:
        time.sleep(delay)
        return default_reply(system, prompt)

    settings = Settings(home=Path(home), scenarios_dir=shipped_directory(), database_url=url)
    app = create_app(
        settings, DeskConfig(workers=workers, tick_seconds=3600), provider=ScriptedModelProvider(reply=slow)
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def setup_people(home: str, url: str) -> dict[str, str]:
    from dew.agents.names import shipped_directory
    from dew.agents.testing import ScriptedModelProvider
    from dew.guardians import auth, users
    from dew.guardians.workspace import Settings, Workspace

    ws = Workspace(
        Settings(home=Path(home), scenarios_dir=shipped_directory(), database_url=url), ScriptedModelProvider()
    )
    try:
        users.add_user(ws, "root", "Root", ["admin"], actor="root")
        users.add_user(ws, "alice", "Alice", ["requester"], actor="root")
        users.add_user(ws, "zhao.lei", "赵磊", ["guardian"], actor="root")
        return {u: auth.create_token(ws, u, actor=u)[1] for u in ("root", "alice", "zhao.lei")}
    finally:
        ws.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(client: httpx.Client, token: str, status: str, count: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = client.get(
            "/api/v1/runs", params={"status": status}, headers={"Authorization": f"Bearer {token}"}
        ).json()
        if len(runs) >= count:
            return time.perf_counter()
        time.sleep(0.02)
    raise TimeoutError(f"{count} runs did not reach {status}")


def measure(url: str, *, runs: int, decisions: int, workers: int, delay: float) -> dict:
    home = tempfile.mkdtemp(prefix="dew-bench-")
    try:
        tokens = setup_people(home, url)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", home, url, str(port), str(workers), str(delay)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=60) as client:
                for _ in range(300):
                    try:
                        if client.get("/api/v1/ready").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
                alice = {"Authorization": f"Bearer {tokens['alice']}"}
                guardian = {"Authorization": f"Bearer {tokens['zhao.lei']}"}

                # Runs through the pool: submit all, then wait until every draft is queued.
                total = max(runs, decisions)
                started = time.perf_counter()
                for _ in range(total):
                    client.post(
                        "/api/v1/runs", json={"scenario": "drill-script", "inputs": DRILL}, headers=alice
                    ).raise_for_status()
                drafted = wait_until(client, tokens["root"], "awaiting_decision", total)
                runs_per_s = total / (drafted - started)

                items = [q["id"] for q in client.get("/api/v1/queue", headers=guardian).json()]
                half = decisions // 2
                # One client, one decision after another.
                first = t0 = time.perf_counter()
                for item in items[:half]:
                    client.post(
                        f"/api/v1/items/{item}/decision", json={"action": "approve"}, headers=guardian
                    ).raise_for_status()
                serial = half / (time.perf_counter() - t0)
                # Four clients at once.
                t0 = time.perf_counter()

                def approve(item: int) -> None:
                    with httpx.Client(base_url=base, timeout=60) as c:
                        c.post(
                            f"/api/v1/items/{item}/decision", json={"action": "approve"}, headers=guardian
                        ).raise_for_status()

                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(approve, items[half:decisions]))
                parallel = (decisions - half) / (time.perf_counter() - t0)
                released = wait_until(client, tokens["root"], "released", decisions)
                released_per_s = decisions / (released - first)
        finally:
            server.terminate()
            server.wait(30)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    ideal = workers / (2 * delay) if delay else None
    return {
        "runs_per_s": round(runs_per_s, 2),
        "ideal_runs_per_s": round(ideal, 2) if ideal else None,
        "decisions_per_s_1_client": round(serial, 1),
        "decisions_per_s_4_clients": round(parallel, 1),
        "released_per_s": round(released_per_s, 1),
    }


def postgres_database(admin_url: str):
    import psycopg

    name = f"dew_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name, admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        home, url, port, workers, delay = sys.argv[2:7]
        serve(home, url, int(port), int(workers), float(delay))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--decisions", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="admin URL of a PostgreSQL server ('' to skip)")  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    backends = [("sqlite", None)] + ([("postgresql", args.postgres)] if args.postgres else [])
    for backend, admin in backends:
        for delay in (0.0, 0.2):
            runs = args.runs if delay == 0 else max(args.runs // 2, 10)
            if admin:
                name, url = postgres_database(admin)
            else:
                name, url = "", f"sqlite:///{tempfile.mkdtemp(prefix='dew-bench-db-')}/dew.db"
            try:
                r = measure(url, runs=runs, decisions=min(args.decisions, runs), workers=args.workers, delay=delay)
            finally:
                if admin:
                    drop_database(admin, name)
            r.update(backend=backend, model_ms=int(delay * 1000), workers=args.workers)
            results.append(r)
            print(json.dumps(r), flush=True)
    print()
    print("| backend | model | runs/s (ideal) | decisions/s, 1 client | decisions/s, 4 clients | released/s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        ideal = f" ({r['ideal_runs_per_s']})" if r["ideal_runs_per_s"] else ""
        print(f"| {r['backend']} | {r['model_ms']} ms | {r['runs_per_s']}{ideal} | {r['decisions_per_s_1_client']} | "
              f"{r['decisions_per_s_4_clients']} | {r['released_per_s']} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
