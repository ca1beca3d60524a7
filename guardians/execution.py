"""Where runs execute: the seam between recording work and doing it.

A request, a decision or a retry is recorded first (`runs.request_run`, `decisions.record_decision`);
executing it is a `Job` that names only a run, and the item whose decision to apply. `dew run`
performs its job at once, in its own process; the server hands jobs to a bounded pool of worker
threads (`pool.WorkerPool`), or, with `DEW_ENGINE=procrastinate`, defers them to `dew worker`
processes on any machine (`engine.py`); the CLI then waits for a worker (`carry_out`). Scenarios,
decisions, release and audit never learn where a job ran, and a job lost with its process is
found again from the database (`unfinished`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import update
from sqlmodel import col, select

from .db import transaction
from .flow import apply_decision, retry_run
from .models import Release, Run, RunStatus, utcnow
from .runs import RunResult, begin_retry, execute_start, get_run

if TYPE_CHECKING:
    from .workspace import Workspace


class JobKind(StrEnum):
    START = "start"  # drive a queued run to its first gate
    DECISION = "decision"  # apply a recorded decision: resume, release, hand off
    RECOVER = "recover"  # finish what a stopped process left of a run


@dataclass(frozen=True)
class Job:
    kind: JobKind
    run_id: int
    item_id: int | None = None


class Executor(Protocol):
    """Something that performs jobs, sooner or later, somewhere."""

    def submit(self, job: Job) -> object: ...


def perform(ws: Workspace, job: Job) -> RunResult:
    """What a worker does with a job. Each kind is safe to perform twice."""
    if job.kind == JobKind.START:
        return execute_start(ws, job.run_id)
    if job.kind == JobKind.DECISION:
        if job.item_id is None:
            raise ValueError("a decision job names its work item")
        return apply_decision(ws, job.item_id)
    return recover(ws, job.run_id)


def recover(ws: Workspace, run_id: int) -> RunResult:
    """Continue a run a stopped process left unfinished, from its last checkpoint. A run that is
    waiting for a guardian, or has ended, is left as it is (a job retried after its worker died
    may find its work done)."""
    run = get_run(ws, run_id)
    if run.status in (RunStatus.AWAITING_DECISION, RunStatus.REJECTED, RunStatus.FAILED):
        return RunResult(run=run)
    if run.status == RunStatus.QUEUED:
        return execute_start(ws, run_id)
    if run.status == RunStatus.RUNNING and not ws.runtime.has_checkpoint(
        ws.stored_scenario(run.scenario_sha256), run_id
    ):
        # Taken by a worker that stopped before the first step was saved: start it afresh.
        with transaction(ws.engine) as s:
            s.execute(
                update(Run)
                .where(col(Run.id) == run_id, col(Run.status) == RunStatus.RUNNING)
                .values(status=RunStatus.QUEUED, updated_at=utcnow())
            )
        return execute_start(ws, run_id)
    return retry_run(ws, run_id, actor="dew", force=True)


def carry_out(ws: Workspace, job: Job) -> RunResult:
    """Perform a job for a caller that waits for its outcome (the command line): here, in this
    process, or by a `dew worker` when the workspace's runs belong to the distributed engine."""
    from . import engine

    return engine.carry_out(ws, job) if engine.distributed(ws.settings) else perform(ws, job)


def retry(ws: Workspace, run_id: int, *, actor: str, force: bool = False) -> RunResult:
    """A person's retry of a failed run (or of an interrupted release): here, or by a worker."""
    from .engine import distributed

    if distributed(ws.settings):
        begin_retry(ws, run_id, actor=actor, force=force)  # refused here, at once, if it may not be retried
        return carry_out(ws, Job(JobKind.RECOVER, run_id))
    return retry_run(ws, run_id, actor=actor, force=force)


def start_waiting(ws: Workspace, executor: Executor, scenario_id: str) -> int:
    """Submit the queued runs of a scenario (they waited while it was paused); how many."""
    with transaction(ws.engine) as s:
        waiting = s.exec(
            select(col(Run.id)).where(Run.scenario_id == scenario_id, Run.status == RunStatus.QUEUED)
        ).all()
    for run_id in waiting:
        if run_id is not None:
            executor.submit(Job(JobKind.START, run_id))
    return len(waiting)


def unfinished(ws: Workspace) -> list[Job]:
    """Jobs for the runs a stopped process left: queued and never started, running (cut off while
    drafting, or with a decision not yet applied), approved and not yet released. Meant for the
    one process that executes a workspace's runs, when it starts."""
    with transaction(ws.engine) as s:
        runs = s.exec(
            select(col(Run.id), Run.status)
            .where(col(Run.status).in_([RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.APPROVED]))
            .order_by(col(Run.id))
        ).all()
        released = set(s.exec(select(Release.run_id)).all())
    return [
        Job(JobKind.START if status == RunStatus.QUEUED else JobKind.RECOVER, run_id)
        for run_id, status in runs
        if run_id is not None and run_id not in released
    ]
