"""Compile a scenario into a LangGraph `StateGraph`.

Every step becomes a node that routes with `Command`, so checks and reviewers can send work back
to an earlier step. The last node is the approval gate: it calls `interrupt()` with the draft and
ends the graph with the guardian's decision, or routes a revision back into drafting. The graph
never releases anything; that is the guardians' job, outside the graph.

LangGraph re-runs the interrupted node from its start on resume, so the gate does nothing before
`interrupt()` but read state.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from .checks import hidden_characters, json_problem, run_check
from .errors import LLMError
from .guarded import Guarded
from .llm import ModelProvider, text_of
from .pseudonyms import redact, strings_in
from .spec import CheckStep, LLMStep, ReviewStep, Scenario, TemplateStep, ToolStep
from .templating import render, render_value, scenario_context
from .tools import ToolContext, ToolFailed, get_tool, to_jsonable
from .untrusted import injection_signs

GATE = "approval_gate"
GUARDIAN_NOTE = "Guardian: "  # how a guardian's revision note starts: the one kind of note sent unfenced


def _merge(left: dict | None, right: dict | None) -> dict:
    return {**(left or {}), **(right or {})}


class RunState(TypedDict, total=False):
    run: dict  # {"id", "date"}: fixed when the run starts, so resumes render the same way
    inputs: dict
    outputs: Annotated[dict, _merge]  # step id -> output (str, or parsed JSON)
    feedback: Annotated[dict, _merge]  # step id -> list of things to fix on its next draft
    rounds: Annotated[dict, _merge]  # check/review step id -> times it sent work back
    findings: Annotated[dict, _merge]  # check/review step id -> problems left for the guardian
    provenance: Annotated[list, operator.add]  # one record per model call
    pseudonyms: Annotated[dict, _merge]  # placeholder -> value: what personal data the model saw as (never sent)
    revisions: int  # times the guardian sent the draft back
    decision: dict  # the guardian's decision that ended the run


def draft_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2)


def context(spec: Scenario, state: RunState) -> dict[str, Any]:
    return scenario_context(
        spec, run=state.get("run", {}), inputs=state.get("inputs", {}), steps=state.get("outputs", {})
    )


def extract_json(text: str) -> str:
    """The JSON object in a reply that may wrap it in prose or a ``` fence."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if start != -1 and end > start else text.strip()


def fingerprint(value: Any) -> str:
    """SHA-256 of a value in canonical JSON: what provenance records of prompts, replies and tool
    calls, so the trail can prove what went in and out without holding the text itself."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def input_signs(inputs: dict[str, Any]) -> list[str]:
    """Findings for inputs that look like instructions to a model: the run goes on, the guardian sees them."""
    return [
        f"input '{name}' {sign}; the model was told it is material, not instructions: check that the draft "
        "did not follow it"
        for name, value in inputs.items()
        for sign in dict.fromkeys(s for text in strings_in(value) for s in injection_signs(text))
    ]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def compile_scenario(spec: Scenario, provider: ModelProvider, checkpointer=None, data_dir=None):
    graph = StateGraph(RunState)
    tools = _Tools(spec, data_dir)
    ids = [s.id for s in spec.steps]
    following = {sid: (ids[i + 1] if i + 1 < len(ids) else GATE) for i, sid in enumerate(ids)}

    for step in spec.steps:
        nxt = following[step.id]
        if isinstance(step, LLMStep):
            graph.add_node(step.id, _llm_node(spec, step, provider, nxt, tools), destinations=(nxt,))
        elif isinstance(step, TemplateStep):
            graph.add_node(step.id, _template_node(spec, step, nxt), destinations=(nxt,))
        elif isinstance(step, ToolStep):
            graph.add_node(step.id, _tool_node(spec, step, nxt, tools), destinations=(nxt,))
        elif isinstance(step, CheckStep):
            on_fail = (step.on_fail,) if step.on_fail else ()
            graph.add_node(step.id, _check_node(spec, step, nxt, tools), destinations=(nxt, *on_fail))
        elif isinstance(step, ReviewStep):
            back = step.send_back_to or step.target
            graph.add_node(step.id, _review_node(spec, step, provider, nxt, back), destinations=(nxt, back))
    graph.add_node(GATE, _gate_node(spec), destinations=(spec.revise_step, END))
    graph.add_edge(START, ids[0])
    return graph.compile(checkpointer=checkpointer, name=spec.id)


def _revision_block(state: RunState, step_id: str, guard: Guarded) -> str:
    notes = [n for n in (state.get("feedback", {}).get(step_id) or []) if n]
    if not notes:
        return ""
    previous = state.get("outputs", {}).get(step_id)
    # The guardian's words are a person's instructions; a reviewer's or a check's are a machine's
    # reading of material (a reviewer may repeat what an input told it to say): they go fenced.
    points = [n if n.startswith(GUARDIAN_NOTE) else guard.fence(n) for n in notes]
    block = "\n\n---\nRevise your previous draft. Fix each of these points:\n" + "\n".join(f"- {n}" for n in points)
    if previous is not None:  # the model's own earlier words are material, like anything it read
        block += "\n\nYour previous draft was:\n" + guard.fence(draft_text(previous))
    return block


class _Tools:
    """Calls registered tools for one scenario, with arguments rendered from the run's state."""

    def __init__(self, spec: Scenario, data_dir):
        self.spec = spec
        self.data_dir = data_dir

    def call(self, name: str, args: dict, state: RunState, where: str, extra: dict | None = None):
        """Call `name` with `args` rendered from the run; `extra` are values the caller supplies
        (the text a check checks, the arguments a model set), which never override `args`."""
        ctx = context(self.spec, state)
        rendered = render_value(args, ctx, where=f"{where}: args")
        if extra:
            rendered = {**extra, **rendered}
        tool_ctx = ToolContext(scenario_dir=self.data_dir, run_id=state.get("run", {}).get("id"))
        try:
            return to_jsonable(get_tool(name).call(rendered, tool_ctx))
        except ToolFailed as e:
            raise ToolFailed(f"{where}: {e.message}") from None


def _tool_node(spec: Scenario, step: ToolStep, nxt: str, tools: _Tools):
    where = f"scenario '{spec.id}', step '{step.id}'"

    def node(state: RunState):
        result = tools.call(step.tool, step.args, state, where)
        return Command(goto=nxt, update={"outputs": {step.id: result}, "feedback": {step.id: None}})

    return node


def _agent_turn(step: LLMStep, model, messages: list, where: str, prov: dict, tools: _Tools, state: RunState,
                guard: Guarded) -> tuple[str, list, list[str], list]:  # fmt: skip
    """One drafting turn; with tools, let the model call them (bounded) before it answers.
    Returns the reply as the model wrote it, the tool calls made, findings for the guardian, and
    the conversation so far (a next attempt goes on from it, tool results included)."""
    if not step.tools:
        return text_of(guard.call(model, messages, where, prov)), [], [], messages
    uses = {u.tool: u for u in step.tools}
    bound = model.bind_tools([get_tool(u.tool).openai_schema(set(u.args)) for u in step.tools])
    used: list[dict[str, Any]] = []
    findings: list[str] = []
    calls = 0  # `calls` counts every request, refused ones too, so the bound always holds
    while calls < step.max_tool_calls:
        reply = guard.call(bound, messages, where, prov)
        if not reply.tool_calls:
            return text_of(reply), used, findings, messages
        messages = [*messages, reply]
        for tc in reply.tool_calls:
            calls += 1
            asked = guard.pseudonyms.restore_value(tc.get("args") or {})
            use = uses.get(tc["name"])
            forbidden = sorted(set(asked) - get_tool(use.tool).settable(set(use.args))) if use else []
            if calls > step.max_tool_calls:
                result = {"error": f"tool call limit ({step.max_tool_calls}) reached; answer now"}
            elif use is None:
                result = {"error": f"no tool named '{tc['name']}'; available: {', '.join(uses)}"}
            elif forbidden:
                # The model reached for an argument the scenario keeps: refused, and the guardian told.
                result = {"error": f"you may not set {', '.join(forbidden)} of {use.tool}; call it without them"}
                findings.append(
                    f"the model tried to set {', '.join(forbidden)} of tool '{use.tool}', which the scenario fixes "
                    "or the tool keeps from models; the call was refused"
                )
            else:
                try:
                    result = tools.call(use.tool, use.args, state, where, extra=asked)
                except ToolFailed as e:
                    result = {"error": e.message}  # the model sees the error and may correct itself
                findings += [f"tool '{use.tool}' returned text that {sign}" for sign in injection_signs(json.dumps(
                    result, ensure_ascii=False))]  # fmt: skip
                used.append(
                    {
                        "tool": use.tool,
                        "args": asked,
                        "args_sha256": fingerprint(asked),
                        "result_sha256": fingerprint(result),
                    }
                )
            messages.append(guard.tool_result(result, tc["id"] or ""))
    messages = [*messages, guard.user("Stop calling tools now and give your answer.")]
    return text_of(guard.call(model, messages, where, prov)), used, findings, messages


def _llm_node(spec: Scenario, step: LLMStep, provider: ModelProvider, nxt: str, tools: _Tools):
    where = f"scenario '{spec.id}', step '{step.id}'"

    def node(state: RunState):
        guard = Guarded.open(spec, dict(state))
        prompt = guard.render(step.prompt, guard.context(), where=f"{where}: prompt")
        prompt += _revision_block(state, step.id, guard)
        system = step.role
        if step.output == "json":
            system += (
                "\n\nAnswer with a single JSON object and nothing else. It must satisfy this JSON Schema:\n"
                + json.dumps(step.schema_, ensure_ascii=False)
            )
        model, prov = provider.get(spec.llm, step.llm)
        messages: list = [guard.system(system), guard.user(prompt)]
        sent = [m.content for m in messages]  # what the endpoint received is what the trail's hash is of
        problem: str | None = "no reply"
        tool_calls: list = []
        findings: list[str] = []
        for attempt in range(1, step.attempts + 1):  # noqa: B007 - `attempt` is recorded after the loop
            said, used, flagged, messages = _agent_turn(step, model, messages, where, prov, tools, state, guard)
            tool_calls += used
            findings += flagged
            # NUL is never meaningful in a draft, and PostgreSQL text cannot store it.
            said = said.replace("\x00", "").strip()
            text = guard.restore(said)
            if not text:
                problem = "the reply was empty"
            elif step.output == "json":
                # The schema holds for the values, not the placeholders: a `pattern` for a phone
                # number must see the number.
                candidate = extract_json(said)
                problem = json_problem(candidate, None)
                if problem is None:
                    value: Any = guard.pseudonyms.restore_value(json.loads(candidate))
                    problem = json_problem(json.dumps(value, ensure_ascii=False), step.schema_)
                if problem is None:
                    break
            else:
                problem, value = None, text
                break
            # The problem may quote the reply, and the reply may quote an input: fenced too.
            messages += [
                AIMessage(said),
                guard.user(f"That reply cannot be used: {guard.fence(problem)} Answer again."),
            ]
        else:
            if step.on_unusable == "fail":
                raise LLMError(
                    f"{where}: {step.attempts} replies in a row were unusable; last: {redact(problem or '', guard.pseudonyms.mapping)}"
                )
            value = {"unusable_reply": text, "problem": problem}
        if problem is not None:
            findings.append(
                f"the model's reply was unusable after {step.attempts} tries ({problem}); the run went on without it"
            )
        invented = guard.pseudonyms.unknown(said)
        if invented:
            findings.append(
                f"the model wrote {', '.join(invented)}, which stands for no data of this run; check the draft there"
            )
        record = {"step": step.id, "at": _now(), "attempts": attempt, **prov, **guard.record(prov),
                  "prompt_sha256": fingerprint(sent), "output_sha256": fingerprint(said)}  # fmt: skip
        if tool_calls:
            record["tool_calls"] = tool_calls
        return Command(
            goto=nxt,
            update={
                "outputs": {step.id: value},
                "feedback": {step.id: None},
                "provenance": [record],
                "findings": {step.id: findings},
                **guard.update(),
            },
        )

    return node


def _template_node(spec: Scenario, step: TemplateStep, nxt: str):
    def node(state: RunState):
        text = render(step.template, context(spec, state), where=f"scenario '{spec.id}', step '{step.id}'")
        return Command(goto=nxt, update={"outputs": {step.id: text.strip() + "\n"}, "feedback": {step.id: None}})

    return node


def _check_node(spec: Scenario, step: CheckStep, nxt: str, tools: _Tools):
    where = f"scenario '{spec.id}', step '{step.id}'"

    def node(state: RunState):
        output = draft_text(state.get("outputs", {}).get(step.target, ""))

        def call_tool(check, text):
            found = tools.call(check.tool, check.args, state, where, extra={"text": text})
            return found if isinstance(found, list) else [found] if found else []

        problems = [p for c in step.checks if (p := run_check(c, output, call_tool))]
        # Only the gate writes a note that starts as the guardian's (it is sent unfenced).
        problems = [f"check: {p}" if p.startswith(GUARDIAN_NOTE) else p for p in problems]
        rounds = state.get("rounds", {}).get(step.id, 0)
        if problems and step.on_fail and rounds < step.max_rounds:
            return Command(
                goto=step.on_fail,
                update={
                    "feedback": {step.on_fail: problems},
                    "rounds": {step.id: rounds + 1},
                    "findings": {step.id: problems},
                },
            )
        return Command(goto=nxt, update={"findings": {step.id: problems}})

    return node


def parse_verdict(text: str) -> tuple[str, str]:
    """('pass' | 'revise' | 'unclear', notes) from a reviewer's reply."""
    lines = [ln.strip().strip("*#").strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "unclear", ""
    head = lines[0].upper()
    rest = "\n".join(lines[1:])
    if head.startswith("PASS"):
        return "pass", rest
    if head.startswith("REVISE"):
        reason = lines[0][len("REVISE") :].lstrip(" :：-")
        return "revise", "\n".join(x for x in (reason, rest) if x)
    return "unclear", "\n".join(lines)


def _review_node(spec: Scenario, step: ReviewStep, provider: ModelProvider, nxt: str, back: str):
    where = f"scenario '{spec.id}', step '{step.id}'"

    def node(state: RunState):
        guard = Guarded.open(spec, dict(state))
        ctx = guard.context(draft=draft_text(state.get("outputs", {}).get(step.target, "")))
        prompt = guard.render(step.prompt, ctx, where=f"{where}: prompt")
        system = step.role + "\n\nOn the first line answer exactly PASS, or REVISE: followed by what must be fixed."
        model, prov = provider.get(spec.llm, step.llm)
        messages = [guard.system(system), guard.user(prompt)]
        said = text_of(guard.call(model, messages, where, prov))
        reply = guard.restore(said)
        verdict, notes = parse_verdict(reply)
        record = {"step": step.id, "at": _now(), "attempts": 1, "verdict": verdict, **prov, **guard.record(prov),
                  "prompt_sha256": fingerprint([m.content for m in messages]),
                  "output_sha256": fingerprint(said)}  # fmt: skip
        rounds = state.get("rounds", {}).get(step.id, 0)
        if verdict == "revise" and rounds < step.max_rounds:
            return Command(
                goto=back,
                update={
                    "feedback": {back: [f"Reviewer: {notes or 'revise the draft'}"]},
                    "rounds": {step.id: rounds + 1},
                    "provenance": [record],
                    **guard.update(),
                },
            )
        findings = []
        if verdict == "revise":
            findings = [f"reviewer still asks for changes after {rounds} rounds: {notes}"]
        elif verdict == "unclear":
            findings = [f"reviewer gave no clear PASS/REVISE verdict: {notes[:500]}"]
        return Command(goto=nxt, update={"findings": {step.id: findings}, "provenance": [record], **guard.update()})

    return node


def _gate_node(spec: Scenario):
    def node(state: RunState):
        findings = [f"inputs: {f}" for f in input_signs(state.get("inputs") or {})]
        findings += [f"{sid}: {p}" for sid, ps in (state.get("findings") or {}).items() for p in (ps or [])]
        draft = draft_text(state.get("outputs", {}).get(spec.draft_step, ""))
        hidden = hidden_characters(draft)
        if hidden:
            findings.append(f"{GATE}: {hidden}")
        if spec.output.format == "json":
            problem = json_problem(draft, spec.output.schema_)
            if problem:
                findings.append(f"{GATE}: the draft is not the JSON the output requires: {problem}")
        # Findings go into the audit trail, which is never cleared: they name kinds of personal data,
        # never values (a finding may quote an input, a reviewer's notes or a schema error).
        findings = [redact(f, state.get("pseudonyms") or {}) for f in findings]
        payload = {
            "draft": draft,
            "findings": findings,
            "provenance": state.get("provenance", []),
            "revisions": state.get("revisions", 0),
        }
        decision = interrupt(payload)
        if decision.get("action") == "revise":
            target = spec.revise_step
            return Command(
                goto=target,
                update={
                    "feedback": {target: [f"{GUARDIAN_NOTE}{decision.get('feedback', '')}"]},
                    "revisions": state.get("revisions", 0) + 1,
                    "rounds": {k: 0 for k in (state.get("rounds") or {})},
                    "findings": {k: [] for k in (state.get("findings") or {})},
                },
            )
        return Command(goto=END, update={"decision": decision})

    return node


def mermaid(spec: Scenario, provider: ModelProvider | None = None) -> str:
    """The compiled graph as mermaid text (what docs show and snapshot tests pin)."""
    return compile_scenario(spec, provider or _NoModels()).get_graph().draw_mermaid()


class _NoModels:
    def get(self, *overrides):  # pragma: no cover - drawing never calls a model
        raise LLMError("no model is available while drawing a graph")

    def describe(self, *overrides):  # pragma: no cover
        raise LLMError("no model is available while drawing a graph")
