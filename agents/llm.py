"""Chat models for LLM steps: `ChatOpenAI` against any OpenAI-compatible endpoint.

Settings come from the environment (`DEW_LLM_*`, falling back to `OPENAI_*`), overridden by the
scenario and then by the step. With no endpoint configured at all, the embedded SmolLM2 server is
started on 127.0.0.1 and used through the very same ChatOpenAI path.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .errors import LLMError, LLMNotConfigured
from .spec import LLMSpec

if TYPE_CHECKING:  # imported lazily: langchain is slow to import and most commands never call a model
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

DEFAULT_REMOTE_MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class LLMSettings:
    base_url: str | None
    model: str
    api_key: str | None
    temperature: float = 0.2
    max_tokens: int = 1024
    timeout: float = 120.0
    max_retries: int = 2
    embedded: bool = False

    def provenance(self) -> dict[str, Any]:
        """What the audit trail records about the model that drafted."""
        return {
            "model": self.model,
            "endpoint": self.base_url or "https://api.openai.com/v1",
            "embedded": self.embedded,
        }


def _env(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def settings_from_env(env: Mapping[str, str] | None = None, *overrides: LLMSpec | None) -> LLMSettings | None:
    """The settings for one call, or None when nothing names an endpoint (use the embedded model)."""
    env = os.environ if env is None else env
    base_url = _env(env, "DEW_LLM_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_BASE")
    model = _env(env, "DEW_LLM_MODEL", "OPENAI_MODEL")
    api_key = _env(env, "DEW_LLM_API_KEY", "OPENAI_API_KEY")
    temperature = _number(env, "DEW_LLM_TEMPERATURE", 0.2, float)
    max_tokens = _number(env, "DEW_LLM_MAX_TOKENS", 1024, int)
    for o in overrides:
        if o is None:
            continue
        base_url = o.base_url or base_url
        model = o.model or model
        temperature = o.temperature if o.temperature is not None else temperature
        max_tokens = o.max_tokens or max_tokens
    if base_url is None and api_key is None:
        return None
    return LLMSettings(
        base_url=base_url,
        model=model or DEFAULT_REMOTE_MODEL,
        api_key=api_key,
        temperature=temperature,
        max_tokens=max_tokens,
        timeout=_number(env, "DEW_LLM_TIMEOUT", 120.0, float),
        max_retries=_number(env, "DEW_LLM_MAX_RETRIES", 2, int),
    )


def _number(env: Mapping[str, str], name: str, default, kind):
    value = _env(env, name)
    if value is None:
        return default
    try:
        number = kind(value)
    except ValueError:
        raise LLMNotConfigured(f"{name} must be a {'whole ' if kind is int else ''}number, not '{value}'") from None
    if number < 0:
        raise LLMNotConfigured(f"{name} cannot be negative, got {value}")
    return number


def chat_model(settings: LLMSettings) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=settings.model,
        base_url=settings.base_url,
        # The embedded server and most self-hosted ones ignore the key but the client wants one.
        api_key=settings.api_key or "not-needed",
        temperature=settings.temperature,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        # langchain-openai sends `max_completion_tokens`, which llama.cpp ignores (it would then
        # generate until the context is full); `max_tokens` is understood by every compatible server.
        extra_body={"max_tokens": settings.max_tokens},
    )


class ModelProvider(Protocol):
    """Gives an LLM step its chat model and the provenance to record for it."""

    def get(self, *overrides: LLMSpec | None) -> tuple[BaseChatModel, dict[str, Any]]: ...


@dataclass
class EnvModelProvider:
    """The production provider: environment settings, or the embedded server when none are set."""

    env: Mapping[str, str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cache: dict = field(default_factory=dict)

    def get(self, *overrides: LLMSpec | None) -> tuple[BaseChatModel, dict[str, Any]]:
        settings = settings_from_env(self.env, *overrides)
        if settings is None:
            from .localserver import shared_server

            server = shared_server()
            spec_tokens = [o.max_tokens for o in overrides if o is not None and o.max_tokens]
            env = os.environ if self.env is None else self.env
            settings = LLMSettings(
                base_url=server.base_url,
                model=server.model_name,
                api_key=None,
                temperature=next((o.temperature for o in reversed(overrides) if o and o.temperature is not None), 0.2),
                max_tokens=spec_tokens[-1] if spec_tokens else _number(env, "DEW_LLM_MAX_TOKENS", 400, int),
                timeout=_number(env, "DEW_LLM_TIMEOUT", 300.0, float),
                max_retries=1,
                embedded=True,
            )
        with self._lock:
            model = self._cache.get(settings)
            if model is None:
                model = self._cache[settings] = chat_model(settings)
        return model, settings.provenance()


def call(model, messages: list[BaseMessage], where: str, provenance: dict):
    """Call the model once (the client itself retries transport errors); return its message."""
    try:
        return model.invoke(messages)
    except Exception as e:  # the client raises many types: connection, timeout, HTTP status, parse
        raise LLMError(f"{where}: the model endpoint {provenance.get('endpoint')} failed: {_describe(e)}") from e


def invoke(model: BaseChatModel, messages: list[BaseMessage], where: str, provenance: dict) -> str:
    """Call the model once and return its text."""
    return text_of(call(model, messages, where, provenance))


def text_of(reply) -> str:
    content = reply.content
    if isinstance(content, list):  # content blocks
        content = "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content or "")


def _describe(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:300] if text else type(e).__name__
