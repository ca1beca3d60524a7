"""Model endpoints are a shared, limited resource: calls at once and requests/tokens per minute
hold within a process (LocalGate) and across every worker on PostgreSQL (DbGate), by waiting
rather than failing."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from langchain_core.messages import HumanMessage

from dew.agents import limits
from dew.agents.checkpoints import postgres_conninfo
from dew.agents.errors import LLMError, LLMNotConfigured
from dew.agents.limits import Limit, LocalGate, limit_for, parse
from dew.agents.llm import EnvModelProvider, call
from dew.guardians import engine
from dew.guardians.db import upgrade
from dew.guardians.throttle import DbGate

from .conftest import _postgres_database
from .test_engine import Workers


# --- what the administrator writes ----------------------------------------------------------------
def test_limits_are_read_per_endpoint():
    text = "10.0.0.5:8000 concurrency=8 tpm=400000; api.deepseek.com rpm=60 tpm=100000"
    assert parse(text) == [
        Limit("10.0.0.5:8000", concurrency=8, tpm=400000),
        Limit("api.deepseek.com", rpm=60, tpm=100000),
    ]
    env = {"DEW_LLM_LIMITS": text}
    assert limit_for("http://10.0.0.5:8000/v1", env).concurrency == 8
    assert limit_for("http://10.0.0.5:9000/v1", env) is None  # another port, another server
    assert limit_for("https://api.deepseek.com/v1", env).rpm == 60  # host alone: any port
    assert limit_for("https://api.openai.com/v1", env) is None
    assert limit_for("http://10.0.0.5:8000/v1", {}) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("10.0.0.5 concurrency=0", "concurrency takes a whole number above 0, not '0'"),
        ("10.0.0.5 rpm=many", "rpm takes a whole number above 0, not 'many'"),
        ("10.0.0.5 burst=3", "'burst' is not a limit (concurrency, rpm, tpm)"),
        ("10.0.0.5", "'10.0.0.5' names no limit"),
        ("rpm=60", "must start with an endpoint"),
    ],
)
def test_a_wrong_limit_is_refused_naming_the_entry(text, says):
    with pytest.raises(LLMNotConfigured, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


# --- one process ------------------------------------------------------------------------------------
def _model(fake):
    env = {"DEW_LLM_BASE_URL": fake.url, "DEW_LLM_MODEL": "fake", "DEW_LLM_MAX_RETRIES": "0"}
    return EnvModelProvider(env=env).get()


def _calls(model, prov, n: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def one():
        try:
            call(model, [HumanMessage("Write one line.")], "test", prov)
        except BaseException as e:  # collected: the test asserts there were none
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


@pytest.fixture
def local_gate():
    before = limits.install(LocalGate())
    yield
    limits.install(before)


def test_calls_at_once_wait_for_a_free_slot(fake_llm, monkeypatch, local_gate):
    host = fake_llm.url.split("//")[1].split("/")[0]
    monkeypatch.setenv("DEW_LLM_LIMITS", f"{host} concurrency=2")
    fake_llm.latency = 0.3
    model, prov = _model(fake_llm)
    assert _calls(model, prov, 8) == []  # all eight answered: waiting, not refusing
    assert len(fake_llm.requests) == 8 and fake_llm.max_in_flight == 2


def test_requests_per_minute_wait_for_the_next_minute(fake_llm, monkeypatch, local_gate):
    host = fake_llm.url.split("//")[1].split("/")[0]
    monkeypatch.setenv("DEW_LLM_LIMITS", f"{host} rpm=2")
    monkeypatch.setattr(limits, "WINDOW", 1.0)  # a one-second "minute", so the test is short
    admitted: list[float | None] = []
    gate = LocalGate()
    real_admit = gate.admit

    def noting(limit, tokens, deadline):  # the window each call was counted in, by the gate's clock
        ticket = real_admit(limit, tokens, deadline)
        admitted.append(ticket.window)
        return ticket

    monkeypatch.setattr(gate, "admit", noting)
    limits.install(gate)
    model, prov = _model(fake_llm)
    assert _calls(model, prov, 5) == []
    # (Counted by the server's arrival clock instead, a call admitted at the very end of a second
    # could arrive in the next: the gate's own windows are what the limit promises.)
    per_window = Counter(admitted)
    assert len(fake_llm.requests) == 5 and sum(per_window.values()) == 5 and max(per_window.values()) <= 2


def test_a_call_that_waits_too_long_fails_without_sending(fake_llm, monkeypatch, local_gate):
    host = fake_llm.url.split("//")[1].split("/")[0]
    monkeypatch.setenv("DEW_LLM_LIMITS", f"{host} concurrency=1")
    monkeypatch.setenv("DEW_LLM_QUEUE_TIMEOUT", "0.5")
    fake_llm.latency = 2.0
    model, prov = _model(fake_llm)
    errors = _calls(model, prov, 2)
    assert len(errors) == 1 and isinstance(errors[0], LLMError)
    assert errors[0].message == (
        f"test: the model endpoint {host} stayed at its limits (concurrency 1) longer than "
        "DEW_LLM_QUEUE_TIMEOUT allows; nothing was sent"
    )
    assert len(fake_llm.requests) == 1


# --- across workers, on PostgreSQL ------------------------------------------------------------------
@pytest.fixture
def pg_settings(tmp_path):
    from dew.guardians.db import make_engine
    from dew.guardians.workspace import Settings

    for url in _postgres_database():
        settings = Settings(home=tmp_path, scenarios_dir=tmp_path, database_url=url, engine="procrastinate")
        db = make_engine(url)
        upgrade(db)
        db.dispose()
        yield settings


def _through(gates: list[DbGate], limit: Limit, n: int, hold: float) -> tuple[int, list[BaseException]]:
    """n calls spread over the gates (as over workers), each holding its place `hold` seconds;
    the most that were ever in at once."""
    inside = peak = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def one(gate: DbGate):
        nonlocal inside, peak
        try:
            ticket = gate.admit(limit, 100, time.monotonic() + 60)
        except BaseException as e:  # collected: the test asserts there were none
            errors.append(e)
            return
        with lock:
            inside += 1
            peak = max(peak, inside)
        time.sleep(hold)
        with lock:
            inside -= 1
        gate.done(ticket, 80)

    threads = [threading.Thread(target=one, args=(gates[i % len(gates)],)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return peak, errors


@pytest.mark.postgres
def test_calls_at_once_hold_across_workers(pg_settings):
    gates = [DbGate(pg_settings, max_connections=8) for _ in range(3)]  # three workers' connections
    try:
        peak, errors = _through(gates, Limit("llm.internal:8000", concurrency=3), n=12, hold=0.2)
    finally:
        for g in gates:
            g.close()
    assert errors == [] and peak == 3


@pytest.mark.postgres
def test_requests_and_tokens_per_minute_hold_across_workers(pg_settings):
    gates = [DbGate(pg_settings, max_connections=8, window=2) for _ in range(2)]
    try:
        _, errors = _through(gates, Limit("api.example.com", rpm=3, tpm=250), n=7, hold=0.0)
    finally:
        for g in gates:
            g.close()
    assert errors == []
    with psycopg.connect(postgres_conninfo(pg_settings.database_url)) as conn:
        rows = conn.execute("SELECT requests, tokens FROM endpoint_usage ORDER BY window_start").fetchall()
    # Each call was counted as 100 tokens and corrected to the 80 it used: 250 admits two a window.
    assert sum(r[0] for r in rows) == 7 and all(r[0] <= 2 for r in rows)
    assert all(r[1] == 80 * r[0] for r in rows)


@pytest.mark.postgres
def test_a_killed_worker_frees_its_slot(pg_settings):
    limit = Limit("llm.internal:8000", concurrency=1)
    dying = DbGate(pg_settings, max_connections=2)
    held = dying.admit(limit, 10, time.monotonic() + 5)  # holds the only slot, and never says done
    other = DbGate(pg_settings, max_connections=2)
    try:
        with pytest.raises(LLMError, match="stayed at its limits"):
            other.admit(limit, 10, time.monotonic() + 0.5)
        held.slot[0].close()  # its connection closes, as a killed process's does
        other.done(other.admit(limit, 10, time.monotonic() + 5), None)
    finally:
        other.close()
        dying.close()


@pytest.mark.postgres
def test_workers_keep_an_endpoint_within_its_limit_and_finish_every_run(engine_dew, tmp_path):
    from dew.agents.testing import ScriptedModelProvider
    from dew.guardians.db import transaction
    from dew.guardians.execution import Job, JobKind
    from dew.guardians.models import Run
    from dew.guardians.runs import request_run
    from dew.guardians.workspace import Settings, Workspace

    from .test_engine import DRILL

    host = engine_dew.fake.url.split("//")[1].split("/")[0]
    engine_dew.env["DEW_LLM_LIMITS"] = f"{host} concurrency=2"
    engine_dew.fake.latency = 0.3
    settings = Settings(home=Path(engine_dew.env["DEW_HOME"]), scenarios_dir=Path(engine_dew.env["DEW_SCENARIOS"]),
                        database_url=engine_dew.env["DEW_DATABASE_URL"], engine="procrastinate")  # fmt: skip
    ws = Workspace(settings, ScriptedModelProvider())
    workers = Workers(engine_dew.env, tmp_path / "logs")
    (tmp_path / "logs").mkdir()
    try:
        ids = []
        for _ in range(6):
            run = request_run(ws, "drill-script", DRILL, requester="officer.wu")
            engine.executor_for(settings).submit(Job(JobKind.START, run.key))
            ids.append(run.key)
        workers.start("--concurrency", "3")
        workers.start("--concurrency", "3")

        def settled() -> bool:
            with transaction(ws.engine) as s:
                return all(s.get(Run, i).status == "awaiting_decision" for i in ids)

        deadline = time.monotonic() + 120
        while not settled():
            assert time.monotonic() < deadline, "the runs did not finish"
            time.sleep(0.5)
    finally:
        workers.stop()
        ws.close()
    # Six runs on two workers, three at once each, and never more than two calls at the endpoint.
    assert engine_dew.fake.max_in_flight == 2 and len(engine_dew.fake.requests) >= 6


@pytest.fixture
def engine_dew(dew):
    for url in _postgres_database():
        dew.env.update(DEW_DATABASE_URL=url, DEW_ENGINE="procrastinate")
        yield dew
    engine._executors.clear()


@pytest.mark.postgres
def test_a_gate_out_of_connections_waits_its_turn_then_refuses_cleanly(pg_settings):
    gate = DbGate(pg_settings, max_connections=1)
    limit = Limit("llm.internal:8000", concurrency=8)
    try:
        held = gate.admit(limit, 10, time.monotonic() + 5)  # the pool's only connection, in flight
        with pytest.raises(LLMError, match="stayed at its limits"):
            gate.admit(limit, 10, time.monotonic() + 0.5)
        gate.done(held, 12)
        gate.done(gate.admit(limit, 10, time.monotonic() + 5), None)  # free again
    finally:
        gate.close()
