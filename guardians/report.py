"""Chain-of-custody reports for an inspector: one work item followed along its whole hand-off
chain, or every decision of a period, in HTML or PDF, in Chinese or English.

An item report answers the auditor's four questions from the records themselves:

- who signed off: every sign-off and decision, the person, the rule that let them decide
  (owner, backup, delegate, escalation), how they proved who they were, their note, and, for a
  signed decision, the key (id and fingerprint as the trail registered it) and the exact
  statement it signed;
- what they saw: each draft round's text and SHA-256, the checker findings queued with it, and the
  draft hash each decision and signature covers;
- what the machine contributed: every model call behind a draft (model, endpoint, parameters,
  prompt and output hashes, tool calls by argument and result hash);
- can the record be proved unchanged: a verification section computed when the report is made —
  the hash chain (`audit.verify`), the rows against their events (`crosscheck.check_rows`), every
  signature against the key the trail recorded (`signing.check_trail`), each release against the
  outbox (`reconcile.find_problems`) — with the trail's head (SEQ:SHA256) and the time, which the
  inspector can later hold against an anchor or a signed checkpoint (`dew audit verify`).

What the report states of a decision comes from the hash-chained trail (who, when, action, rule,
sign-in method, note, hashes, signatures); the texts the trail keeps only by hash (inputs, drafts,
edit diffs) come from the rows, whose hashes the verification section checks. Inputs and drafts
are untrusted text: the templates autoescape everything and show hidden characters as escapes.

A period report counts, per scenario, the work items queued in the period and what became of them
(the definitions of `dew stats`), the decisions and sign-offs made in the period and how many were
signed, and lists those decisions; it reads them a page at a time, so memory stays flat however
long the period.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import case, func
from sqlmodel import Session, col, select

from dew.agents.errors import DewError, InputInvalid
from dew.agents.hidden import visible
from dew.guardians.errors import AuditBroken, NotFound

from . import audit, signing, stats
from .crosscheck import DECISION_KINDS, Mismatch, check_rows
from .db import reading, transaction
from .models import AuditEvent, AuditHead, Decision, Guardian, Release, Run, SignOff, User, WorkItem, utcnow
from .queue import chain_of
from .reconcile import find_problems

if TYPE_CHECKING:
    from .workspace import Workspace

LANGUAGES = ("zh", "en")
FORMATS = ("html", "pdf")
TEMPLATES = Path(__file__).parent / "report_templates"
BATCH = 500  # decisions read per query in a period report
LISTED = 50  # problems of one kind named one by one; past that, only counted

# Every label of the reports, in Chinese and English (one table, so no heading exists in one only).
T: dict[str, tuple[str, str]] = {
    "title.item": ("监管链审计报告 · 工作项 {item}", "Chain-of-custody report · work item {item}"),
    "title.period": ("期间审计报告", "Audit report for a period"),
    "generated": ("生成时间", "Generated at"),
    "head": ("生成时审计链头", "Audit trail head at report time"),
    "head.none": ("（无）", "(none)"),
    "head.short": ("审计链头", "Trail head"),
    "generated.short": ("生成于", "generated"),
    "intro.item": (
        "本报告依据审计链（哈希链式、只追加）与数据库记录生成，说明谁签发了该工作项、签发时看到的内容、"
        "机器（模型与工具）所做的贡献，以及自记录以来记录是否被更改。核验结果为生成时即时计算。",
        "This report is drawn from the hash-chained, append-only audit trail and the database records: who "
        "signed off this work item, exactly what they saw, what the machine (models and tools) contributed, "
        "and whether the record changed since. The verification was computed when the report was made.",
    ),
    "intro.period": (
        "工作项统计口径：期间内进入待办的工作项及其结果（与 dew stats 相同）；决定与签发：期间内作出的决定与阶段签发。",
        "Counts: the work items queued in the period and what became of them (as dew stats counts them); "
        "decisions: the decisions and stage sign-offs made in the period.",
    ),
    "item": ("工作项", "Work item"),
    "run": ("运行", "Run"),
    "chain": ("移交链", "Hand-off chain"),
    "chain.runs": ("运行 {runs}", "runs {runs}"),
    "status": ("状态", "Status"),
    "scenario.id": ("场景编号", "Scenario id"),
    "scenario.name": ("名称", "Name"),
    "scenario.version": ("版本", "Version"),
    "scenario.sha": ("场景 YAML 的 SHA-256", "Scenario YAML SHA-256"),
    "requester": ("发起人", "Requester"),
    "requested_at": ("发起时间", "Requested at"),
    "parent": ("由运行 {run} 移交而来", "handed off from run {run}"),
    "origin": ("来源", "Origin"),
    "inputs": ("输入", "Inputs"),
    "inputs.sha": ("输入的 SHA-256（审计链记录）", "Inputs SHA-256 (recorded in the trail)"),
    "inputs.cleared": (
        "输入已于 {at} 按保存期限清除；审计链保留其哈希。",
        "The inputs were cleared by retention on {at}; the trail keeps their hash.",
    ),
    "inputs.none": ("（无）", "(none)"),
    "round": ("第 {n} 轮草稿 · 工作项 {item}", "Draft round {n} · work item {item}"),
    "round.queued": ("进入 {guardian} 的待办", "queued for {guardian}"),
    "draft": ("草稿全文", "Draft text"),
    "draft.sha": ("草稿 SHA-256（审计链记录）", "Draft SHA-256 (recorded in the trail)"),
    "draft.cleared": (
        "草稿文本已按保存期限清除；审计链保留其哈希。",
        "The draft text was cleared by retention; the trail keeps its hash.",
    ),
    "findings": ("检查与审核意见", "Checker findings"),
    "findings.none": ("无", "none"),
    "models": ("机器的贡献：模型调用", "What the machine contributed: model calls"),
    "models.none": (
        "本轮草稿仅由确定性步骤生成，未调用模型。",
        "Deterministic steps only: no model was called for this draft.",
    ),
    "col.step": ("步骤", "Step"),
    "col.model": ("模型", "Model"),
    "col.endpoint": ("接口地址", "Endpoint"),
    "col.parameters": ("参数", "Parameters"),
    "col.prompt": ("提示词 SHA-256", "Prompt SHA-256"),
    "col.output": ("输出 SHA-256", "Output SHA-256"),
    "col.tools": ("工具调用（参数 / 结果 SHA-256）", "Tool calls (argument / result SHA-256)"),
    "col.verdict": ("审核结论", "Verdict"),
    "decisions": ("签发与决定", "Sign-offs and decisions"),
    "decisions.none": ("尚无决定。", "Not decided yet."),
    "step.signoff": ("阶段签发 {n}：{stage}", "Sign-off, stage {n}: {stage}"),
    "step.decision": ("决定（{stage}）", "Decision ({stage})"),
    "who": ("决定人", "Decided by"),
    "when": ("时间", "At"),
    "action": ("决定", "Action"),
    "rule": ("决定依据", "Rule"),
    "auth": ("身份验证方式", "How authenticated"),
    "note": ("意见 / 理由", "Note / reason"),
    "seen": ("所审草稿的 SHA-256", "SHA-256 of the draft decided on"),
    "seen.same": ("与本轮草稿一致", "matches this round's draft"),
    "seen.other": ("与本轮草稿不一致", "differs from this round's draft"),
    "edited.sha": ("修改后文本 SHA-256", "Edited text SHA-256"),
    "diff": ("修改差异", "The edit (diff)"),
    "delegation": ("委托编号", "Delegation"),
    "signature": ("电子签名", "Signature"),
    "signature.none": ("未签名", "not signed"),
    "signature.key": ("签名密钥", "Signing key"),
    "signature.fingerprint": ("密钥指纹（SHA-256）", "Key fingerprint (SHA-256)"),
    "signature.statement": ("所签声明", "Signed statement"),
    "signature.value": ("签名值（Ed25519，Base64）", "Signature (Ed25519, base64)"),
    "signature.ok": ("签名有效（以审计链登记的公钥核验）", "valid (checked with the key the trail registered)"),
    "signature.bad": ("签名无效：{detail}", "does not hold: {detail}"),
    "signature.key_of": ("{person} 的密钥 {key}", "{person}'s key {key}"),
    "signature.unregistered": ("审计链中未登记", "not registered in the trail"),
    "release": ("发布", "Release"),
    "release.none": ("未发布。", "Not released."),
    "release.destination": ("发布去向", "Destination"),
    "release.file": ("文件", "File"),
    "release.sha": ("发布文件 SHA-256", "Released file SHA-256"),
    "release.content": ("批准文本 SHA-256", "Approved text SHA-256"),
    "release.label": ("内容标识", "Content label"),
    "release.label.none": ("无（标识功能之前的发布）", "none (released before labels)"),
    "release.label.id": ("ProduceID {id}，制作者 {producer}", "ProduceID {id}, producer {producer}"),
    "release.file_ok": ("发件箱中的文件与记录一致", "the file in the outbox matches the record"),
    "recall": ("撤回", "Recall"),
    "recall.line": ("{by} 于 {at} 撤回，理由：{reason}", "recalled by {by} on {at}: {reason}"),
    "handoffs": ("移交", "Hand-offs"),
    "handoff.done": ("移交给场景 {scenario}，运行 {run}", "handed off to {scenario}, run {run}"),
    "handoff.skipped": ("未移交给 {scenario}：{reason}", "no hand-off to {scenario}: {reason}"),
    "handoff.failed": ("移交给 {scenario} 失败：{reason}", "hand-off to {scenario} failed: {reason}"),
    "events": ("审计事件", "Audit events"),
    "col.seq": ("序号", "Seq"),
    "col.at": ("时间（UTC）", "At (UTC)"),
    "col.kind": ("事件", "Event"),
    "col.actor": ("执行者", "Actor"),
    "col.hash": ("哈希", "Hash"),
    "verification": ("核验", "Verification"),
    "verification.scope.item": (
        "针对本移交链的记录；审计链完整性针对整个审计链。",
        "For the records of this hand-off chain; the chain's integrity for the whole trail.",
    ),
    "verification.scope.all": ("针对整个工作区。", "For the whole workspace."),
    "verification.ok": ("全部核验通过", "Everything verified"),
    "verification.bad": ("发现问题，详见下文", "Problems found, listed below"),
    "check.chain": ("审计链完整", "Audit chain intact"),
    "check.chain.ok": (
        "审计链完整：共 {events} 个事件，无一被更改、删除、插入或重排。",
        "Audit chain intact: {events} events, none changed, removed, inserted or reordered.",
    ),
    "check.chain.bad": (
        "审计链已被破坏（第一个异常事件：{seq}）：{detail}",
        "Audit chain broken (first bad event {seq}): {detail}",
    ),
    "check.rows": ("记录与审计链一致", "Records agree with the trail"),
    "check.rows.ok": (
        "运行、草稿、决定、签发与发布记录均与记录它们的审计事件一致。",
        "Every run, draft, decision, sign-off and release record agrees with the event that recorded it.",
    ),
    "check.rows.bad": ("{n} 条记录与审计链不一致：", "{n} record(s) disagree with the trail:"),
    "check.rows.elsewhere": ("（工作区其他部分另有 {n} 条不一致。）", "({n} more elsewhere in the workspace.)"),
    "check.signatures": ("签名有效", "Signatures verified"),
    "check.signatures.ok": (
        "{n} 个签名均以审计链登记的公钥核验有效。",
        "{n} signature(s), each valid with the key the trail registered.",
    ),
    "check.signatures.bad": ("{n} 个签名中有问题：", "Of {n} signature(s), these do not hold:"),
    "check.release": ("发布文件一致", "Released files match"),
    "check.release.ok": (
        "每个发布的文件及其标识均在发件箱中，且与批准内容一致。",
        "Every released file and its label are in the outbox exactly as approved.",
    ),
    "check.release.none": ("没有需要核对的发布。", "No release to check."),
    "check.release.bad": ("发布文件问题：", "Release problems:"),
    "check.failed": ("无法核验：{detail}", "Could not be checked: {detail}"),
    "more": ("……另有 {n} 条", "… and {n} more"),
    "verification.how": (
        "日后可用以下命令核对本报告所依据的审计链仍然存在、未被改写：",
        "Later, this command checks that the trail this report rests on is still there, unchanged:",
    ),
    "period": ("期间", "Period"),
    "period.range": ("{since} 至 {until}（不含）", "{since} to {until} (exclusive)"),
    "period.open": ("不限", "open"),
    "summary": ("按场景汇总", "Summary by scenario"),
    "summary.none": ("期间内没有工作项或决定。", "No work items or decisions in the period."),
    "col.items": ("工作项", "Items"),
    "col.approved": ("批准", "Approved"),
    "col.edited": ("修改后批准", "Edited"),
    "col.rejected": ("驳回", "Rejected"),
    "col.revised": ("退回修改", "Revised"),
    "col.released": ("已发布", "Released"),
    "col.recalled": ("已撤回", "Recalled"),
    "col.decisions": ("期间内决定", "Decisions in period"),
    "col.signed": ("其中已签名", "of them signed"),
    "total": ("合计", "Total"),
    "decision_list": ("期间内的决定与签发", "Decisions and sign-offs in the period"),
    "col.item": ("工作项", "Item"),
    "col.scenario": ("场景", "Scenario"),
    "col.decider": ("决定人", "Decided by"),
    "col.action": ("决定", "Action"),
    "col.when": ("时间（UTC）", "At (UTC)"),
    "col.signed_q": ("签名", "Signed"),
    "col.rule": ("依据", "Rule"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "action.approve": ("批准", "approve"),
    "action.edit": ("修改后批准", "edit and approve"),
    "action.reject": ("驳回", "reject"),
    "action.revise": ("退回修改", "send back for revision"),
    "action.signoff": ("阶段签发：{stage}", "sign-off: {stage}"),
    "rule.owner": ("监护人本人", "owner"),
    "rule.backup": ("备岗", "backup"),
    "rule.delegate": ("受委托人", "delegate"),
    "rule.escalation": ("超时升级", "escalation"),
    "auth.declared": ("自述身份（未验证）", "declared (not proven)"),
    "auth.password": ("密码登录", "password"),
    "auth.token": ("本人 API 令牌", "own API token"),
    "auth.issued_token": ("他人签发的令牌", "issued token"),
    "auth.proxy": ("单点登录代理", "single sign-on proxy"),
    "status.queued": ("排队中", "queued"),
    "status.running": ("运行中", "running"),
    "status.awaiting_decision": ("等待决定", "awaiting a decision"),
    "status.approved": ("已批准", "approved"),
    "status.released": ("已发布", "released"),
    "status.rejected": ("已驳回", "rejected"),
    "status.failed": ("失败", "failed"),
}


def translate(lang: str, name: str, **values: Any) -> str:
    zh, en = T[name]
    text = zh if lang == "zh" else en
    return text.format(**values) if values else text


def check_lang(lang: str) -> str:
    if lang not in LANGUAGES:
        raise InputInvalid(f"a report is in Chinese (zh) or English (en), not '{lang}'")
    return lang


# --- verification at report time ---------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """The records one item report covers, to narrow the workspace-wide checks to them."""

    seqs: frozenset[int]
    runs: frozenset[int]
    items: frozenset[int]
    decisions: frozenset[int]
    signoffs: frozenset[int]
    releases: frozenset[int]
    signatures: int  # signed decisions and sign-offs among the events

    def covers(self, m: Mismatch) -> bool:
        if m.seq is not None and m.seq in self.seqs:
            return True
        keys = {"runs": self.runs, "work_items": self.items, "decisions": self.decisions,
                "signoffs": self.signoffs, "releases": self.releases}  # fmt: skip
        return m.key is not None and m.key in keys.get(m.table, frozenset())


def _attempt(check: Callable[[], Any]) -> tuple[Any, str | None]:
    """A check's result, or why it could not run: a report must still come out of a damaged record."""
    try:
        return check(), None
    except (DewError, ValueError, KeyError, TypeError) as e:  # e.g. event data no longer JSON
        return None, getattr(e, "message", None) or f"{type(e).__name__}: {e}"


def verification(ws: Workspace, scope: Scope | None = None) -> dict[str, Any]:
    """Every check of `dew audit verify`, made now, narrowed to `scope` (the chain's integrity is
    always the whole trail's: one changed event anywhere breaks every hash after it)."""
    generated_at = utcnow().isoformat(timespec="seconds")
    with reading(ws.engine) as s:
        head_row = s.get(AuditHead, 1)
        head = f"{head_row.seq}:{head_row.hash}" if head_row is not None and head_row.seq else None
        chain: dict[str, Any]
        try:
            result = audit.verify(s)
            chain = {"ok": True, "events": result.events, "seq": None, "detail": None}
            head = result.anchor if result.events else None
        except AuditBroken as e:
            chain = {"ok": False, "events": None, "seq": e.seq, "detail": e.message}
        rows, rows_error = _attempt(lambda: check_rows(s))
        trail, signatures_error = _attempt(lambda: signing.check_trail(s))
    problems, release_error = _attempt(lambda: find_problems(ws))
    mismatches = [m for m in rows or [] if scope is None or scope.covers(m)]
    bad_signatures = [p for p in (trail[1] if trail else []) if scope is None or p.seq in scope.seqs]
    signed = scope.signatures if scope is not None else (trail[0] if trail else 0)
    releases = [p for p in problems or [] if scope is None or (p.run_id is not None and p.run_id in scope.runs)]
    by_run: dict[int, list[str]] = {}
    for p in releases:
        if p.run_id is not None:
            by_run.setdefault(p.run_id, []).append(f"{p.kind}: {p.detail}")
    checks: dict[str, dict[str, Any]] = {
        "chain": chain,
        "rows": {"ok": rows_error is None and not mismatches, "error": rows_error,
                 "problems": [str(m) for m in mismatches], "elsewhere": len(rows or []) - len(mismatches)},
        "signatures": {"ok": signatures_error is None and not bad_signatures, "error": signatures_error,
                       "count": signed, "problems": [str(p) for p in bad_signatures],
                       "by_seq": {p.seq: p.detail for p in bad_signatures}},
        "release": {"ok": release_error is None and not releases, "error": release_error,
                    "problems": [f"{p.kind}: {p.detail}" for p in releases], "by_run": by_run,
                    "checked": bool(scope.releases) if scope is not None else True},
    }  # fmt: skip
    ok = all(c["ok"] for c in checks.values())
    return {**checks, "ok": ok, "head": head, "generated_at": generated_at, "scope": "item" if scope else "all"}


# --- one work item, along its hand-off chain -----------------------------------------------------------
def item_report(ws: Workspace, item_id: int) -> dict[str, Any]:
    """Everything behind a work item and the runs its chain links, with a verification made now."""
    with transaction(ws.engine) as s:
        subject = s.get(WorkItem, item_id)
        if subject is None:
            raise NotFound(f"no work item {item_id}")
        chain = chain_of(s, subject.run_id)
        events = list(audit.events(s, run_ids=chain))
        runs = {r.key: r for r in s.exec(select(Run).where(col(Run.id).in_(chain))).all()}
        items = {i.key: i for i in s.exec(select(WorkItem).where(col(WorkItem.run_id).in_(chain))).all()}
        decisions = {d.item_id: d for d in s.exec(select(Decision).where(col(Decision.run_id).in_(chain))).all()}
        signoffs = list(s.exec(select(SignOff).where(col(SignOff.item_id).in_(list(items)))).all())
        releases = {r.run_id: r for r in s.exec(select(Release).where(col(Release.run_id).in_(chain))).all()}
        shas = {r.scenario_sha256 for r in runs.values()}
        used_keys = {_data(e)["signed"].get("key") for e in events if isinstance(_data(e).get("signed"), dict)}
        keys, side = _side_events(s, set(chain), shas, used_keys)
        names = _names(s)
    scope = Scope(
        seqs=frozenset(e.seq for e in events + side),
        runs=frozenset(chain),
        items=frozenset(items),
        decisions=frozenset(d.key for d in decisions.values()),
        signoffs=frozenset(x.key for x in signoffs),
        releases=frozenset(r.key for r in releases.values()),
        signatures=sum(isinstance(_data(e).get("signed"), dict) for e in events),
    )
    checks = verification(ws, scope)
    out_runs = [
        _run_section(ws, runs[r], [e for e in events if e.run_id == r], items, decisions, keys, names, checks)
        for r in chain
        if r in runs
    ]
    listed = sorted(events + side, key=lambda e: e.seq)
    return {
        "kind": "item",
        "item": item_id,
        "run": subject.run_id,
        "chain": chain,
        "runs": out_runs,
        "events": [_event_row(e) for e in listed],
        "verification": checks,
    }


def _data(e: AuditEvent) -> dict[str, Any]:
    try:
        value = json.loads(e.data)
    except ValueError:
        return {}  # an event altered into something unreadable: the chain check names it
    return value if isinstance(value, dict) else {}


def _side_events(
    s: Session, chain: set[int], shas: set[str], used_keys: set[Any]
) -> tuple[dict[int, dict[str, Any]], list[AuditEvent]]:
    """The events outside the runs' own that their record rests on: the registration (and any
    revocation) of each key that signed, the recording of each scenario version, each clearing by
    retention. Returns the keys as the trail registered them, and those events."""
    keys: dict[int, dict[str, Any]] = {}
    side: list[AuditEvent] = []
    kinds = ["signing_key.registered", "signing_key.revoked", "scenario.version_recorded", "retention.cleared"]
    for e in audit.events(s, kinds=kinds):
        d = _data(e)
        if e.kind == "signing_key.registered" and d.get("key_id") in used_keys:
            keys[d["key_id"]] = {**d, "seq": e.seq, "at": e.at}
        elif e.kind == "signing_key.revoked" and d.get("key_id") in used_keys:
            keys.setdefault(d["key_id"], {})["revoked"] = e.at
        elif not (
            (e.kind == "scenario.version_recorded" and d.get("scenario_sha256") in shas)
            or (e.kind == "retention.cleared" and chain & set(d.get("runs") or []))
        ):
            continue
        side.append(e)
    return keys, side


def _names(s: Session) -> dict[str, str]:
    """Everyone's display name (the roster's, else the user's), for 'li.wei (李伟)'."""
    names = {u.id: u.name for u in s.exec(select(User)).all()}
    names.update({g.id: g.name for g in s.exec(select(Guardian)).all()})
    return names


def _spec_of(ws: Workspace, sha256: str):
    try:
        return ws.stored_scenario(sha256).spec
    except DewError:  # a version row gone or unreadable: the row check says so; the report goes on
        return None


def _run_section(
    ws: Workspace,
    run: Run,
    events: list[AuditEvent],
    items: dict[int, WorkItem],
    decisions: dict[int, Decision],
    keys: dict[int, dict[str, Any]],
    names: dict[str, str],
    checks: dict[str, Any],
) -> dict[str, Any]:
    spec = _spec_of(ws, run.scenario_sha256)
    stages = [st.name for st in spec.stages()] if spec is not None else []
    requested = next((e for e in events if e.kind == "run.requested"), None)
    asked = _data(requested) if requested is not None else {}
    rounds: dict[int, dict[str, Any]] = {}
    signed_off: dict[int, int] = {}  # item → sign-offs seen, the stage of its next decision
    release: dict[str, Any] | None = None
    recalls, handoffs = [], []
    for e in events:
        d = _data(e)
        if e.kind == "run.drafted" and e.item_id is not None:
            rounds[e.item_id] = _round(e, d, items.get(e.item_id), run, names)
        elif (e.kind == "decision.signed_off" or e.kind in DECISION_KINDS) and e.item_id is not None:
            stage = signed_off.get(e.item_id, 0)
            if e.kind == "decision.signed_off":
                signed_off[e.item_id] = stage + 1
            step = _step(e, d, stage, stages, decisions.get(e.item_id), keys, names, checks)
            if e.item_id in rounds:
                rounds[e.item_id]["steps"].append(step)
                step["seen_same"] = step["draft_sha256"] == rounds[e.item_id]["draft_sha256"]
        elif e.kind == "output.released":
            release = _release(e, d, checks)
        elif e.kind == "output.recalled":
            recalls.append({"by": _who(e.actor, names), "at": e.at, "reason": d.get("reason", ""), "seq": e.seq})
        elif e.kind in ("run.handed_off", "run.handoff_skipped", "run.handoff_failed"):
            handoffs.append({"kind": e.kind.removeprefix("run."), "seq": e.seq, **d})
    kept = run.cleared_at is None
    return {
        "id": run.id,
        "status": run.status,
        "parent": run.parent_run_id,
        "scenario": {
            "id": run.scenario_id,
            "name": spec.name if spec is not None else None,
            "version": asked.get("version") or (spec.version if spec is not None else None),
            "sha256": run.scenario_sha256,
        },
        "requester": _who(requested.actor if requested is not None else run.requester, names),
        "requested_at": requested.at if requested is not None else None,
        "requested_seq": requested.seq if requested is not None else None,
        "origin": asked.get("origin"),
        "inputs": [(k, _text(v)) for k, v in run.inputs.items()] if kept else None,
        "input_names": asked.get("input_names") or [],
        "inputs_sha256": asked.get("inputs_sha256"),
        "cleared_at": run.cleared_at.isoformat() if run.cleared_at else None,
        "rounds": list(rounds.values()),
        "release": release,
        "recalls": recalls,
        "handoffs": handoffs,
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _who(person: str, names: dict[str, str]) -> str:
    name = names.get(person)
    return f"{person} ({name})" if name and name != person else person


def _round(e: AuditEvent, d: dict[str, Any], item: WorkItem | None, run: Run, names: dict[str, str]) -> dict[str, Any]:
    provenance = item.provenance if item is not None else []
    models = []
    for call in d.get("models") or []:
        # The trail's record of a call, with what the work item adds: a reviewer's verdict.
        extra = next((p for p in provenance if p.get("step") == call.get("step")
                      and p.get("prompt_sha256") == call.get("prompt_sha256")), {})  # fmt: skip
        models.append({**call, "verdict": extra.get("verdict"),
                       "parameters": _text(call["parameters"]) if call.get("parameters") else ""})  # fmt: skip
    draft = item.draft if item is not None else ""
    return {
        "item": e.item_id,
        "revision": d.get("revision", 0),
        "queued_to": _who(str(d.get("guardian", "")), names),
        "at": e.at,
        "seq": e.seq,
        "draft": draft,
        "cleared": run.cleared_at is not None and draft == "",
        "draft_sha256": d.get("draft_sha256"),
        "findings": d.get("findings") or [],
        "models": models,
        "steps": [],
    }


def _step(
    e: AuditEvent,
    d: dict[str, Any],
    stage: int,
    stages: list[str],
    decision: Decision | None,
    keys: dict[int, dict[str, Any]],
    names: dict[str, str],
    checks: dict[str, Any],
) -> dict[str, Any]:
    signoff = e.kind == "decision.signed_off"
    action = "approve" if signoff else str(d.get("action", ""))
    signed = d.get("signed") if isinstance(d.get("signed"), dict) else None
    signature = None
    if signed is not None:
        key = keys.get(signed.get("key"), {})
        signature = {
            "key": signed.get("key"),
            "person": key.get("person"),
            "fingerprint": key.get("fingerprint"),
            "kind": key.get("key_kind"),  # file | browser: a browser key any script of the desk could use
            "registered_how": key.get("auth_method"),
            "registered_seq": key.get("seq"),
            "statement": signed.get("statement", ""),
            "value": signed.get("signature", ""),
            "problem": checks["signatures"]["by_seq"].get(e.seq),
        }
    if signoff and isinstance(d.get("stage"), int):
        stage = d["stage"]
    stage_name = d.get("stage_name") if signoff else (stages[stage] if stage < len(stages) else None)
    return {
        "signoff": signoff,
        "stage": stage + 1,
        "stage_name": stage_name or "",
        "actor": _who(e.actor, names),
        "at": e.at,
        "seq": e.seq,
        "action": action,
        "rule": d.get("rule"),
        "auth_method": d.get("auth_method"),
        "note": d.get("note"),
        "draft_sha256": d.get("draft_sha256"),
        "edited_sha256": d.get("edited_sha256"),
        "delegation": d.get("delegation"),
        "diff": decision.diff if decision is not None and not signoff and action == "edit" else None,
        "signature": signature,
        "seen_same": None,
    }


def _release(e: AuditEvent, d: dict[str, Any], checks: dict[str, Any]) -> dict[str, Any]:
    label = d.get("label") if isinstance(d.get("label"), dict) else None  # releases before labels have none
    shown = None
    if label is not None:
        aigc = label.get("AIGC") or {}
        shown = {"produce_id": aigc.get("ProduceID", ""), "producer": aigc.get("ContentProducer", ""),
                 "text": (label.get("explicit") or {}).get("text") or []}  # fmt: skip
    return {
        "seq": e.seq,
        "at": e.at,
        "by": e.actor,
        "destination": d.get("destination"),
        "location": d.get("location", ""),
        "sha256": d.get("sha256"),
        "content_sha256": d.get("content_sha256"),
        "label": shown,
        "problems": checks["release"]["by_run"].get(e.run_id, []),
    }


def _event_row(e: AuditEvent) -> dict[str, Any]:
    return {"seq": e.seq, "at": e.at, "kind": e.kind, "actor": e.actor, "run": e.run_id, "item": e.item_id,
            "hash": e.hash}  # fmt: skip


# --- a period ---------------------------------------------------------------------------------------
def period_report(
    ws: Workspace, *, since: datetime | None, until: datetime | None, scenario: str | None = None
) -> dict[str, Any]:
    """Counts per scenario, the decisions made in [since, until) (an iterator, read a page at a time
    while the report is written), and a verification of the whole workspace made now."""
    figures = stats.compute(ws, by="scenario", since=since, until=until)
    with transaction(ws.engine) as s:
        made = _decision_counts(s, since, until, scenario)
    rows: dict[str, dict[str, Any]] = {}
    for g in figures.groups:
        if g.key is not None and (scenario is None or g.key == scenario):
            rows[g.key] = {"scenario": g.key, **{k: getattr(g, k) for k in _COUNTED}, "decisions": 0, "signed": 0}
    for key, (count, signed) in made.items():
        row = rows.setdefault(key, {"scenario": key, **dict.fromkeys(_COUNTED, 0), "decisions": 0, "signed": 0})
        row["decisions"], row["signed"] = count, signed
    summary = sorted(rows.values(), key=lambda r: r["scenario"])
    total = {k: sum(r[k] for r in summary) for k in (*_COUNTED, "decisions", "signed")}
    return {
        "kind": "period",
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "scenario": scenario,
        "summary": summary,
        "total": total,
        "decisions": decisions_in(ws, since=since, until=until, scenario=scenario),
        "verification": verification(ws),
    }


_COUNTED = ("items", "approved", "edited", "rejected", "revised", "released", "recalled")


def _in_period(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    where = []
    if since is not None:
        where.append(column >= since)
    if until is not None:
        where.append(column < until)
    return where


def _decision_counts(
    s: Session, since: datetime | None, until: datetime | None, scenario: str | None
) -> dict[str, tuple[int, int]]:
    """Per scenario: the decisions and sign-offs made in the period, and how many were signed."""
    counts: dict[str, tuple[int, int]] = {}
    for model in (Decision, SignOff):
        signed = func.coalesce(func.sum(case((col(model.signature).is_not(None), 1), else_=0)), 0)
        query = (
            select(WorkItem.scenario_id, func.count(col(model.id)), signed)
            .join(WorkItem, col(WorkItem.id) == col(model.item_id))
            .where(*_in_period(col(model.created_at), since, until))
            .group_by(col(WorkItem.scenario_id))
        )
        if scenario is not None:
            query = query.where(WorkItem.scenario_id == scenario)
        for key, count, n_signed in s.exec(query).all():
            before = counts.get(key, (0, 0))
            counts[key] = (before[0] + int(count), before[1] + int(n_signed))
    return counts


def decisions_in(
    ws: Workspace, *, since: datetime | None, until: datetime | None, scenario: str | None = None, batch: int = BATCH
) -> Iterator[dict[str, Any]]:
    """The decisions and sign-offs made in the period, oldest first, read `batch` rows at a time
    from each table (keyset pagination on time and id) and merged."""
    return heapq.merge(
        _paged(ws, Decision, since, until, scenario, batch),
        _paged(ws, SignOff, since, until, scenario, batch),
        key=lambda row: (datetime.fromisoformat(row["at"]), not row["signoff"], row["id"]),
    )


def _paged(
    ws: Workspace, model: Any, since: datetime | None, until: datetime | None, scenario: str | None, batch: int
) -> Iterator[dict[str, Any]]:
    after: tuple[datetime, int] | None = None
    while True:
        with transaction(ws.engine) as s:
            query = (
                select(model, WorkItem.scenario_id)
                .join(WorkItem, col(WorkItem.id) == col(model.item_id))
                .where(*_in_period(col(model.created_at), since, until))
                .order_by(col(model.created_at), col(model.id))
                .limit(batch)
            )
            if scenario is not None:
                query = query.where(WorkItem.scenario_id == scenario)
            if after is not None:
                at, key = after
                query = query.where(
                    (col(model.created_at) > at) | ((col(model.created_at) == at) & (col(model.id) > key))
                )
            rows = s.exec(query).all()
        if not rows:
            return
        for row, scenario_id in rows:
            yield _decision_row(row, scenario_id)
        after = (rows[-1][0].created_at, rows[-1][0].id)


def _decision_row(row: Decision | SignOff, scenario_id: str) -> dict[str, Any]:
    signoff = isinstance(row, SignOff)  # an approval at a stage before the last
    return {
        "id": row.id,
        "signoff": signoff,
        "item": row.item_id,
        "scenario": scenario_id,
        "actor": row.actor,
        "action": row.action if isinstance(row, Decision) else "approve",
        "stage_name": row.stage_name if isinstance(row, SignOff) else None,
        "at": _utc(row.created_at).isoformat(),
        "signed": row.signature is not None,
        "rule": row.rule,
        "auth_method": row.auth_method,
    }


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive timestamps, which dew always wrote in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- rendering ---------------------------------------------------------------------------------------
def _when(iso: str | None) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _environment(lang: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # inputs, drafts and model output are untrusted: nothing is marked safe
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shown"] = lambda text: visible(_text(text)) if text is not None else ""
    env.filters["when"] = _when
    env.filters["at"] = lambda iso: _when(iso).removesuffix(" UTC")  # in a column headed (UTC)
    env.globals["t"] = lambda name, **values: translate(lang, name, **values)
    env.globals["term"] = lambda kind, value: (
        translate(lang, f"{kind}.{value}") if f"{kind}.{value}" in T else (value or "")
    )  # a recorded value (action, rule, sign-in method) in words; one the table lacks, as recorded
    env.globals["lang"] = lang
    return env


def render_html(report: dict[str, Any], lang: str) -> Iterator[str]:
    """The report as HTML, a piece at a time (a period's decisions are read as it is written)."""
    template = _environment(check_lang(lang)).get_template(f"{report['kind']}.html")
    return template.generate(r=report, v=report["verification"])


def _refuse_fetch(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    raise ValueError(f"a report loads nothing from outside ({url})")


def render_pdf(html: str) -> tuple[bytes, int]:
    """The HTML as an A4 PDF, and its number of pages. Nothing is fetched from anywhere."""
    import weasyprint  # imported here: it loads Pango, which only the PDF needs

    document = weasyprint.HTML(string=html, url_fetcher=_refuse_fetch).render()
    return document.write_pdf() or b"", len(document.pages)


def format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        return "html"
    if suffix == ".pdf":
        return "pdf"
    raise InputInvalid(f"a report is written as .html or .pdf, not '{path.name}'")
