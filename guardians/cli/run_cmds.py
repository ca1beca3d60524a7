"""Runs and queues: `dew run`, `dew inbox`, `dew show`, `dew runs`, `dew retry` (`dew released`: released_cmds.py)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from dew.agents.errors import InputInvalid, RunFailed
from dew.agents.hidden import visible
from dew.guardians.errors import DeliveryIncomplete, InvalidState

from .common import (
    AsOption,
    BeforeOption,
    JsonOption,
    LimitOption,
    add_row,
    console,
    debugging,
    default_requester,
    earlier_hint,
    err_console,
    print_json,
    progress_line,
    require_identity,
    safe,
    short,
    styled,
    workspace,
)

if TYPE_CHECKING:
    from dew.guardians.models import WorkItem
    from dew.guardians.runs import RunResult

# Service modules are imported inside the commands: `dew --help` should not pay for LangGraph.


def parse_inputs(pairs: list[str], input_file: Path | None) -> dict:
    values: dict = {}
    if input_file is not None:
        import yaml

        try:
            text = input_file.read_text(encoding="utf-8")
            data = json.loads(text) if input_file.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise InputInvalid(f"cannot read inputs from {input_file}: {e}") from None
        if not isinstance(data, dict):
            raise InputInvalid(f"{input_file} must hold a mapping of input names to values")
        values.update(data)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputInvalid(f"--input takes KEY=VALUE (or KEY=@FILE), got '{pair}'")
        if value.startswith("@@"):
            value = value[1:]  # a literal value that begins with @
        elif value.startswith("@"):
            value = read_input_file(key, Path(value[1:]))
        values[key.strip()] = value
    return values


MAX_INPUT_FILE_BYTES = 10 * 1024 * 1024  # well past any input's limit; stops `@/dev/zero` early


def read_input_file(key: str, path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_INPUT_FILE_BYTES + 1)
    except OSError as e:
        raise InputInvalid(
            f"--input {key}: cannot read {path}: {e.strerror or e}; to pass a value that begins with @, write @@"
        ) from None
    if len(data) > MAX_INPUT_FILE_BYTES:
        raise InputInvalid(f"--input {key}: {path} is larger than {MAX_INPUT_FILE_BYTES // (1024 * 1024)} MB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputInvalid(f"--input {key}: {path} is not UTF-8 text") from None


def result_dict(r: RunResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_id": r.run.id,
        "scenario": r.run.scenario_id,
        "status": r.run.status,
        "item_id": r.item.id if r.item else None,
        "guardian": r.item.guardian if r.item else None,
        "requester": r.run.requester,
        "error": r.run.error,
        "released_to": r.release.location if r.release else None,
        "stage": r.item.stage if r.item else None,
    }
    if r.handoff is not None or r.handoff_error:
        out["handoff"] = result_dict(r.handoff) if r.handoff else {"error": r.handoff_error}
    return out


def report(r: RunResult, as_json: bool) -> None:
    """Print where a run stands; exit non-zero if it failed (it stays retryable)."""
    if as_json:
        print_json(result_dict(r))
    elif r.run.status == "failed":
        pass
    elif r.release is not None:
        console.print(f"Run {r.run.id} released to {r.release.location}")
        if r.handoff is not None:
            console.print(
                f"Handed off to {r.handoff.run.scenario_id}: run {r.handoff.run.id}"
                + (
                    f", draft queued as work item {r.handoff.item.id} for {r.handoff.item.guardian}"
                    if r.handoff.item
                    else f" ({r.handoff.run.status}: {safe(r.handoff.run.error or '')})"
                )
            )
        elif r.handoff_error:
            err_console.print(f"Warning: the hand-off did not start: {safe(r.handoff_error)}")
    elif r.item is not None and r.item.status == "pending" and r.item.stage > 0:
        console.print(
            f"Signed off. Work item {r.item.id} now waits for sign-off {r.item.stage + 1} by {r.item.guardian}"
            + (f" (or {', '.join(r.item.backups)})" if r.item.backups else "")
            + "; nothing is released before the last sign-off."
        )
    elif r.item is not None and r.item.status == "pending":
        console.print(
            f"Run {r.run.id} ({r.run.scenario_id}): draft queued as work item {r.item.id} "
            f"for {r.item.guardian}. See it with: dew show {r.item.id}"
        )
    else:
        console.print(f"Run {r.run.id} is {r.run.status}.")
    raise_if_failed(r)


def run_batch(ws, scenario: str, path: Path, shared: dict, requester: str, concurrency: int, as_json: bool) -> None:
    """Check every row, request a run per row, and follow them to their queues with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dew.guardians import batch
    from dew.guardians.engine import distributed, executor_for
    from dew.guardians.pool import WorkerPool

    rows = batch.read_rows(path)
    batch.check_rows(ws, scenario, rows, shared, path)
    remote_workers = distributed(ws.settings)
    executor: Any = executor_for(ws.settings) if remote_workers else WorkerPool(ws.settings, ws.provider,
                                                                                workers=concurrency)  # fmt: skip
    if not remote_workers:
        executor.start()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err_console, disable=not err_console.is_terminal) as bar:
            asked = bar.add_task(f"{scenario}: requesting", total=len(rows))
            started = batch.start(ws, scenario, rows, shared, requester=requester, executor=executor,
                                  on_request=lambda n: bar.update(asked, completed=n))  # fmt: skip
            if not executor.alive:  # recorded and queued: say so rather than wait for nobody
                raise InvalidState(
                    f"no `dew worker` is running on {ws.settings.database_label}: the {len(rows)} runs are recorded "
                    "and wait in the queue until one starts (dew worker)"
                )
            done = bar.add_task(f"{scenario}: drafting", total=len(rows))
            settled = batch.watch(ws, started, lambda n, _: bar.update(done, completed=n))
    finally:
        if not remote_workers:
            executor.stop()
    runs = batch.summary(ws, started)
    failed = [r for r in runs if r["status"] == "failed"]
    if as_json:
        print_json({"scenario": scenario, "runs": runs, "counts": dict(settled)})
    else:
        console.print(f"{len(runs)} runs of {scenario} from {path.name}:")
        table = Table()
        table.add_column("status")
        table.add_column("runs", justify="right")
        for status, n in sorted(settled.items()):
            table.add_row(styled(status), str(n))
        console.print(table)
        waiting = Counter(r["guardian"] for r in runs if r["status"] == "awaiting_decision")
        for guardian, n in sorted(waiting.items()):
            console.print(f"{n} drafts wait for {guardian}: dew inbox --as {guardian}")
        for r in failed[:10]:
            err_console.print(f"run {r['run_id']} failed: {safe(r['error'] or '')}")
    if failed:
        raise RunFailed(
            f"{len(failed)} of {len(runs)} runs failed; nothing of theirs was queued or released; "
            f"retry each with: dew retry RUN"
        )


def raise_if_failed(r: RunResult) -> None:
    if r.run.status == "failed":
        if debugging() and r.run.error_detail:  # the cause, for whoever repairs it
            err_console.print(r.run.error_detail, markup=False, highlight=False, end="")
        raise RunFailed(
            f"run {r.run.id} failed: {r.run.error}. Nothing was queued or released; retry with: dew retry {r.run.id}"
        )


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        ctx: typer.Context,
        scenario: Annotated[str, typer.Argument(help="Scenario id.")],
        inputs: Annotated[
            list[str] | None,
            typer.Option(
                "--input",
                "-i",
                help="KEY=VALUE, or KEY=@FILE to read a file (@@ for a value that begins with @). Repeatable.",
            ),
        ] = None,
        input_file: Annotated[Path | None, typer.Option("--input-file", help="JSON or YAML file of inputs.")] = None,
        example: Annotated[
            str | None, typer.Option("--example", help="Use the scenario's sample inputs of this name (or 'first').")
        ] = None,
        inputs_file: Annotated[
            Path | None,
            typer.Option(
                "--inputs-file",
                help="A batch: one run per row of a CSV (a header names the inputs) or JSON Lines file; "
                "--input values are shared by every row.",
            ),
        ] = None,
        concurrency: Annotated[
            int,
            typer.Option(
                "--concurrency", min=1, max=64, help="A batch without `dew worker`s: runs drafted at once here."
            ),
        ] = 4,
        actor: AsOption = None,
        as_json: JsonOption = False,
    ):
        """Start a run (or a batch of runs): the agent drafts, and the draft waits in its guardian's queue."""
        from dew.guardians.runs import start_run

        from . import remote

        login = remote.current()
        if inputs_file is not None and login is not None:
            raise InputInvalid("a batch (--inputs-file) runs on the workspace, not through a server: dew logout first")
        if login is not None:  # signed in to a server: the run is requested there, as that person
            client = remote.Client(login)
            values = {}
            if example:
                samples = client.call("GET", f"/scenarios/{scenario}")["examples"]
                chosen = samples[:1] if example == "first" else [e for e in samples if e["name"] == example]
                if not chosen:
                    raise InputInvalid(f"scenario '{scenario}' has no example '{example}'")
                values.update(chosen[0]["inputs"])
            values.update(parse_inputs(inputs or [], input_file))
            started = client.call("POST", "/runs", json={"scenario": scenario, "inputs": values})
            run = client.wait_for_run(started["run_id"], seconds=600)
            if as_json:
                return print_json(run)
            console.print(f"Run {run['id']} ({scenario}) requested by {login.user} on {login.server}: {run['status']}.")
            if run["status"] == "failed":
                raise RunFailed(f"run {run['id']} failed: {run['error']}")
            return
        ws = workspace(ctx)
        values = {}
        if example:
            examples = ws.scenario(scenario).spec.examples
            chosen = examples[:1] if example == "first" else [e for e in examples if e.name == example]
            if not chosen:
                raise InputInvalid(
                    f"scenario '{scenario}' has no example '{example}' "
                    f"(it has: {', '.join(e.name for e in examples) or 'none'})"
                )
            values.update(chosen[0].inputs)
        values.update(parse_inputs(inputs or [], input_file))
        if inputs_file is not None:
            return run_batch(ws, scenario, inputs_file, values, default_requester(actor), concurrency, as_json)
        with progress_line(ws, f"{scenario} drafting"):
            result = start_run(ws, scenario, values, requester=default_requester(actor))
        report(result, as_json)

    @app.command()
    def inbox(
        ctx: typer.Context,
        actor: AsOption = None,
        all_: Annotated[bool, typer.Option("--all", help="Also show decided items.")] = False,
        after: Annotated[
            int, typer.Option("--after", min=0, metavar="ITEM", help="Start after this item id (the next page).")
        ] = 0,
        limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Items per page.")] = 50,
        as_json: JsonOption = False,
    ):
        """Work items waiting for a guardian (yours with --as, as guardian, backup, delegate or
        escalation contact; everyone's without), oldest first, a page at a time."""
        from dew.guardians.queue import inbox as load_inbox

        page = load_inbox(workspace(ctx), actor, include_decided=all_, after=after, limit=limit)
        rows = inbox_rows(page)
        if as_json:
            print_json(rows)
        else:
            print_inbox(rows, f"Inbox of {actor}" if actor else "All guardians' inboxes")
        if len(rows) == limit:  # on stderr under --json, so a script reading a page knows there is more
            again = f"dew inbox{f' --as {actor}' if actor else ''}{' --all' if all_ else ''}"
            more = f"More: {again} --after {rows[-1]['item_id']}" + (f" --limit {limit}" if limit != 50 else "")
            (err_console if as_json else console).print(more)

    @app.command()
    def show(
        ctx: typer.Context,
        item: Annotated[int, typer.Argument(help="Work item id.")],
        as_json: JsonOption = False,
        draft: Annotated[
            bool, typer.Option("--draft", help="Print only the draft, exactly as queued (to edit it: dew edit).")
        ] = False,
        model_view: Annotated[
            bool,
            typer.Option(
                "--model-view",
                help="Print what each model call was sent and answered, as the model saw it (personal data as "
                "placeholders, material fenced).",
            ),
        ] = False,
    ):
        """Show a work item: the draft, its inputs, provenance, findings and outcome."""
        from dew.guardians.queue import item_view

        view = item_view(workspace(ctx), item)
        if model_view:
            return print_model_view(view)
        if draft:
            # The bytes the guardian would approve, for an editor; a terminal still sees no escapes.
            text = view["item"]["draft"]
            sys.stdout.write(text if not sys.stdout.isatty() else visible(text))
            return None
        if as_json:
            return print_json(view)
        print_item(view)


def register_listings(app: typer.Typer) -> None:
    @app.command()
    def runs(
        ctx: typer.Context,
        status: Annotated[
            str | None,
            typer.Option("--status", help="running, awaiting_decision, approved, released, rejected or failed."),
        ] = None,
        limit: LimitOption = 100,
        before: BeforeOption = None,
        as_json: JsonOption = False,
    ):
        """List the newest runs and where each stands, a page at a time."""
        from dew.guardians.queue import list_runs

        rows = [
            {
                "run_id": r.id,
                "scenario": r.scenario_id,
                "status": r.status,
                "requester": r.requester,
                "attempts": r.attempts,
                "error": r.error,
                "error_detail": r.error_detail,
                "created_at": r.created_at.isoformat(),
            }
            for r in list_runs(workspace(ctx), status, before=before, limit=limit)
        ]
        again = f"dew runs{f' --status {status}' if status else ''}"
        if as_json:
            print_json(rows)
            return earlier_hint(again, rows, "run_id", limit, as_json)
        table = Table("run", "scenario", "status", "requester", "attempts", "error", title="Runs")
        for r in rows:
            add_row(
                table,
                str(r["run_id"]),
                str(r["scenario"]),
                str(r["status"]),
                str(r["requester"]),
                str(r["attempts"]),
                safe(short(str(r["error"] or ""), 60)),
            )
        console.print(table)
        earlier_hint(again, rows, "run_id", limit)

    @app.command()
    def retry(
        ctx: typer.Context,
        run_id: Annotated[int, typer.Argument(metavar="RUN", help="Run id.")],
        force: Annotated[
            bool, typer.Option("--force", help="Also retry a run left 'running' by a process that died.")
        ] = False,
        actor: AsOption = None,
        as_json: JsonOption = False,
    ):
        """Retry a failed run from its last checkpoint (or finish an interrupted release)."""
        from dew.guardians.execution import retry

        ws = workspace(ctx)
        with progress_line(ws, f"run {run_id} retrying"):
            result = retry(ws, run_id, actor=default_requester(actor), force=force)
        report(result, as_json)

    @app.command()
    def repair(ctx: typer.Context, actor: AsOption = None, as_json: JsonOption = False):
        """Complete every release that is not delivered as recorded (what `dew audit verify` reports)."""
        from dew.guardians.reconcile import repair as run_repair

        ws = workspace(ctx)
        with progress_line(ws, "repairing releases"):
            done = run_repair(ws, actor=require_identity(actor, "repair releases"))
        if as_json:
            print_json([{**p.to_dict(), "outcome": outcome} for p, outcome in done])
        elif not done:
            console.print("Nothing to repair: every release is delivered as recorded.")
        for p, outcome in [] if as_json else done:
            console.print(f"{p.kind}: {p.detail} → {outcome}")
        left = [p for p, _ in done if not p.repairable]
        if left:
            raise DeliveryIncomplete(f"{len(left)} problem(s) need a person: " + "; ".join(p.detail for p in left))


def inbox_rows(page: Sequence[tuple[WorkItem, str | None]]) -> list[dict]:
    """The list's rows of a page of `queue.inbox`: each item with the rule that lets its reader decide."""
    return [
        {
            "item_id": i.id,
            "run_id": i.run_id,
            "scenario": i.scenario_id,
            "guardian": i.guardian,
            "rule": rule,
            "backup_for": i.guardian if rule and rule != "owner" else None,
            "revision": i.revision,
            "status": i.status,
            "risk": i.risk,
            "findings": len(i.findings),
            "created_at": i.created_at.isoformat(),
            "preview": short(i.draft, 80),
        }
        for i, rule in page
    ]


def print_inbox(rows: list[dict], title: str) -> None:
    if not rows:
        console.print(f"{title}: nothing waiting.")
        return
    # Least widths that keep every value whole in 80 columns; a long scenario id is what gives way.
    columns = {"item": 4, "scenario": 0, "guardian": 9, "rev": 3, "status": 8, "risk": 6, "findings": 8}
    # A preview only in what is left of a wider terminal (`dew show` has the whole draft): rich
    # cannot shrink no-wrap columns, so its width is set, not left to the layout.
    preview_width = min(48, console.width - 80 - 3)
    with_preview = preview_width >= 12
    table = Table(title=title)
    for name, least in columns.items():
        table.add_column(name, no_wrap=True, min_width=least or None, overflow="ellipsis")
    if with_preview:
        table.add_column("preview", no_wrap=True, overflow="ellipsis", width=preview_width)
    for r in rows:
        guardian = r["guardian"] + (" (backup)" if r["backup_for"] else "")
        cells = [
            str(r["item_id"]),
            r["scenario"],
            guardian,
            str(r["revision"]),
            r["status"],
            r["risk"],
            str(r["findings"]),
        ]
        add_row(table, *cells, *([safe(r["preview"])] if with_preview else []))
    console.print(table)


def _class(call: dict) -> str:
    return f" [{call['endpoint_class']}]" if call.get("endpoint_class") else ""


def print_model_view(view: dict) -> None:
    """Each model call as the model saw it: the messages it was sent and its reply."""
    calls = [p for p in view["provenance"] if p.get("seen")]
    if not calls:
        cleared = " (cleared by retention)" if view["run"].get("cleared_at") else ""
        console.print(f"Work item {view['item']['id']}: no record of what a model saw{cleared}.")
        return
    for n, p in enumerate(calls, 1):
        console.print(
            styled(
                (f"Call {n}: step {p.get('step')}", "bold"), f" · {p.get('model')} at {p.get('endpoint')}{_class(p)}"
            )
        )
        for m in p["seen"]:
            console.print(Panel(safe(m["text"]), title=m["role"], title_align="left", expand=True))


def print_item(view: dict) -> None:
    item, run = view["item"], view["run"]
    console.print(
        styled(
            (f"Work item {item['id']}", "bold"),
            f" · {item['status']} · revision {item['revision']} · risk {item['risk']}",
        )
    )
    console.print(
        f"Scenario: {run['scenario']} {run['scenario_version']} (sha256 {run['scenario_sha256'][:12]}) · "
        f"run {run['id']} requested by {run['requester']}"
    )
    console.print(
        f"Guardian: {item['guardian']}" + (f" (backups: {', '.join(item['backups'])})" if item["backups"] else "")
    )
    console.print("Inputs:")
    for k, v in run["inputs"].items():
        console.print(f"  {k}: {safe(short(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False), 100))}")
    models = sorted({f"{p.get('model')} at {p.get('endpoint')}" + _class(p) for p in view["provenance"]})
    steps = ", ".join(p.get("step", "?") for p in view["provenance"])
    console.print(
        f"Drafted by: {'; '.join(models) or 'no model (deterministic steps only)'}"
        + (f" (calls: {steps})" if steps else "")
    )
    hidden = max((p.get("placeholders") or 0 for p in view["provenance"]), default=0)
    if hidden:
        console.print(
            f"Personal data: {hidden} value(s) went to the model as placeholders; "
            f"dew show {item['id']} --model-view prints what it saw"
        )
    if item["findings"]:
        console.print("Findings (checks and reviewer, for the guardian):")
        for f in item["findings"]:
            console.print(f"  - {safe(f)}")
    console.print(Panel(safe(item["draft"]), title="draft", expand=True))
    d = view["decision"]
    if d:
        console.print(
            f"Decision: {d['action']} by {d['actor']} at {d['at'][:19]}" + (f": {safe(d['note'])}" if d["note"] else "")
        )
        if d["diff"]:
            console.print(Panel(safe(d["diff"]), title="edit (diff)"))
    if item["next_item"]:
        console.print(f"Revised draft: work item {item['next_item']}")
    if view["release"]:
        console.print(f"Released to {view['release']['location']} (sha256 {view['release']['sha256'][:12]})")
    if item["status"] == "pending":
        console.print(f"Decide with: dew approve|reject|edit|revise {item['id']} --as {item['guardian']} ...")
