"""How much a model endpoint may be asked: calls at once, requests and tokens per minute.

A model endpoint is shared by every run of every worker: an office's vLLM serves eight requests at
once, a public API allows so many requests and tokens a minute. The administrator says so with
`DEW_LLM_LIMITS`, entries separated by `;`, each an endpoint (`host` or `host:port`) and its limits:

    DEW_LLM_LIMITS="10.0.0.5:8000 concurrency=8 tpm=400000; api.deepseek.com rpm=60 tpm=100000"

Every model call passes through the process's `Gate` (`llm.call`): it waits for a free slot and
for room in the minute's budget — back-pressure, not an error — then tells the gate how many
tokens the reply really used. The gate is in-process by default; a `dew worker` installs one that
holds across every worker on the database (`guardians/throttle.py`).

"Per minute" means any sixty seconds, not each minute of the clock: with fixed minutes, `rpm`
calls at 10:00:59 and `rpm` more at 10:01:00 would both be admitted, twice the limit within two
seconds, which is what a provider's own limiter refuses. Both gates count usage per second and
admit a call only if the seconds of the last window, the current one included, leave room
(`span`): any WINDOW seconds then hold at most the limit, at the cost of one second (a steady
rate of 60/61 of the limit at most). Tokens are counted as an estimate when a call is admitted
and corrected by what the reply used: a reply longer than estimated can take a window past `tpm`
after the fact, and a single call larger than `tpm` is admitted alone, or it would never be.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from .errors import EndpointBusy, LLMNotConfigured

LIMITS_ENV = "DEW_LLM_LIMITS"
WAIT_ENV = "DEW_LLM_QUEUE_TIMEOUT"
DEFAULT_WAIT = 600.0  # seconds a call may wait for its endpoint before its run fails (retryable)
WINDOW = 60.0  # seconds: requests and tokens are limited within any window this long
BUCKET = 1  # seconds: usage is counted per second of the clock
KEYS = ("concurrency", "rpm", "tpm")


@dataclass(frozen=True)
class Limit:
    endpoint: str  # host or host:port, as declared
    concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None

    @property
    def rated(self) -> bool:
        return self.rpm is not None or self.tpm is not None


def parse(text: str | None) -> list[Limit]:
    """The administrator's limits; a mistake is refused naming the entry and what is wrong."""
    limits = []
    for raw in (text or "").split(";"):
        words = raw.split()
        if not words:
            continue
        endpoint, values = words[0].lower().rstrip("."), {}
        if "=" in endpoint or "/" in endpoint:
            raise LLMNotConfigured(f"{LIMITS_ENV}: '{raw.strip()}' must start with an endpoint (host or host:port)")
        for word in words[1:]:
            key, _, value = word.partition("=")
            if key not in KEYS:
                raise LLMNotConfigured(f"{LIMITS_ENV}: '{raw.strip()}': '{key}' is not a limit ({', '.join(KEYS)})")
            if not value.isdigit() or int(value) < 1:
                raise LLMNotConfigured(
                    f"{LIMITS_ENV}: '{raw.strip()}': {key} takes a whole number above 0, not '{value}'"
                )
            values[key] = int(value)
        if not values:
            raise LLMNotConfigured(f"{LIMITS_ENV}: '{raw.strip()}' names no limit ({', '.join(KEYS)})")
        limits.append(Limit(endpoint, **values))
    return limits


def limit_for(base_url: str | None, env: Mapping[str, str] | None = None) -> Limit | None:
    """The limits of the endpoint a call goes to: `host:port` first, then `host`."""
    env = os.environ if env is None else env
    declared = parse(env.get(LIMITS_ENV))
    if not declared or not base_url:
        return None
    parts = urlsplit(base_url)
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    for key in (f"{host}:{port}", host):
        for limit in declared:
            if limit.endpoint == key:
                return limit
    return None


def wait_limit(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    value = env.get(WAIT_ENV)
    try:
        return float(value) if value else DEFAULT_WAIT
    except ValueError:
        raise LLMNotConfigured(f"{WAIT_ENV} must be a number of seconds, not '{value}'") from None


def check_environment(env: Mapping[str, str] | None = None) -> None:
    """Refuse a mistake in DEW_LLM_LIMITS or DEW_LLM_QUEUE_TIMEOUT when a server or worker starts,
    rather than at every model call after it."""
    env = os.environ if env is None else env
    parse(env.get(LIMITS_ENV))
    wait_limit(env)


def span(window: float) -> int:
    """How many whole seconds before the current one a call's admission counts: any `window`
    seconds lie within the current second and the `span` before it."""
    return max(1, math.ceil(window / BUCKET)) * BUCKET


def second_of(now: float) -> int:
    """The start of the counting second `now` falls in."""
    return int(now // BUCKET) * BUCKET


def estimate(characters: int, max_tokens: int) -> int:
    """Tokens a call may use before it is made: the prompt at about two characters a token (Chinese
    is nearer one; English nearer four), plus all the reply may take. Corrected after the call."""
    return characters // 2 + max_tokens


class Gate(Protocol):
    """Admits model calls to their endpoint within its limits; while a call of higher priority
    waits for the same endpoint, one of lower priority does not go ahead of it."""

    def admit(self, limit: Limit, tokens: int, deadline: float, priority: int = 0) -> Ticket: ...

    def done(self, ticket: Ticket, used_tokens: int | None) -> None: ...


@dataclass
class Ticket:
    limit: Limit
    tokens: int  # the estimate counted on admission
    window: float | None = None  # the second it was counted in (by its gate's clock), where corrected
    slot: object = None  # what holds its place among the concurrent calls


class LocalGate:
    """Limits within this process: a semaphore per endpoint and a count per second."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock  # in one process: a clock that never steps back, whatever the wall clock does
        self._lock = threading.Condition()
        self._busy: dict[str, int] = {}
        self._used: dict[str, dict[int, list[int]]] = {}  # endpoint -> second -> [requests, tokens]
        self._waiting: dict[str, Counter[int]] = {}  # endpoint -> priority -> calls asking now

    def admit(self, limit: Limit, tokens: int, deadline: float, priority: int = 0) -> Ticket:
        with self._lock:
            asking = self._waiting.setdefault(limit.endpoint, Counter())
            asking[priority] += 1
            try:
                return self._admit(limit, tokens, deadline, priority, asking)
            finally:
                asking[priority] -= 1
                self._lock.notify_all()  # the next in line may be of lower priority

    def _admit(self, limit: Limit, tokens: int, deadline: float, priority: int, asking: Counter[int]) -> Ticket:
        while True:
            now = self._clock()
            second, back = second_of(now), span(WINDOW)
            seconds = self._used.setdefault(limit.endpoint, {})
            for past in [s for s in seconds if s < second - back]:  # out of every window from now on
                del seconds[past]
            requests = sum(used[0] for used in seconds.values())
            spent = sum(used[1] for used in seconds.values())
            room = (limit.rpm is None or requests + 1 <= limit.rpm) and (
                limit.tpm is None or spent == 0 or spent + tokens <= limit.tpm
            )
            free = limit.concurrency is None or self._busy.get(limit.endpoint, 0) < limit.concurrency
            first = not any(n for p, n in asking.items() if p > priority)  # nobody more urgent asks
            if room and free and first:
                used = seconds.setdefault(second, [0, 0])
                used[0] += 1
                used[1] += tokens
                self._busy[limit.endpoint] = self._busy.get(limit.endpoint, 0) + 1
                return Ticket(limit, tokens, window=second)
            left = deadline - time.monotonic()
            if left <= 0:
                raise waited_too_long(limit)
            # A slot frees, or a call ahead is admitted, with a notify; room comes when the oldest
            # counted second leaves the window.
            if not room:
                left = min(left, max(min(seconds, default=second) + back + BUCKET - now, 0.01))
            self._lock.wait(left)

    def done(self, ticket: Ticket, used_tokens: int | None) -> None:
        with self._lock:
            self._busy[ticket.limit.endpoint] -= 1
            used = self._used.get(ticket.limit.endpoint, {}).get(int(ticket.window or 0))
            if used is not None and used_tokens is not None:
                used[1] += used_tokens - ticket.tokens
            self._lock.notify_all()


def waited_too_long(limit: Limit) -> EndpointBusy:
    return EndpointBusy(
        f"the model endpoint {limit.endpoint} stayed at its limits ({describe(limit)}) longer than "
        f"{WAIT_ENV} allows; nothing was sent"
    )


def describe(limit: Limit) -> str:
    return ", ".join(f"{k} {getattr(limit, k)}" for k in KEYS if getattr(limit, k) is not None)


_gate: Gate = LocalGate()

# How urgent the model calls made in this context are: the run's priority (models.PRIORITIES), set
# by whoever executes the run. LangGraph runs a step's node with the context of the call that
# started the graph, so it reaches every model call of the run.
_priority: ContextVar[int] = ContextVar("dew_call_priority", default=0)


@contextmanager
def priority(level: int) -> Iterator[None]:
    token = _priority.set(level)
    try:
        yield
    finally:
        _priority.reset(token)


def install(gate: Gate) -> Gate:
    """Make `gate` the process's gate (a worker's holds across workers); returns the one before."""
    global _gate
    before, _gate = _gate, gate
    return before


@contextmanager
def admitted(
    base_url: str | None, characters: int, max_tokens: int, deadline: float | None = None
) -> Iterator[list[int | None]]:
    """Hold a place for one model call within its endpoint's limits, waiting until `deadline` (by
    default DEW_LLM_QUEUE_TIMEOUT from now) at most. The caller puts the tokens the reply used into
    the yielded list, so the count is corrected (0 for a request the endpoint refused)."""
    limit = limit_for(base_url)
    used: list[int | None] = [None]
    if limit is None:
        yield used
        return
    gate = _gate
    if deadline is None:
        deadline = time.monotonic() + wait_limit()
    ticket = gate.admit(limit, estimate(characters, max_tokens), deadline, _priority.get())
    try:
        yield used
    finally:
        gate.done(ticket, used[0])
