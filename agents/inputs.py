"""Check and coerce the inputs a requester gives a run against the scenario's declared inputs.

Each declared input type is a pydantic type, so inputs are validated by the same machinery as
tool arguments: one way of saying what a value must be, and one kind of error message. Beyond the
type, every value is held to rules that keep it from doing harm downstream, the same on every
database: no NUL (PostgreSQL cannot store it, and its refusal would quote the value), a `string`
is one line (a newline in a place name must not forge a line of a work order), and no value is
longer than its limit (a 10 MB "transcript" is copied into every checkpoint of a run).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Annotated, Any

from pydantic import BeforeValidator, StrictBool, TypeAdapter, ValidationError

from .errors import InputInvalid, InputMissing, PersonalDataRefused
from .pseudonyms import describe, strings_in
from .recognisers import find
from .spec import Scenario

_TRUE = {"true", "yes", "1", "on", "是"}
_FALSE = {"false", "no", "0", "off", "否"}


LIMITS = {"string": 1_000, "text": 200_000, "json": 1_000_000}  # characters; `max_chars` overrides


def _text(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # a number given for a text input is its text (`-i case_no=42`)
    if isinstance(value, str):
        value.encode("utf-8")  # a lone surrogate (broken Unicode) cannot be stored or sent
    return value


def _no_nul(text: str) -> None:
    if "\x00" in text:
        raise ValueError("holds a NUL character (\\x00), which no text may hold")


def _one_line(text: str) -> None:
    # Every separator str.splitlines() honours, not only \n: \r, \v, \f, \x1c-\x1e, \x85, U+2028/9.
    if len(f"x{text}x".splitlines()) > 1:
        raise ValueError("is a single-line value and may not contain a line break")


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
        values[name] = coerce(spec.id, name, decl.type, given[name], max_chars=decl.max_chars)
        if spec.pii_of(name) == "refuse":
            _refuse_personal_data(spec.id, name, values[name])
    return values


def _refuse_personal_data(scenario: str, name: str, value: Any) -> None:
    found = [f.kind for text in strings_in(value) for f in find(text)]
    if found:  # the refusal names what was found, never the value: it is shown and may be logged
        raise PersonalDataRefused(
            f"input '{name}' of scenario '{scenario}' holds {describe(found)}, and this scenario takes no personal "
            "data there (pii: refuse): remove it and ask again"
        )


def coerce(scenario: str, name: str, kind: str, value: Any, *, max_chars: int | None = None) -> Any:
    where = f"input '{name}' of scenario '{scenario}'"
    try:
        coerced = _adapter(kind).validate_python(value)
    except UnicodeEncodeError:
        raise InputInvalid(f"{where} is not valid text (broken Unicode)") from None
    except (ValidationError, ValueError) as e:
        raise InputInvalid(f"{where} must be {kind}, got {value!r:.60}") from e
    text = coerced if isinstance(coerced, str) else json.dumps(coerced, ensure_ascii=False) if kind == "json" else None
    if text is not None:
        try:
            text.encode("utf-8")  # a lone surrogate inside JSON: not text, cannot be stored or sent
        except UnicodeEncodeError:
            raise InputInvalid(f"{where} is not valid text (broken Unicode)") from None
        limit = max_chars or LIMITS.get(kind, LIMITS["text"])
        if len(text) > limit:
            raise InputInvalid(
                f"{where} is {len(text):,} characters long; the limit is {limit:,} (the scenario may raise it with max_chars)"
            )
        try:
            _no_nul(text)
            if kind == "string":
                _one_line(text)
        except ValueError as e:
            raise InputInvalid(f"{where} {e}") from None
    return coerced
