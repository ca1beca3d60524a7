"""Start and resume runs. A run is one LangGraph thread; it pauses at the approval gate.

The runtime returns what the gate shows (the draft, findings, provenance) and takes back a
decision. It has no notion of who may decide: callers enforce that before they resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from langgraph.types import Command

from .compiler import GATE, compile_scenario
from .errors import DewError, RunFailed
from .guarded import admit_endpoint
from .llm import ModelProvider
from .loader import LoadedScenario
from .spec import LLMStep, ReviewStep
from .templating import run_values


@dataclass
class Outcome:
    """Where a run stands after the runtime drove it as far as it goes without a human."""

    status: str  # "awaiting_decision" | "completed"
    draft: str | None = None
    findings: list[str] = field(default_factory=list)
    provenance: list[dict] = field(default_factory=list)
    revisions: int = 0
    decision: dict | None = None


def thread_id(run_id: int | str) -> str:
    return f"run-{run_id}"


class Runtime:
    def __init__(self, checkpointer: Any, provider: ModelProvider, data_dir: Path | None = None):
        self.checkpointer = checkpointer
        self.provider = provider
        self.data_dir = data_dir  # where tools find a scenario's data (corpora, tables)
        self._graphs: dict[str, Any] = {}
        # Told (run id, step id) as each step starts: a long model call shows a sign of life.
        self.progress: Callable[[Any, str], None] | None = None

    def graph(self, scenario: LoadedScenario):
        # Keyed by content hash: a run always resumes on the exact scenario text it started with.
        graph = self._graphs.get(scenario.sha256)
        if graph is None:
            graph = self._graphs[scenario.sha256] = compile_scenario(
                scenario.spec, self.provider, self.checkpointer, self.data_dir
            )
        return graph

    def admit(self, scenario: LoadedScenario) -> None:
        """Refuse, before any call, a scenario whose data its model endpoints may not receive."""
        spec = scenario.spec
        for step in spec.steps:
            if isinstance(step, (LLMStep, ReviewStep)):
                admit_endpoint(f"scenario '{spec.id}'", spec.data, self.provider.describe(spec.llm, step.llm))

    def _config(self, run_id) -> dict:
        return {"configurable": {"thread_id": thread_id(run_id)}, "recursion_limit": 100}

    def start(self, scenario: LoadedScenario, run_id, inputs: dict[str, Any], *, today: date | None = None) -> Outcome:
        state = {"inputs": inputs, "run": run_values(run_id, today or date.today()), "revisions": 0}
        return self._drive(scenario, run_id, state)

    def resume(self, scenario: LoadedScenario, run_id, decision: dict[str, Any]) -> Outcome:
        return self._drive(scenario, run_id, Command(resume=decision))

    def retry(self, scenario: LoadedScenario, run_id, decision: dict[str, Any] | None = None) -> Outcome:
        """Continue a failed run from its last checkpoint.

        If the run is still parked at the gate although a decision was recorded for the draft
        waiting there (the process died before the resume was checkpointed), that decision is
        applied now. A decision on any other draft is never applied to this one.
        """
        snapshot = self.graph(scenario).get_state(self._config(run_id))
        if snapshot.created_at is None:
            raise RunFailed(f"run {run_id} has no checkpoint to continue from; start it again")
        if GATE in snapshot.next and snapshot.interrupts:
            waiting = snapshot.interrupts[0].value
            if decision is None or decision.get("revision") != waiting.get("revisions", 0):
                return self._outcome(waiting)
            return self.resume(scenario, run_id, decision)
        return self._drive(scenario, run_id, None)

    def has_checkpoint(self, scenario: LoadedScenario, run_id) -> bool:
        return self.graph(scenario).get_state(self._config(run_id)).created_at is not None

    def state(self, scenario: LoadedScenario, run_id) -> dict:
        return dict(self.graph(scenario).get_state(self._config(run_id)).values)

    def _drive(self, scenario: LoadedScenario, run_id, payload) -> Outcome:
        graph = self.graph(scenario)
        result: dict[str, Any] = {}
        interrupts: list[Any] = []
        try:
            # What graph.invoke does, plus the "tasks" stream, which says when each step starts.
            for mode, chunk in graph.stream(
                payload, self._config(run_id), durability="sync", stream_mode=["updates", "values", "tasks"]
            ):
                if mode == "tasks" and "input" in chunk and self.progress is not None:
                    self.progress(run_id, chunk["name"])
                elif mode == "updates" and isinstance(chunk, dict) and chunk.get("__interrupt__"):
                    interrupts.extend(chunk["__interrupt__"])
                elif mode == "values":
                    result = chunk
        except DewError:
            raise
        except Exception as e:  # a node failed in a way we did not anticipate: fail the run, keep the cause
            # Only the type goes into the message (which the audit trail records): a lower layer's
            # text may quote data (SQL parameters, a party's name). The traceback stays with the run.
            raise RunFailed(f"run {run_id} failed in the graph: internal error: {type(e).__name__}") from e
        if interrupts:
            return self._outcome(interrupts[0].value)
        return Outcome(status="completed", decision=result.get("decision"), provenance=result.get("provenance", []))

    @staticmethod
    def _outcome(value: dict) -> Outcome:
        return Outcome(
            status="awaiting_decision",
            draft=value["draft"],
            findings=list(value.get("findings", [])),
            provenance=list(value.get("provenance", [])),
            revisions=value.get("revisions", 0),
        )
