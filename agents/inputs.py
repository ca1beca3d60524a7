"""Check and coerce the inputs a requester gives a run against the scenario's declared inputs."""

from __future__ import annotations

import json
from typing import Any

from .errors import InputInvalid
from .spec import Scenario

_TRUE = {"true", "yes", "1", "on", "是"}
_FALSE = {"false", "no", "0", "off", "否"}


def validate_inputs(spec: Scenario, given: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(spec.inputs))
    if unknown:
        raise InputInvalid(
            f"scenario '{spec.id}' has no input named {', '.join(repr(u) for u in unknown)} "
            f"(its inputs: {', '.join(spec.inputs)})"
        )
    values: dict[str, Any] = {}
    for name, decl in spec.inputs.items():
        if name not in given or given[name] is None:
            if decl.required:
                raise InputInvalid(f"scenario '{spec.id}' needs input '{name}': {decl.description or decl.type}")
            values[name] = (
                decl.default if decl.default is not None else ("" if decl.type in ("text", "string") else None)
            )
            continue
        values[name] = coerce(spec.id, name, decl.type, given[name])
    return values


def coerce(scenario: str, name: str, kind: str, value: Any) -> Any:
    bad = InputInvalid(f"input '{name}' of scenario '{scenario}' must be {kind}, got {value!r:.60}")
    if kind in ("text", "string"):
        if isinstance(value, (dict, list)):
            raise bad
        value = str(value)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InputInvalid(f"input '{name}' of scenario '{scenario}' is not valid text (broken Unicode)") from None
        return value
    if kind == "json":
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise bad from None
        return value
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in _TRUE:
            return True
        if str(value).strip().lower() in _FALSE:
            return False
        raise bad
    try:
        if kind == "integer":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        return float(value)
    except (TypeError, ValueError):
        raise bad from None
