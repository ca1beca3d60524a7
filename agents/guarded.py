"""One model call as dew makes it, whatever step makes it.

Before the call: the endpoint must be allowed the scenario's data class; material in the prompt is
fenced; personal data is replaced by the run's placeholders. After it: placeholders in the reply
are put back. What the model was sent and what it answered, as it saw them, go into the call's
provenance, so the guardian can see exactly what left the building.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from .endpoints import LOCAL, EndpointClass, admit, classify
from .llm import call, text_of
from .pseudonyms import Pseudonyms, for_run
from .spec import Scenario
from .templating import render_prompt, scenario_context
from .untrusted import Trusted, fence, fence_tag, fencer, role_note


def endpoint_of(prov: dict[str, Any]) -> EndpointClass:
    """The class a provider reports for its endpoint (or, if it says none, the class of its URL)."""
    name = prov.get("endpoint_class")
    if name == "local":
        return LOCAL
    if name in ("internal", "external"):
        return EndpointClass(name, prov.get("clearance") or "public", f"its provider classifies it {name}")
    return classify(prov.get("endpoint"), embedded=bool(prov.get("embedded")))


def admit_endpoint(who: str, data: str, prov: dict[str, Any]) -> None:
    """Refuse to send `who`'s data to the endpoint a provider's provenance describes."""
    admit(who, data, str(prov.get("endpoint")), endpoint_of(prov))


def _trusted(value: Any) -> Any:
    if isinstance(value, str):
        return Trusted(value)
    if isinstance(value, dict):
        return {k: _trusted(v) for k, v in value.items()}
    return value


@dataclass
class Guarded:
    """The guard of the model calls one step makes in one run."""

    spec: Scenario
    state: dict[str, Any]
    pseudonyms: Pseudonyms
    tag: str
    seen: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def open(cls, spec: Scenario, state: dict[str, Any]) -> Guarded:
        inputs = state.get("inputs", {})
        material = [inputs, state.get("outputs", {}), state.get("feedback", {})]
        policies = {name: spec.pii_of(name) for name in spec.inputs}
        return cls(spec, state, for_run(policies, spec.pii, inputs, state.get("pseudonyms") or {}), fence_tag(material))

    # -- building what is sent -------------------------------------------------------------------
    def context(self, **more: Any) -> dict[str, Any]:
        """What a prompt template sees: the run's values, with the scenario's own strings trusted."""
        ctx = scenario_context(
            self.spec,
            run=self.state.get("run", {}),
            inputs=self.state.get("inputs", {}),
            steps=self.state.get("outputs", {}),
            **more,
        )
        ctx["run"], ctx["scenario"] = _trusted(ctx["run"]), _trusted(ctx["scenario"])
        return ctx

    def render(self, source: str, ctx: dict[str, Any], *, where: str) -> str:
        return render_prompt(source, ctx, fencer(self.tag), where=where)

    def fence(self, text: str) -> str:
        return fence(text, self.tag)

    def system(self, role: str) -> SystemMessage:
        return SystemMessage(self.pseudonyms.hide(role + role_note(self.tag)))

    def user(self, text: str) -> HumanMessage:
        return HumanMessage(self.pseudonyms.hide(text))

    def tool_result(self, result: Any, tool_call_id: str) -> ToolMessage:
        text = self.fence(json.dumps(result, ensure_ascii=False))
        return ToolMessage(self.pseudonyms.hide(text), tool_call_id=tool_call_id)

    # -- the call ----------------------------------------------------------------------------------
    def call(self, model, messages: list[BaseMessage], where: str, prov: dict[str, Any]) -> AIMessage:
        """Send `messages` (already guarded) and return the reply as the model wrote it."""
        admit_endpoint(
            f"scenario '{self.spec.id}'", self.spec.data, prov
        )  # again at every call: the server's settings may change under a run
        reply = call(model, messages, where, prov)
        self.seen = [*(_seen(m) for m in messages), _seen(reply)]
        return reply

    def restore(self, text: str) -> str:
        return self.pseudonyms.restore(text)

    # -- what the step records -----------------------------------------------------------------------
    def record(self, prov: dict[str, Any]) -> dict[str, Any]:
        """What the call's provenance adds: the endpoint's class, and what the model saw."""
        return {
            "endpoint_class": endpoint_of(prov).name,
            "placeholders": len(self.pseudonyms.mapping),
            "seen": self.seen,
        }

    def update(self) -> dict[str, Any]:
        """The state update that keeps this call's new placeholders with the run."""
        return {"pseudonyms": dict(self.pseudonyms.added)} if self.pseudonyms.added else {}


def _seen(message: BaseMessage) -> dict[str, str]:
    role = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}.get(message.type, message.type)
    text = text_of(message)
    calls = getattr(message, "tool_calls", None) or []
    if calls:
        text += "".join(f"\n→ {c['name']}({json.dumps(c.get('args') or {}, ensure_ascii=False)})" for c in calls)
    return {"role": role, "text": text}
