"""Tools: named Python functions a scenario step may call.

A `tool` step calls one deterministically; an `llm` step that lists `tools` runs as a tool-using
agent; a `check` may delegate its rule to a tool that returns problems. Tools are registered
with `@tool` and found through the `dew.tools` entry-point group, which is also how dew's own
built-ins (`agents/toolbox/`) are registered, so a third-party package adds tools exactly the
same way:

    [project.entry-points."dew.tools"]
    mytools = "mypackage.dew_tools"     # a module whose functions are decorated with @tool
"""

from __future__ import annotations

import inspect
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError, create_model

from .errors import DewError, RunFailed

ENTRY_POINT_GROUP = "dew.tools"
BUILTIN_MODULES = (
    "dew.agents.toolbox.tables",
    "dew.agents.toolbox.corpus",
    "dew.agents.toolbox.documents",
    "dew.agents.toolbox.classify",
    "dew.agents.toolbox.signals",
)


class ToolFailed(RunFailed):
    code = "tool_failed"


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
    _args_model: Any = field(default=None, compare=False, repr=False)

    def parameters(self) -> dict:
        """JSON Schema of the arguments, for function calling and docs."""
        schema = self._args_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def openai_schema(self) -> dict:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters()},
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
            raise ToolFailed(f"tool '{self.name}': {e.message}") from None
        except (ValueError, OSError) as e:  # the tools' own way of saying what is wrong
            raise ToolFailed(f"tool '{self.name}' failed: {e}") from None
        except Exception as e:  # a tool's failure is the run's (or the model's) to see, never a crash
            raise ToolFailed(f"tool '{self.name}' failed: {type(e).__name__}: {e}") from None


_declared: dict[str, Tool] = {}


def tool(name: str | None = None, *, description: str | None = None):
    """Register a function as a tool. Its type hints become the argument schema and its
    docstring's first paragraph the description the model sees."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        tool_name = name or func.__name__
        sig = inspect.signature(func)
        hints = typing.get_type_hints(func)  # resolves string annotations (from __future__ import annotations)
        fields = {}
        for pname, param in sig.parameters.items():
            if pname == "context":
                continue
            annotation = hints.get(pname, Any)
            default = param.default if param.default is not inspect.Parameter.empty else ...
            fields[pname] = (annotation, default)
        model = create_model(f"{tool_name}_args", __config__=ConfigDict(extra="forbid"), **fields)
        doc = description or inspect.getdoc(func) or tool_name
        _declared[tool_name] = Tool(
            name=tool_name,
            func=func,
            description=doc.split("\n\n")[0].replace("\n", " "),
            wants_context="context" in sig.parameters,
            _args_model=model,
        )
        return func

    return register


_loaded = False
_lock = threading.Lock()


def registry() -> dict[str, Tool]:
    """Every tool: dew's built-ins and those of installed packages (entry points)."""
    global _loaded
    with _lock:
        if not _loaded:
            import importlib

            for module in BUILTIN_MODULES:
                importlib.import_module(module)
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                if ep.value in BUILTIN_MODULES:
                    continue
                ep.load()  # importing the module runs its @tool decorators
            _loaded = True
    return dict(_declared)


def get_tool(name: str) -> Tool:
    tools = registry()
    if name not in tools:
        raise KeyError(name)
    return tools[name]


def to_jsonable(value: Any) -> Any:
    """Tool results go into checkpoints and prompts: keep them plain JSON values."""
    return TypeAdapter(Any).dump_python(value, mode="json")
