"""Where a model endpoint is, and what data it may receive (数据不出域: data stays in its domain).

Every endpoint has a class:
- `local`: the embedded model, or any server on the loopback interface: nothing leaves the machine;
- `internal`: an endpoint the administrator declares to be inside the office's own network, with
  `DEW_LLM_INTERNAL` (host names, `host:port`, `.domain` suffixes or CIDR networks, comma-separated);
- `external`: anything else, including every endpoint on the internet.

A scenario declares its data class (`data: public | internal | sensitive`). What each endpoint
class may receive:

| endpoint class | may receive |
| --- | --- |
| local | public, internal, sensitive |
| internal | public, internal; sensitive only where the administrator cleared it (`host=sensitive`) |
| external | public |

A private address (10.x, 192.168.x) is not taken as internal by itself: a cloud VPC has them too.
Only the administrator's declaration makes an endpoint internal.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import EndpointRefused, LLMNotConfigured

DATA_CLASSES = ("public", "internal", "sensitive")
ENDPOINT_CLASSES = ("local", "internal", "external")
INTERNAL_ENV = "DEW_LLM_INTERNAL"
_RANK = {c: i for i, c in enumerate(DATA_CLASSES)}


@dataclass(frozen=True)
class EndpointClass:
    name: str  # local | internal | external
    clearance: str  # the highest data class it may receive
    why: str  # how it was classified, for refusals and `dew doctor`-style output

    def may_receive(self, data: str) -> bool:
        return _RANK[data] <= _RANK[self.clearance]


LOCAL = EndpointClass("local", "sensitive", "the embedded model, on this machine")


@dataclass(frozen=True)
class _Declared:
    host: str | None = None
    port: int | None = None
    suffix: str | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    clearance: str = "internal"
    text: str = ""

    def matches(self, host: str, port: int | None) -> bool:
        if self.network is not None:
            try:
                return ipaddress.ip_address(host) in self.network
            except ValueError:
                return False
        if self.suffix is not None:
            return host == self.suffix.lstrip(".") or host.endswith(self.suffix)
        return host == self.host and (self.port is None or self.port == port)


def declared(env: Mapping[str, str] | None = None) -> list[_Declared]:
    """The administrator's internal endpoints, from DEW_LLM_INTERNAL."""
    env = os.environ if env is None else env
    entries = []
    for raw in (env.get(INTERNAL_ENV) or "").split(","):
        text = raw.strip()
        if not text:
            continue
        entry, _, clearance = text.partition("=")
        clearance = clearance.strip() or "internal"
        if clearance not in ("internal", "sensitive"):
            raise LLMNotConfigured(
                f"{INTERNAL_ENV}: '{text}' may be cleared for 'internal' or 'sensitive' data, not '{clearance}'"
            )
        entry = entry.strip().lower()
        if "/" in entry:
            try:
                entries.append(
                    _Declared(network=ipaddress.ip_network(entry, strict=False), clearance=clearance, text=text)
                )
            except ValueError:
                raise LLMNotConfigured(f"{INTERNAL_ENV}: '{entry}' is not a network such as 10.20.0.0/16") from None
        elif entry.startswith("."):
            entries.append(_Declared(suffix=entry, clearance=clearance, text=text))
        else:
            host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            if port and not port.isdigit():
                raise LLMNotConfigured(f"{INTERNAL_ENV}: '{entry}' has a port that is not a number")
            entries.append(_Declared(host=host, port=int(port) if port else None, clearance=clearance, text=text))
    return entries


def classify(base_url: str | None, *, embedded: bool = False, env: Mapping[str, str] | None = None) -> EndpointClass:
    """The class of the endpoint at `base_url` (None: OpenAI's own, on the internet)."""
    if embedded:
        return LOCAL
    if not base_url:
        return EndpointClass("external", "public", "OpenAI's endpoint, on the internet")
    scheme, host, port = _where(base_url)
    direct = _by_host(host, port, env)
    proxy = _proxy_for(scheme, host, env)
    if proxy is None:
        return direct
    # Requests go through an HTTP proxy (HTTP_PROXY and the like, which the client honours): the
    # data reaches the proxy first, so the endpoint is no better placed than the proxy is.
    via = _by_host(*_where(proxy)[1:], env)
    worse = direct if _RANK[direct.clearance] <= _RANK[via.clearance] else via
    return EndpointClass(worse.name, worse.clearance, f"{worse.why}, reached through the proxy {shown(proxy)}")


def _where(url: str) -> tuple[str, str, int | None]:
    """Scheme, host (lower case) and port of a URL, read as the HTTP client reads it."""
    parts = urlsplit(url if "//" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


def _by_host(host: str, port: int | None, env: Mapping[str, str] | None) -> EndpointClass:
    if host == "localhost" or _loopback(host):
        return EndpointClass("local", "sensitive", f"{host} is this machine's loopback interface")
    for entry in declared(env):
        if entry.matches(host, port):
            return EndpointClass("internal", entry.clearance, f"declared internal by {INTERNAL_ENV} ({entry.text})")
    return EndpointClass("external", "public", f"{host} is not declared internal ({INTERNAL_ENV})")


def _proxy_for(scheme: str, host: str, env: Mapping[str, str] | None) -> str | None:
    """The proxy the HTTP client would send this request through, from the environment."""
    env = os.environ if env is None else env
    lowered = {k.lower(): v for k, v in env.items() if k.lower().endswith("_proxy") and v}
    proxy = lowered.get(f"{scheme}_proxy") or lowered.get("all_proxy")
    if not proxy:
        return None
    for rule in (lowered.get("no_proxy") or "").split(","):
        rule = rule.strip().lower().lstrip("*")
        if rule == "*" or (rule and (host == rule.lstrip(".") or host.endswith("." + rule.lstrip(".")))):
            return None
    return proxy


def shown(url: str) -> str:
    """An endpoint's URL as messages and the trail may show it: no credentials, no query."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return url.split("?")[0].split("@")[-1]
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def admit(who: str, data: str, endpoint: str, cls: EndpointClass) -> None:
    """Refuse to send `who`'s data ("scenario 'x'") to an endpoint whose class may not receive it."""
    if cls.may_receive(data):
        return
    allowed = [c for c in DATA_CLASSES if _RANK[c] <= _RANK[cls.clearance]]
    raise EndpointRefused(
        f"{who} handles {data} data, which may not be sent to {shown(endpoint)}: it is an {cls.name} "
        f"endpoint ({cls.why}), and an {cls.name} endpoint may receive only {' and '.join(allowed)} data. "
        f"Use a local endpoint or one your administrator declares internal ({INTERNAL_ENV}"
        f"{'=host=sensitive' if data == 'sensitive' else ''})."
    )
