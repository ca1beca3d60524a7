"""Chat models for LLM steps: `ChatOpenAI` against any OpenAI-compatible endpoint.

Settings come from the environment (`DEW_LLM_*`, falling back to `OPENAI_*`), overridden by the
scenario and then by the step. With no endpoint configured at all, the embedded SmolLM2 server is
started on 127.0.0.1 and used through the very same ChatOpenAI path.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

from .endpoints import LOCAL, EndpointClass, classify
from .errors import EndpointBusy, LLMError, LLMNotConfigured
from .limits import WAIT_ENV, admitted, wait_limit

if TYPE_CHECKING:  # imported lazily: langchain is slow to import and most commands never call a model
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

    from .spec import LLMSpec

log = logging.getLogger("dew.llm")

DEFAULT_REMOTE_MODEL = "gpt-4o-mini"
OPENAI_ENDPOINT = "https://api.openai.com/v1"
EMBEDDED_MODEL = "SmolLM2-135M-Instruct.Q4_1"


@dataclass(frozen=True)
class LLMSettings:
    base_url: str | None  # None: OpenAI's own endpoint, or (embedded) the server not started yet
    model: str
    api_key: str | None
    temperature: float = 0.2
    max_tokens: int = 1024
    timeout: float = 120.0
    max_retries: int = 2
    embedded: bool = False
    extra_body: tuple[tuple[str, Any], ...] = ()  # further request fields the server understands
    endpoint: EndpointClass = LOCAL  # where the endpoint is, and what data it may receive

    def provenance(self) -> dict[str, Any]:
        """What the audit trail records about the model that drafted."""
        return {
            "model": self.model,
            "endpoint": self.base_url or OPENAI_ENDPOINT,
            "endpoint_class": self.endpoint.name,
            "clearance": self.endpoint.clearance,
            "embedded": self.embedded,
            "parameters": {"temperature": self.temperature, "max_tokens": self.max_tokens},
        }

    def describe(self) -> str:
        if self.embedded:
            return "embedded SmolLM2-135M-Instruct on 127.0.0.1 (no network; drafts are weak, guardians decide)"
        return f"{self.model} at {self.base_url or OPENAI_ENDPOINT}"


# The defaults differ by where the model runs: a remote endpoint answers fast and may be asked for
# more; the embedded 135M model on two cores is slow, so calls are shorter and wait longer. Its
# repeat penalty is llama-cpp-python's server default, which the measured pass rates were made with.
REMOTE_DEFAULTS = LLMSettings(base_url=None, model=DEFAULT_REMOTE_MODEL, api_key=None)
EMBEDDED_DEFAULTS = LLMSettings(
    base_url=None, model=EMBEDDED_MODEL, api_key=None, max_tokens=400, timeout=300.0, max_retries=1,
    embedded=True, extra_body=(("repeat_penalty", 1.1),),
)  # fmt: skip


def _env(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def settings_from_env(env: Mapping[str, str] | None = None, *overrides: LLMSpec | None) -> LLMSettings:
    """The settings for one call: environment, then the scenario's and the step's `llm:` blocks.

    With no endpoint named anywhere (no base URL, no API key) they describe the embedded model;
    its `base_url` is filled in once the server runs (`EnvModelProvider`).
    """
    env = os.environ if env is None else env
    specs = [o for o in overrides if o is not None]
    base_url = next((o.base_url for o in reversed(specs) if o.base_url), None) or _env(
        env, "DEW_LLM_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_BASE"
    )
    api_key = _env(env, "DEW_LLM_API_KEY", "OPENAI_API_KEY")
    defaults = EMBEDDED_DEFAULTS if base_url is None and api_key is None else REMOTE_DEFAULTS
    model: str | None = defaults.model
    if not defaults.embedded:  # the embedded server serves one model, whatever is asked for
        model = next((o.model for o in reversed(specs) if o.model), None) or _env(env, "DEW_LLM_MODEL", "OPENAI_MODEL")
    temperature = _number(env, "DEW_LLM_TEMPERATURE", defaults.temperature, float)
    max_tokens = _number(env, "DEW_LLM_MAX_TOKENS", defaults.max_tokens, int)
    for o in specs:
        temperature = o.temperature if o.temperature is not None else temperature
        max_tokens = o.max_tokens or max_tokens
    return replace(
        defaults,
        base_url=base_url,
        model=model or defaults.model,
        api_key=api_key,
        temperature=temperature,
        max_tokens=max_tokens,
        timeout=_number(env, "DEW_LLM_TIMEOUT", defaults.timeout, float),
        max_retries=_number(env, "DEW_LLM_MAX_RETRIES", defaults.max_retries, int),
        endpoint=classify(base_url, embedded=defaults.embedded, env=env),
    )


def _number(env: Mapping[str, str], name: str, default: Any, kind: type) -> Any:
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
        extra_body={"max_tokens": settings.max_tokens, **dict(settings.extra_body)},
    )


class ModelProvider(Protocol):
    """Gives an LLM step its chat model and the provenance to record for it."""

    def get(self, *overrides: LLMSpec | None) -> tuple[BaseChatModel, dict[str, Any]]: ...

    def describe(self, *overrides: LLMSpec | None) -> dict[str, Any]:
        """The provenance `get` would give, without starting or building anything."""
        ...


@dataclass
class EnvModelProvider:
    """The production provider: environment settings, or the embedded server when none are set."""

    env: Mapping[str, str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cache: dict = field(default_factory=dict)

    def get(self, *overrides: LLMSpec | None) -> tuple[BaseChatModel, dict[str, Any]]:
        settings = settings_from_env(self.env, *overrides)
        if settings.embedded:
            from .localserver import shared_server

            settings = replace(settings, base_url=shared_server().base_url)
        with self._lock:
            model = self._cache.get(settings)
            if model is None:
                model = self._cache[settings] = chat_model(settings)
        return model, settings.provenance()

    def describe(self, *overrides: LLMSpec | None) -> dict[str, Any]:
        return settings_from_env(self.env, *overrides).provenance()


def call(model, messages: list[BaseMessage], where: str, provenance: dict):
    """Call the model once (the client itself retries transport errors); return its message. The
    call waits its turn within the endpoint's limits (limits.py) first, and waits again, rather than
    failing, while the endpoint answers that it is saturated (`saturated`): back-pressure from an
    endpoint whose limits nobody declared, or that other clients share, up to DEW_LLM_QUEUE_TIMEOUT."""
    characters = sum(len(str(m.content)) for m in messages)
    max_tokens = int((provenance.get("parameters") or {}).get("max_tokens") or 0)
    endpoint = provenance.get("endpoint")
    deadline = time.monotonic() + wait_limit()  # for every attempt together
    waits = 0
    busy: Exception | None = None  # the endpoint's last "saturated" answer
    while True:
        pause: float | None = None
        try:
            with admitted(endpoint, characters, max_tokens, deadline) as used:
                try:
                    reply = model.invoke(messages)
                except Exception as e:  # the client raises many types: connection, timeout, HTTP status, parse
                    pause = saturated(e, waits)
                    if pause is None:
                        raise LLMError(f"{where}: the model endpoint {endpoint} failed: {_describe(e)}") from e
                    used[0] = 0  # refused: the endpoint used no tokens on it
                    busy = e
                    if time.monotonic() + pause > deadline:
                        raise _stayed_saturated(where, endpoint, e) from e
                else:
                    usage = getattr(reply, "usage_metadata", None) or {}
                    used[0] = usage.get("total_tokens")
                    return reply
        except EndpointBusy as e:  # no turn before the deadline, after the endpoint had said it was busy
            if busy is None:
                raise EndpointBusy(f"{where}: {e.message}") from e
            raise _stayed_saturated(where, endpoint, busy) from e
        except LLMError as e:
            if e.message.startswith(f"{where}: "):
                raise
            raise LLMError(f"{where}: {e.message}") from e
        # Out of the endpoint's slot while waiting: a saturated endpoint is no reason to hold one.
        log.info("model endpoint saturated; waiting", extra={"endpoint": endpoint, "seconds": round(pause, 1)})
        time.sleep(pause)
        waits += 1


def _stayed_saturated(where: str, endpoint: str | None, e: Exception) -> LLMError:
    return LLMError(
        f"{where}: the model endpoint {endpoint} stayed saturated longer than {WAIT_ENV} allows: {_describe(e)}"
    )


def saturated(e: Exception, waits: int) -> float | None:
    """Seconds to wait before asking again if `e` says the endpoint is saturated — HTTP 429, or 503
    with a Retry-After — after the client's own retries; None for any other failure. The endpoint's
    Retry-After is followed (up to a minute); without one the wait doubles from a second to 30 s.
    A 429 for an exhausted quota is not waited for: it lasts until someone pays."""
    status = getattr(e, "status_code", None)
    if status not in (429, 503) or getattr(e, "code", None) == "insufficient_quota":
        return None
    response = getattr(e, "response", None)
    after = retry_after(getattr(response, "headers", None) or {})
    if after is None:
        if status == 503:
            return None  # a server error like any other: retried by the client, then reported
        after = min(2.0**waits, 30.0) * random.uniform(0.75, 1.0)
    return min(max(after, 0.1), 60.0)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """A Retry-After header's seconds (`retry-after-ms` first, as OpenAI's client reads it)."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            try:  # an HTTP date
                seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
            except (TypeError, ValueError):
                continue
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    return None


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
