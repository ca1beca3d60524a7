"""`dew demo`: every shipped digital employee drafts its sample job; the drafts wait for their guardians."""

from __future__ import annotations

import os
import time

import typer

from .common import AsOption, console, progress_line, state, styled, warn_problems, workspace
from .run_cmds import inbox_rows, print_inbox

DEMO_REQUESTER = "demo.requester"


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(ctx: typer.Context, actor: AsOption = None):
        """Run each scenario's first sample through its agent and fill the guardians' queues."""
        from dew.agents.llm import settings_from_env
        from dew.guardians.runs import start_run

        ws = workspace(ctx)
        settings = ws.settings
        requester = actor or DEMO_REQUESTER
        llm = settings_from_env()
        console.print(
            styled(("dew demo", "bold"), f" · workspace {settings.home} · database {settings.database_label}")
        )
        console.print(f"scenarios: {settings.scenarios_dir}")
        console.print(f"LLM: {llm.describe()}")
        chosen = [s for s in ws.catalogue.values() if s.spec.examples]
        warn_problems(ws.catalogue_problems)
        failed, pending = 0, []
        for loaded in chosen:
            example = loaded.spec.examples[0]
            console.print(f"\n→ {loaded.spec.name} ({loaded.id}), sample '{example.name}', requested by {requester} …")
            t0 = time.monotonic()
            with progress_line(ws, f"{loaded.id} drafting"):
                result = start_run(ws, loaded.id, dict(example.inputs), requester=requester)
            took = time.monotonic() - t0
            item = result.item
            if item is None:
                failed += 1
                console.print(
                    styled((f"  run {result.run.id} failed", "red"), f" after {took:.1f}s: {result.run.error or ''}")
                )
                console.print(f"  retry with: dew retry {result.run.id}")
                continue
            pending.append(item)
            calls = len(item.provenance)
            console.print(
                f"  run {result.run.id} drafted in {took:.1f}s ({calls} model call{'s' * (calls != 1)}); "
                f"work item {item.id} waits for {item.guardian}"
                + (f" · {len(item.findings)} finding(s) flagged" if item.findings else "")
            )
        console.print()
        for guardian in sorted({i.guardian for i in pending}):
            mine = [(i, None) for i in pending if i.guardian == guardian]
            print_inbox(inbox_rows(mine), f"Inbox of {guardian}")
        if pending:
            first = pending[0]
            prefix = "dew" if _default_home(ctx) else f"dew --home {settings.home}"
            console.print("\nNext, try:")
            for line in (
                f"{prefix} show {first.id}",
                f"{prefix} approve {first.id} --as {requester}      # refused: not on the roster, and the requester",
                f"{prefix} approve {first.id} --as {first.guardian} --comment 'checked against the file'",
                f"{prefix} revise {first.id} --as {first.guardian} --feedback 'cite the source of every figure'",
                f"{prefix} reject {first.id} --as {first.guardian} --reason 'figures not checked'",
                f"{prefix} released",
                f"{prefix} audit trace {first.id}",
                f"{prefix} audit verify",
            ):
                console.print(f"  {line}")
        if failed:
            raise typer.Exit(1)


def _default_home(ctx: typer.Context) -> bool:
    return state(ctx).home is None and not os.environ.get("DEW_HOME")
