"""The distributed engine: runs executed by `dew worker` processes through procrastinate.

With `DEW_ENGINE=procrastinate` (PostgreSQL only) a `Job` becomes a row in procrastinate's queue,
in the database dew already uses; any number of `dew worker` processes, on any number of
machines, take them. The server and the CLI only record work and defer jobs. Nothing else
changes: a worker calls `execution.perform`, exactly as the server's threads do.

What makes it safe to run many:
- every job of a run carries the procrastinate lock `run-<id>`, so a second job of a run is not
  started while the first is being executed; and the worker executing a run holds a PostgreSQL
  advisory lock on it (`_Process.holding`), for the case procrastinate cannot see: a job retried
  because its worker looked dead while that worker still works;
- a worker that dies (kill -9, power loss) stops sending heartbeats; its jobs are retried by the
  `sweep` every worker schedules, and a retried job continues the run from its last checkpoint
  (`execution.recover`);
- a job that fails, or whose workers die, more than `retries` times stops: its run is failed with
  the reason, and stays retryable by a person (`dew retry`);
- `sweep` also finds runs a stopped process left without a job (recorded, but the process died
  before it deferred the job) and gives them one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import and_, text
from sqlmodel import col, select

from dew.guardians.errors import InvalidState

from .db import transaction
from .execution import Job, JobKind, perform
from .models import Release, Run, RunStatus, ScenarioState, utcnow
from .throttle import forget_old_usage

if TYPE_CHECKING:
    from procrastinate import App, JobContext

    from dew.agents.llm import ModelProvider

    from .runs import RunResult
    from .workspace import Settings, Workspace

log = logging.getLogger("dew.engine")

QUEUE = "dew-runs"
TASK = "dew:perform"
SWEEP_CRON = "* * * * * */10"  # every 10 seconds (croniter, procrastinate's cron, reads seconds last)
HEARTBEAT = 5.0  # seconds between a worker's heartbeats
STALLED_AFTER = 30.0  # a worker silent this long is taken for dead, and its jobs are retried
SCHEMA_LOCK = 74657704  # advisory lock keys: 74657701 migrations, 74657702 checkpoints, 74657703 serve
RUN_LOCK = 74657705  # with the run's id: held by the worker executing the run, for as long as it does
SWEEP_PRIORITY = 1000
SCHEMA_FUNCTION = "procrastinate_fetch_job_v2"  # in the schema of the procrastinate version dew pins


def check(settings: Settings) -> None:
    """Refuse an engine that does not exist, or procrastinate on a database other than PostgreSQL."""
    settings.check_engine()


def check_worker(settings: Settings) -> None:
    """Refuse to be a worker without the distributed engine (and its PostgreSQL)."""
    check(settings)
    if settings.engine != "procrastinate":
        raise InvalidState("`dew worker` takes runs from the distributed engine: set DEW_ENGINE=procrastinate")


def distributed(settings: Settings) -> bool:
    check(settings)
    return settings.engine == "procrastinate"


# --- procrastinate's side ------------------------------------------------------------------------
def make_app(settings: Settings) -> App:
    """A procrastinate app on the workspace's database, knowing dew's two tasks."""
    from procrastinate import App, Blueprint, PsycopgConnector

    from dew.agents.checkpoints import postgres_conninfo

    bp = Blueprint()
    bp.task(name="perform", queue=QUEUE, pass_context=True)(_perform_task)
    # The sweep goes before any backlog: it is what frees the runs of a dead worker.
    bp.periodic(cron=SWEEP_CRON, periodic_id="sweep", priority=SWEEP_PRIORITY)(
        bp.task(name="sweep", queue=QUEUE, pass_context=True)(_sweep_task)
    )
    app = App(connector=PsycopgConnector(conninfo=postgres_conninfo(settings.database_url)))
    app.add_tasks_from(bp, namespace="dew")
    return app


def prepare(settings: Settings) -> None:
    """Create procrastinate's tables and functions in the database unless they are there. Several
    processes may start at once: one creates, the others wait for it on an advisory lock."""
    from procrastinate.schema import SchemaManager
    from psycopg import Connection

    from dew.agents.checkpoints import postgres_conninfo

    with Connection.connect(postgres_conninfo(settings.database_url), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        try:
            row = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
            if not (row and row[0]):
                conn.execute(SchemaManager.get_schema())
                log.info("procrastinate schema created", extra={"database": settings.database_label})
            current = conn.execute("SELECT to_regproc(%s) IS NOT NULL", (SCHEMA_FUNCTION,)).fetchone()
            if not (current and current[0]):
                raise InvalidState(
                    f"the job queue's tables in {settings.database_label} are from another procrastinate version "
                    f"(no {SCHEMA_FUNCTION}); apply procrastinate's migrations (procrastinate schema --migrations "
                    "lists them) before starting dew on this database"
                )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))


# --- deferring: what the server, the CLI and hand-offs do -----------------------------------------
class EngineExecutor:
    """Submits jobs to procrastinate's queue (the `Executor` the server and the CLI use)."""

    def __init__(self, settings: Settings):
        check(settings)
        prepare(settings)
        self.settings = settings
        self.app = make_app(settings).open()

    def submit(self, job: Job) -> int | None:
        """Defer a job; its id, or None when the same job is already waiting (nothing is lost: the
        waiting one does the same)."""
        from procrastinate.exceptions import AlreadyEnqueued

        # START and RECOVER of one run are the same work: one may wait at a time. Decisions wait
        # one per item. All jobs of a run share one lock, so they never execute at once.
        waiting = f"item-{job.item_id}" if job.kind == JobKind.DECISION else f"run-{job.run_id}"
        priority = self._count("SELECT priority FROM runs WHERE id = %s", job.run_id)  # the scenario's, or the batch's
        try:
            job_id = self.app.configure_task(
                TASK, lock=f"run-{job.run_id}", queueing_lock=waiting, queue=QUEUE, priority=priority
            ).defer(kind=job.kind.value, run_id=job.run_id, item_id=job.item_id)
        except AlreadyEnqueued:
            return None
        return job_id

    def wait(self, job_id: int, poll: float = 0.1) -> str:
        """Block until a deferred job has finished; its final status ('succeeded', 'failed', ...)."""
        while (status := self.app.job_manager.get_job_status(job_id).value) in ("todo", "doing"):
            time.sleep(poll)
        return status

    # What the desk's /ready and /metrics read from an executor.
    @property
    def size(self) -> int:
        """`dew worker` processes that sent a heartbeat lately."""
        return self._count(
            "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - make_interval(secs => %s)",
            STALLED_AFTER,
        )

    @property
    def alive(self) -> bool:
        return self.size > 0

    @property
    def pending(self) -> int:
        return self._count(
            "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s AND status IN ('todo', 'doing')", QUEUE
        )

    def _count(self, query: str, arg: Any) -> int:
        """The one number a query returns (0 when it returns no row)."""
        with self.app.connector.get_sync_connector().pool.connection() as conn:  # type: ignore[attr-defined]
            row = conn.execute(query, (arg,)).fetchone()
        return int(row[0]) if row else 0

    @property
    def completed(self) -> int:
        """Jobs finished (succeeded or failed) that the queue still keeps (a day's worth)."""
        return self._count(
            "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s AND status IN ('succeeded', 'failed')",
            QUEUE,
        )


_executors: dict[str, EngineExecutor] = {}
_executors_lock = threading.Lock()


def executor_for(settings: Settings) -> EngineExecutor:
    """One deferring connection pool per process and database."""
    with _executors_lock:
        found = _executors.get(settings.database_url)
        if found is None:
            found = _executors[settings.database_url] = EngineExecutor(settings)
        return found


def carry_out(ws: Workspace, job: Job) -> RunResult:
    """Have a worker perform a job and wait for it: what `dew run`, a decision or a retry does on
    the command line when the workspace's runs belong to the engine."""
    from .runs import result_of

    executor = executor_for(ws.settings)
    job_id = executor.submit(job)
    if not executor.alive:  # recorded and queued: say so rather than wait for nobody
        what = f"the decision on work item {job.item_id}" if job.kind == JobKind.DECISION else f"run {job.run_id}"
        raise InvalidState(
            f"no `dew worker` is running on {ws.settings.database_label}: {what} is recorded and waits in the "
            "queue until one starts (dew worker)"
        )
    if job_id is None:  # the same work is already waiting: wait for the run instead
        _wait_for_run(ws, job.run_id)
    else:
        executor.wait(job_id)
    return result_of(ws, job.run_id, item_id=job.item_id)


def _wait_for_run(ws: Workspace, run_id: int) -> None:
    while True:
        with transaction(ws.engine) as s:
            run = s.get(Run, run_id)
        if run is None or run.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
            return
        time.sleep(0.2)


# --- the worker's side ---------------------------------------------------------------------------
@dataclass
class WorkerConfig:
    concurrency: int = 4
    retries: int = 4  # attempts after the first, for a job that raises or whose worker dies (waits 2, 4, 8, 16 s)
    stalled_after: float = STALLED_AFTER
    heartbeat: float = HEARTBEAT
    name: str | None = None

    @property
    def orphan_after(self) -> float:
        """How long a live run may sit without a job before the sweep gives it one: twice as long as a
        worker may stay silent (a process records a run and defers its job within milliseconds)."""
        return max(2 * self.stalled_after, 10.0)


_LOCK = "SELECT pg_try_advisory_lock(%s, %s)"
_UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"


class RunLocks:
    """A worker process's run locks: PostgreSQL advisory locks, all held on one connection of the
    process's own, so a worker that dies frees its runs with its session (whatever its
    concurrency, one connection). A session's advisory locks are re-entrant, so a second job of
    this process for a run it already executes (a job retried while its first attempt is still at
    work here) waits in the process instead.

    Every job waits on this one connection, so it must not hang: connecting and every reply are
    bounded (TCP keepalives, a user timeout), and a connection found broken is replaced, taking
    back the locks of the runs still executing here (the server freed them with the old session;
    one another worker took meanwhile is logged as an error)."""

    # A dead peer is noticed within about 30 s instead of the kernel's two hours.
    CONNECT: ClassVar[dict[str, int]] = {
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
    }

    def __init__(self, url: str):
        from psycopg.conninfo import make_conninfo

        from dew.agents.checkpoints import postgres_conninfo

        self.conninfo = make_conninfo(postgres_conninfo(url), **self.CONNECT)
        self._conn: Any = None
        self._statement = threading.Lock()  # one statement at a time on the connection
        self._changed = threading.Condition()
        self._held: set[int] = set()  # runs a job of this process holds or is waiting for
        self._locked: set[int] = set()  # runs whose lock this process's session holds

    @contextmanager
    def holding(self, run_id: int) -> Iterator[None]:
        with self._changed:
            while run_id in self._held:
                self._changed.wait()
            self._held.add(run_id)
        try:
            waited = False
            while not self._lock(run_id):
                if not waited:
                    log.warning("run busy on another worker; waiting", extra={"run_id": run_id})
                    waited = True
                time.sleep(0.5)
            try:
                yield
            finally:
                try:
                    if not self._unlock(run_id):
                        log.error("a run's lock was no longer held at the end of its job", extra={"run_id": run_id})
                except Exception:  # a broken connection has freed every lock of its session already
                    log.exception("could not free a run's lock", extra={"run_id": run_id})
        finally:
            with self._changed:
                self._held.discard(run_id)
                self._changed.notify_all()

    def _lock(self, run_id: int) -> bool:
        import psycopg

        with self._statement:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._reconnect()  # a failure to connect is raised as it is
            try:
                done = self._ask(_LOCK, run_id)
            except psycopg.OperationalError:  # the session is gone: once more on a new one
                self._conn.close()
                self._reconnect()
                done = self._ask(_LOCK, run_id)
            if done:
                self._locked.add(run_id)
            return done

    def _unlock(self, run_id: int) -> bool:
        """False if the lock was no longer held: never asked again on a new session, since the
        session that held it is gone and its locks with it."""
        import psycopg

        with self._statement:
            self._locked.discard(run_id)  # first: a reconnect must not take it back
            if self._conn is None or self._conn.closed or self._conn.broken:
                return False
            try:
                return self._ask(_UNLOCK, run_id)
            except psycopg.OperationalError:
                self._conn.close()
                return False

    def _ask(self, sql: str, run_id: int) -> bool:
        row = self._conn.execute(sql, (RUN_LOCK, run_id)).fetchone()
        return bool(row and row[0])

    def _reconnect(self) -> None:
        import psycopg

        self._conn = psycopg.Connection.connect(self.conninfo, autocommit=True)
        for run_id in sorted(self._locked):  # still executing here: take their locks back
            row = self._conn.execute(_LOCK, (RUN_LOCK, run_id)).fetchone()
            if not (row and row[0]):
                self._locked.discard(run_id)
                log.error("lost a run's lock with a broken connection; another worker holds it now",
                          extra={"run_id": run_id})  # fmt: skip

    def close(self) -> None:
        with self._statement:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def pool_size(concurrency: int) -> int:
    """A quarter of a worker's jobs: the connections it keeps for dew's tables (twice that in a
    burst), and half what it may open for checkpoints."""
    return max(2, concurrency // 4)


@dataclass
class _Process:
    """What a worker process's jobs share: settings, the model provider (so the embedded model
    server starts once), the database connections and one workspace per job thread.

    Connections: one holds the run locks of every job (`RunLocks`); dew's tables have a pool of a
    quarter as many as the jobs (as many again in a burst), the checkpoints one of up to half:
    a transaction or a checkpoint takes milliseconds, the seconds of a job go to the model. A
    worker of concurrency 32 used to keep a lock connection and two more per job thread, 99 in
    all, and PostgreSQL's default limit is 100: a second such worker could not connect."""

    settings: Settings
    provider: ModelProvider
    config: WorkerConfig
    local: threading.local = field(default_factory=threading.local)
    opened: list[Workspace] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    locks: RunLocks | None = None
    engine: Any = None  # one SQLAlchemy engine for every job thread's workspace
    savers: Any = None  # one connection pool for every job thread's checkpoint saver

    def open_pools(self) -> None:
        from dew.agents.checkpoints import saver_pool

        from .db import make_engine

        shared = pool_size(self.config.concurrency)
        self.engine = make_engine(self.settings.database_url, pool_size=shared)
        self.savers = saver_pool(self.settings.database_url, 2 * shared)
        self.locks = RunLocks(self.settings.database_url)

    def workspace(self) -> Workspace:
        ws = getattr(self.local, "ws", None)
        if ws is None:
            from .workspace import Workspace

            ws = self.local.ws = Workspace(
                self.settings, self.provider, sync_roster=False, engine=self.engine, saver_pool=self.savers
            )
            with self.lock:
                self.opened.append(ws)
        return ws

    @contextmanager
    def holding(self, run_id: int) -> Iterator[None]:
        """Hold the run's advisory lock while executing it. procrastinate's job lock keeps a second
        job of a run from starting while the first is `doing`, but a job retried because its worker
        looked dead (no heartbeat: a stop, a stall, another --stalled-after) is `doing` again on
        another worker while the first may still be at work. This lock is PostgreSQL's own, on a
        connection of this worker's: it is released only when the worker lets go of it or dies."""
        if self.locks is None:
            yield
            return
        with self.locks.holding(run_id):
            yield

    def close(self) -> None:
        """Close what is open, each part whatever another part's closing raised."""
        with self.lock:
            parts = [ws.close for ws in self.opened]
            self.opened.clear()
        parts += [p.close for p in (self.locks, self.savers) if p is not None]
        parts += [self.engine.dispose] if self.engine is not None else []
        self.locks = self.savers = self.engine = None
        for close in parts:
            try:
                close()
            except Exception:
                log.exception("could not close a worker's database connections")


_process: _Process | None = None


def _current() -> _Process:
    if _process is None:
        raise RuntimeError("dew's procrastinate tasks run inside `dew worker` (engine.work)")
    return _process


def _perform_task(context: JobContext, kind: str, run_id: int, item_id: int | None = None) -> str:
    proc = _current()
    job = Job(JobKind(kind), run_id, item_id)
    attempt = context.job.attempts
    if attempt:
        # A retried job may find its work begun, or done: a start drafted part of the run, a
        # decision applied (a revision already drafting again). Recovery continues from the last
        # checkpoint and applies a recorded decision only to the draft it was made on.
        job = Job(JobKind.RECOVER, run_id)
    ws = proc.workspace()
    started = time.monotonic()
    try:
        with proc.holding(run_id):
            result = perform(ws, job)
    except Exception as e:  # not the run's failure (drive records those): storage, a bug
        if attempt >= proc.config.retries:
            give_up(ws, run_id, f"its job failed {attempt + 1} times: {type(e).__name__}: {e}")
        raise
    log.info("job done", extra={"job": job.kind.value, "run_id": run_id, "attempt": attempt + 1,
                                "status": result.run.status, "seconds": round(time.monotonic() - started, 3)})  # fmt: skip
    return str(result.run.status)


async def _sweep_task(context: JobContext, timestamp: int) -> dict[str, int]:
    proc = _current()
    return await sweep(context.app, proc.settings, proc.config, proc.workspace)


async def sweep(
    app: App, settings: Settings, config: WorkerConfig, workspace: Callable[[], Workspace]
) -> dict[str, int]:
    """Retry the jobs of workers that stopped sending heartbeats (or fail their runs once they have
    used their retries), and give a job to every live run that has none."""
    from procrastinate.jobs import Status

    retried = failed = adopted = 0
    manager = app.job_manager
    # Finished jobs are kept a day (a waiting `dew run` reads its job's status), then dropped: the
    # audit trail, not the queue, is the record of what was done.
    await manager.delete_old_jobs(nb_hours=24, queue=QUEUE, include_failed=True)
    await asyncio.to_thread(forget_old_usage, settings)
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=config.stalled_after):
        try:
            if job.task_name == TASK and job.attempts >= config.retries:
                await manager.finish_job(job, status=Status.FAILED, delete_job=False)
                run_id = int(str(job.task_kwargs["run_id"]))
                await asyncio.to_thread(give_up, workspace(), run_id,
                                        f"the workers executing it stopped {job.attempts + 1} times")  # fmt: skip
                failed += 1
            else:
                await manager.retry_job(job)
                retried += 1
        except Exception:  # another sweep moved it first (it is no longer `doing`): the next job
            log.info("stalled job already taken care of", extra={"job_id": job.id})
            continue
        log.warning("stalled job", extra={"job_id": job.id, "task": job.task_name, "attempts": job.attempts + 1})
    for run_id in await asyncio.to_thread(orphans, workspace(), config.orphan_after):
        if await asyncio.to_thread(executor_for(settings).submit, Job(JobKind.RECOVER, run_id)) is not None:
            adopted += 1
            log.warning("run without a job", extra={"run_id": run_id})
    return {"retried": retried, "failed": failed, "adopted": adopted}


def orphans(ws: Workspace, after: float = 60.0) -> list[int]:
    """Live runs (queued, running, approved and not released) untouched for `after` seconds, with
    no job waiting or being executed for them: a process recorded them and stopped before deferring.
    Queued runs of a paused scenario wait for its resumption, which starts them. One statement, so
    that a job finishing meanwhile cannot make its run look abandoned."""
    paused = select(ScenarioState.scenario_id).where(col(ScenarioState.paused))
    no_job = text(
        "NOT EXISTS (SELECT 1 FROM procrastinate_jobs j WHERE j.lock = 'run-' || runs.id"
        " AND j.status IN ('todo', 'doing'))"
    )
    query = (
        select(col(Run.id))
        .where(
            col(Run.status).in_([RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.APPROVED]),
            col(Run.updated_at) < utcnow() - timedelta(seconds=after),
            ~col(Run.id).in_(select(Release.run_id)),
            ~and_(col(Run.status) == RunStatus.QUEUED, col(Run.scenario_id).in_(paused)),
            no_job,
        )
        .order_by(col(Run.id))
    )
    with transaction(ws.engine) as s:
        return [r for r in s.exec(query).all() if r is not None]


def give_up(ws: Workspace, run_id: int, reason: str) -> None:
    """Fail a run whose job will not be retried again; a person may still retry it."""
    from .runs import fail_run

    try:
        fail_run(ws, run_id, reason)
    except Exception:  # the database itself may be what fails: the job's own status says the rest
        log.exception("could not record the run's failure", extra={"run_id": run_id})


def _warm() -> None:
    """Import what a job uses before taking the first: otherwise about a second of imports (LangGraph,
    its PostgreSQL saver, the OpenAI client, the scenario compiler) lands on the first jobs taken, an
    urgent one among them, and on every job thread that waits for those imports."""
    import importlib

    for module in ("langchain_openai", "langgraph.checkpoint.postgres", "dew.agents.runtime", "dew.guardians.runs"):
        importlib.import_module(module)


def work(
    settings: Settings,
    provider: ModelProvider,
    config: WorkerConfig | None = None,
    *,
    stop: threading.Event | None = None,
    install_signal_handlers: bool = True,
) -> None:
    """Be a worker until stopped (SIGINT/SIGTERM, or `stop`): take dew's jobs and perform them.
    A stop lets the jobs in hand finish (each finished step is checkpointed already)."""
    global _process
    from procrastinate import RetryStrategy

    config = config or WorkerConfig()
    check_worker(settings)
    prepare(settings)
    from dew.agents import limits

    limits.check_environment()
    from .workspace import Workspace

    Workspace(settings, provider, sync_roster=False).close()  # dew's own tables at the newest migration
    _warm()
    app = make_app(settings)
    # Set per worker: the worker that executes a job decides whether it is tried again.
    app.tasks[TASK].retry_strategy = (
        RetryStrategy(max_attempts=config.retries, exponential_wait=2)  # waits 2, 4, 8, 16 s...
        if config.retries
        else None
    )
    from .throttle import DbGate

    _process = _Process(settings, provider, config)
    try:
        _process.open_pools()
    except BaseException:
        _process.close()
        _process = None
        raise

    gate = DbGate(settings, max_connections=config.concurrency + 2)
    local_gate = limits.install(gate)  # endpoint limits hold across every worker on the database

    async def main() -> None:
        from procrastinate.worker import Worker

        # Sync tasks run on the loop's default executor: size it to the concurrency asked for.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=config.concurrency + 2, thread_name_prefix="dew-job")
        )
        async with app.open_async():
            worker = Worker(
                app,
                queues=[QUEUE],
                name=config.name,
                concurrency=config.concurrency,
                update_heartbeat_interval=config.heartbeat,
                stalled_worker_timeout=config.stalled_after,
                install_signal_handlers=install_signal_handlers,
                shutdown_graceful_timeout=30,
            )
            running = asyncio.create_task(worker.run())
            while stop is not None and not running.done() and not stop.is_set():
                await asyncio.sleep(0.1)
            if stop is not None and stop.is_set():
                worker.stop()
            await running

    try:
        asyncio.run(main())
    finally:
        limits.install(local_gate)
        gate.close()
        _process.close()
        _process = None
