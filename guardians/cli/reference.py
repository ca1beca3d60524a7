"""Generate the reference docs from the code: CLI help, scenario format, JSON Schema.

python -m dew.guardians.cli.reference          # rewrite docs/cli.md, docs/scenario-reference.md, docs/scenario.schema.json
python -m dew.guardians.cli.reference --check  # exit 1 if any of them is out of date (CI runs this through pytest)
"""

from __future__ import annotations

import json
import re
import sys
import typing
from pathlib import Path

from pydantic import BaseModel
from typer.testing import CliRunner

from dew.agents import spec as s
from dew.agents.errors import DewError

DOCS = Path(__file__).resolve().parents[2] / "docs"


def cli_reference() -> str:
    from typer.main import get_command

    from .main import app

    root = get_command(app)
    runner = CliRunner()
    parts = [
        "# dew CLI reference",
        "",
        "Generated from `dew --help` by `python -m dew.guardians.cli.reference`; do not edit by hand.",
        "",
    ]

    def walk(cmd, path: list[str]):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100", "NO_COLOR": "1"}, prog_name="dew")
        title = " ".join(["dew", *path])
        parts.extend([f"## `{title}`", "", "```", result.stdout.rstrip(), "```", ""])
        for name in getattr(cmd, "commands", {}) or {}:
            walk(cmd.commands[name], [*path, name])

    walk(root, [])
    return "\n".join(parts)


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(names)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {_type_name(args[0])} → {_type_name(args[1])}" if args else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if annotation is typing.Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _model_section(model: type[BaseModel]) -> list[str]:
    doc = " ".join((model.__doc__ or "").split())
    lines = [
        f"### {model.__name__}",
        "",
        doc,
        "",
        "| field | type | required | default | description |",
        "|---|---|---|---|---|",
    ]
    for name, field in model.model_fields.items():
        key = field.alias or name
        required = "yes" if field.is_required() else "no"
        default = (
            "" if field.is_required() or field.default_factory else f"`{json.dumps(field.default, ensure_ascii=False)}`"
        )
        if field.default_factory:
            is_model = isinstance(field.default_factory, type) and issubclass(field.default_factory, BaseModel)
            default = "(all defaults)" if is_model else "empty"
        desc = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{key}` | {_type_name(field.annotation)} | {required} | {default} | {desc} |")
    return lines + [""]


def scenario_reference() -> str:
    models: list[type[BaseModel]] = [
        s.Scenario,
        s.InputSpec,
        s.LLMSpec,
        s.LLMStep,
        s.TemplateStep,
        s.ToolStep,
        s.CheckStep,
        s.Check,
        s.ReviewStep,
        s.OutputSpec,
        s.ReleaseSpec,
        s.LabelSpec,
        s.LabelText,
        s.HandoffSpec,
        s.Example,
    ]
    out = [
        "# Scenario YAML reference (format version 1)",
        "",
        "Generated from the pydantic models in `agents/spec.py` by `python -m dew.guardians.cli.reference`; "
        "do not edit by hand. The same models give the JSON Schema in "
        "[`scenario.schema.json`](scenario.schema.json) (`dew scenarios schema`), which editors such as VS Code "
        "use for autocompletion with the first line `# yaml-language-server: $schema=../docs/scenario.schema.json`.",
        "",
        "A scenario file is a mapping with the fields of **Scenario**. `steps` is a list whose items are "
        "told apart by `kind`: `llm`, `template`, `tool`, `check` or `review`. Prompts, templates and file names are "
        "Jinja2 templates that see `inputs.<name>`, `steps.<id>` (outputs of earlier steps), `run.id`, "
        "`run.date` and `scenario.id`/`name`/`version`; a reviewer's prompt also sees `draft`. An undefined "
        "name is an error, never a blank.",
        "",
        "Rules across fields, checked when a file loads: step ids are unique; `target`, `on_fail`, "
        "`send_back_to`, `output.from` and `output.revise_to` name an *earlier* `llm` or `template` step; "
        "templates parse and refer only to declared inputs and earlier steps; a check sets exactly one rule; "
        "`output: json` steps and `format: json` outputs have a schema; a backup is not the guardian; "
        "examples give every required input and no undeclared one.",
        "",
    ]
    for m in models:
        out.extend(_model_section(m))
    return "\n".join(out)


DATA_GOES = {
    "public": "any model endpoint",
    "internal": "local endpoints and those declared internal",
    "sensitive": "local endpoints and internal ones cleared for sensitive data",
}
PII_SAYS = {
    "pseudonymise": "pseudonymised before any model sees it",
    "keep": "sent as it is",
    "refuse": "refused",
}


def scenarios_reference() -> str:
    """docs/scenarios.md: the shipped library, from the YAML files themselves."""
    import yaml

    from dew.agents.compiler import mermaid
    from dew.agents.loader import load_directory
    from dew.agents.names import ROSTER_FILE, shipped_directory

    folder = shipped_directory()
    roster = {g["id"]: g for g in yaml.safe_load((folder / ROSTER_FILE).read_text(encoding="utf-8"))["guardians"]}
    catalogue = load_directory(folder)
    verdicts = {}  # measured, not assumed: the plain-words lines of docs/pass-rates.md
    rates = DOCS / "pass-rates.md"
    if rates.exists():
        for line in rates.read_text(encoding="utf-8").splitlines():
            m = re.match(r"- `([a-z0-9_-]+)` (.+)$", line)
            if m:
                verdicts[m.group(1)] = m.group(2)
    out = [
        "# The scenario library",
        "",
        "Generated from `scenarios/*.yaml` by `python -m dew.guardians.cli.reference`; do not edit by hand. "
        "Each scenario is one YAML file; its graph below is what dew compiles it to. "
        "How well the embedded model does on each is measured in [pass-rates.md](pass-rates.md).",
        "",
    ]
    for sid in sorted(catalogue):
        out.append(f"- [{catalogue[sid].spec.name}](#{sid}) (`{sid}`)")
    out.append("")
    for sid, loaded in sorted(catalogue.items()):
        spec = loaded.spec

        def person(pid):
            p = roster.get(pid, {"name": "?", "title": ""})
            return f"{p['name']} (`{pid}`, {p['title']})"

        verdict = verdicts.get(sid, "not measured yet; run bench/scenario_pass_rates.py")
        out += [
            f'<a id="{sid}"></a>',
            f"## {spec.name}",
            "",
            f"`{sid}` · version {spec.version} · risk **{spec.risk}** · file `scenarios/{Path(loaded.source).name}`",
            "",
            " ".join(spec.description.split()),
            "",
            f"- Guardian: {person(spec.guardian)}",
            f"- Backups: {', '.join(person(b) for b in spec.backups) or 'none'}",
            *(
                [f"- Sign-off, in order: {' → '.join(f'{st.name} ({person(st.guardian)})' for st in spec.stages())}"]
                if len(spec.stages()) > 1
                else []
            ),
            *([f"- Deadline per sign-off: {spec.deadline}"] if spec.deadline else []),
            f"- Data: **{spec.data}** ({DATA_GOES[spec.data]}); personal data: {PII_SAYS[spec.pii]}"
            + "".join(f"; `{n}`: {PII_SAYS[i.pii]}" for n, i in spec.inputs.items() if i.pii and i.pii != spec.pii),
            f"- Output: {spec.output.format}, released to `outbox/{sid}/`"
            + (
                f"; hands off to `{spec.release.handoff.scenario}`"
                + (f" when `{spec.release.handoff.when}`" if spec.release.handoff.when else "")
                if spec.release.handoff
                else ""
            ),
            f"- Samples: {', '.join(e.name for e in spec.examples)}",
            f"- With the embedded model: {verdict}",
            "",
            "| input | type | required | description |",
            "|---|---|---|---|",
        ]
        for name, inp in spec.inputs.items():
            out.append(f"| `{name}` | {inp.type} | {'yes' if inp.required else 'no'} | {inp.description} |")
        out += ["", "Steps:", ""]
        for st in spec.steps:
            extra = f" — tool `{st.tool}`" if st.kind == "tool" else ""
            out.append(f"1. `{st.id}` ({st.kind}){extra}: {st.title or ''}")
        out += [
            "1. approval gate: the guardian approves, rejects, edits or sends back",
            "",
            "```mermaid",
            mermaid(spec).strip(),
            "```",
            "",
        ]
    return "\n".join(out)


def tools_reference() -> str:
    """docs/tools.md: every registered tool with its arguments."""
    import inspect

    from dew.agents.tools import registry

    out = [
        "# Tools",
        "",
        "Generated from the tool registry by `python -m dew.guardians.cli.reference`; do not edit by hand. "
        "A `tool` step calls one with `args`; a `check` may use one that returns problems (it receives "
        "the checked output as `text`); an `llm` step that lists `tools` lets the model call them. "
        "Packages add tools through the `dew.tools` entry-point group (see `agents/tools.py`). "
        "A model calling a tool may set only the arguments marked in *a model sets*; the scenario pins the "
        "others (`tools: [{tool: NAME, args: {...}}]`) or they keep their defaults.",
        "",
    ]
    for name, t in sorted(registry().items()):
        params = t.parameters()
        required = set(params.get("required", []))
        out += [
            f"## `{name}`",
            "",
            inspect.getdoc(t.func) or t.description,
            "",
            "| argument | type | required | default | a model sets |",
            "|---|---|---|---|---|",
        ]
        settable = t.settable()
        for arg, sch in params.get("properties", {}).items():
            kind = sch.get("type") or " or ".join(x.get("type", "?") for x in sch.get("anyOf", [])) or "object"
            default = "" if arg in required else f"`{json.dumps(sch.get('default'), ensure_ascii=False)}`"
            model = "yes" if arg in settable else "no"
            out.append(f"| `{arg}` | {kind} | {'yes' if arg in required else 'no'} | {default} | {model} |")
        out.append("")
    return "\n".join(out)


def error_classes() -> list[type[DewError]]:
    """Every domain error, of both layers, in definition order."""
    from dew.agents import errors as agent_errors
    from dew.guardians import errors as guardian_errors

    found: list[type[DewError]] = []
    for module in (agent_errors, guardian_errors):
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, agent_errors.DewError) and obj.__module__ == module.__name__:
                found.append(obj)
    return found


EXIT_CODES = [
    (0, "done"),
    (1, "any other error: invalid scenario or input, failed run, release or storage problem, internal error"),
    (2, "the command line itself is wrong (unknown option, missing argument): the usage is printed"),
    (3, "not authorized, or who you are was not said (`--as` / `DEW_USER`) or is not a valid identity"),
    (4, "already decided, or not in a state that allows it (e.g. retrying a running run)"),
    (5, "the audit trail does not verify"),
    (6, "a release is not delivered as recorded (`dew audit verify`); `dew repair` completes it"),
    (7, "a file is not what dew released (`dew released verify`): changed, its label altered, or recalled"),
]


def errors_reference() -> str:
    out = [
        "# dew errors",
        "",
        "Generated from `agents/errors.py` and `guardians/errors.py` by `python -m dew.guardians.cli.reference`; "
        "do not edit by hand. The CLI prints one line `Error: <message>` on stderr and exits with the code below; "
        'the HTTP API answers with the status below and the body `{"error": {"code": ..., "message": ...}}`.',
        "",
        "## Exit codes",
        "",
        "| exit code | meaning |",
        "|---|---|",
        *(f"| {code} | {meaning} |" for code, meaning in EXIT_CODES),
        "",
        "## Error codes",
        "",
        "| code | exit code | HTTP status | error | meaning |",
        "|---|---|---|---|---|",
    ]
    for cls in error_classes():
        doc = " ".join((cls.__doc__ or "").split())
        out.append(f"| `{cls.code}` | {cls.exit_code} | {cls.http_status} | `{cls.__name__}` | {doc} |")
    return "\n".join(out) + "\n"


def command_paths() -> list[str]:
    """Every command and sub-command of `dew`, as typed: `dew`, `dew audit`, `dew audit verify`, ..."""
    from typer.main import get_command

    from .main import app

    paths: list[str] = []

    def walk(cmd, path: list[str]) -> None:
        paths.append(" ".join(["dew", *path]))
        for name, sub in (getattr(cmd, "commands", {}) or {}).items():
            walk(sub, [*path, name])

    walk(get_command(app), [])
    return paths


def schema_json() -> str:
    return json.dumps(s.json_schema(), ensure_ascii=False, indent=2) + "\n"


FILES = {
    "cli.md": cli_reference,
    "scenario-reference.md": scenario_reference,
    "scenario.schema.json": schema_json,
    "scenarios.md": scenarios_reference,
    "tools.md": tools_reference,
    "errors.md": errors_reference,
}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, make in FILES.items():
        path = DOCS / name
        text = make()
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run: python -m dew.guardians.cli.reference", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
