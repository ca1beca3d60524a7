"""Jinja2 for prompts, fixed-format templates and release file names.

Sandboxed because scenario files are configuration, not code: a template may read the run's
values but not reach into Python. Undefined names fail loudly rather than render as blanks.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment

from .errors import InputInvalid

_env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
_env.filters["tojson_pretty"] = lambda v: json.dumps(v, ensure_ascii=False, indent=2)


@lru_cache(maxsize=512)
def compile_template(source: str) -> Template:
    return _env.from_string(source)


def undeclared_names(source: str) -> set[str]:
    """Top-level names a template reads from its context (for load-time checks)."""
    return meta.find_undeclared_variables(_env.parse(source))


def render(source: str, context: dict[str, Any], *, where: str = "template") -> str:
    try:
        return compile_template(source).render(**context)
    except UndefinedError as e:
        raise InputInvalid(f"{where}: {e.message}") from None
