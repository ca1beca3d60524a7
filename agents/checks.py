"""Deterministic checks a `check` step runs over a draft. Each returns a finding or None."""

from __future__ import annotations

import json
import re

import jsonschema

from .hidden import HIDDEN, visible
from .spec import Check


def hidden_characters(text: str) -> str | None:
    """A finding for the guardian when a draft holds characters they would not see."""
    found = HIDDEN.findall(text)
    if not found:
        return None
    kinds = ", ".join(sorted({visible(c) for c in found}))
    return (
        f"the draft contains {len(found)} invisible control character(s) ({kinds}); "
        "dew show displays them escaped: check what they hide before approving"
    )


def run_check(check: Check, output: str, call_tool=None) -> str | None:
    """The problem this check finds in `output`, phrased for both the drafter and the guardian.

    `call_tool(check, output)` runs a tool-backed rule and returns its list of problems."""
    if check.tool is not None:
        if call_tool is None:  # fail closed: a rule that cannot run must not pass
            raise ValueError(f"check uses tool '{check.tool}' but no tool runner was given")
        found = call_tool(check, output)
        problem = "; ".join(str(p) for p in found) if found else None
    else:
        problem = _problem(check, output)
    if problem and check.message:
        return f"{check.message} ({problem})"
    return problem


def _problem(check: Check, output: str) -> str | None:
    if check.contains is not None:
        missing = [s for s in check.contains if s not in output]
        return f"missing: {', '.join(missing)}" if missing else None
    if check.not_contains is not None:
        present = [s for s in check.not_contains if s in output]
        return f"must not contain: {', '.join(present)}" if present else None
    if check.min_chars is not None:
        return (
            f"too short: {len(output)} characters, at least {check.min_chars} needed"
            if len(output) < check.min_chars
            else None
        )
    if check.max_chars is not None:
        return (
            f"too long: {len(output)} characters, at most {check.max_chars} allowed"
            if len(output) > check.max_chars
            else None
        )
    if check.matches is not None:
        return None if re.search(check.matches, output, re.MULTILINE) else f"does not match /{check.matches}/"
    if check.json_schema is not None:
        return json_problem(output, check.json_schema)
    return None


def json_problem(text: str, schema: dict | None) -> str | None:
    """Why `text` is not a JSON document valid against `schema`, or None."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
    if schema is None:
        return None
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"JSON does not match the schema at {where}: {error.message}"
