"""`dew ask "TEXT"`: the front desk routes a free-text request to a digital employee."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from dew.agents.errors import InputInvalid

from .common import (
    AsOption,
    JsonOption,
    console,
    default_requester,
    print_json,
    progress_line,
    safe,
    short,
    styled,
    workspace,
)
from .run_cmds import raise_if_failed, report

if TYPE_CHECKING:
    from dew.agents.frontdesk import Routing
    from dew.guardians.workspace import Workspace


def register(app: typer.Typer) -> None:
    @app.command()
    def ask(
        ctx: typer.Context,
        request: Annotated[str, typer.Argument(help="What you need, in your own words.")],
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what was understood; start nothing.")] = False,
        actor: AsOption = None,
        as_json: JsonOption = False,
    ):
        """Say what you need; the front desk picks the digital employee, shows what it understood and starts the run."""
        from dew.agents.frontdesk import route
        from dew.guardians.audit import sha256_text
        from dew.guardians.runs import start_run

        ws = workspace(ctx)
        r = route(request, ws.catalogue, ws.provider)
        understood = {
            "scenario": r.scenario,
            "inputs": r.inputs,
            "missing": r.missing,
            "reason": r.reason,
            "candidates": [{"scenario": s, "score": sc} for s, sc in r.candidates],
            "decided_by": r.decided_by,
        }
        if not as_json:
            _print_understanding(ws, r)
        if not r.ready or dry_run:
            if as_json:
                print_json({"understood": understood, "run": None})
            if r.scenario is None:
                raise InputInvalid(f"not routed: {r.reason}")
            if r.missing:
                raise InputInvalid(
                    f"'{r.scenario}' needs {', '.join(r.missing)}; start it with: dew run {r.scenario} "
                    + " ".join(f"-i {m}=..." for m in r.missing)
                )
            return
        origin = {
            "via": "frontdesk",
            "request_sha256": sha256_text(request),
            "decided_by": r.decided_by,
            "candidates": understood["candidates"],
            "model": r.provenance.get("model"),
        }
        assert r.scenario is not None  # r.ready says so
        with progress_line(ws, f"{r.scenario} drafting"):
            result = start_run(ws, r.scenario, r.inputs, requester=default_requester(actor), origin=origin)
        if as_json:
            from .run_cmds import result_dict

            print_json({"understood": understood, "run": result_dict(result)})
            raise_if_failed(result)  # one JSON document on stdout, the failure on stderr
            return
        report(result, False)


def _print_understanding(ws: Workspace, r: Routing) -> None:
    if r.scenario is None:
        console.print(f"The front desk could not route this request: {safe(r.reason)}.")
        if r.candidates:
            console.print("Closest: " + ", ".join(f"{s} ({sc})" for s, sc in r.candidates))
        return
    spec = ws.scenario(r.scenario).spec
    how = "chosen by the front-desk model" if r.decided_by == "model" else "clear best match of the catalogue"
    console.print(styled("Understood: this is for ", (spec.name, "bold"), f" ({r.scenario}), {how}; {r.reason}."))
    for name, value in r.inputs.items():
        if value in ("", None):
            continue
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        console.print(f"  {name}: {safe(short(shown, 100))}")
    for name in r.missing:
        console.print(styled(f"  {name}: ", ("missing", "red")))
