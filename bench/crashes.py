"""Crashes: kill -9 of `dew worker`s and of the `dew serve` in front of them, at random moments,
while governed runs are requested, drafted, decided, released and handed off; then prove that
nothing was lost or done twice.

    python bench/crashes.py [--runs 200] [--workers 3] [--database-url ADMIN_URL] [--seed 1]

The deployment is the distributed one (PostgreSQL, DEW_ENGINE=procrastinate): one server, W
workers, an OpenAI-compatible model on loopback whose answers take 0.1 s. Requests go to the
server's API (half drill-script, half hotline-intake, whose approval hands off to the
enforcement-document scenario); a guardian approves (9 in 10) or rejects every draft through the
API. Every 0.3-2 s a killer picks the server or a worker, notes which jobs were in flight, sends
SIGKILL and starts it again. After the last request is decided the killer stops and the harness
waits for every run to settle. The checks:

- no run lost: every run the API accepted is in the database; none is left queued or running;
  every one is finished, waiting for a guardian, or failed with a reason;
- no double release: at most one release per run, one file per release in the outbox, no file in
  the outbox without its release record and no release record without its file;
- every approved hotline case handed off exactly once (or a recorded hand-off failure);
- `dew audit verify` passes (the chain, and every delivery as recorded).

The harness is also the suite's (`tests/test_crashes.py`, at a size that fits in CI).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.scratch import create_database, drop_database

SCENARIOS = ("drill-script", "hotline-intake")
GUARDIANS = {"drill-script": "zhao.lei", "hotline-intake": "xu.jie"}


def _dew() -> str:
    return shutil.which("dew", path=str(Path(sys.executable).parent)) or "dew"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Deployment:
    """The server and workers as processes an operator (or an orchestrator) restarts."""

    def __init__(self, env: dict[str, str], home: Path, port: int, workers: int):
        self.env, self.home, self.port = env, home, port
        self.server: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen | None] = [None] * workers
        self.lock = threading.Lock()
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.starts = Counter[str]()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        self.starts[name] += 1
        log = (self.logs / f"{name}-{self.starts[name]}.log").open("w")
        return subprocess.Popen([_dew(), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def start_server(self) -> None:
        self.server = self._spawn("server", ["serve", "--port", str(self.port), "--log-level", "warning",
                                             "--checkpoint-every", "off"])  # fmt: skip

    def start_worker(self, n: int) -> None:
        self.workers[n] = self._spawn(f"worker{n + 1}", ["worker", "--concurrency", "4", "--stalled-after", "3",
                                                         "--name", f"w{n + 1}", "--log-level", "warning"])  # fmt: skip

    def stop(self) -> None:
        procs = [p for p in [self.server, *self.workers] if p is not None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _in_flight(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT args->>'kind' FROM procrastinate_jobs WHERE status = 'doing' AND task_name = 'dew:perform'"
        ).fetchall()
    return [r[0] for r in rows]


def _setup(home: Path, url: str) -> dict[str, str]:
    from dew.agents.names import shipped_directory
    from dew.agents.testing import ScriptedModelProvider
    from dew.guardians import auth, engine, users
    from dew.guardians.workspace import Settings, Workspace

    settings = Settings(home=home, scenarios_dir=shipped_directory(), database_url=url, engine="procrastinate")
    engine.prepare(settings)
    ws = Workspace(settings, ScriptedModelProvider())
    try:
        users.add_user(ws, "root", "Root", ["admin"], actor="root")
        users.add_user(ws, "alice", "Alice", ["requester"], actor="root")
        for g in GUARDIANS.values():
            users.add_user(ws, g, g, ["guardian"], actor="root")
        return {u: auth.create_token(ws, u, actor=u)[1] for u in ("root", "alice", *GUARDIANS.values())}
    finally:
        ws.close()


def _hotline_example() -> dict[str, Any]:
    from dew.agents.loader import load_directory
    from dew.agents.names import shipped_directory

    spec = load_directory(shipped_directory())["hotline-intake"].spec
    return dict(spec.examples[0].inputs)


def crash(admin_url: str, runs: int, workers: int, seed: int = 1, keep: bool = False) -> dict[str, Any]:
    from tests.fakellm import FakeOpenAI

    rng = random.Random(seed)
    hotline = _hotline_example()
    name, url = create_database(admin_url, "dew_crash")
    home = Path(tempfile.mkdtemp(prefix="dew-crash-"))
    fake = FakeOpenAI().start()
    fake.latency = 0.1
    from dew.agents.names import shipped_directory

    env = {**os.environ, "DEW_HOME": str(home / "ws"), "DEW_SCENARIOS": str(shipped_directory()),
           "DEW_DATABASE_URL": url, "DEW_ENGINE": "procrastinate", "DEW_LLM_BASE_URL": fake.url,
           "DEW_LLM_MODEL": "fake", "DEW_LLM_MAX_RETRIES": "0", "DEW_USER": "", "DEW_SERVER": "",
           "DEW_CONFIG_DIR": str(home / "config")}  # fmt: skip
    tokens = _setup(home / "ws", url)
    port = _free_port()
    dep = Deployment(env, home, port, workers)
    kills: list[dict[str, Any]] = []
    accepted: list[int] = []
    decided: dict[int, str] = {}
    stop_killing = threading.Event()
    drill = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team"}
    started = time.perf_counter()
    try:
        dep.start_server()
        for n in range(workers):
            dep.start_worker(n)
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, timeout=30)

        def call(
            method: str, path: str, who: str, extra: dict[str, str] | None = None, **kw: Any
        ) -> httpx.Response | None:
            headers = {"Authorization": f"Bearer {tokens[who]}", **(extra or {})}
            try:
                return client.request(method, path, headers=headers, **kw)
            except httpx.HTTPError:  # the server is down (killed): the caller tries again
                return None

        def killer() -> None:
            while not stop_killing.wait(rng.uniform(0.3, 2.0)):
                with dep.lock:
                    victim = "server" if rng.random() < 0.3 else f"worker{rng.randrange(workers) + 1}"
                    proc = dep.server if victim == "server" else dep.workers[int(victim[6:]) - 1]
                    if proc is None or proc.poll() is not None:
                        continue
                    try:
                        doing = _in_flight(url)
                    except Exception:  # the database is fine; a busy moment is not a reason to skip the kill
                        doing = []
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills.append({"at": round(time.perf_counter() - started, 2), "victim": victim, "in_flight": doing})
                time.sleep(rng.uniform(0.0, 1.0))
                with dep.lock:
                    if victim == "server":
                        dep.start_server()
                    else:
                        dep.start_worker(int(victim[6:]) - 1)

        chaos = threading.Thread(target=killer, daemon=True)
        chaos.start()
        deadline = time.monotonic() + 120 + runs * 6
        # Requests: every one until the API accepts it, with the same Idempotency-Key each time.
        for i in range(runs):
            scenario = SCENARIOS[i % 2]
            body = {"scenario": scenario, "inputs": hotline if scenario == "hotline-intake" else drill}
            key = f"crash-{seed}-{i}"  # asked again after a lost answer, the request finds its run
            while True:
                r = call("POST", "/api/v1/runs", "alice", json=body, extra={"Idempotency-Key": key})
                if r is not None and r.status_code == 202:
                    accepted.append(r.json()["run_id"])
                    break
                time.sleep(0.2)
                if time.monotonic() > deadline:
                    raise TimeoutError("the API did not accept every request")
            # Decide whatever waits, as the requests go in.
            _decide_waiting(call, decided, rng)
        while time.monotonic() < deadline:
            _decide_waiting(call, decided, rng)
            if _settled(url, accepted, decided):
                break
            time.sleep(0.5)
        else:
            raise TimeoutError("the runs did not settle")
        stop_killing.set()
        chaos.join(10)
        with dep.lock:  # everything up again, to finish what the last kill interrupted
            if dep.server is None or dep.server.poll() is not None:
                dep.start_server()
            for n, w in enumerate(dep.workers):
                if w is None or w.poll() is not None:
                    dep.start_worker(n)
        settle_deadline = time.monotonic() + 120
        while not _settled(url, accepted, decided) and time.monotonic() < settle_deadline:
            _decide_waiting(call, decided, rng)
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        dep.stop()
        client.close()
        report = _check(url, home / "ws", env, accepted, decided)
        report.update({
            "runs_requested": runs, "workers": workers, "seconds": round(elapsed, 1), "kills": len(kills),
            "kills_of": dict(Counter(k["victim"].rstrip("0123456789") for k in kills)),
            "kills_with_jobs_in_flight": dict(Counter(kind for k in kills for kind in k["in_flight"])),
            "model_calls": len(fake.requests),
        })  # fmt: skip
        return report
    finally:
        stop_killing.set()
        dep.stop()
        fake.stop()
        if not keep:
            drop_database(admin_url, name)
            shutil.rmtree(home, ignore_errors=True)


def _decide_waiting(call, decided: dict[int, str], rng: random.Random) -> None:
    for scenario, guardian in GUARDIANS.items():
        r = call("GET", "/api/v1/queue", guardian, params={"scenario": scenario})
        if r is None or r.status_code != 200:
            continue
        for item in r.json():
            if item["id"] in decided:
                continue
            action = "approve" if rng.random() < 0.9 else "reject"
            body = {"action": action, "note": None if action == "approve" else "not now"}
            d = call("POST", f"/api/v1/items/{item['id']}/decision", guardian, json=body)
            if d is not None and d.status_code == 202:
                decided[item["id"]] = action
            elif d is not None and d.status_code == 409:  # recorded before a kill took the answer
                decided[item["id"]] = "recorded earlier"


def _settled(url: str, accepted: list[int], decided: dict[int, str]) -> bool:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        live = conn.execute("SELECT count(*) FROM runs WHERE status IN ('queued', 'running', 'approved')").fetchone()[0]
        pending = conn.execute(
            "SELECT count(*) FROM work_items WHERE status = 'pending' AND scenario_id <> 'enforcement-document'"
        ).fetchone()[0]
        known = conn.execute("SELECT count(*) FROM runs WHERE parent_run_id IS NULL").fetchone()[0]
        # A hand-off is made after its run's release, by the same job: a released hotline run with
        # neither a child run nor a recorded reason is still being handed off (or its job is to be
        # retried), and the child it will start is live work the check would otherwise find queued.
        handing_off = conn.execute(
            "SELECT count(*) FROM runs r WHERE r.scenario_id = 'hotline-intake' AND r.status = 'released'"
            " AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_run_id = r.id)"
            " AND NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.run_id = r.id"
            " AND e.kind IN ('run.handoff_failed', 'run.handoff_skipped'))"
        ).fetchone()[0]
    return live == 0 and pending == 0 and handing_off == 0 and known >= len(accepted) and len(accepted) > 0


def _check(url: str, home: Path, env: dict[str, str], accepted: list[int], decided: dict[int, str]) -> dict[str, Any]:
    import psycopg

    problems: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        runs = {r[0]: r for r in conn.execute("SELECT id, scenario_id, status, error, parent_run_id FROM runs")}
        releases = conn.execute("SELECT run_id, location FROM releases").fetchall()
        handoff_failed = {
            r[0] for r in conn.execute("SELECT run_id FROM audit_events WHERE kind = 'run.handoff_failed'")
        }
        skipped = {r[0] for r in conn.execute("SELECT run_id FROM audit_events WHERE kind = 'run.handoff_skipped'")}
    for run_id in accepted:
        if run_id not in runs:
            problems.append(f"run {run_id} was accepted and is not in the database")
    requested = [r for r in runs.values() if r[4] is None]
    if len(requested) != len(set(accepted)):
        problems.append(f"{len(requested)} runs requested for {len(set(accepted))} requests: a request ran twice")
    statuses = Counter(r[2] for r in runs.values())
    for run_id, scenario, status, error, _ in runs.values():
        if status in ("queued", "running", "approved"):
            problems.append(f"run {run_id} ({scenario}) was left {status}")
        if status == "failed" and not error:
            problems.append(f"run {run_id} failed without a reason")
    per_run = Counter(r[0] for r in releases)
    problems += [f"run {r} was released {n} times" for r, n in per_run.items() if n > 1]
    outbox = home / "outbox"
    files = {str(p.relative_to(home)) for p in outbox.rglob("*") if p.is_file() and not p.name.endswith(
        (".label.json", ".recalled"))} if outbox.exists() else set()  # fmt: skip
    recorded = {loc for _, loc in releases}
    problems += [f"outbox file {f} has no release record" for f in sorted(files - recorded)]
    problems += [f"release record {f} has no file" for f in sorted(recorded - files)]
    children = Counter(r[4] for r in runs.values() if r[4] is not None)
    for run_id, scenario, status, _, _ in runs.values():
        if scenario == "hotline-intake" and status == "released":
            n = children[run_id]
            if n > 1:
                problems.append(f"run {run_id} handed off {n} times")
            if n == 0 and run_id not in handoff_failed and run_id not in skipped:
                problems.append(f"run {run_id} was released and neither handed off nor recorded why not")
    verify = subprocess.run([_dew(), "audit", "verify", "--json"], env=env, capture_output=True, text=True)
    if verify.returncode != 0:
        problems.append(f"dew audit verify: {verify.stdout.strip() or verify.stderr.strip()}")
    failures = Counter((r[3] or "")[:160] for r in runs.values() if r[2] == "failed")
    return {
        "runs": len(runs), "accepted": len(accepted), "statuses": dict(statuses), "failures": dict(failures),
        "releases": len(releases),
        "handoffs": sum(children.values()), "decisions": dict(Counter(decided.values())),
        "audit_verify": "ok" if verify.returncode == 0 else "FAILED", "problems": problems,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", action="store_true", help="keep the database and the workspace to look at")
    args = parser.parse_args()
    report = crash(args.database_url, args.runs, args.workers, args.seed, args.keep)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    raise SystemExit(1 if report["problems"] else 0)


if __name__ == "__main__":
    main()
