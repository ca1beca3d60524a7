"""The scenario YAML format, version 1, as pydantic models.

These models are the single source of truth for the format: the loader validates against them,
`dew scenarios schema` exports their JSON Schema for editors, and docs/scenario-reference.md is
generated from their field descriptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from jinja2 import TemplateSyntaxError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .names import ID_PATTERN, PERSON_PATTERN, STEP_ID_PATTERN
from .templating import compile_template, undeclared_names

FORMAT_VERSION = 1


class _Strict(BaseModel):
    # Unknown keys are almost always typos ("promt:"); refusing them names the line.
    model_config = ConfigDict(extra="forbid")


PiiPolicy = Literal["pseudonymise", "keep", "refuse"]


class InputSpec(_Strict):
    """One input the requester supplies when starting a run."""

    type: Literal["text", "string", "integer", "number", "boolean", "json"] = Field(
        "text", description="`text` is multi-line prose, `string` a short value, `json` any JSON value."
    )
    required: bool = Field(True, description="A run cannot start without a required input.")
    description: str = Field("", description="Shown to requesters and to the front desk router.")
    default: Any = Field(None, description="Value used when an optional input is not given.")
    max_chars: int | None = Field(
        None,
        gt=0,
        le=10_000_000,
        description="Longest value accepted, in characters (JSON: of its text). Default by type: `string` 1,000, "
        "`text` 200,000, `json` 1,000,000.",
    )
    pii: PiiPolicy | None = Field(
        None,
        description="What to do with personal data found in this input (ID, phone and bank card numbers, credit "
        "codes, e-mail addresses, plates, names, addresses): `pseudonymise` replaces it with placeholders before any "
        "model sees it and restores it in the reply; `keep` sends it as it is; `refuse` refuses a run whose value holds "
        "any. Default: the scenario's `pii`.",
    )


class LLMSpec(_Strict):
    """Per-scenario (or per-step) override of the LLM settings taken from the environment."""

    model: str | None = Field(None, description="Model name sent to the endpoint, e.g. `deepseek-chat`.")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. `https://api.deepseek.com/v1`.")
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int | None = Field(None, gt=0, le=32768, description="Upper bound on generated tokens per call.")


class _Step(_Strict):
    id: str = Field(
        pattern=STEP_ID_PATTERN, description="Unique within the scenario; later steps refer to it as `steps.<id>`."
    )
    title: str = Field("", description="Human-readable label used in diagrams and traces.")


class ToolUse(_Strict):
    """A tool a model may call, with the arguments the scenario fixes so the model cannot choose them."""

    tool: str = Field(description="Name of a registered tool (see docs/tools.md).")
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments pinned by the scenario: the model is not shown them, and a call that sets one is refused "
        "and flagged to the guardian. " + "A string is a Jinja2 template over `inputs`, `steps` and `run`.",
    )


def _tool_use(value: Any) -> Any:
    return (
        {"tool": value} if isinstance(value, str) else value
    )  # `- search_corpus` is short for `- tool: search_corpus`


class LLMStep(_Step):
    """Ask the model to draft something. The prompt is a Jinja2 template over `inputs`, `steps`."""

    kind: Literal["llm"]
    role: str = Field(description="System prompt: who the agent is and the rules it follows.")
    prompt: str = Field(description="Jinja2 template; sees `inputs.<name>` and `steps.<id>` (earlier outputs).")
    output: Literal["text", "json"] = Field(
        "text", description="`json` parses the reply and validates it against `schema`."
    )
    schema_: dict[str, Any] | None = Field(
        None, alias="schema", description="JSON Schema the reply must satisfy when `output: json`."
    )
    llm: LLMSpec | None = Field(None, description="Override of the scenario's LLM settings for this step.")
    attempts: int = Field(2, ge=1, le=5, description="Tries when the reply is empty or not valid JSON.")
    on_unusable: Literal["fail", "flag"] = Field(
        "fail",
        description="After `attempts` unusable replies: `fail` the run (retryable), or `flag` it to the guardian and "
        "go on with `{unusable_reply, problem}` as this step's output (templates can test `is defined`).",
    )
    tools: list[Annotated[ToolUse, BeforeValidator(_tool_use, json_schema_input_type=str | ToolUse)]] = Field(
        default_factory=list,
        description="Registered tools the model may call (function calling) while drafting: a name, or "
        "`{tool: NAME, args: {...}}` to pin arguments. The model may set only the arguments the tool lets a model set "
        "(docs/tools.md) and the scenario did not pin.",
    )
    max_tool_calls: int = Field(4, ge=1, le=20, description="Bound on tool calls in one drafting turn.")


class TemplateStep(_Step):
    """Render a Jinja2 template deterministically: this is where an output's fixed format lives."""

    kind: Literal["template"]
    template: str = Field(description="Jinja2 template over `inputs`, `steps` and `run` (`run.id`, `run.date`).")


ARGS_DESCRIPTION = (
    "Arguments by name. A string is a Jinja2 template; a string that is exactly one `{{ expression }}` "
    'passes the value itself (a list, a mapping, a number), e.g. `"{{ steps.ranking }}"`.'
)


class ToolStep(_Step):
    """Call a registered tool with arguments rendered from the run; its result is this step's output."""

    kind: Literal["tool"]
    tool: str = Field(description="Name of a registered tool (see docs/tools.md).")
    args: dict[str, Any] = Field(default_factory=dict, description=ARGS_DESCRIPTION)


class Check(_Strict):
    """One deterministic rule over the target step's output. Set exactly one field."""

    contains: list[str] | None = Field(None, description="Each string must appear in the output.")
    not_contains: list[str] | None = Field(None, description="No string may appear in the output.")
    min_chars: int | None = Field(None, ge=0, description="The output has at least this many characters.")
    max_chars: int | None = Field(None, ge=1, description="The output has at most this many characters.")
    matches: str | None = Field(None, description="A regular expression the output must match somewhere.")
    json_schema: dict[str, Any] | None = Field(None, description="The output parses as JSON valid against this schema.")
    tool: str | None = Field(
        None,
        description="A registered tool called with `text` (the output) and `args`; it returns the problems it finds.",
    )
    args: dict[str, Any] = Field(default_factory=dict, description="Further arguments of `tool`. " + ARGS_DESCRIPTION)
    message: str = Field("", description="What to tell the drafter (and the guardian) when the rule fails.")


class CheckStep(_Step):
    """Deterministic checks over an earlier step's output; failures go back to that step or to the guardian."""

    kind: Literal["check"]
    target: str = Field(description="Id of the earlier step whose output is checked.")
    checks: list[Check] = Field(min_length=1, description="Rules, all of which must hold.")
    on_fail: str | None = Field(
        None, description="Id of an earlier step to send the failures back to; omit to only flag them to the guardian."
    )
    max_rounds: int = Field(
        2, ge=0, le=5, description="How many times work may be sent back before it goes on flagged."
    )


class ReviewStep(_Step):
    """A reviewer agent: reads an earlier output and either passes it or sends it back with feedback."""

    kind: Literal["review"]
    target: str = Field(description="Id of the earlier step under review.")
    role: str = Field(description="System prompt of the reviewer.")
    prompt: str = Field(
        description="Jinja2 template; the reviewer must answer `PASS` or `REVISE: <what to fix>` on its first line."
    )
    send_back_to: str | None = Field(None, description="Step that drafts again on REVISE; defaults to `target`.")
    max_rounds: int = Field(
        2, ge=0, le=5, description="Bound on review rounds; afterwards the draft goes on with the notes."
    )
    llm: LLMSpec | None = Field(None, description="Override of the scenario's LLM settings for this step.")


Step = Annotated[LLMStep | TemplateStep | ToolStep | CheckStep | ReviewStep, Field(discriminator="kind")]


class OutputSpec(_Strict):
    """What the guardian receives as the draft and, once approved, what is released."""

    from_step: str | None = Field(
        None, alias="from", description="Step whose output is the draft; defaults to the last drafting step."
    )
    format: Literal["text", "markdown", "json"] = Field(
        "markdown", description="Decides the file extension and how edits are validated."
    )
    schema_: dict[str, Any] | None = Field(
        None, alias="schema", description="JSON Schema for `format: json` drafts and edits."
    )
    revise_to: str | None = Field(
        None, description="Step that drafts again when the guardian asks for revision; defaults to the first LLM step."
    )


class HandoffSpec(_Strict):
    """After release, start a run of another scenario with the approved output: one audited chain."""

    scenario: str = Field(pattern=ID_PATTERN, description="Id of the scenario that takes over.")
    when: str | None = Field(
        None,
        description="Jinja2 expression; hand off only when it is true, e.g. `steps.triage.category == '市容执法'`. "
        "It sees `steps` (what this scenario's own steps produced), `run` and `scenario`; never the inputs or the "
        "released text, which a requester's words can shape.",
    )
    inputs: dict[str, str] = Field(
        description="The next scenario's inputs, as Jinja2 templates over `output` (the released text), "
        "`output_json` (for JSON outputs), `inputs`, `run` and `scenario`."
    )


# --- the label every released text carries (GB 45438-2025) --------------------------------------
# What a label's wording sees, and what it must say: that AI drafted the text (in its language's
# words, as the standard's explicit labels do) and who approved it.
LABEL_NAMES = {"guardian", "approved_at", "scenario", "run"}
LABEL_MARKERS = {"zh": ("人工智能生成", "AI生成"), "en": ("AI-generated", "AI generated")}
DEFAULT_LABEL_TEXT = {
    "zh": "【人工智能生成内容】本文由数字员工「{{ scenario.name }}」起草，经{{ guardian.name }}"
    "{% if guardian.name != guardian.id %}（{{ guardian.id }}）{% endif %}于 {{ approved_at }} 审核批准发布。",
    "en": '[AI-generated content] Drafted by the digital employee "{{ scenario.name }}"; approved for release by '
    "{{ guardian.name }}{% if guardian.name != guardian.id %} ({{ guardian.id }}){% endif %} on {{ approved_at }}.",
}
_SAMPLE_GUARDIAN = {"id": "sample.guardian", "name": "SAMPLE-GUARDIAN-NAME"}


def label_context(*, guardian: dict, approved_at: str, scenario: Scenario, run: dict) -> dict[str, Any]:
    """What a label's wording sees: one definition for checking it at load time and rendering it."""
    return {
        "guardian": guardian,
        "approved_at": approved_at,
        "scenario": {"id": scenario.id, "name": scenario.name, "version": scenario.version},
        "run": run,
    }


def label_problem(language: str, rendered: str, guardian: dict) -> str | None:
    """Why a rendered label does not say what it must, or None."""
    if not rendered.strip():
        return "the label is empty"
    if not any(m.lower() in rendered.lower() for m in LABEL_MARKERS[language]):
        return f"a {language} label must say the text is AI-generated: include " + " or ".join(
            f"'{m}'" for m in LABEL_MARKERS[language]
        )
    if guardian["id"] not in rendered and guardian["name"] not in rendered:
        return "the label must name who approved it: include {{ guardian.name }} or {{ guardian.id }}"
    return None


class LabelText(_Strict):
    """Custom wording of the explicit label, per language (Jinja2); a language left out keeps dew's wording."""

    zh: str | None = Field(
        None,
        min_length=1,
        description="Chinese wording. Sees `guardian.name`, `guardian.id`, `approved_at` (`YYYY-MM-DD HH:MM UTC`), "
        "`scenario.name`/`.id`/`.version` and `run.id`/`.date`; must contain 人工智能生成 (or AI生成) and name the "
        "guardian. dew's: 【人工智能生成内容】本文由数字员工「执法文书生成 · …」起草，经李伟（li.wei）于 2026-11-24 09:30 UTC "
        "审核批准发布。",
    )
    en: str | None = Field(
        None,
        min_length=1,
        description="English wording, seeing the same names; must contain `AI-generated` and name the guardian. "
        'dew\'s: [AI-generated content] Drafted by the digital employee "…"; approved for release by 李伟 (li.wei) '
        "on 2026-11-24 09:30 UTC.",
    )

    @field_validator("zh", "en")
    @classmethod
    def _says_what_it_must(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        language = str(info.field_name)
        try:
            compile_template(value)
        except TemplateSyntaxError as e:
            raise PydanticCustomError("label_text", "template error on its line {line}: {msg}",
                                      {"line": e.lineno, "msg": e.message}) from None  # fmt: skip
        unknown = sorted(undeclared_names(value) - LABEL_NAMES)
        if unknown:
            raise PydanticCustomError(
                "label_text", "refers to '{name}', which a label cannot see (it sees: {names})",
                {"name": unknown[0], "names": ", ".join(sorted(LABEL_NAMES))},
            )  # fmt: skip
        sample = {
            "guardian": _SAMPLE_GUARDIAN,
            "approved_at": "2026-01-01 08:00 UTC",
            "run": {"id": 1, "date": "2026-01-01"},
            "scenario": {"id": "sample", "name": "sample", "version": "1"},
        }
        try:
            rendered = compile_template(value).render(**sample)
        except Exception as e:  # a sandboxed template fails in many ways; all of them are the file's mistake
            raise PydanticCustomError("label_text", "cannot be rendered: {error}", {"error": str(e)}) from None
        problem = label_problem(language, rendered, _SAMPLE_GUARDIAN)
        if problem:
            raise PydanticCustomError("label_text", problem)
        return value


class LabelSpec(_Strict):
    """The explicit label every released text carries (China's labelling measures for AI-generated content,
    GB 45438-2025): that AI drafted it and who approved it. An implicit label (who produced it, the work item,
    the approving guardian, the hashes, signed with the workspace key) is written beside the file as
    `<file>.label.json`, and inside Markdown files as an HTML comment at the end."""

    placement: Literal["top", "bottom"] = Field(
        "top",
        description="Where the label goes in the released text: before it or after it. JSON outputs stay the "
        "approved data: their label travels in the sidecar only.",
    )
    language: Literal["zh", "en", "both"] = Field(
        "zh", description="The label's language; `both` gives the Chinese line, then the English one."
    )
    text: LabelText | None = Field(None, description="Custom wording per language; default: dew's.")

    @model_validator(mode="after")
    def _wording_for_the_language(self) -> LabelSpec:
        if self.text is not None:
            used = {"zh", "en"} if self.language == "both" else {self.language}
            unused = [lang for lang in ("zh", "en") if getattr(self.text, lang) is not None and lang not in used]
            if unused:
                raise PydanticCustomError(
                    "label_text", "text.{lang} is given but language is {language}: set `language: both`, or "
                    "remove it", {"lang": unused[0], "language": self.language},
                )  # fmt: skip
        return self

    @property
    def languages(self) -> list[str]:
        return ["zh", "en"] if self.language == "both" else [self.language]

    def wording(self, language: str) -> str:
        custom = getattr(self.text, language) if self.text is not None else None
        return custom or DEFAULT_LABEL_TEXT[language]


class ReleaseSpec(_Strict):
    """Where an approved output goes. Version 1 knows the workspace outbox, and may hand off."""

    to: Literal["outbox"] = Field("outbox", description="`outbox` writes `<workspace>/outbox/<scenario>/<file>`.")
    filename: str = Field(
        "{{ run.id }}-{{ scenario.id }}", description="Jinja2 template of the file name, without extension."
    )
    label: LabelSpec = Field(
        default_factory=LabelSpec,
        description="The label saying that AI drafted the released text and who approved it (GB 45438-2025).",
    )
    handoff: HandoffSpec | None = Field(None, description="A scenario to start with the released output.")


class Example(_Strict):
    """Sample inputs shipped with the scenario, used by `dew demo`, docs and tests."""

    name: str = Field(description="Short label of the sample.")
    inputs: dict[str, Any] = Field(description="Values for the scenario's inputs.")


DURATION_PATTERN = r"^[1-9][0-9]{0,4}[mhd]$"


def duration(text: str) -> timedelta:
    """'90m', '8h' or '2d' as a timedelta (the form `deadline` and `remind_before` take)."""
    n, unit = int(text[:-1]), text[-1]
    return {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]


class SignoffStage(_Strict):
    """One sign-off before the guardian's own (e.g. a legal review before the responsible official)."""

    name: str = Field(
        min_length=1, description="What this sign-off is, shown on the item, e.g. `法制审核 · legal review`."
    )
    guardian: str = Field(pattern=PERSON_PATTERN, description="Roster id of the person who signs off at this stage.")
    backups: list[Annotated[str, Field(pattern=PERSON_PATTERN)]] = Field(
        default_factory=list, description="Roster ids who may sign off at this stage instead."
    )


@dataclass(frozen=True)
class Stage:
    name: str
    guardian: str
    backups: tuple[str, ...]


class Scenario(_Strict):
    """One digital employee's job."""

    dew: Literal[1] = Field(1, description="Format version of this file.")  # FORMAT_VERSION
    id: str = Field(
        pattern=ID_PATTERN, description="Stable identifier, used on the command line and in the outbox path."
    )
    name: str = Field(min_length=1, description="Display name.")
    description: str = Field(min_length=1, description="One paragraph: what this digital employee does and for whom.")
    version: str = Field(
        min_length=1, description="Author's version label; the audit trail also records the file's SHA-256."
    )
    guardian: str = Field(pattern=PERSON_PATTERN, description="Roster id of the person answerable for every output.")
    backups: list[Annotated[str, Field(pattern=PERSON_PATTERN)]] = Field(
        default_factory=list, description="Roster ids who may decide when the guardian cannot."
    )
    risk: Literal["low", "medium", "high"] = Field(description="Risk level shown with every work item.")
    priority: Literal["urgent", "normal", "batch"] = Field(
        default="normal",
        description="Which runs workers take first when runs wait for them (the distributed engine): urgent "
        "(a hotline case), normal, batch (a screen of hundreds).",
    )
    signoff: list[SignoffStage] = Field(
        default_factory=list,
        description="Sign-offs needed, in order, before the guardian's own (which is always the last). Any "
        "rejection ends the item; nothing is released before the last sign-off; one person signs once per item.",
    )
    two_person: bool = Field(
        False,
        description="Two different people from the guardian and the backups must sign off (the four-eyes rule "
        "for `risk: high` work): a first sign-off, then the final one by someone else.",
    )
    deadline: str | None = Field(
        None,
        pattern=DURATION_PATTERN,
        description="How long an item may wait for each sign-off, e.g. `8h`, `2d`, `90m`. A reminder goes out "
        "before it lapses; an overdue item escalates to the backups, and after a second period to the person an "
        "admin names (`dew scenarios escalate-to`). Nothing is ever approved by timeout.",
    )
    remind_before: str | None = Field(
        None, pattern=DURATION_PATTERN, description="When to remind before the deadline. Default: a quarter of it."
    )
    sign: Literal["required", "optional"] | None = Field(
        None,
        description="Whether each decision must be signed with the decider's own key (Ed25519: a key file made by "
        "`dew keys create`, or a key kept in their browser). `required` refuses an unsigned decision; `optional` "
        "records a signature when one is given. Default: `required` for `risk: high`, else `optional`.",
    )
    data: Literal["public", "internal", "sensitive"] = Field(
        "internal",
        description="What the data this scenario handles may reach: `public` data any model endpoint; `internal` "
        "(the office's own work) only local endpoints and those the administrator declares internal "
        "(`DEW_LLM_INTERNAL`); `sensitive` (personal data, enforcement cases) only local endpoints and internal ones "
        "cleared for it (`host=sensitive`). A run whose endpoint may not receive it is refused before any model call.",
    )
    pii: PiiPolicy = Field(
        "pseudonymise",
        description="Personal data in what a model is sent: `pseudonymise` (placeholders such as `[PHONE_1]` go to the "
        "model, the values come back in its reply), `keep` (sent as it is), or `refuse` (inputs holding any are "
        "refused). The default of every input, which may set its own; `keep` also leaves tool results and earlier "
        "outputs as they are.",
    )
    llm: LLMSpec | None = Field(None, description="LLM settings for every step of this scenario.")
    inputs: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], InputSpec] = Field(description="Inputs by name.")
    steps: list[Step] = Field(min_length=1, description="Run in order; checks and reviewers may send work back.")
    output: OutputSpec = Field(default_factory=OutputSpec, description="The draft the guardian decides on.")
    release: ReleaseSpec = Field(default_factory=ReleaseSpec, description="Where an approved output goes.")
    examples: list[Example] = Field(default_factory=list, description="Sample inputs.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # -- derived facts the compiler and the guardians need ---------------------------------------
    def step(self, step_id: str):
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def draft_step(self) -> str:
        if self.output.from_step:
            return self.output.from_step
        drafting = [s.id for s in self.steps if isinstance(s, DRAFTING)]
        return drafting[-1]

    @property
    def revise_step(self) -> str:
        if self.output.revise_to:
            return self.output.revise_to
        return next((s.id for s in self.steps if isinstance(s, LLMStep)), self.steps[0].id)

    def stages(self) -> list[Stage]:
        """Every sign-off an item needs, in order; the guardian's is the last."""
        final = Stage("监护人签发 · guardian's sign-off", self.guardian, tuple(self.backups))
        first = [Stage(st.name, st.guardian, tuple(st.backups)) for st in self.signoff]
        if self.two_person:
            first.append(Stage("第一签 · first sign-off", self.guardian, tuple(self.backups)))
        return [*first, final]

    def people(self) -> list[str]:
        """Everyone who may be asked to sign off: guardian, backups and every stage's."""
        seen: list[str] = []
        for st in self.stages():
            seen += [p for p in (st.guardian, *st.backups) if p not in seen]
        return seen

    def pii_of(self, input_name: str) -> str:
        declared = self.inputs[input_name].pii if input_name in self.inputs else None
        return declared or self.pii

    @property
    def signing_required(self) -> bool:
        return self.sign == "required" or (self.sign is None and self.risk == "high")

    @property
    def wait(self) -> timedelta | None:
        return duration(self.deadline) if self.deadline else None

    @property
    def remind_at(self) -> timedelta | None:
        """How long before the deadline the reminder goes out."""
        if not self.deadline:
            return None
        return duration(self.remind_before) if self.remind_before else duration(self.deadline) / 4

    @property
    def extension(self) -> str:
        return {"text": "txt", "markdown": "md", "json": "json"}[self.output.format]


DRAFTING = (LLMStep, TemplateStep, ToolStep)  # steps that produce an output


def json_schema() -> dict:
    """The JSON Schema of the scenario format, for editors (yaml-language-server) and docs."""
    schema = Scenario.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dew scenario (format version 1)"
    return schema


_ref = re.compile(r"\bsteps\.([a-z][a-z0-9_]*)")


def referenced_steps(template: str) -> set[str]:
    """Step ids a prompt/template mentions as `steps.<id>` (best effort, for load-time checks)."""
    return set(_ref.findall(template))
