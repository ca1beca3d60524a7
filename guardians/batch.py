"""A batch: one run per row of a table (`dew run SCENARIO --inputs-file rows.csv|rows.jsonl`).

Every row is checked before any run is requested, so a mistake on row 412 stops the batch before
the first run, with the file, the line and the input named. The runs are then requested at the
`batch` priority and executed like any other: by `dew worker` processes with the distributed
engine, or by a pool of threads in this process. `watch` reports how far they have got.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from dew.agents.errors import DewError, InputInvalid
from dew.agents.inputs import validate_inputs

from .db import transaction
from .execution import Job, JobKind
from .models import Run, RunStatus, WorkItem
from .runs import request_run

if TYPE_CHECKING:
    from .execution import Executor
    from .workspace import Workspace

MAX_ROWS = 100_000
MAX_FILE_BYTES = 200 * 1024 * 1024
SHOWN_PROBLEMS = 10
SETTLED = (RunStatus.AWAITING_DECISION, RunStatus.APPROVED, RunStatus.RELEASED, RunStatus.REJECTED, RunStatus.FAILED)


@dataclass(frozen=True)
class Row:
    line: int  # where the row starts in its file, for error messages
    values: dict[str, Any]


def read_rows(path: Path) -> list[Row]:
    """The rows of a CSV file (a header line names the inputs; an empty cell is an input not
    given) or of a JSON Lines file (one object per line)."""
    kind = path.suffix.lower()
    if kind not in (".csv", ".jsonl", ".ndjson"):
        raise InputInvalid(f"--inputs-file takes a .csv or .jsonl file, not {path.name}")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputInvalid(f"{path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise InputInvalid(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputInvalid(f"{path} is not UTF-8 text") from None
    rows = list(_csv_rows(path, text) if kind == ".csv" else _jsonl_rows(path, text))
    if not rows:
        raise InputInvalid(f"{path} holds no rows")
    if len(rows) > MAX_ROWS:
        raise InputInvalid(f"{path} holds {len(rows)} rows; a batch takes at most {MAX_ROWS}")
    return rows


def _csv_rows(path: Path, text: str) -> Iterator[Row]:
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
    except StopIteration:
        return
    names = [h.strip() for h in header]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise InputInvalid(f"{path} line 1: the header must name each column once, got {header}")
    try:
        while True:
            line = reader.line_num + 1  # where the row starts (a quoted cell may span lines)
            try:
                cells = next(reader)
            except StopIteration:
                return
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(names):
                raise InputInvalid(f"{path} line {line}: {len(cells)} cells, but the header names {len(names)} columns")
            yield Row(line, {n: c for n, c in zip(names, cells, strict=True) if c != ""})
    except csv.Error as e:
        raise InputInvalid(f"{path} line {reader.line_num}: {e}") from None


def _jsonl_rows(path: Path, text: str) -> Iterator[Row]:
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InputInvalid(f"{path} line {n}: not JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(value, dict):
            raise InputInvalid(f"{path} line {n}: each line must be a JSON object of input names to values")
        yield Row(n, value)


def check_rows(ws: Workspace, scenario: str, rows: list[Row], shared: dict[str, Any], path: Path) -> None:
    """Refuse the whole batch, before anything is requested, if any row would be refused."""
    spec = ws.scenario(scenario).spec
    problems = []
    for row in rows:
        try:
            validate_inputs(spec, {**shared, **row.values})
        except DewError as e:
            problems.append(f"{path} line {row.line}: {e.message}")
    if problems:
        more = f"\n… and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        raise InputInvalid(
            f"{len(problems)} of {len(rows)} rows would be refused; no run was started:\n"
            + "\n".join(problems[:SHOWN_PROBLEMS])
            + more
        )


@dataclass
class Batch:
    run_ids: list[int] = field(default_factory=list)


def start(
    ws: Workspace,
    scenario: str,
    rows: list[Row],
    shared: dict[str, Any],
    *,
    requester: str,
    executor: Executor,
    on_request: Callable[[int], None] | None = None,
) -> Batch:
    """Request a run per row at the batch priority, and hand each to the executor."""
    batch = Batch()
    for row in rows:
        run = request_run(ws, scenario, {**shared, **row.values}, requester=requester, priority="batch")
        batch.run_ids.append(run.key)
        executor.submit(Job(JobKind.START, run.key))
        if on_request:
            on_request(len(batch.run_ids))
    return batch


def counts(ws: Workspace, batch: Batch) -> Counter[str]:
    """How many of the batch's runs are in each status."""
    found: Counter[str] = Counter()
    with transaction(ws.engine) as s:
        for chunk in _chunks(batch.run_ids):
            found.update(s.exec(select(Run.status).where(col(Run.id).in_(chunk))).all())
    return found


def watch(
    ws: Workspace, batch: Batch, on_progress: Callable[[int, Counter[str]], None], every: float = 0.5
) -> Counter[str]:
    """Wait until every run of the batch has settled (waits for a guardian, has ended or failed)."""
    while True:
        now = counts(ws, batch)
        settled = sum(n for status, n in now.items() if status in SETTLED)
        on_progress(settled, now)
        if settled >= len(batch.run_ids):
            return now
        time.sleep(every)


def summary(ws: Workspace, batch: Batch) -> list[dict[str, Any]]:
    """Each run of the batch: status, the work item it queued and for whom, or why it failed."""
    out = []
    with transaction(ws.engine) as s:
        for chunk in _chunks(batch.run_ids):
            items = {
                it.run_id: it
                for it in s.exec(
                    select(WorkItem).where(col(WorkItem.run_id).in_(chunk)).order_by(col(WorkItem.id))
                ).all()
            }
            for run in s.exec(select(Run).where(col(Run.id).in_(chunk)).order_by(col(Run.id))).all():
                item = items.get(run.key)
                out.append({
                    "run_id": run.id, "status": run.status, "error": run.error,
                    "item_id": item.id if item else None, "guardian": item.guardian if item else None,
                })  # fmt: skip
    return out


def _chunks(ids: list[int], size: int = 1000) -> Iterator[list[int]]:
    """Ids in groups small enough for one `IN (...)` (SQLite's limit on bound values, PostgreSQL's sense)."""
    for i in range(0, len(ids), size):
        yield ids[i : i + size]
