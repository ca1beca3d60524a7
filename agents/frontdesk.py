"""The front desk: read a free-text request, pick the digital employee for it, extract its inputs.

Two stages, so a weak model cannot send a request anywhere absurd: a deterministic shortlist
ranks the catalogue by the words a request shares with each scenario's name, description and
inputs; the model then chooses among that shortlist (or NONE) and extracts the inputs. If the
model's answer is unusable, only a clear shortlist winner is taken. A request nothing matches is
reported as unroutable, never forced into a scenario.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage

from .compiler import extract_json
from .endpoints import DATA_CLASSES
from .errors import DewError
from .guarded import admit_endpoint
from .inputs import validate_inputs
from .llm import ModelProvider, invoke
from .loader import LoadedScenario
from .pseudonyms import Pseudonyms
from .ranking import BM25
from .untrusted import fence, fence_tag, role_note

MIN_SCORE = 1.5  # below this a shared word or two is chance (e.g. "Hello there" scores 1.1)


@dataclass
class Routing:
    request: str
    scenario: str | None
    inputs: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    reason: str = ""
    candidates: list[tuple[str, float]] = field(default_factory=list)
    decided_by: str = ""  # "model" | "shortlist" | "" (unroutable)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.scenario is not None and not self.missing


def _profile(loaded: LoadedScenario) -> str:
    """What a scenario is about: its name, description, inputs and sample inputs (the samples are
    the best description of the requests it usually gets)."""
    spec = loaded.spec
    parts = [spec.name, spec.description, *(f"{n} {i.description}" for n, i in spec.inputs.items())]
    for example in spec.examples:
        for value in example.inputs.values():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            parts.append(text[:400])
    return " ".join(parts)


def _stated(value: Any, request: str) -> bool:
    """Was this value actually said in the request? The model copies inputs; it must not invent them."""
    if isinstance(value, bool) or value is None:
        return False
    text = str(value).strip()
    return bool(text) and text in request


def shortlist(request: str, catalogue: dict[str, LoadedScenario], k: int = 3) -> list[tuple[str, float]]:
    """Scenarios ranked by BM25 over their profiles (rare shared words count more), best first."""
    ids = sorted(catalogue)
    index = BM25.index(_profile(catalogue[sid]) for sid in ids)
    return [(ids[m.index], round(m.score, 2)) for m in index.rank(request, min_score=MIN_SCORE)[:k]]


def route(request: str, catalogue: dict[str, LoadedScenario], provider: ModelProvider) -> Routing:
    request = request.strip()
    candidates = shortlist(request, catalogue)
    if not candidates:
        return Routing(request, None, reason="no digital employee's job matches this request", candidates=[])
    choice, inputs, decided_by, prov = _ask_model(request, candidates, catalogue, provider)
    if choice is None and decided_by == "model":
        return Routing(
            request,
            None,
            reason="the front desk judged that no digital employee handles this request",
            candidates=candidates,
            decided_by="model",
            provenance=prov,
        )
    if choice is None:  # the model's answer was unusable: take only a clear winner of the shortlist
        if len(candidates) == 1 or candidates[0][1] >= 2 * candidates[1][1]:
            choice, decided_by = candidates[0][0], "shortlist"
        else:
            names = " or ".join(catalogue[c].spec.name for c, _ in candidates[:2])
            return Routing(
                request,
                None,
                reason=f"unclear whether this is for {names}; say which with dew run",
                candidates=candidates,
                provenance=prov,
            )
    spec = catalogue[choice].spec
    inputs = {k: v for k, v in (inputs or {}).items() if k in spec.inputs and _stated(v, request)}
    required = [n for n, i in spec.inputs.items() if i.required]
    if len(required) == 1 and spec.inputs[required[0]].type == "text" and required[0] not in inputs:
        inputs[required[0]] = request  # the request itself is the one text this employee works on
    missing = [n for n, i in spec.inputs.items() if i.required and n not in inputs]
    if not missing:
        try:
            inputs = validate_inputs(spec, inputs)
        except DewError as e:
            return Routing(
                request,
                choice,
                inputs,
                reason=e.message,
                candidates=candidates,
                decided_by=decided_by,
                provenance=prov,
                missing=[e.message],
            )
    score = dict(candidates).get(choice, 0)
    others = ", ".join(f"{sid} {sc}" for sid, sc in candidates if sid != choice)
    reason = f"catalogue match score {score}" + (f" (others: {others})" if others else " (no other candidate)")
    return Routing(request, choice, inputs, missing, reason, candidates, decided_by, prov)


def _ask_model(request, candidates, catalogue, provider):
    lines = []
    for sid, _ in candidates:
        spec = catalogue[sid].spec
        ins = ", ".join(
            f"{n} ({i.type}{', required' if i.required else ''}): {i.description}" for n, i in spec.inputs.items()
        )
        lines.append(f"- {sid}: {spec.name}. {' '.join(spec.description.split())[:300]} Inputs: {ins}")
    system = (
        "You are the front desk of a city government's digital workforce. You pick which digital employee "
        "should handle a request, or NONE if none fits, and copy the values of its inputs from the request. "
        'Answer with one JSON object only: {"scenario": "<id or NONE>", "inputs": {"<name>": "<value>"}}'
    )
    # The request is a member of the public's words: fenced, its personal data pseudonymised, and
    # sent only to an endpoint that may receive the most sensitive data any candidate handles.
    tag = fence_tag(request)
    system += role_note(tag)
    prompt = f"Request:\n{fence(request, tag)}\n\nDigital employees:\n" + "\n".join(lines)
    data = max((catalogue[sid].spec.data for sid, _ in candidates), key=DATA_CLASSES.index)
    hidden = Pseudonyms()
    try:
        admit_endpoint("the front desk", data, provider.describe())
        model, prov = provider.get()
        said = invoke(
            model, [SystemMessage(hidden.hide(system)), HumanMessage(hidden.hide(prompt))], "front desk", prov
        )
    except DewError as e:
        return None, {}, "", {"error": e.message}
    reply = hidden.restore(said)
    try:
        answer = hidden.restore_value(json.loads(extract_json(said)))
    except json.JSONDecodeError:
        return None, {}, "", {**prov, "reply": reply[:300]}
    if not isinstance(answer, dict):
        return None, {}, "", {**prov, "reply": reply[:300]}
    scenario = str(answer.get("scenario") or "").strip()
    inputs = answer.get("inputs") if isinstance(answer.get("inputs"), dict) else {}
    if scenario.upper() == "NONE":
        return None, {}, "model", prov
    if scenario in dict(candidates):
        return scenario, inputs, "model", prov
    return None, {}, "", {**prov, "reply": reply[:300]}
