"""A scripted chat model and provider, for tests and benchmarks (never used by the CLI).

`ScriptedModelProvider(reply)` answers every LLM step with `reply(system, prompt)`, instantly and
without a network, and records every call so tests can assert on prompts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult

Reply = Callable[[str, str], str]


def default_reply(system: str, prompt: str) -> str:
    """Reviewers pass; drafters return a short numbered list that satisfies the shipped checks."""
    if "PASS, or REVISE" in system:
        return "PASS"
    return "1. First point, as stated. Expected: act on it.\n2. Second point, as stated. Expected: report it."


class ScriptedChatModel(BaseChatModel):
    reply: Any
    calls: Any = None  # the provider's list (typed Any so pydantic does not copy it)

    @property
    def _llm_type(self) -> str:
        return "dew-scripted"

    def bind_tools(self, tools, **kwargs):
        return self  # scripted replies decide themselves whether to "call" a tool

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs) -> ChatResult:
        system = "\n".join(str(m.content) for m in messages if isinstance(m, SystemMessage))
        prompt = "\n".join(str(m.content) for m in messages if isinstance(m, HumanMessage))
        self.calls.append({"system": system, "prompt": prompt, "messages": len(messages)})
        text = self.reply(system, prompt)
        if isinstance(text, BaseException):
            raise text
        message = text if isinstance(text, AIMessage) else AIMessage(content=text)
        return ChatResult(generations=[ChatGeneration(message=message)])


@dataclass
class ScriptedModelProvider:
    reply: Reply = default_reply
    model_name: str = "scripted"
    calls: list = field(default_factory=list)

    endpoint_class: str = "local"  # tests of the endpoint rule set another class
    clearance: str = "sensitive"

    def get(self, *overrides) -> tuple[BaseChatModel, dict[str, Any]]:
        model = ScriptedChatModel(reply=self.reply, calls=self.calls)
        return model, self.describe(*overrides)

    def describe(self, *overrides) -> dict[str, Any]:
        return {"model": self.model_name, "endpoint": "in-process", "endpoint_class": self.endpoint_class,
                "clearance": self.clearance, "embedded": False}  # fmt: skip


_FENCE = re.compile(r"⟦/?DATA [0-9a-f]{12}⟧\n?")


def unfenced(text: str) -> str:
    """A prompt without its data fences, for tests that look for the material itself."""
    return _FENCE.sub("", text)
