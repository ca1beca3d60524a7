"""What the server does on a timer: reminders and escalations, notification deliveries, and
queued runs that no worker has taken (resumed after a pause, or submitted by another process).

Each tick is independent and idempotent: a sweep locks what it moves, a delivery claims what it
sends, a start claims its run; a failed tick is logged and the next one tries again.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlmodel import col, select

from . import deadlines, notify
from .db import transaction
from .execution import Executor, Job, JobKind
from .models import Run, RunStatus, ScenarioState, utcnow

if TYPE_CHECKING:
    from .workspace import Workspace

log = logging.getLogger("dew.clock")
STALE_QUEUED = timedelta(minutes=1)


def tick(ws: Workspace, executor: Executor) -> dict[str, int]:
    report = deadlines.sweep(ws)
    sent = notify.deliver_due(ws)
    with transaction(ws.engine) as s:
        paused = set(s.exec(select(ScenarioState.scenario_id).where(col(ScenarioState.paused))).all())
        stale = s.exec(
            select(Run.id, Run.scenario_id).where(
                Run.status == RunStatus.QUEUED, col(Run.updated_at) < utcnow() - STALE_QUEUED
            )
        ).all()
    started = 0
    for run_id, scenario_id in stale:
        if run_id is not None and scenario_id not in paused:
            executor.submit(Job(JobKind.START, run_id))
            started += 1
    return {"reminded": len(report.reminded), "escalated": len(report.escalated), "started": started,
            "notifications": int(sent.get("sent", 0))}  # fmt: skip


class Clock:
    def __init__(self, ws: Workspace, executor: Executor, every: float = 30.0):
        self.ws, self.executor, self.every = ws, executor, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dew-clock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                done = tick(self.ws, self.executor)
                if any(done.values()):
                    log.info("tick", extra=done)
            except Exception:  # the next tick tries again; a timer must not die of one bad pass
                log.exception("tick failed")
