"""The LLM path over real HTTP: settings, request shape, and endpoint failures."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from langchain_core.messages import HumanMessage
from sqlmodel import select

from dew.agents.errors import LLMError
from dew.agents.llm import EnvModelProvider, invoke, retry_after, saturated, settings_from_env
from dew.agents.spec import LLMSpec
from dew.guardians import audit
from dew.guardians.db import transaction
from dew.guardians.flow import retry_run
from dew.guardians.runs import start_run

DRILL = {"facility_type": "warehouse", "hazard": "fire", "participants": "Shift team", "duration_minutes": 20}


def test_nothing_configured_means_the_embedded_model_with_its_own_defaults():
    s = settings_from_env({})
    assert s.embedded and s.base_url is None and s.model == "SmolLM2-135M-Instruct.Q4_1"
    assert (s.max_tokens, s.timeout, s.max_retries) == (400, 300.0, 1)
    assert dict(s.extra_body) == {"repeat_penalty": 1.1}
    # one path for every setting: the environment tunes the embedded model too
    assert settings_from_env({"DEW_LLM_MAX_TOKENS": "50", "DEW_LLM_MAX_RETRIES": "0"}).max_tokens == 50
    # a scenario that names an endpoint is not embedded, whatever the environment says
    assert not settings_from_env({}, LLMSpec(base_url="http://10.0.0.5:8000/v1", model="m")).embedded


def test_dew_variables_win_over_openai_ones_and_scenario_overrides_win_over_both():
    env = {
        "OPENAI_BASE_URL": "http://openai.example/v1",
        "OPENAI_API_KEY": "sk-o",
        "OPENAI_MODEL": "gpt-x",
        "DEW_LLM_BASE_URL": "http://vllm.internal:8000/v1",
        "DEW_LLM_MODEL": "deepseek-v3",
    }
    s = settings_from_env(env)
    assert (s.base_url, s.model, s.api_key) == ("http://vllm.internal:8000/v1", "deepseek-v3", "sk-o")
    s = settings_from_env(env, LLMSpec(model="deepseek-r1", max_tokens=99), LLMSpec(temperature=0.9))
    assert (s.model, s.max_tokens, s.temperature) == ("deepseek-r1", 99, 0.9)
    assert settings_from_env({"OPENAI_API_KEY": "sk"}).base_url is None  # OpenAI's own endpoint


def _provider(fake, **extra):
    return EnvModelProvider(
        env={
            "DEW_LLM_BASE_URL": fake.url,
            "DEW_LLM_MODEL": "deepseek-chat",
            "DEW_LLM_MAX_RETRIES": "1",
            "DEW_LLM_TIMEOUT": "5",
            **extra,
        }
    )


def test_requests_carry_model_and_max_tokens(fake_llm):
    model, prov = _provider(fake_llm, DEW_LLM_MAX_TOKENS="123").get()
    assert invoke(model, [HumanMessage("hi")], "test", prov).startswith("1. First point")
    body = fake_llm.requests[-1]
    assert body["model"] == "deepseek-chat" and body["max_tokens"] == 123
    assert prov == {"model": "deepseek-chat", "endpoint": fake_llm.url, "endpoint_class": "local",
                    "clearance": "sensitive", "embedded": False,
                    "parameters": {"temperature": 0.2, "max_tokens": 123}}  # fmt: skip


def test_server_errors_are_retried_then_reported(fake_llm):
    model, prov = _provider(fake_llm).get()
    fake_llm.fail(500, times=1)
    assert invoke(model, [HumanMessage("hi")], "test", prov)  # one retry rides out one 500
    fake_llm.fail(503, times=5)
    with pytest.raises(LLMError, match=r"failed: .*Error code: 503 - scripted 503"):
        invoke(model, [HumanMessage("hi")], "step 'x'", prov)
    assert len(fake_llm.requests) == 2 + 2


def test_a_saturated_endpoint_is_waited_for_not_failed(fake_llm):
    """429 (or 503 with a Retry-After) says the endpoint is busy: back-pressure, after the
    client's own retries, as long as DEW_LLM_QUEUE_TIMEOUT allows."""
    model, prov = _provider(fake_llm, DEW_LLM_MAX_RETRIES="0").get()
    fake_llm.busy(times=3, retry_after="0.1")
    fake_llm.busy(status=503, retry_after="0.1")
    assert invoke(model, [HumanMessage("hi")], "test", prov).startswith("1. First point")
    assert len(fake_llm.requests) == 5
    fake_llm.busy()  # no Retry-After: a second, then doubling
    assert invoke(model, [HumanMessage("hi")], "test", prov)
    assert len(fake_llm.requests) == 7


def test_a_spent_quota_or_a_plain_503_is_reported_at_once(fake_llm):
    model, prov = _provider(fake_llm, DEW_LLM_MAX_RETRIES="0").get()
    fake_llm.busy(code="insufficient_quota", retry_after="0.1")  # lasts until someone pays
    with pytest.raises(LLMError, match=r"test: the model endpoint .* failed: \w*RateLimitError: Error code: 429"):
        invoke(model, [HumanMessage("hi")], "test", prov)
    fake_llm.busy(status=503)  # no Retry-After: a server error like any other
    with pytest.raises(LLMError, match=r"failed: \w*Error: Error code: 503"):
        invoke(model, [HumanMessage("hi")], "test", prov)
    assert len(fake_llm.requests) == 2


def test_an_endpoint_saturated_past_the_queue_timeout_fails_the_call(fake_llm, monkeypatch):
    monkeypatch.setenv("DEW_LLM_QUEUE_TIMEOUT", "1.5")
    model, prov = _provider(fake_llm, DEW_LLM_MAX_RETRIES="0").get()
    fake_llm.busy(times=5, retry_after="1")
    with pytest.raises(LLMError) as raised:
        invoke(model, [HumanMessage("hi")], "step 'x'", prov)
    assert raised.value.message.startswith(
        f"step 'x': the model endpoint {fake_llm.url} stayed saturated longer than DEW_LLM_QUEUE_TIMEOUT allows: "
    ) and raised.value.message.endswith("RateLimitError: Error code: 429 - scripted 429: slow down")
    assert len(fake_llm.requests) == 2  # asked at once, and once more a second later: a third would be past 1.5 s


def test_a_call_waiting_on_a_saturated_endpoint_gives_its_slot_to_another(fake_llm, monkeypatch):
    from dew.agents import limits

    host = fake_llm.url.split("//")[1].split("/")[0]
    monkeypatch.setenv("DEW_LLM_LIMITS", f"{host} concurrency=1")
    before = limits.install(limits.LocalGate())
    try:
        model, prov = _provider(fake_llm, DEW_LLM_MAX_RETRIES="0").get()
        fake_llm.busy(retry_after="1")
        first = threading.Thread(target=invoke, args=(model, [HumanMessage("alpha")], "test", prov))
        first.start()
        while not fake_llm.requests:
            time.sleep(0.01)
        assert invoke(model, [HumanMessage("beta")], "test", prov)  # while the first one waits
        first.join(10)
    finally:
        limits.install(before)
    asked = [r["messages"][-1]["content"] for r in fake_llm.requests]
    assert asked == ["alpha", "beta", "alpha"] and fake_llm.max_in_flight == 1


def test_waiting_on_a_saturated_endpoint_and_then_on_its_limits_share_one_deadline(fake_llm, monkeypatch):
    """After a 429 the call waits for its turn again, within what is left of DEW_LLM_QUEUE_TIMEOUT,
    and if that runs out it says the endpoint stayed saturated (a request was sent), not that
    nothing was; the refused request is counted with the tokens it used: none."""
    from dew.agents import limits

    host = fake_llm.url.split("//")[1].split("/")[0]
    monkeypatch.setenv("DEW_LLM_LIMITS", f"{host} concurrency=1")
    monkeypatch.setenv("DEW_LLM_QUEUE_TIMEOUT", "1.5")
    corrected: list[int | None] = []

    class Noting(limits.LocalGate):
        def done(self, ticket, used_tokens):
            corrected.append(used_tokens)
            super().done(ticket, used_tokens)

    gate = Noting()
    before = limits.install(gate)
    errors: list[LLMError] = []

    def one():
        try:
            invoke(model, [HumanMessage("hi")], "test", prov)
        except LLMError as e:
            errors.append(e)

    try:
        model, prov = _provider(fake_llm, DEW_LLM_MAX_RETRIES="0").get()
        fake_llm.busy(retry_after="0.5")
        caller = threading.Thread(target=one)
        caller.start()
        while not fake_llm.requests:
            time.sleep(0.01)
        held = gate.admit(limits.Limit(host, concurrency=1), 1, time.monotonic() + 5)  # the slot, while it waits
        caller.join(10)
        limits.LocalGate.done(gate, held, None)
    finally:
        limits.install(before)
    assert corrected == [0] and len(fake_llm.requests) == 1
    assert len(errors) == 1 and "stayed saturated longer than DEW_LLM_QUEUE_TIMEOUT allows" in errors[0].message


def test_a_saturated_answer_is_waited_for_as_long_as_it_asks():
    class Busy(Exception):
        def __init__(self, status: int, headers: dict[str, str], code: str | None = None):
            self.status_code, self.code = status, code
            self.response = type("Response", (), {"headers": headers})()

    assert saturated(Busy(429, {"retry-after": "0.4"}), 0) == 0.4
    assert saturated(Busy(503, {"retry-after": "3"}), 5) == 3.0
    assert saturated(Busy(429, {"retry-after": "600"}), 0) == 60.0  # at most a minute at a time
    assert 0.75 <= saturated(Busy(429, {}), 0) <= 1.0 and 22.5 <= saturated(Busy(429, {}), 9) <= 30.0
    assert saturated(Busy(429, {"retry-after": "1"}, code="insufficient_quota"), 0) is None
    assert saturated(Busy(503, {}), 0) is None and saturated(Busy(500, {"retry-after": "1"}), 0) is None
    assert saturated(ValueError("parse"), 0) is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date long past: at once
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_as_openai_sends_it(headers, seconds):
    assert retry_after(headers) == seconds


def test_a_run_rides_out_a_saturated_endpoint(make_workspace, fake_llm):
    env = {"DEW_LLM_BASE_URL": fake_llm.url, "DEW_LLM_MODEL": "fake", "DEW_LLM_MAX_RETRIES": "0"}
    ws = make_workspace(provider=EnvModelProvider(env=env))
    fake_llm.busy(times=3, retry_after="0.1")
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    assert r.run.status == "awaiting_decision" and r.item is not None, r.run.error


def test_a_timeout_is_reported(fake_llm):
    model, prov = _provider(fake_llm, DEW_LLM_TIMEOUT="0.5", DEW_LLM_MAX_RETRIES="0").get()
    fake_llm.hang(3)
    with pytest.raises(LLMError, match="Timeout"):
        invoke(model, [HumanMessage("hi")], "test", prov)


def test_a_refused_connection_is_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    provider = EnvModelProvider(env={"DEW_LLM_BASE_URL": f"http://127.0.0.1:{port}/v1", "DEW_LLM_MAX_RETRIES": "0"})
    model, prov = provider.get()
    with pytest.raises(LLMError, match="Connection error"):
        invoke(model, [HumanMessage("hi")], "test", prov)


def test_an_outage_fails_the_run_and_retry_finishes_it_over_http(make_workspace, fake_llm):
    ws = make_workspace(provider=_provider(fake_llm, DEW_LLM_MAX_RETRIES="0"))
    fake_llm.fail(500, times=1)
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    assert r.run.status == "failed" and "Error code: 500" in r.run.error and r.item is None
    again = retry_run(ws, r.run.id, actor="alice")
    assert again.item is not None and again.item.provenance[0]["endpoint"] == fake_llm.url
    assert again.item.provenance[0]["model"] == "deepseek-chat"


# Every fault an endpoint can produce fails the run with a reason and leaves nothing queued or
# released; transport faults are retried within DEW_LLM_MAX_RETRIES first; a retry of the run, once
# the endpoint is well again, finishes it.
NO_CONTENT = json.dumps({
    "id": "x", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None}}],
})  # fmt: skip
FAULTS = {
    "refused connection": None,  # nothing listens: see the fixture below
    "server error": lambda f: f.fail(502, times=2),
    "time-out": lambda f: f.hang(3, times=2),
    "malformed JSON": lambda f: f.raw('{"id": "x", "choices": [', times=2),
    "not JSON at all": lambda f: f.raw("<html>Bad gateway</html>", times=2),
    "no choices": lambda f: f.raw('{"id": "x", "object": "chat.completion", "choices": []}', times=2),
    "no content": lambda f: f.raw(NO_CONTENT, times=6),  # the step asks again for a usable reply, then stops
    "cut off mid-reply": lambda f: f.cut(times=2),
    "spent quota": lambda f: f.busy(code="insufficient_quota", times=2),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_model_fault_fails_the_run_with_its_reason_and_releases_nothing(make_workspace, fake_llm, fault):
    from dew.guardians.models import Release, WorkItem

    url = fake_llm.url
    if fault == "refused connection":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    else:
        FAULTS[fault](fake_llm)
    env = {"DEW_LLM_BASE_URL": url, "DEW_LLM_MODEL": "fake", "DEW_LLM_MAX_RETRIES": "1", "DEW_LLM_TIMEOUT": "1"}
    ws = make_workspace(provider=EnvModelProvider(env=env))
    r = start_run(ws, "drill-script", DRILL, requester="alice")
    assert r.run.status == "failed" and r.item is None, fault
    assert r.run.error and "step 'injects'" in r.run.error, r.run.error
    with transaction(ws.engine) as s:
        assert s.exec(select(WorkItem)).all() == [] and s.exec(select(Release)).all() == []
        assert [e.kind for e in audit.events(s)][-1] == "run.failed"
    if fault != "refused connection":
        assert len(fake_llm.requests) <= 2 * 3  # the client's retries, and the step's own, are bounded
        fake_llm.script.clear()
        again = retry_run(ws, r.run.id, actor="alice")
        assert again.run.status == "awaiting_decision" and again.item is not None
