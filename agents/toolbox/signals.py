"""Risk signals from facts: explicit rules, each signal tied to the fact that raised it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from ..tools import tool


class Rule(BaseModel):
    field: str
    op: Literal[">", ">=", "<", "<=", "==", "!=", "contains", "missing", "ratio_below"]
    value: Any = None
    of: str | None = None  # for ratio_below: field / of < value
    signal: str
    severity: Literal["high", "medium", "low"] = "medium"


def _fires(rule: Rule, facts: dict[str, Any]) -> tuple[bool, str]:
    if rule.op == "missing":
        return (facts.get(rule.field) in (None, "", [])), f"{rule.field} not given"
    if rule.field not in facts:
        return False, ""
    v = facts[rule.field]
    shown = f"{rule.field} = {v}"
    if rule.op == "ratio_below":
        base = facts.get(rule.of) if rule.of else None
        if not isinstance(v, (int, float)) or not isinstance(base, (int, float)) or base == 0:
            return False, ""
        ratio = v / base
        return ratio < rule.value, f"{rule.field} / {rule.of} = {v} / {base} = {ratio:.0%}"
    if rule.op == "contains":
        return str(rule.value) in str(v), shown
    if rule.op in ("==", "!="):
        return (v == rule.value) == (rule.op == "=="), shown
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False, ""
    return {">": v > rule.value, ">=": v >= rule.value, "<": v < rule.value, "<=": v <= rule.value}[rule.op], shown


@tool(model_args=("facts",))  # the rules are the scenario's: a model must not choose what counts as a risk
def risk_signals(facts: dict[str, Any], rules: list[Rule]) -> list[dict[str, Any]]:
    """Apply explicit rules to a company's facts; each signal names the rule and the fact that
    raised it, most severe first. Nothing is inferred beyond the rules."""
    order = {"high": 0, "medium": 1, "low": 2}
    out = []
    for rule in rules:
        rule = Rule.model_validate(rule) if isinstance(rule, dict) else rule
        fired, evidence = _fires(rule, facts)
        if fired:
            out.append({"signal": rule.signal, "severity": rule.severity, "fact": evidence, "field": rule.field})
    return sorted(out, key=lambda s: order[s["severity"]])
