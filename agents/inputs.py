"""Check and coerce the inputs a requester gives a run against the scenario's declared inputs.

Each declared input type is a pydantic type, so inputs are validated by the same machinery as
tool arguments: one way of saying what a value must be, and one kind of error message.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Annotated, Any

from pydantic import BeforeValidator, StrictBool, TypeAdapter, ValidationError

from .errors import InputInvalid, InputMissing
from .spec import Scenario

_TRUE = {"true", "yes", "1", "on", "是"}
_FALSE = {"false", "no", "0", "off", "否"}


def _text(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # a number given for a text input is its text (`-i case_no=42`)
    if isinstance(value, str):
        value.encode("utf-8")  # a lone surrogate (broken Unicode) cannot be stored or sent
    return value


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _boolean(value: Any) -> Any:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return value


TYPES: dict[str, Any] = {
    "text": Annotated[str, BeforeValidator(_text)],
    "string": Annotated[str, BeforeValidator(_text)],
    "integer": int,  # pydantic takes "42" and 42.0, and refuses 4.5 and "four"
    "number": float,
    "boolean": Annotated[StrictBool, BeforeValidator(_boolean)],
    "json": Annotated[Any, BeforeValidator(_json)],
}


@cache
def _adapter(kind: str) -> TypeAdapter[Any]:
    return TypeAdapter(TYPES[kind])


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
                raise InputMissing(f"scenario '{spec.id}' needs input '{name}': {decl.description or decl.type}", name)
            values[name] = (
                decl.default if decl.default is not None else ("" if decl.type in ("text", "string") else None)
            )
            continue
        values[name] = coerce(spec.id, name, decl.type, given[name])
    return values


def coerce(scenario: str, name: str, kind: str, value: Any) -> Any:
    try:
        return _adapter(kind).validate_python(value)
    except UnicodeEncodeError:
        raise InputInvalid(f"input '{name}' of scenario '{scenario}' is not valid text (broken Unicode)") from None
    except (ValidationError, ValueError) as e:
        raise InputInvalid(f"input '{name}' of scenario '{scenario}' must be {kind}, got {value!r:.60}") from e
