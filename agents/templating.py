"""Jinja2 for prompts, fixed-format templates and release file names.

Sandboxed because scenario files are configuration, not code: a template may read the run's
values but not reach into Python. Undefined names fail loudly rather than render as blanks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, Template, TemplateError, UndefinedError, meta, pass_context
from jinja2.sandbox import SandboxedEnvironment

from .errors import InputInvalid

if TYPE_CHECKING:
    from .spec import Scenario

_env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
_env.filters["tojson_pretty"] = lambda v: json.dumps(v, ensure_ascii=False, indent=2)


@pass_context
def _finalize(context, value: Any) -> Any:
    fence = context.get(FENCE)
    return fence(value) if fence is not None else value


# Prompts render in an environment of their own, in which every value a `{{ }}` puts in passes
# through the context's fence (agents/untrusted.py): material is fenced, the template's own text is not.
FENCE = "_fence"
_prompt_env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False,
                                   finalize=_finalize)  # fmt: skip
_prompt_env.filters.update(_env.filters)
# Jinja's own tojson writes 陈伟明 as \u9648\u4f1f\u660e, which no recogniser reads: a prompt's JSON
# keeps its characters, so personal data in it is found and pseudonymised.
_prompt_env.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)


@lru_cache(maxsize=512)
def compile_template(source: str) -> Template:
    return _env.from_string(source)


@lru_cache(maxsize=512)
def _compile_prompt(source: str) -> Template:
    return _prompt_env.from_string(source)


def render_prompt(source: str, context: dict[str, Any], fence, *, where: str) -> str:
    """A prompt, with every interpolated value passed through `fence`."""
    return _render(_compile_prompt, source, {**context, FENCE: fence}, where)


def compile_expression(source: str):
    return _env.compile_expression(source, undefined_to_none=False)


def undeclared_names(source: str) -> set[str]:
    """Top-level names a template reads from its context (for load-time checks)."""
    return meta.find_undeclared_variables(_env.parse(source))


_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}\s*$", re.DOTALL)


def render_value(value: Any, context: dict[str, Any], *, where: str) -> Any:
    """Render tool arguments: strings as templates, except that a string holding exactly one
    `{{ expression }}` yields the expression's value itself (a mapping, a list, a number)."""
    if isinstance(value, str):
        m = _WHOLE_EXPRESSION.match(value)
        if m:
            return evaluate(m.group("expr"), context, where=where)
        return render(value, context, where=where)
    if isinstance(value, dict):
        return {k: render_value(v, context, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context, where=f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def evaluate(expression: str, context: dict[str, Any], *, where: str) -> Any:
    """The value of a Jinja2 expression (a hand-off's `when`)."""
    try:
        result = compile_expression(expression)(**context)
    except UndefinedError as e:
        raise InputInvalid(f"{where}: {e.message}") from None
    except (TemplateError, ArithmeticError, TypeError, ValueError, AttributeError, LookupError) as e:
        raise InputInvalid(f"{where}: {type(e).__name__}: {e}") from None
    if hasattr(result, "_undefined_name"):  # a bare undefined name is returned, not raised
        raise InputInvalid(f"{where}: '{expression.strip()}' is undefined")
    return result


def template_strings(value: Any) -> list[str]:
    """Every string inside a YAML value (to check templates at load time)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in template_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in template_strings(v)]
    return []


def render(source: str, context: dict[str, Any], *, where: str = "template") -> str:
    return _render(compile_template, source, context, where)


def _render(compile_, source: str, context: dict[str, Any], where: str) -> str:
    try:
        return compile_(source).render(**context)
    except UndefinedError as e:
        raise InputInvalid(f"{where}: {e.message}") from None
    except (TemplateError, ArithmeticError, TypeError, ValueError, AttributeError, LookupError) as e:
        raise InputInvalid(f"{where}: {type(e).__name__}: {e}") from None


def run_values(run_id: Any, day: date) -> dict[str, Any]:
    """`run` as templates see it: fixed when the run starts, so every later render agrees."""
    return {"id": run_id, "date": day.isoformat()}


def scenario_context(
    spec: Scenario, *, run: Mapping[str, Any], inputs: Mapping[str, Any], **more: Any
) -> dict[str, Any]:
    """What a scenario's templates see: prompts and templates (with `steps`), the release file
    name, and a hand-off (with `output`, `output_json`). One definition for all of them."""
    return {
        "inputs": dict(inputs),
        "run": dict(run),
        "scenario": {"id": spec.id, "name": spec.name, "version": spec.version},
        **more,
    }
