"""Load scenario YAML into validated `Scenario` objects, with errors that name file, line and field."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateSyntaxError
from pydantic import TypeAdapter, ValidationError
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from .endpoints import DATA_CLASSES
from .errors import InputInvalid, InputMissing, ScenarioInvalid, ScenarioNotFound
from .inputs import coerce, validate_inputs
from .names import ROSTER_FILE
from .names import shipped_directory as shipped_directory  # where it was: tools and plugins import it here
from .spec import DRAFTING, CheckStep, LLMStep, ReviewStep, Scenario, TemplateStep, ToolStep, referenced_steps
from .templating import compile_expression, compile_template, template_strings, undeclared_names
from .tools import registry

# What each kind of template may read (see docs/scenario-reference.md).
STEP_NAMES = {"inputs", "steps", "run", "scenario"}
REVIEW_NAMES = STEP_NAMES | {"draft"}
FILENAME_NAMES = {"inputs", "run", "scenario"}
HANDOFF_NAMES = {"output", "output_json", "inputs", "run", "scenario"}
# A hand-off's condition reads only what the scenario's own steps produced: never the inputs or
# the released text, which a requester's words can shape (a place name with a forged line in it).
WHEN_NAMES = {"steps", "run", "scenario"}


MAX_DEPTH = 50  # scenario files nest a handful of levels; anything deeper is a mistake or an attack


class _ScenarioYAML(yaml.SafeLoader):
    """SafeLoader that refuses what a scenario never needs and what would let a file cost a
    command more than its size: a key given twice (YAML would silently keep the last), aliases
    (a 4 KB "billion laughs" file expands to gigabytes), explicit tags (`!!int 1.5`,
    `!!python/object`) and nesting deeper than MAX_DEPTH, each at its line like every other problem."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ComposerError(
                None, None, f"aliases (*{event.anchor}) are not allowed in scenario files; write the value out",
                event.start_mark,
            )  # fmt: skip
        event = self.peek_event()
        if getattr(event, "tag", None) not in (None, "!"):  # `!!int`, `!!python/...`: never needed, often harmful
            raise ComposerError(
                None, None, f"tags ({event.tag}) are not allowed in scenario files; write the value plainly",
                event.start_mark,
            )  # fmt: skip
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as e:  # PyYAML's constructors fail in many ways on odd values: say where
            raise ConstructorError(None, None, f"cannot read this value: {e}", node.start_mark) from e

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise ConstructorError(None, None, "a key must be a plain word or number", key_node.start_mark)
            if key in seen:
                raise ConstructorError(
                    None, None, f"duplicate key '{key}' (first given on line {seen[key]})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> tuple[Any, dict[tuple, int]]:
    """The document and the line of every field in it, from one pass over the text."""
    loader = _ScenarioYAML(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, _line_index(node)


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario together with the exact text it came from (what the audit trail hashes)."""

    spec: Scenario
    source: str
    text: str
    lines: dict[tuple, int] = field(default_factory=dict, compare=False, repr=False)  # field path -> line

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def id(self) -> str:
        return self.spec.id


MAX_FILE_BYTES = 1_000_000  # the largest shipped scenario is 10 KB; a file this size is a mistake


def load_file(path: str | Path) -> LoadedScenario:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ScenarioInvalid(str(path), [f"{path}:1: (file): larger than {MAX_FILE_BYTES:,} bytes"])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioNotFound(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioInvalid(str(path), [f"{path}:1: (file): cannot read: {e}"]) from None
    return load_text(text, str(path))


# Possessive: a long line without a colon is rejected in linear time, not by backtracking.
_KEY = re.compile(r"""(- +)?([^\s#'"\[\]{}&*!|>%@`-][^:#]*+|'[^']*'|"[^"]*"):(\s|$)""")


_BLOCK = re.compile(r"\s*[|>][-+0-9]*\s*(#.*)?$")


def field_at(lines: list[str], line: int) -> str:
    """The field a line belongs to, read from indentation alone: for YAML that does not parse,
    where there is no data to follow (`steps[2].role`). `(file)` when no field encloses it."""
    parts: list[str] = []
    limit = None  # the indentation of the innermost field found so far
    for i in range(min(line, len(lines)) - 1, -1, -1):
        raw = lines[i].replace("\t", " ")
        text = raw.lstrip(" ")
        if not text or text.startswith("#"):
            continue
        indent = len(raw) - len(text)
        if limit is not None and indent >= limit:
            continue
        m = _KEY.match(text)
        item = text.startswith("- ") or text == "-"
        if m and _BLOCK.match(text[m.end() :]):
            parts.clear()  # what was collected so far is the text of a `key: |` block, not fields
        if m and (not item or i == line - 1):  # the key of an item's own line, or a field
            parts.append(m.group(2).strip().strip("'\""))
        if item:
            parts.append(f"[{_index(lines, i, indent)}]")
        elif not m:
            continue
        limit = indent + (len(m.group(1)) if (m and m.group(1) and not item) else 0)
    path = ""
    for p in reversed(parts):
        path += p if p.startswith("[") or not path else f".{p}"
    return path or "(file)"


def _index(lines: list[str], at: int, indent: int) -> int:
    """Which item of its list the `- ` at line `at` starts: the items before it at its indentation."""
    n = 0
    for raw in reversed(lines[:at]):
        text = raw.lstrip(" ")
        if not text or text.startswith("#"):
            continue
        ind = len(raw) - len(text)
        if ind < indent:
            break
        if ind == indent and (text.startswith("- ") or text == "-"):
            n += 1
    return n


def load_text(text: str, source: str, *, recorded: bool = False) -> LoadedScenario:
    """A scenario from its YAML text; ScenarioInvalid names each problem's line and field.

    `recorded`: the exact text of a version the workspace recorded when a run started, which passed
    every check then. Its fields are validated again, but it is not checked across fields
    (references, templates, examples, tools): those checks load every installed tool, and a run
    already begun stays readable if such a rule was added or a tool removed since (a step that
    calls a removed tool fails the run, naming it)."""
    try:
        data, lines = parse_yaml(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        lines_of_text = text.splitlines()
        # The end of the stream is one past the last line: name the last line instead.
        line = min(mark.line + 1, max(1, len(lines_of_text))) if mark else 1
        field = field_at(lines_of_text, line)
        raise ScenarioInvalid(source, [f"{source}:{line}: {field}: invalid YAML: {e.problem or e}"]) from None
    except yaml.YAMLError as e:
        raise ScenarioInvalid(source, [f"{source}:1: (file): invalid YAML: {e}"]) from None
    if not isinstance(data, dict):
        raise ScenarioInvalid(
            source, [f"{source}:1: (file): a scenario must be a mapping of fields, not {type(data).__name__}"]
        )
    try:
        spec = Scenario.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = _data_path(err["loc"], data)
            problems.append(f"{source}:{_line_for(lines, loc)}: {_field(loc, data)}: {_message(err)}")
        raise ScenarioInvalid(source, problems) from None
    found = [] if recorded else semantic_problems(spec)
    problems = [f"{source}:{_line_for(lines, loc)}: {_field(loc, data)}: {msg}" for loc, msg in found]
    if problems:
        raise ScenarioInvalid(source, problems)
    return LoadedScenario(spec=spec, source=source, text=text, lines=lines)


def semantic_problems(spec: Scenario) -> list[tuple[tuple, str]]:
    """Rules that span fields: references between steps, templates, examples."""
    problems: list[tuple[tuple, str]] = []
    seen: dict[str, Any] = {}
    drafting = DRAFTING
    inputs = set(spec.inputs)

    def earlier_drafting(ref: str, loc: tuple, what: str, *, allow: frozenset[str] = frozenset()):
        step = seen.get(ref)
        if step is None and ref not in allow:
            problems.append((loc, f"{what} '{ref}' is not an earlier step (earlier: {', '.join(seen) or 'none'})"))
        elif step is not None and not isinstance(step, drafting):
            problems.append((loc, f"{what} '{ref}' is a {step.kind} step; it must be an llm or template step"))

    def check_template(source: str, loc: tuple, allowed: set[str] = STEP_NAMES):
        try:
            compile_template(source)
        except TemplateSyntaxError as e:
            problems.append((loc, f"template error on its line {e.lineno}: {e.message}"))
            return
        for name in sorted(undeclared_names(source) - allowed):
            problems.append(
                (loc, f"refers to '{name}', which a template here cannot see (it sees: {', '.join(sorted(allowed))})")
            )
        for ref in sorted(referenced_steps(source)):
            if ref not in seen:
                problems.append((loc, f"refers to steps.{ref}, which is not an earlier step"))
            elif not isinstance(seen[ref], drafting):
                problems.append((loc, f"refers to steps.{ref}, a {seen[ref].kind} step, which has no output"))
        for name in sorted(set(re.findall(r"\binputs\.([a-z_][a-z0-9_]*)", source)) - inputs):
            problems.append((loc, f"refers to inputs.{name}, which is not a declared input"))

    tools = registry()

    def check_tool(name: str, args: dict, loc: tuple, supplied: frozenset[str] = frozenset()):
        tool = tools.get(name)
        if tool is None:
            problems.append((loc + ("tool",), f"no tool named '{name}' (registered: {', '.join(sorted(tools))})"))
            return
        params = tool.parameters()
        known = set(params.get("properties", {}))
        if "text" in supplied and "text" not in known:
            problems.append((loc + ("tool",), f"tool '{name}' takes no `text`, so it cannot check an output"))
            return
        fields = tool._args_model.model_fields
        for arg, value in args.items():  # literal values are checked now, templated ones at run time
            if arg in fields and not any("{{" in t or "{%" in t for t in template_strings(value)):
                try:
                    TypeAdapter(fields[arg].annotation).validate_python(value)
                except ValidationError as e:
                    problems.append((loc + ("args", arg), f"tool '{name}': {e.errors()[0]['msg']}"))
        for arg in sorted(set(args) - known):
            problems.append(
                (loc + ("args", arg), f"tool '{name}' takes no argument '{arg}' (it takes: {', '.join(sorted(known))})")
            )
        for arg in sorted(set(params.get("required", [])) - set(args) - supplied):
            problems.append((loc + ("args",), f"tool '{name}' needs argument '{arg}'"))
        for _j, text in enumerate(template_strings(args)):
            check_template(text, loc + ("args",))

    for i, step in enumerate(spec.steps):
        loc = ("steps", i)
        if step.id in seen:
            problems.append((loc + ("id",), f"step id '{step.id}' is used twice"))
        if isinstance(step, LLMStep):
            check_template(step.prompt, loc + ("prompt",))
            for k, use in enumerate(step.tools):
                found = tools.get(use.tool)
                if found is None:
                    problems.append(
                        (loc + ("tools", k), f"no tool named '{use.tool}' (registered: {', '.join(sorted(tools))})")
                    )
                    continue
                # What the model may not set must be pinned here, or the tool could not be called.
                check_tool(use.tool, use.args, loc + ("tools", k), supplied=frozenset(found.settable(set(use.args))))
            if step.output == "json" and step.schema_ is None:
                problems.append((loc + ("schema",), "an llm step with `output: json` needs a `schema`"))
        elif isinstance(step, TemplateStep):
            check_template(step.template, loc + ("template",))
        elif isinstance(step, ToolStep):
            check_tool(step.tool, step.args, loc)
        elif isinstance(step, CheckStep):
            earlier_drafting(step.target, loc + ("target",), "target")
            if step.on_fail:
                earlier_drafting(step.on_fail, loc + ("on_fail",), "on_fail")
            for j, check in enumerate(step.checks):
                set_fields = [
                    k
                    for k in ("contains", "not_contains", "min_chars", "max_chars", "matches", "json_schema", "tool")
                    if getattr(check, k) is not None
                ]
                if check.tool is not None:
                    check_tool(check.tool, check.args, loc + ("checks", j), supplied=frozenset({"text"}))
                elif check.args:
                    problems.append((loc + ("checks", j, "args"), "`args` belongs to a check with a `tool`"))
                if len(set_fields) != 1:
                    problems.append(
                        (loc + ("checks", j), f"a check sets exactly one rule; this one sets {set_fields or 'none'}")
                    )
                if check.matches is not None:
                    try:
                        re.compile(check.matches)
                    except re.error as e:
                        problems.append((loc + ("checks", j, "matches"), f"invalid regular expression: {e}"))
        elif isinstance(step, ReviewStep):
            earlier_drafting(step.target, loc + ("target",), "target")
            if step.send_back_to:
                earlier_drafting(step.send_back_to, loc + ("send_back_to",), "send_back_to")
            check_template(step.prompt, loc + ("prompt",), REVIEW_NAMES)
        seen[step.id] = step

    if spec.output.from_step:
        earlier_drafting(spec.output.from_step, ("output", "from"), "output.from")
    elif not any(isinstance(s, drafting) for s in spec.steps):
        problems.append((("steps",), "a scenario needs at least one llm or template step to draft its output"))
    if spec.output.revise_to:
        earlier_drafting(spec.output.revise_to, ("output", "revise_to"), "output.revise_to")
        if not isinstance(seen.get(spec.output.revise_to), (LLMStep, type(None))):
            problems.append(
                (
                    ("output", "revise_to"),
                    f"'{spec.output.revise_to}' is not an llm step, so it could not act on a guardian's feedback",
                )
            )
    if spec.output.format == "json" and spec.output.schema_ is None:
        problems.append((("output", "schema"), "`format: json` needs a `schema` to validate drafts and edits"))
    if spec.data == "public":  # public data may go to any endpoint: personal data must not ride along
        why = "`data: public` may be sent to any endpoint, so personal data cannot be kept as it is: use pseudonymise or refuse"
        if spec.pii == "keep":
            problems.append((("pii",), why))
        problems += [(("inputs", n, "pii"), why) for n, decl in spec.inputs.items() if decl.pii == "keep"]
    if spec.guardian in spec.backups:
        problems.append((("backups",), f"'{spec.guardian}' is the guardian; a backup must be someone else"))
    for n, stage in enumerate(spec.signoff):
        if stage.guardian == spec.guardian:
            problems.append(((
                "signoff", n, "guardian"),
                f"'{stage.guardian}' is the scenario's guardian, who signs last; one person signs an item once",
            ))  # fmt: skip
    if spec.two_person and not spec.backups:
        problems.append((("two_person",), "two-person sign-off needs at least one backup besides the guardian"))
    if spec.remind_before and not spec.deadline:
        problems.append((("remind_before",), "a reminder needs a deadline to be before"))
    elif spec.remind_at and spec.wait and spec.remind_at >= spec.wait:
        problems.append((("remind_before",), f"the reminder must come before the deadline ({spec.deadline})"))
    seen = {}  # the file name and the hand-off see no step outputs
    check_template(spec.release.filename, ("release", "filename"), FILENAME_NAMES)
    h = spec.release.handoff
    if h is not None:
        if h.scenario == spec.id:
            problems.append((("release", "handoff", "scenario"), "a scenario cannot hand off to itself"))
        if h.when:
            try:
                compile_expression(h.when)
            except TemplateSyntaxError as e:
                problems.append((("release", "handoff", "when"), f"expression error: {e.message}"))
            else:
                seen = {s.id: s for s in spec.steps}
                check_template("{{ " + h.when + " }}", ("release", "handoff", "when"), WHEN_NAMES)
                seen = {}
        for name, text in h.inputs.items():
            check_template(text, ("release", "handoff", "inputs", name), HANDOFF_NAMES)
    for name, inp in spec.inputs.items():
        if inp.default is not None:
            try:
                coerce(spec.id, name, inp.type, inp.default)
            except InputInvalid as e:
                problems.append((("inputs", name, "default"), f"the default does not fit the type: {e.message}"))
    for i, example in enumerate(spec.examples):
        for name in sorted(set(example.inputs) - inputs):
            problems.append((("examples", i, "inputs", name), f"'{name}' is not a declared input"))
        for name, inp in spec.inputs.items():
            if inp.required and name not in example.inputs:
                problems.append((("examples", i, "inputs"), f"required input '{name}' is missing"))
        if set(example.inputs) <= inputs:
            try:
                validate_inputs(spec, example.inputs)
            except InputMissing:
                pass  # reported above with its place
            except InputInvalid as e:
                problems.append((("examples", i, "inputs"), e.message))
    return problems


# --- the catalogue -----------------------------------------------------------------------------
def scenario_files(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    return sorted(
        p
        for p in directory.glob("*.y*ml")
        if p.suffix in (".yaml", ".yml") and p.name != ROSTER_FILE and not p.name.startswith("_")
    )


def load_directory(directory: str | Path) -> dict[str, LoadedScenario]:
    """Every scenario in a folder, by id. All problems of all files are reported together."""
    found, problems = load_catalogue(directory)
    if problems:
        raise ScenarioInvalid(str(directory), problems)
    return found


def load_catalogue(directory: str | Path) -> tuple[dict[str, LoadedScenario], list[str]]:
    """The scenarios of a folder that load, and the problems of those that do not: one bad file
    must not stop the work of the others (commands that need it report its problems)."""
    found: dict[str, LoadedScenario] = {}
    problems: list[str] = []
    for path in scenario_files(directory):
        try:
            loaded = load_file(path)
        except ScenarioInvalid as e:
            problems.extend(e.problems)
            continue
        if loaded.id in found:
            problems.append(f"{path}:1: id: '{loaded.id}' is also the id of {found[loaded.id].source}")
            continue
        found[loaded.id] = loaded
    for sid, loaded in list(found.items()):
        handoff = _handoff_problems(loaded, found)
        if handoff:
            problems.extend(handoff)
            del found[sid]
    return found, problems


def _handoff_problems(loaded: LoadedScenario, catalogue: dict[str, LoadedScenario]) -> list[str]:
    """A hand-off must name a scenario of the same catalogue and give it the inputs it needs."""
    h = loaded.spec.release.handoff
    if h is None:
        return []
    where = f"{loaded.source}:{_line_for(loaded.lines, ('release', 'handoff'))}"
    target = catalogue.get(h.scenario)
    if target is None:
        return [f"{where}: release.handoff.scenario: no scenario '{h.scenario}' in this folder"]
    out = [
        f"{where}: release.handoff.inputs.{n}: scenario '{h.scenario}' has no input '{n}'"
        for n in sorted(set(h.inputs) - set(target.spec.inputs))
    ]
    out += [
        f"{where}: release.handoff.inputs: scenario '{h.scenario}' needs input '{n}'"
        for n, decl in target.spec.inputs.items()
        if decl.required and n not in h.inputs
    ]
    rank = DATA_CLASSES.index
    if rank(target.spec.data) < rank(loaded.spec.data):  # the released text carries this scenario's data
        out.append(
            f"{where}: release.handoff.scenario: '{h.scenario}' handles {target.spec.data} data, so it may not take "
            f"this scenario's {loaded.spec.data} output (its model endpoints may be allowed less)"
        )
    return out


# --- line numbers ------------------------------------------------------------------------------
def _line_index(node, path: tuple = (), index: dict | None = None) -> dict[tuple, int]:
    index = {} if index is None else index
    if node is None:
        return index
    index.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            index[path + (key.value,)] = key.start_mark.line + 1
            _line_index(value, path + (key.value,), index)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index[path + (i,)] = item.start_mark.line + 1
            _line_index(item, path + (i,), index)
    return index


def _data_path(loc: Iterable, data: Any) -> tuple:
    """Pydantic's loc with union tags and aliases mapped back onto the keys the file has."""
    path: list = []
    cur = data
    for part in loc:
        if isinstance(cur, dict):
            key = {"schema_": "schema", "from_step": "from"}.get(part, part) if isinstance(part, str) else part
            if key in cur:
                path.append(key)
                cur = cur[key]
                continue
            if isinstance(part, str) and path and isinstance(cur, dict) and cur.get("kind") == part:
                continue  # discriminated-union tag, not a key in the file
            path.append(key)
            cur = None
        elif isinstance(cur, list) and isinstance(part, int) and part < len(cur):
            path.append(part)
            cur = cur[part]
        else:
            path.append(part)
            cur = None
    return tuple(path)


def _line_for(index: dict[tuple, int], loc: tuple) -> int:
    for n in range(len(loc), -1, -1):
        if loc[:n] in index:
            return index[loc[:n]]
    return 1


def _field(loc: tuple, data: Any = None) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _message(err: Any) -> str:
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling; see docs/scenario-reference.md)"
    return err["msg"]
