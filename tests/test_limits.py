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
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import HumanMessage

from dew.agents import limits
from dew.agents.checkpoints import postgres_conninfo
from dew.agents.errors import LLMError, LLMNotConfigured
from dew.agents.limits import Limit, LocalGate, limit_for, parse
from dew.agents.llm import EnvModelProvider, call
from dew.guardians import engine
from dew.guardians.db import upgrade
from dew.guardians.models import PRIORITIES
from dew.guardians.runs import start_run
from dew.guardians.throttle import DbGate

from .conftest import _postgres_database
from .test_engine import DRILL, Workers, _until
from .test_handoff import HOTLINE


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


def _within(counted: dict[int, int], window: float) -> int:
    """The most counted within any `window` seconds, from counts per second (each second's calls
    may fall anywhere in it, so a window reaches into the seconds at both its ends)."""
    back = limits.span(window)
    return max(sum(n for s, n in counted.items() if second - back <= s <= second) for second in counted)


def test_requests_per_minute_wait_for_room(fake_llm, monkeypatch, local_gate):
    host = fake_llm.url.split("//")[1].split("/")[0]
    monkeypatch.setenv("DEW_LLM_LIMITS", f"{host} rpm=2")
    monkeypatch.setattr(limits, "WINDOW", 1.0)  # a one-second "minute", so the test is short
    admitted: list[float | None] = []
    gate = LocalGate()
    real_admit = gate.admit

    def noting(limit, tokens, deadline, priority=0):  # the second each call was counted in, by the gate's clock
        ticket = real_admit(limit, tokens, deadline, priority)
        admitted.append(ticket.window)
        return ticket

    monkeypatch.setattr(gate, "admit", noting)
    limits.install(gate)
    model, prov = _model(fake_llm)
    assert _calls(model, prov, 5) == []
    # (Counted by the server's arrival clock instead, a call admitted at the very end of a second
    # could arrive in the next: the gate's own clock is what the limit promises.)
    assert len(fake_llm.requests) == 5 and len(admitted) == 5
    assert _within(Counter(int(w) for w in admitted), 1.0) <= 2


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


def _admit_in_order(gate, limit: Limit, order: list[str], name: str, priority: int) -> threading.Thread:
    def one():
        ticket = gate.admit(limit, 10, time.monotonic() + 30, priority)
        order.append(name)
        time.sleep(0.05)
        gate.done(ticket, None)

    thread = threading.Thread(target=one)
    thread.start()
    return thread


def test_an_urgent_call_goes_before_a_batch_call_that_waited_longer():
    gate, limit = LocalGate(), Limit("llm.internal:8000", concurrency=1)
    held = gate.admit(limit, 10, time.monotonic() + 1)
    order: list[str] = []
    batch = _admit_in_order(gate, limit, order, "batch", PRIORITIES["batch"])
    _until(lambda: gate._waiting[limit.endpoint][PRIORITIES["batch"]] == 1, timeout=10, every=0.01)
    urgent = _admit_in_order(gate, limit, order, "urgent", PRIORITIES["urgent"])
    _until(lambda: gate._waiting[limit.endpoint][PRIORITIES["urgent"]] == 1, timeout=10, every=0.01)
    gate.done(held, None)
    batch.join(10)
    urgent.join(10)
    assert order == ["urgent", "batch"]


def test_a_runs_priority_reaches_its_model_calls(make_workspace, fake_llm, monkeypatch):
    """Set where the run is driven, it reaches the calls LangGraph makes in the run's steps."""
    host = fake_llm.url.split("//")[1].split("/")[0]
    monkeypatch.setenv("DEW_LLM_LIMITS", f"{host} concurrency=4")
    seen: list[int] = []

    class Noting(LocalGate):
        def admit(self, limit, tokens, deadline, priority=0):
            seen.append(priority)
            return super().admit(limit, tokens, deadline, priority)

    before = limits.install(Noting())
    try:
        env = {"DEW_LLM_BASE_URL": fake_llm.url, "DEW_LLM_MODEL": "fake", "DEW_LLM_MAX_RETRIES": "0"}
        ws = make_workspace(provider=EnvModelProvider(env=env))
        start_run(ws, "drill-script", DRILL, requester="alice")  # normal
        normal = len(seen)
        start_run(ws, "hotline-intake", dict(HOTLINE["饭店占道经营"]), requester="alice")  # urgent
    finally:
        limits.install(before)
    assert normal > 0 and len(seen) > normal
    assert set(seen[:normal]) == {PRIORITIES["normal"]} and set(seen[normal:]) == {PRIORITIES["urgent"]}


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _try(gate: LocalGate, limit: Limit, tokens: int = 1, used: int | None = None) -> bool:
    """Admit and finish one call (its reply using `used` tokens) if there is room right now; no waiting."""
    try:
        ticket = gate.admit(limit, tokens, time.monotonic())
    except LLMError:
        return False
    gate.done(ticket, used)
    return True


def test_a_minute_is_any_sixty_seconds_not_each_minute_of_the_clock():
    clock = Clock(1_000_000 * 60 + 59.5)  # half a second before a minute of the clock ends
    gate, limit = LocalGate(clock), Limit("api.example.com", rpm=2)
    assert _try(gate, limit) and _try(gate, limit) and not _try(gate, limit)
    clock.now += 1.0  # a new minute of the clock: fixed minutes would admit two more here
    assert not _try(gate, limit)
    clock.now += 59.4  # 59.9 s after the second the two were counted in began
    assert not _try(gate, limit)
    clock.now += 0.1  # that second has left the last sixty
    assert _try(gate, limit) and _try(gate, limit) and not _try(gate, limit)


@given(
    steps=st.lists(st.tuples(st.floats(0.0, 40.0), st.integers(1, 400), st.floats(0.0, 1.0)), min_size=1, max_size=60),
    rpm=st.integers(1, 6),
    tpm=st.integers(1, 900),
)
@settings(max_examples=300, deadline=None)
def test_no_sixty_seconds_hold_more_than_the_limits(steps, rpm, tpm):
    clock = Clock(1_700_000_000.0)
    gate, limit = LocalGate(clock), Limit("api.example.com", rpm=rpm, tpm=tpm)
    sent: list[tuple[float, int]] = []  # (when, tokens used) of every call let through
    for gap, want, share in steps:
        clock.now += gap
        used = int(want * share)  # a reply uses at most what was estimated; the count is corrected
        if _try(gate, limit, want, used):
            sent.append((clock.now, used))
    for start, _ in sent:  # every sixty seconds that begin with a call
        inside = [tokens for when, tokens in sent if start <= when < start + 60]
        assert len(inside) <= rpm
        assert sum(inside) <= tpm or len([t for t in inside if t]) == 1  # a call over the whole budget goes alone
    # And nothing is refused that had room: past the last call's second and the sixty before it,
    # a call within the limits is let through.
    clock.now += 61.0
    assert _try(gate, limit, min(tpm, 400))


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
        rows = conn.execute("SELECT window_start, requests, tokens FROM endpoint_usage").fetchall()
    # Each call was counted as 100 tokens and corrected to the 80 it used: 250 admits two within
    # any two seconds (rpm alone would admit three).
    assert sum(r[1] for r in rows) == 7 and _within({r[0]: r[1] for r in rows}, 2) <= 2
    assert all(r[2] == 80 * r[1] for r in rows)


def _used_at(settings, endpoint: str, seconds_ago: int, requests: int) -> int:
    """Record `requests` calls made `seconds_ago` by the database's clock; the second they were counted in."""
    with psycopg.connect(postgres_conninfo(settings.database_url), autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO endpoint_usage (endpoint, window_start, requests, tokens) "
            "VALUES (%s, floor(extract(epoch FROM clock_timestamp()))::bigint - %s, %s, 0) RETURNING window_start",
            (endpoint, seconds_ago, requests),
        ).fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.postgres
def test_across_workers_a_minute_is_any_sixty_seconds(pg_settings):
    gate = DbGate(pg_settings, max_connections=2)
    try:
        # Two calls 58 s ago, in what is most likely another minute of the clock: still this minute's.
        limit = Limit("api.example.com", rpm=2)
        _used_at(pg_settings, limit.endpoint, 58, 2)
        with pytest.raises(LLMError, match="stayed at its limits"):
            gate.admit(limit, 10, time.monotonic() + 0.2)
        # 63 s ago is out of it: a call is let through at once.
        other = Limit("other.example.com", rpm=2)
        _used_at(pg_settings, other.endpoint, 63, 2)
        gate.done(gate.admit(other, 10, time.monotonic() + 0.2), None)
        # A call that waits is let through as the oldest second leaves the last sixty, not later.
        third = Limit("third.example.com", rpm=1)
        oldest = _used_at(pg_settings, third.endpoint, 59, 1)
        ticket = gate.admit(third, 10, time.monotonic() + 10)
        gate.done(ticket, None)
        assert oldest + 61 <= (ticket.window or 0) <= oldest + 63  # (+ the jitter, on a slow machine)
        # The database's clock stepped back a little: what was counted "ahead" of it still counts.
        ahead = Limit("ahead.example.com", rpm=2)
        _used_at(pg_settings, ahead.endpoint, -5, 2)
        with pytest.raises(LLMError, match="stayed at its limits"):
            gate.admit(ahead, 10, time.monotonic() + 0.2)
        # A step back longer than a window is forgotten rather than holding the endpoint shut.
        far = Limit("far.example.com", rpm=2)
        _used_at(pg_settings, far.endpoint, -3600, 2)
        gate.done(gate.admit(far, 10, time.monotonic() + 0.2), None)
    finally:
        gate.close()


@pytest.mark.postgres
def test_a_worker_stuck_inside_its_count_holds_no_one_past_their_deadline(pg_settings):
    """A frozen worker (or one whose network is gone) that holds the endpoint's count lock: the
    others give up at their deadline with the endpoint's message, not when it comes back."""
    from dew.guardians.throttle import _key

    limit = Limit("api.example.com", rpm=100)
    gate = DbGate(pg_settings, max_connections=2)
    errors: list[BaseException] = []

    def admit():
        try:
            gate.done(gate.admit(limit, 10, time.monotonic() + 1.0), None)
        except BaseException as e:  # collected: asserted below
            errors.append(e)

    with psycopg.connect(postgres_conninfo(pg_settings.database_url)) as stuck:  # a transaction left open
        stuck.execute("SELECT pg_advisory_xact_lock(%s, -1)", (_key(limit.endpoint),))
        caller = threading.Thread(target=admit)
        caller.start()
        caller.join(15)
        finished = not caller.is_alive()
        stuck.rollback()
    caller.join(15)
    gate.close()
    assert finished, "the call waited on the stuck worker past its deadline"
    assert len(errors) == 1 and isinstance(errors[0], LLMError) and "stayed at its limits" in errors[0].message


@pytest.mark.postgres
def test_across_workers_an_urgent_call_goes_before_a_batch_call_that_waited_longer(pg_settings):
    gates = [DbGate(pg_settings, max_connections=2) for _ in range(3)]  # three workers
    limit = Limit("llm.internal:8000", concurrency=1)
    held = gates[0].admit(limit, 10, time.monotonic() + 5)

    def in_line() -> int:  # calls holding their place in line (shared advisory locks)
        with psycopg.connect(postgres_conninfo(pg_settings.database_url)) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
            return row[0] if row else 0

    order: list[str] = []
    try:
        batch = _admit_in_order(gates[1], limit, order, "batch", PRIORITIES["batch"])
        _until(lambda: in_line() == 1, timeout=10, every=0.01)
        urgent = _admit_in_order(gates[2], limit, order, "urgent", PRIORITIES["urgent"])
        _until(lambda: in_line() == 2, timeout=10, every=0.01)
        gates[0].done(held, None)
        batch.join(30)
        urgent.join(30)
    finally:
        for g in gates:
            g.close()
    assert order == ["urgent", "batch"]


@pytest.mark.postgres
def test_a_finished_call_frees_its_slot_at_once_while_others_wait_on_every_connection(pg_settings):
    """The waiting calls hold the gate's connections; the call in flight corrects its count on its
    slot's own connection and lets the slot go without waiting for one."""
    gate = DbGate(pg_settings, max_connections=2)
    limit = Limit("llm.internal:8000", concurrency=1, tpm=10**6)
    order: list[str] = []
    try:
        first = gate.admit(limit, 100, time.monotonic() + 5)
        waiting = [_admit_in_order(gate, limit, order, name, 0) for name in ("second", "third")]
        time.sleep(0.3)  # one holds the pool's other connection, one waits for a connection
        finishing = threading.Thread(target=gate.done, args=(first, 40))
        finishing.start()
        finishing.join(5)
        assert not finishing.is_alive(), "done() waited for a connection held by a waiting call"
        for t in waiting:
            t.join(30)
        with psycopg.connect(postgres_conninfo(pg_settings.database_url)) as conn:
            row = conn.execute("SELECT sum(tokens) FROM endpoint_usage").fetchone()
    finally:
        gate.close()
    assert sorted(order) == ["second", "third"]
    assert row is not None and row[0] == 40 + 10 + 10  # the first corrected to what it used


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
