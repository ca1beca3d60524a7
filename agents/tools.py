"""Tools: named Python functions a scenario step may call.

A `tool` step calls one deterministically; an `llm` step that lists `tools` runs as a tool-using
agent; a `check` may delegate its rule to a tool that returns problems. A function becomes a tool
with `@tool`; tools reach the registry only through the `dew.tools` entry-point group, which is
also how dew's own built-ins (`agents/toolbox/`, see pyproject.toml) arrive, so a third-party
package adds tools exactly the same way:

    [project.entry-points."dew.tools"]
    mytools = "mypackage.dew_tools"     # a module whose functions are decorated with @tool

Names are unique: a tool whose name is taken is refused, never silently swapped in.
"""

from __future__ import annotations

import inspect
import threading
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError, create_model

from .errors import DewError, ToolConflict, ToolFailed

ENTRY_POINT_GROUP = "dew.tools"


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about where it runs (never the database, never people)."""

    scenario_dir: Path | None = None  # folder of the scenario file: relative data paths start here
    run_id: Any = None


@dataclass(frozen=True)
class Tool:
    name: str
    func: Callable[..., Any]
    description: str
    wants_context: bool = False
    source: str = ""  # where it was defined: module.function
    # Arguments a model may set when it calls the tool (None: all of them). The others are the
    # scenario's to fix: a model deciding which rules apply or which corpus counts is steerable.
    model_args: frozenset[str] | None = None
    _args_model: Any = field(default=None, compare=False, repr=False)

    def parameters(self) -> dict:
        """JSON Schema of the arguments, for function calling and docs."""
        schema = self._args_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def settable(self, pinned: frozenset[str] | set[str] = frozenset()) -> set[str]:
        """The arguments a model may set here: those the tool allows, less those a scenario pinned."""
        names = set(self.parameters().get("properties", {}))
        allowed = names if self.model_args is None else names & self.model_args
        return allowed - set(pinned)

    def openai_schema(self, pinned: frozenset[str] | set[str] = frozenset()) -> dict:
        """What the model is shown: only the arguments it may set."""
        params = self.parameters()
        settable = self.settable(pinned)
        shown = {
            **params,
            "properties": {k: v for k, v in params.get("properties", {}).items() if k in settable},
            "required": [r for r in params.get("required", []) if r in settable],
        }
        if not shown["required"]:
            shown.pop("required")
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": shown},
        }

    def call(self, args: dict[str, Any], context: ToolContext | None = None) -> Any:
        try:
            validated = self._args_model.model_validate(args or {})
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "arguments"
            raise ToolFailed(f"tool '{self.name}': {where}: {err['msg']}") from None
        kwargs = {k: getattr(validated, k) for k in type(validated).model_fields}
        if self.wants_context:
            kwargs["context"] = context or ToolContext()
        try:
            return self.func(**kwargs)
        except ToolFailed:
            raise
        except DewError as e:
            raise ToolFailed(f"tool '{self.name}': {e.message}") from e
        except (ValueError, OSError) as e:  # the tools' own way of saying what is wrong
            raise ToolFailed(f"tool '{self.name}' failed: {e}") from e
        except Exception as e:  # a tool's failure is the run's (or the model's) to see, never a crash
            raise ToolFailed(f"tool '{self.name}' failed: {type(e).__name__}: {e}") from e


def tool(name: str | None = None, *, description: str | None = None, model_args: tuple[str, ...] | None = None):
    """Mark a function as a tool. Its type hints become the argument schema and its docstring's
    first paragraph the description the model sees. `model_args` names the arguments a model may
    set when it calls the tool (default: all); the rest must be pinned by the scenario or keep
    their defaults. Marking registers nothing: the registry takes the tools of the modules named
    by `dew.tools` entry points (or `ToolRegistry.register`)."""

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        tool_name = name or func.__name__
        sig = inspect.signature(func)
        hints = typing.get_type_hints(func)  # resolves string annotations (from __future__ import annotations)
        fields: dict[str, Any] = {}
        for pname, param in sig.parameters.items():
            if pname == "context":
                continue
            annotation = hints.get(pname, Any)
            default = param.default if param.default is not inspect.Parameter.empty else ...
            fields[pname] = (annotation, default)
        model = create_model(f"{tool_name}_args", __config__=ConfigDict(extra="forbid"), **fields)
        doc = description or inspect.getdoc(func) or tool_name
        unknown = sorted(set(model_args or ()) - set(fields))
        if unknown:
            raise TypeError(f"tool '{tool_name}': model_args names {unknown[0]!r}, which is not an argument")
        func.__dew_tool__ = Tool(  # type: ignore[attr-defined]
            name=tool_name,
            func=func,
            description=doc.split("\n\n")[0].replace("\n", " "),
            wants_context="context" in sig.parameters,
            source=f"{func.__module__}.{func.__qualname__}",
            model_args=frozenset(model_args) if model_args is not None else None,
            _args_model=model,
        )
        return func

    return mark


def tool_of(obj: Any) -> Tool | None:
    """The tool a `@tool` function carries, or None."""
    found = getattr(obj, "__dew_tool__", None)
    return found if isinstance(found, Tool) else None


class ToolRegistry(Mapping[str, Tool]):
    """Tools by name. Read like a mapping; changed only through `register` and `unregister`."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._lock = threading.Lock()

    def register(self, item: Tool | Callable[..., Any]) -> Tool:
        found = item if isinstance(item, Tool) else tool_of(item)
        if found is None:
            raise TypeError(f"{item!r} is not a tool: decorate it with @tool")
        with self._lock:
            taken = self._tools.get(found.name)
            if taken is not None and taken.func is not found.func:
                raise ToolConflict(
                    f"two tools are named '{found.name}': {taken.source} and {found.source}; "
                    "rename one (a tool name is unique across dew and every installed package)"
                )
            self._tools[found.name] = found
        return found

    def unregister(self, name: str) -> Tool:
        with self._lock:
            return self._tools.pop(name)

    def register_module(self, module: ModuleType) -> list[Tool]:
        """Every tool defined in `module` (not those it merely imports), in definition order."""
        return [
            self.register(t)
            for obj in vars(module).values()
            if (t := tool_of(obj)) is not None and t.func.__module__ == module.__name__
        ]

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        for ep in sorted(entry_points(group=group), key=lambda e: (e.value, e.name)):
            module = ep.load()
            if not isinstance(module, ModuleType):
                raise ToolConflict(f"entry point '{ep.name}' of group {group} must name a module, not {ep.value}")
            self.register_module(module)

    @contextmanager
    def registered(self, *items: Tool | Callable[..., Any]) -> Iterator[list[Tool]]:
        """Tools registered for the duration of a `with` block (for tests)."""
        added = [self.register(i) for i in items]
        try:
            yield added
        finally:
            for t in added:
                self.unregister(t.name)

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._tools))

    def __len__(self) -> int:
        return len(self._tools)


_default: ToolRegistry | None = None
_default_lock = threading.Lock()


def registry() -> ToolRegistry:
    """The process's registry: every tool of every installed `dew.tools` entry point, dew's own included."""
    global _default
    with _default_lock:
        if _default is None:
            loaded = ToolRegistry()
            loaded.load_entry_points()
            _default = loaded
        return _default


def get_tool(name: str) -> Tool:
    tools = registry()
    if name not in tools:  # a run's recorded scenario may name a tool this process does not have
        raise ToolFailed(
            f"no tool named '{name}' is installed here (installed: {', '.join(sorted(tools)) or 'none'}); "
            "install the package that provides it, then retry the run"
        )
    return tools[name]


def to_jsonable(value: Any) -> Any:
    """Tool results go into checkpoints and prompts: keep them plain JSON values."""
    return TypeAdapter(Any).dump_python(value, mode="json")
