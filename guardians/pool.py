"""The server's workers: a bounded pool of threads performing jobs in the background.

Each worker holds its own workspace connection and checkpoint saver; all share one model
provider, so the embedded model server starts once for the whole process. Stopping lets each
worker finish the job in hand (every finished step is already checkpointed) up to a time limit;
jobs still waiting stay recorded in the database and are found again at the next start.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING

from .execution import Job, perform

if TYPE_CHECKING:
    from dew.agents.llm import ModelProvider

    from .workspace import Settings

log = logging.getLogger("dew.workers")
_STOP = object()


class WorkerPool:
    def __init__(self, settings: Settings, provider: ModelProvider, *, workers: int = 2):
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        self.settings = settings
        self.provider = provider
        self.size = workers
        self._jobs: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._done = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def start(self) -> None:
        for n in range(self.size):
            t = threading.Thread(target=self._work, name=f"dew-worker-{n + 1}", daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, job: Job) -> None:
        with self._lock:
            self._busy += 1  # counted from submission, so `wait_idle` never sees a gap
        self._jobs.put(job)

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet finished."""
        with self._lock:
            return self._busy

    @property
    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    @property
    def completed(self) -> int:
        with self._lock:
            return self._done

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every submitted job has finished (tests, benchmarks, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def stop(self, timeout: float = 30.0) -> bool:
        """Let workers finish the job in hand, then end them. True if all ended in time. Jobs not
        yet begun are dropped: their runs are recorded, and `execution.unfinished` finds them."""
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()
        for _ in self._threads:
            self._jobs.put(_STOP)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("workers still busy at shutdown: %s; their runs resume from checkpoints at the next start",
                        ", ".join(alive))  # fmt: skip
        return not alive

    def _work(self) -> None:
        from .workspace import Workspace

        ws = Workspace(self.settings, self.provider, sync_roster=False)
        try:
            while True:
                job = self._jobs.get()
                if job is _STOP:
                    return
                started = time.monotonic()
                try:
                    result = perform(ws, job)
                    log.info(
                        "job done",
                        extra={
                            "job": job.kind.value,
                            "run_id": job.run_id,
                            "status": result.run.status,
                            "seconds": round(time.monotonic() - started, 3),
                        },
                    )
                except Exception:  # a job's failure is the run's (recorded by drive); never the worker's
                    log.exception("job failed", extra={"job": job.kind.value, "run_id": job.run_id})
                finally:
                    with self._idle:
                        self._busy -= 1
                        self._done += 1
                        self._idle.notify_all()
        finally:
            ws.close()
