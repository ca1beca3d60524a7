"""The distributed engine (DEW_ENGINE=procrastinate): runs executed by `dew worker` processes
through procrastinate's queue in PostgreSQL, found again when a worker is killed, failed with a
reason when their job keeps failing, and never executed twice at once."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from sqlalchemy import update
from sqlmodel import select

from dew.agents.checkpoints import postgres_conninfo
from dew.agents.testing import ScriptedModelProvider
from dew.guardians import engine
from dew.guardians.db import transaction
from dew.guardians.errors import InvalidState
from dew.guardians.execution import Job, JobKind
from dew.guardians.models import PRIORITIES, AuditEvent, Run, WorkItem
from dew.guardians.runs import request_run
from dew.guardians.workspace import Settings, Workspace

from .conftest import _postgres_database

DRILL = {"facility_type": "chemical warehouse", "hazard": "fire", "participants": "fire brigade\nwarehouse staff"}


def dew_exe() -> str:
    exe = shutil.which("dew", path=str(Path(sys.executable).parent)) or shutil.which("dew")
    assert exe, "the dew command is installed with the package"
    return exe


# --- refused set-ups (no PostgreSQL needed) --------------------------------------------------------
def test_procrastinate_on_sqlite_is_refused_with_the_fix(dew):
    dew.env["DEW_ENGINE"] = "procrastinate"
    result = dew("inbox")
    assert result.exit_code == 4
    assert "DEW_ENGINE=procrastinate needs PostgreSQL" in result.stderr and "DEW_DATABASE_URL" in result.stderr
    worker = dew("worker")
    assert worker.exit_code == 4 and "needs PostgreSQL" in worker.stderr
    assert "dew worker on" not in worker.stderr  # refused before it said it was starting
    dew.env.pop("DEW_ENGINE")
    in_process = dew("worker")
    assert in_process.exit_code == 4 and "set DEW_ENGINE=procrastinate" in in_process.stderr
    assert "dew worker on" not in in_process.stderr


def test_an_unknown_engine_is_refused(dew):
    dew.env["DEW_ENGINE"] = "celery"
    result = dew("runs")
    assert result.exit_code == 4 and "DEW_ENGINE is 'celery'; it takes one of: threads, procrastinate" in result.stderr


# --- the engine on PostgreSQL ---------------------------------------------------------------------
@pytest.fixture
def pg_url():
    yield from _postgres_database()


@pytest.fixture
def engine_dew(dew, pg_url):
    dew.env.update(DEW_DATABASE_URL=pg_url, DEW_ENGINE="procrastinate")
    return dew


class Workers:
    """`dew worker` processes, as an operator starts them; all are stopped at the end."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env = {**os.environ, **env}
        self.logs = logs
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        n = len(self.procs) + 1
        log = (self.logs / f"worker{n}.log").open("w")
        proc = subprocess.Popen([dew_exe(), "worker", "--name", f"w{n}", *args], env=self.env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        self.procs.append(proc)
        return proc

    def ready(self, url: str, timeout: float = 60.0) -> None:
        """Wait until every worker started has registered with the queue (sent its first heartbeat)."""
        _until(lambda: _count_workers(url) >= len(self.procs), timeout=timeout)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def log(self, n: int) -> str:
        return (self.logs / f"worker{n}.log").read_text()


@pytest.fixture
def workers(engine_dew, tmp_path):
    w = Workers(engine_dew.env, tmp_path)
    yield w
    w.stop()


def _jobs(url: str) -> list[dict]:
    with psycopg.connect(postgres_conninfo(url), row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "SELECT id, task_name, status, lock, attempts, args FROM procrastinate_jobs"
            " WHERE task_name = 'dew:perform' ORDER BY id"
        ).fetchall()


def _count_workers(url: str) -> int:
    try:
        with psycopg.connect(postgres_conninfo(url)) as conn:
            return conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0


def _until(what, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s")


@pytest.mark.postgres
def test_workers_execute_runs_and_decisions_for_the_cli(engine_dew, workers, pg_url):
    workers.start("--concurrency", "2")
    workers.start("--concurrency", "2")
    workers.ready(pg_url)
    started = engine_dew("run", "drill-script", "--example", "first", "--as", "officer.wu", "--json")
    assert started.exit_code == 0, started.output
    run = json.loads(started.stdout)
    assert run["status"] == "awaiting_decision" and run["guardian"] == "zhao.lei"
    decided = engine_dew("approve", run["item_id"], "--as", "zhao.lei", "--json")
    assert decided.exit_code == 0, decided.output
    released = json.loads(decided.stdout)
    assert released["status"] == "released"
    assert (Path(engine_dew.env["DEW_HOME"]) / released["released_to"]).is_file()
    # Both steps were jobs of the engine, performed by a worker, under the run's lock.
    jobs = _jobs(pg_url)
    assert [(j["args"]["kind"], j["status"], j["lock"]) for j in jobs] == [
        ("start", "succeeded", f"run-{run['run_id']}"),
        ("decision", "succeeded", f"run-{run['run_id']}"),
    ]
    assert "job done" in workers.log(1) + workers.log(2)
    assert engine_dew("audit", "verify").exit_code == 0


@pytest.mark.postgres
def test_a_killed_workers_run_is_finished_by_another_from_its_checkpoint(engine_dew, workers, pg_url):
    engine_dew.fake.latency = 1.0  # every model call takes a second: there is time to kill mid-call
    first = workers.start("--stalled-after", "3")
    settings = Settings(home=Path(engine_dew.env["DEW_HOME"]), scenarios_dir=Path(engine_dew.env["DEW_SCENARIOS"]),
                        database_url=pg_url, engine="procrastinate")  # fmt: skip
    ws = Workspace(settings, ScriptedModelProvider())
    try:
        run = request_run(ws, "enforcement-document", _example(ws, "enforcement-document"), requester="officer.wu")
        engine.executor_for(settings).submit(Job(JobKind.START, run.key))
        _until(lambda: [j for j in _jobs(pg_url) if j["status"] == "doing"])
        calls = len(engine_dew.fake.requests)
        _until(lambda: len(engine_dew.fake.requests) >= calls + 2)  # a step or two drafted, one call in flight
        first.send_signal(signal.SIGKILL)
        first.wait()
        workers.start("--stalled-after", "3")

        def waiting():
            with transaction(ws.engine) as s:
                return s.get(Run, run.key).status == "awaiting_decision"

        _until(waiting, timeout=90)
        with transaction(ws.engine) as s:
            items = s.exec(select(WorkItem).where(WorkItem.run_id == run.key)).all()
            drafted = s.exec(
                select(AuditEvent).where(AuditEvent.run_id == run.key, AuditEvent.kind == "run.drafted")
            ).all()
        assert len(items) == 1 and len(drafted) == 1  # one draft queued, once
        job = _jobs(pg_url)[0]
        assert job["status"] == "succeeded" and job["attempts"] == 2
        assert "stalled job" in workers.log(2)
        assert engine_dew("audit", "verify").exit_code == 0
    finally:
        ws.close()


def _example(ws: Workspace, scenario: str) -> dict:
    return dict(ws.scenario(scenario).spec.examples[0].inputs)


@pytest.fixture
def engine_ws(tmp_path, scenarios_dir, pg_url):
    settings = Settings(
        home=tmp_path / "home", scenarios_dir=scenarios_dir, database_url=pg_url, engine="procrastinate"
    )
    engine.prepare(settings)
    ws = Workspace(settings, ScriptedModelProvider())
    yield ws
    ws.close()


@pytest.mark.postgres
def test_the_same_job_waits_once(engine_ws):
    run = request_run(engine_ws, "drill-script", DRILL, requester="officer.wu")
    executor = engine.executor_for(engine_ws.settings)
    assert executor.submit(Job(JobKind.START, run.key)) is not None
    assert executor.submit(Job(JobKind.START, run.key)) is None  # already waiting: nothing added
    assert executor.submit(Job(JobKind.RECOVER, run.key)) is None  # the same work as the start
    assert executor.pending == 1


@pytest.mark.postgres
def test_a_job_that_keeps_failing_fails_its_run_with_the_reason(engine_ws, monkeypatch):
    def broken(ws, job):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(engine, "perform", broken)
    run = request_run(engine_ws, "drill-script", DRILL, requester="officer.wu")
    engine.executor_for(engine_ws.settings).submit(Job(JobKind.START, run.key))
    stop = threading.Event()
    config = engine.WorkerConfig(concurrency=1, retries=1)
    worker = threading.Thread(
        target=engine.work, args=(engine_ws.settings, ScriptedModelProvider(), config),
        kwargs={"stop": stop, "install_signal_handlers": False}, daemon=True,
    )  # fmt: skip
    worker.start()
    try:

        def failed():
            with transaction(engine_ws.engine) as s:
                r = s.get(Run, run.key)
                return r if r.status == "failed" else None

        run_row = _until(failed, timeout=30)
        assert run_row.error == "its job failed 2 times: RuntimeError: the disk is full"
        _until(lambda: _jobs(engine_ws.settings.database_url)[0]["status"] == "failed", timeout=10)
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()


def _stall(url: str, attempts: int) -> None:
    """Make the queue's one job look taken by a worker that stopped an hour ago."""
    with psycopg.connect(postgres_conninfo(url), autocommit=True) as conn:
        dead = conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour') RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s, attempts = %s WHERE task_name = 'dew:perform'",
            (dead, attempts),
        )


def _sweep(ws: Workspace, retries: int = 4) -> dict[str, int]:
    async def go():
        app = engine.make_app(ws.settings)
        async with app.open_async():
            return await engine.sweep(app, ws.settings, engine.WorkerConfig(retries=retries), lambda: ws)

    return asyncio.run(go())


@pytest.mark.postgres
def test_the_sweep_retries_a_dead_workers_job_then_gives_up(engine_ws):
    url = engine_ws.settings.database_url
    run = request_run(engine_ws, "drill-script", DRILL, requester="officer.wu")
    engine.executor_for(engine_ws.settings).submit(Job(JobKind.START, run.key))
    _stall(url, attempts=0)
    assert _sweep(engine_ws) == {"retried": 1, "failed": 0, "adopted": 0}
    assert _jobs(url)[0]["status"] == "todo"  # back in the queue, for any worker
    _stall(url, attempts=4)  # its workers died four times already: the fifth death ends it
    assert _sweep(engine_ws) == {"retried": 0, "failed": 1, "adopted": 0}
    assert _jobs(url)[0]["status"] == "failed"
    with transaction(engine_ws.engine) as s:
        failed = s.get(Run, run.key)
    assert failed.status == "failed" and failed.error == "the workers executing it stopped 5 times"


@pytest.mark.postgres
def test_the_sweep_gives_a_job_to_a_run_left_without_one(engine_ws):
    from datetime import timedelta

    from dew.guardians.models import utcnow

    url = engine_ws.settings.database_url
    run = request_run(engine_ws, "drill-script", DRILL, requester="officer.wu")  # recorded; its process "died"
    assert engine.orphans(engine_ws) == []  # too recent: its process may still be deferring it
    with transaction(engine_ws.engine) as s:
        s.execute(update(Run).where(Run.id == run.key).values(updated_at=utcnow() - timedelta(minutes=10)))
    assert engine.orphans(engine_ws) == [run.key]
    assert _sweep(engine_ws) == {"retried": 0, "failed": 0, "adopted": 1}
    assert [(j["args"]["kind"], j["status"]) for j in _jobs(url)] == [("recover", "todo")]
    assert engine.orphans(engine_ws) == []  # it has a job now
    assert _sweep(engine_ws)["adopted"] == 0


@pytest.mark.postgres
def test_servers_share_the_database_when_workers_execute(engine_ws):
    from fastapi.testclient import TestClient

    from dew.guardians.desk.app import DeskConfig, create_app

    config = DeskConfig(exclusive=True, tick_seconds=3600, checkpoint_seconds=None)
    with (
        TestClient(create_app(engine_ws.settings, config, provider=ScriptedModelProvider())) as one,
        TestClient(create_app(engine_ws.settings, config, provider=ScriptedModelProvider())) as two,
    ):
        for client in (one, two):  # no `dew worker` yet: ready says so
            ready = client.get("/api/v1/ready")
            assert ready.status_code == 503 and ready.json()["problems"] == ["workers: not running"]


@pytest.mark.postgres
def test_workers_take_urgent_runs_first_and_batches_last(engine_ws, monkeypatch):
    order: list[str] = []
    real = engine.perform

    def noting(ws, job):
        order.append(ws.stored_scenario(ws_run(ws, job.run_id).scenario_sha256).id)
        return real(ws, job)

    monkeypatch.setattr(engine, "perform", noting)
    executor = engine.executor_for(engine_ws.settings)
    for scenario in ("investment-screener", "drill-script", "hotline-intake"):  # batch, normal, urgent
        run = request_run(engine_ws, scenario, _example(engine_ws, scenario), requester="officer.wu")
        executor.submit(Job(JobKind.START, run.key))
    stop = threading.Event()
    worker = threading.Thread(
        target=engine.work, args=(engine_ws.settings, ScriptedModelProvider(), engine.WorkerConfig(concurrency=1)),
        kwargs={"stop": stop, "install_signal_handlers": False}, daemon=True,
    )  # fmt: skip
    worker.start()
    try:
        _until(lambda: len(order) == 3, timeout=60)
    finally:
        stop.set()
        worker.join(30)
    assert order == ["hotline-intake", "drill-script", "investment-screener"]


def ws_run(ws: Workspace, run_id: int) -> Run:
    with transaction(ws.engine) as s:
        return s.get(Run, run_id)


@pytest.mark.postgres
def test_without_a_worker_the_cli_says_the_run_waits_in_the_queue(engine_dew):
    result = engine_dew("run", "drill-script", "--example", "first", "--as", "officer.wu")
    assert result.exit_code == 4
    assert "no `dew worker` is running on" in result.stderr
    assert "run 1 is recorded and waits in the queue until one starts (dew worker)" in result.stderr
    listing = json.loads(engine_dew("runs", "--json").stdout)
    assert [(r["run_id"], r["status"]) for r in listing] == [(1, "queued")]


@pytest.mark.postgres
def test_a_decision_applied_again_is_not_applied_to_the_next_draft(engine_ws):
    """A retried decision job (a crash after a revision was drafted) finds it applied already."""
    from dataclasses import replace

    from dew.guardians.flow import apply_decision, decide
    from dew.guardians.models import WorkItem
    from dew.guardians.runs import start_run

    here = Workspace(replace(engine_ws.settings, engine="threads"), ScriptedModelProvider())  # decide in-process
    try:
        first = start_run(here, "drill-script", DRILL, requester="officer.wu")
        again = decide(here, first.item.key, actor="zhao.lei", action="revise", note="more detail")
        assert again.item is not None and again.item.revision == 1
        repeated = apply_decision(here, first.item.key)
        assert repeated.item.key == again.item.key  # nothing drafted a second time
        with transaction(here.engine) as s:
            assert len(s.exec(select(WorkItem).where(WorkItem.run_id == first.run.key)).all()) == 2
    finally:
        here.close()


@pytest.mark.postgres
def test_queued_runs_of_a_paused_scenario_are_not_adopted(engine_ws):
    from datetime import timedelta

    from dew.guardians.brake import pause
    from dew.guardians.models import utcnow

    run = request_run(engine_ws, "drill-script", DRILL, requester="officer.wu")
    with transaction(engine_ws.engine) as s:
        s.execute(update(Run).where(Run.id == run.key).values(updated_at=utcnow() - timedelta(minutes=10)))
    pause(engine_ws, "drill-script", actor="zhao.lei", reason="checking the drafts")
    assert engine.orphans(engine_ws) == []  # it waits for the resumption, which starts it


@pytest.mark.postgres
def test_a_worker_executing_a_run_holds_it_against_every_other(engine_ws):
    events: list[str] = []
    procs = []
    for _ in range(2):  # two workers, each with its own lock connection
        p = engine._Process(engine_ws.settings, ScriptedModelProvider(), engine.WorkerConfig())
        p.locks = engine.RunLocks(engine_ws.settings.database_url)
        procs.append(p)

    def execute(p, name):
        with p.holding(42):
            events.append(f"{name} in")
            time.sleep(1.0)
            events.append(f"{name} out")

    first = threading.Thread(target=execute, args=(procs[0], "A"))
    first.start()
    _until(lambda: events == ["A in"], timeout=10, every=0.05)
    second = threading.Thread(target=execute, args=(procs[1], "B"))
    second.start()
    first.join(10)
    second.join(10)
    for p in procs:
        p.close()
    assert events == ["A in", "A out", "B in", "B out"]


@pytest.mark.postgres
def test_two_jobs_of_one_worker_for_the_same_run_take_turns(engine_ws):
    """All of a worker's run locks are on one session, where advisory locks are re-entrant: a job
    retried while its first attempt still runs in the same worker waits for it in the process,
    while other runs go ahead."""
    locks = engine.RunLocks(engine_ws.settings.database_url)
    events: list[str] = []
    release_a = threading.Event()

    def execute(run_id: int, name: str, until: threading.Event | None = None) -> None:
        with locks.holding(run_id):
            events.append(f"{name} in")
            if until is not None:
                until.wait(30)
            events.append(f"{name} out")

    first = threading.Thread(target=execute, args=(42, "A", release_a))
    again = threading.Thread(target=execute, args=(42, "A again"))
    other = threading.Thread(target=execute, args=(43, "B"))
    try:
        first.start()
        _until(lambda: events == ["A in"], timeout=10, every=0.05)
        again.start()
        other.start()
        other.join(10)
        time.sleep(0.3)  # time enough for the second job of run 42 to get in, were it not held back
        assert events == ["A in", "B in", "B out"]  # another run does not wait; the same run does
        release_a.set()
        first.join(10)
        again.join(10)
        assert events[3:] == ["A out", "A again in", "A again out"]
        with psycopg.connect(postgres_conninfo(engine_ws.settings.database_url), autocommit=True) as conn:
            assert conn.execute("SELECT pg_try_advisory_lock(%s, 42)", (engine.RUN_LOCK,)).fetchone()[0]  # freed
    finally:
        release_a.set()
        locks.close()


def _lock_taken_elsewhere(url: str, run_id: int) -> bool:
    with psycopg.connect(postgres_conninfo(url), autocommit=True) as conn:
        free = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (engine.RUN_LOCK, run_id)).fetchone()[0]
        if free:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (engine.RUN_LOCK, run_id))
        return not free


@pytest.mark.postgres
def test_a_broken_lock_connection_is_replaced_and_the_locks_of_running_jobs_taken_back(engine_ws):
    url = engine_ws.settings.database_url
    locks = engine.RunLocks(url)
    try:
        with locks.holding(42):
            assert _lock_taken_elsewhere(url, 42)
            with psycopg.connect(postgres_conninfo(url), autocommit=True) as admin:  # the session dies
                admin.execute("SELECT pg_terminate_backend(%s)", (locks._conn.info.backend_pid,))
            assert not _lock_taken_elsewhere(url, 42)  # PostgreSQL freed it with the session
            with locks.holding(43):  # the next statement finds the connection broken and replaces it
                assert _lock_taken_elsewhere(url, 43)
                assert _lock_taken_elsewhere(url, 42)  # taken back: run 42 is still executing here
        assert not _lock_taken_elsewhere(url, 42) and not _lock_taken_elsewhere(url, 43)
    finally:
        locks.close()


@pytest.mark.postgres
def test_a_run_whose_unlock_failed_is_not_locked_again_by_the_next_connection(engine_ws):
    """The job ended after its lock's session was lost (the lock went with it): the unlock is not
    asked again on a new session, and the connection made afterwards does not take the lock back
    for a run no longer executing here."""
    url = engine_ws.settings.database_url
    locks = engine.RunLocks(url)
    reachable = locks.conninfo
    try:
        with locks.holding(42):
            with psycopg.connect(postgres_conninfo(url), autocommit=True) as admin:  # the session dies
                admin.execute("SELECT pg_terminate_backend(%s)", (locks._conn.info.backend_pid,))
            locks.conninfo = make_conninfo(reachable, port=1)  # nobody listens there, were it asked again
        # holding() logged that the lock was no longer held; the database is back for the next job
        locks.conninfo = reachable
        with locks.holding(43):
            assert _lock_taken_elsewhere(url, 43)
            assert not _lock_taken_elsewhere(url, 42)
    finally:
        locks.close()


@pytest.mark.postgres
def test_a_lock_connection_that_cannot_be_made_says_so(engine_ws):
    locks = engine.RunLocks(engine_ws.settings.database_url)
    locks.conninfo = make_conninfo(locks.conninfo, port=1)  # nobody listens there
    with pytest.raises(psycopg.OperationalError), locks.holding(42):
        pass
    locks.close()


@pytest.mark.postgres
def test_a_queue_of_another_procrastinate_version_is_refused_with_the_fix(engine_ws):
    with psycopg.connect(postgres_conninfo(engine_ws.settings.database_url), autocommit=True) as conn:
        conn.execute(f"ALTER FUNCTION {engine.SCHEMA_FUNCTION} RENAME TO procrastinate_fetch_job_old")
    with pytest.raises(InvalidState, match=r"from another procrastinate version .*procrastinate schema --migrations"):
        engine.prepare(engine_ws.settings)


@pytest.mark.postgres
def test_the_sweep_is_deferred_before_any_backlog(engine_ws):
    app = engine.make_app(engine_ws.settings)
    [periodic] = [t for t in app.periodic_registry.periodic_tasks.values() if t.task.name == "dew:sweep"]
    assert periodic.configure_kwargs["priority"] == engine.SWEEP_PRIORITY > max(PRIORITIES.values())


def _connections(url: str, application: str) -> int:
    with psycopg.connect(postgres_conninfo(url)) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            (application,),
        ).fetchone()[0]


@pytest.mark.postgres
def test_a_worker_keeps_a_bounded_number_of_connections(engine_dew, engine_ws, workers, pg_url, fake_llm):
    """A worker of concurrency 8 with all its jobs in flight holds the connections docs/deploy.md
    counts (1 for the run locks, 4 for dew's tables, 4 for checkpoints, procrastinate's 4-5, the
    endpoint gate's 1), not three per job thread: PostgreSQL's default 100 held 3 such workers."""
    fake_llm.latency = 1.0  # every job's model call in flight at once
    workers.env["PGAPPNAME"] = "dew-test-worker"  # libpq names every connection the worker opens
    workers.start("--concurrency", "8")
    workers.ready(pg_url)
    executor = engine.executor_for(engine_ws.settings)
    ids = []
    for _ in range(24):
        run = request_run(engine_ws, "drill-script", _example(engine_ws, "drill-script"), requester="officer.wu")
        executor.submit(Job(JobKind.START, run.key))
        ids.append(run.key)
    peak = 0

    def all_drafted() -> bool:
        nonlocal peak
        peak = max(peak, _connections(pg_url, "dew-test-worker"))
        with transaction(engine_ws.engine) as s:
            statuses = s.exec(select(Run.status).where(Run.id.in_(ids))).all()  # type: ignore[union-attr]
        return all(status == "awaiting_decision" for status in statuses)

    _until(all_drafted, timeout=120, every=0.05)
    assert fake_llm.max_in_flight >= 6  # the jobs did overlap
    assert 5 <= peak <= 20, peak
