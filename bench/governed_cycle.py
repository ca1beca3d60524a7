"""What does governance cost? Time one governed cycle against a bare LangGraph interrupt/resume.

    python bench/governed_cycle.py [--cycles 200] [--database-url postgresql://...]

Three loops, in the same process and run, each with the same instant scripted model and the
official LangGraph saver of the same backend (SQLite file, or PostgreSQL with --database-url) on a
fresh database of its own. The loops are interleaved, one cycle of each in turn and the order
rotated every round, so a change in the machine's load hits all three alike:
  bare      a hand-written StateGraph: draft node → interrupt() gate → resume → end
  runtime   dew's compiled scenario driven by agents.runtime (no queue, no audit, no release)
  governed  dew's full cycle: start run (scenario version, run row, audit), queue the work item,
            authorize and record an approval, resume, release the file exactly once, audit it
Prints the median and mean per cycle and the ratios; --json writes them to a file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from dew.agents.checkpoints import open_saver
from dew.agents.loader import load_text
from dew.agents.runtime import Runtime
from dew.agents.testing import ScriptedChatModel, ScriptedModelProvider

REPLY = "1. The drafted text. Expected: nothing more."
SCENARIO = """
dew: 1
id: bench
name: Bench
description: One drafting step and the approval gate.
version: "1"
guardian: g.one
risk: low
inputs: {topic: {type: string}}
steps:
  - id: draft
    kind: llm
    role: You draft.
    prompt: "Draft about {{ inputs.topic }}"
output: {format: text}
"""
ROSTER = "guardians:\n  - {id: g.one, name: Guardian One}\n"


def reply(system, prompt):
    return REPLY


Cycles = Iterator[float]  # each next() runs one cycle and yields its seconds


def bare_loop(url: str) -> Cycles:
    model = ScriptedChatModel(reply=reply, calls=[])

    class S(TypedDict, total=False):
        topic: str
        draft: str
        decision: dict

    def draft(state):
        text = model.invoke([SystemMessage("You draft."), HumanMessage(f"Draft about {state['topic']}")]).content
        return Command(goto="gate", update={"draft": text})

    def gate(state):
        decision = interrupt({"draft": state["draft"]})
        return Command(goto=END, update={"decision": decision})

    g = StateGraph(S)
    g.add_node("draft", draft, destinations=("gate",))
    g.add_node("gate", gate, destinations=(END,))
    g.add_edge(START, "draft")
    with open_saver(url) as saver:  # the same official saver, on the same backend, as dew's loops
        app = g.compile(checkpointer=saver)
        for i in itertools.count():
            cfg = {"configurable": {"thread_id": f"t{i}"}}
            t0 = time.perf_counter()
            out = app.invoke({"topic": "x"}, cfg, durability="sync")
            assert out["__interrupt__"]
            done = app.invoke(Command(resume={"action": "approve"}), cfg, durability="sync")
            assert done["decision"]["action"] == "approve"
            yield time.perf_counter() - t0


def runtime_loop(url: str) -> Cycles:
    scenario = load_text(SCENARIO, "bench.yaml")
    with open_saver(url) as saver:
        rt = Runtime(saver, ScriptedModelProvider(reply=reply))
        for i in itertools.count():
            t0 = time.perf_counter()
            assert rt.start(scenario, f"b{i}", {"topic": "x"}).status == "awaiting_decision"
            assert rt.resume(scenario, f"b{i}", {"action": "approve"}).status == "completed"
            yield time.perf_counter() - t0


def governed_loop(home: Path, url: str) -> Cycles:
    from dew.guardians.flow import decide
    from dew.guardians.runs import start_run
    from dew.guardians.workspace import Settings, Workspace

    scenarios = home / "scenarios"
    scenarios.mkdir(parents=True)
    (scenarios / "bench.yaml").write_text(SCENARIO, encoding="utf-8")
    (scenarios / "guardians.yaml").write_text(ROSTER, encoding="utf-8")
    ws = Workspace(
        Settings(home=home, scenarios_dir=scenarios, database_url=url), provider=ScriptedModelProvider(reply=reply)
    )
    try:
        while True:
            t0 = time.perf_counter()
            r = start_run(ws, "bench", {"topic": "x"}, requester="requester")
            assert r.item is not None
            done = decide(ws, r.item.id, actor="g.one", action="approve")
            assert done.release is not None
            yield time.perf_counter() - t0
    finally:
        ws.close()


def interleaved(loops: dict[str, Cycles], cycles: int, warmup: int) -> dict[str, list[float]]:
    """One cycle of each loop in turn, the order rotated each round; warm-up rounds are dropped."""
    times: dict[str, list[float]] = {name: [] for name in loops}
    names = list(loops)
    for round_ in range(warmup + cycles):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = next(loops[name])
            if round_ >= warmup:
                times[name].append(seconds)
    for loop in loops.values():
        loop.close()  # runs each loop's clean-up (saver connections, workspace)
    return times


def summary(times: list[float]) -> dict:
    return {
        "median_ms": statistics.median(times) * 1000,
        "mean_ms": statistics.fmean(times) * 1000,
        "p95_ms": sorted(times)[int(len(times) * 0.95) - 1] * 1000,
        "cycles": len(times),
    }


def fresh_postgres(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--database-url", help="PostgreSQL admin URL: run every loop on a fresh database there")
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dew-bench-"))
    try:

        def url(name):
            if args.database_url:
                return fresh_postgres(args.database_url, f"dew_bench_{name}")
            return f"sqlite:///{tmp / name / 'dew.db'}"

        for name in ("bare", "runtime"):
            (tmp / name).mkdir()
        loops = {
            "bare": bare_loop(url("bare")),
            "runtime": runtime_loop(url("runtime")),
            "governed": governed_loop(tmp / "governed", url("governed")),
        }
        results = {name: summary(ts) for name, ts in interleaved(loops, args.cycles, args.warmup).items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = results["bare"]["median_ms"]
    backend = "postgresql" if args.database_url else "sqlite"
    print(f"governed cycle benchmark · {args.cycles} cycles, interleaved · every loop on {backend}")
    print(f"{'loop':<10}{'median ms':>12}{'mean ms':>10}{'p95 ms':>10}{'× bare':>9}")
    for name, r in results.items():
        print(
            f"{name:<10}{r['median_ms']:>12.2f}{r['mean_ms']:>10.2f}{r['p95_ms']:>10.2f}{r['median_ms'] / base:>9.2f}"
        )
    gov = results["governed"]["median_ms"] - results["runtime"]["median_ms"]
    print(
        f"governance (queue, authorization, decision, release, audit) adds {gov:.2f} ms per cycle "
        f"over dew's runtime alone"
    )
    if args.json:
        args.json.write_text(json.dumps({"backend": backend, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
