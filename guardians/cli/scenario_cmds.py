"""`dew scenarios ...`: the catalogue of digital employees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dew.agents.errors import ScenarioInvalid

from .common import (
    AsOption,
    DewGroup,
    JsonOption,
    add_row,
    console,
    print_json,
    require_identity,
    short,
    state,
    styled,
    warn_problems,
    workspace,
)

app = typer.Typer(cls=DewGroup, help="List, validate and inspect scenarios.", no_args_is_help=True)


def _summary(loaded) -> dict:
    spec = loaded.spec
    return {
        "id": spec.id,
        "name": spec.name,
        "version": spec.version,
        "sha256": loaded.sha256,
        "guardian": spec.guardian,
        "backups": spec.backups,
        # Who signs, in order (the guardian last); a draft waits first for stages[0].
        "stages": [{"name": st.name, "guardian": st.guardian, "backups": list(st.backups)} for st in spec.stages()],
        "deadline": spec.deadline,
        "risk": spec.risk,
        "description": spec.description,
        "inputs": {k: v.model_dump() for k, v in spec.inputs.items()},
        "steps": [{"id": s.id, "kind": s.kind} for s in spec.steps],
        "source": loaded.source,
    }


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOption = False):
    """List the scenarios in the scenario folder (those that do not load are named on stderr)."""
    from dew.agents.loader import load_catalogue

    catalogue, problems = load_catalogue(state(ctx).settings.scenarios_dir)
    warn_problems(problems)
    rows = [_summary(s) for s in catalogue.values()]
    if as_json:
        return print_json(rows)
    table = Table(title=f"Scenarios in {state(ctx).settings.scenarios_dir}")
    for name in ("id", "name", "version", "guardian", "risk", "steps"):
        table.add_column(name, no_wrap=name != "name")
    for r in rows:
        add_row(table, r["id"], r["name"], r["version"], r["guardian"], r["risk"], str(len(r["steps"])))
    console.print(table)


@app.command()
def check(paths: Annotated[list[Path], typer.Argument(help="Scenario files or folders.")], as_json: JsonOption = False):
    """Validate scenario files without running them. Exits non-zero naming file, line and field."""
    from dew.agents.loader import load_file, scenario_files

    files: list[Path] = []
    results, problems = [], []
    for p in paths:
        if p.is_dir():
            files.extend(scenario_files(p))
        elif p.exists():
            files.append(p)
        else:
            results.append({"file": str(p), "ok": False, "problems": [f"{p}: no such file or folder"]})
            problems.append(f"{p}: no such file or folder")
    for f in files:
        try:
            loaded = load_file(f)
            results.append({"file": str(f), "ok": True, "id": loaded.id, "sha256": loaded.sha256, "problems": []})
        except ScenarioInvalid as e:
            results.append({"file": str(f), "ok": False, "problems": e.problems})
            problems.extend(e.problems)
    if as_json:
        print_json(results)
    else:
        for r in results:
            if r["ok"]:
                console.print(f"ok  {r['file']}  ({r['id']})")
    if problems:
        raise ScenarioInvalid(", ".join(str(p) for p in paths), problems)


@app.command()
def show(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Argument(help="Scenario id.")],
    as_json: JsonOption = False,
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Print the compiled graph as mermaid text.")] = False,
):
    """Show one scenario: its job, guardian, inputs, steps and compiled graph."""
    from dew.agents.compiler import mermaid as draw

    loaded = workspace(ctx).scenario(scenario)
    if mermaid:
        return typer.echo(draw(loaded.spec))
    info = _summary(loaded)
    if as_json:
        info["mermaid"] = draw(loaded.spec)
        return print_json(info)
    spec = loaded.spec
    console.print(styled((spec.name, "bold"), f"  ({spec.id} {spec.version}, sha256 {loaded.sha256[:12]})"))
    console.print(spec.description.strip())
    console.print(f"guardian: {spec.guardian}   backups: {', '.join(spec.backups) or '-'}   risk: {spec.risk}")
    table = Table("input", "type", "required", "description")
    for name, inp in spec.inputs.items():
        add_row(table, name, inp.type, "yes" if inp.required else "no", short(inp.description, 70))
    console.print(table)
    console.print("steps: " + " → ".join(f"{s.id} ({s.kind})" for s in spec.steps) + " → approval gate")
    if spec.examples:
        console.print("examples: " + ", ".join(e.name for e in spec.examples))


@app.command()
def schema():
    """Print the JSON Schema of the scenario format (for editor autocompletion)."""
    from dew.agents.spec import json_schema

    typer.echo(json.dumps(json_schema(), ensure_ascii=False, indent=2))


@app.command("escalate-to")
def escalate_to(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Argument(metavar="SCENARIO", help="Scenario id.")],
    person: Annotated[str | None, typer.Argument(metavar="[USER]", help="Who; leave out to clear.")] = None,
    actor: AsOption = None,
):
    """Name whom a scenario's overdue items escalate to after its backups (admins)."""
    from dew.guardians.brake import set_escalation_contact

    set_escalation_contact(
        workspace(ctx), scenario, person, actor=require_identity(actor, "name an escalation contact")
    )
    console.print(
        f"Overdue items of {scenario} escalate to {person}." if person else f"{scenario} has no escalation contact."
    )
