"""What the server does on a timer: reminders and escalations, notification deliveries,
queued runs that no worker has taken (resumed after a pause, or submitted by another process),
and signed checkpoints of the audit trail's head (chainhead.py) when it has moved on.

Each tick is independent and idempotent: a sweep locks what it moves, a delivery claims what it
sends, a start claims its run; a failed tick is logged and the next one tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import col, select

from . import deadlines, notify
from .chainhead import write_checkpoint
from .db import transaction
from .execution import Executor, Job, JobKind
from .models import AuditEvent, AuditHead, Run, RunStatus, ScenarioState, utcnow

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


def checkpoint_if_moved(ws: Workspace, folder: Path | None = None) -> Path | None:
    """Sign a checkpoint of the trail's head unless nothing was recorded since the last one (whose
    own `audit.checkpoint_signed` event is then the head). Returns the file written, if any."""
    with transaction(ws.engine) as s:
        head = s.get(AuditHead, 1)
        last = s.exec(
            select(AuditEvent.seq)
            .where(AuditEvent.kind == "audit.checkpoint_signed")
            .order_by(col(AuditEvent.seq).desc())
        ).first()
    if head is None or head.seq == 0 or (last is not None and head.seq <= last):
        return None
    out = folder / f"checkpoint-{head.seq:08d}.json" if folder else None
    path, _ = write_checkpoint(ws, out)
    return path


class Clock:
    def __init__(
        self,
        ws: Workspace,
        executor: Executor,
        every: float = 30.0,
        checkpoint_every: float | None = None,
        checkpoint_dir: Path | None = None,
    ):
        self.ws, self.executor, self.every = ws, executor, every
        self.checkpoint_every, self.checkpoint_dir = checkpoint_every, checkpoint_dir
        self._last_checkpoint = time.monotonic()
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
            if self.checkpoint_every and time.monotonic() - self._last_checkpoint >= self.checkpoint_every:
                self._last_checkpoint = time.monotonic()
                try:
                    written = checkpoint_if_moved(self.ws, self.checkpoint_dir)
                    if written:
                        log.info("checkpoint", extra={"file": str(written)})
                except Exception:  # a broken chain is refused a checkpoint: say so every time, loudly
                    log.exception("checkpoint failed")
