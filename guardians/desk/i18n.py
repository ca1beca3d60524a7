"""Every label of the web desk, in Chinese and English: one table, so no page can have a label in
one language only (tests/desk/test_i18n.py checks that every key used by a template is here)."""

from __future__ import annotations

from fastapi import Request

LANGUAGES = ("zh", "en")
LANG_COOKIE = "dew_lang"

T: dict[str, tuple[str, str]] = {
    # frame
    "app": ("数字员工监护台", "dew guardian desk"),
    "nav.inbox": ("待办", "Inbox"),
    "nav.request": ("发起任务", "Request"),
    "nav.runs": ("我的任务", "My runs"),
    "nav.audit": ("审计", "Audit"),
    "nav.catalogue": ("数字员工", "Digital employees"),
    "nav.people": ("人员", "People"),
    "nav.delegations": ("委托", "Delegations"),
    "signed_in_as": ("当前用户", "Signed in as"),
    "sign_out": ("退出", "Sign out"),
    "lang.other": ("English", "中文"),
    "roles": ("角色", "Roles"),
    "role.admin": ("管理员", "admin"),
    "role.guardian": ("监护人", "guardian"),
    "role.requester": ("发起人", "requester"),
    "role.auditor": ("审计员", "auditor"),
    # sign in
    "login.title": ("登录", "Sign in"),
    "login.user": ("用户名", "User name"),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Sign in"),
    "login.intro": (
        "每一项决定都记录在您的名下。请用本人账号登录。",
        "Every decision is recorded under your name. Sign in with your own account.",
    ),
    # inbox
    "inbox.title": ("待办", "Inbox"),
    "inbox.empty": ("没有等待您决定的草稿。", "Nothing is waiting for your decision."),
    "inbox.filter": ("按场景筛选", "Filter by scenario"),
    "inbox.all": ("全部场景", "All scenarios"),
    "inbox.apply": ("筛选", "Filter"),
    "col.item": ("事项", "Item"),
    "col.scenario": ("场景", "Scenario"),
    "col.risk": ("风险", "Risk"),
    "col.requester": ("发起人", "Requester"),
    "col.waiting": ("已等待", "Waiting"),
    "col.why": ("您的身份", "You decide as"),
    "col.findings": ("检查发现", "Findings"),
    "col.status": ("状态", "Status"),
    "col.run": ("任务", "Run"),
    "col.created": ("创建时间", "Created"),
    "col.guardian": ("监护人", "Guardian"),
    "col.backups": ("备岗", "Backups"),
    "col.queue": ("待办数", "Queue"),
    "col.decided_by": ("决定人", "Decided by"),
    "col.decision": ("决定", "Decision"),
    "col.when": ("时间", "When"),
    "col.what": ("事件", "Event"),
    "col.who": ("操作人", "Who"),
    "col.details": ("详情", "Details"),
    "rule.owner": ("本人", "owner"),
    "rule.backup": ("备岗", "backup"),
    "rule.delegate": ("受托（{who}）", "delegate of {who}"),
    "risk.low": ("低", "low"),
    "risk.medium": ("中", "medium"),
    "risk.high": ("高", "high"),
    "age.minutes": ("{n} 分钟", "{n} min"),
    "age.hours": ("{n} 小时", "{n} h"),
    "age.days": ("{n} 天", "{n} days"),
    # item
    "item.title": ("事项 {id}", "Work item {id}"),
    "item.draft": ("草稿（模型生成，待审核）", "Draft (written by the model, not yet approved)"),
    "item.inputs": ("原始材料", "Source inputs"),
    "item.findings": ("检查发现", "Checker findings"),
    "item.no_findings": ("检查未发现问题。", "The checks found nothing."),
    "item.earlier": ("前几轮", "Earlier rounds"),
    "item.round": ("第 {n} 轮", "Round {n}"),
    "item.changes": ("与上一轮相比的修改", "Changes from the round before"),
    "item.provenance": ("来源", "Provenance"),
    "item.scenario_version": ("场景版本", "Scenario version"),
    "item.step": ("步骤", "Step"),
    "item.model": ("模型", "Model"),
    "item.endpoint": ("接口", "Endpoint"),
    "item.decided": ("已决定", "Decided"),
    "item.decided_line": (
        "{who} 于 {at} {action}（身份：{rule}；认证方式：{method}）",
        "{who} {action} at {at} (as {rule}; signed in by {method})",
    ),
    "item.released_to": ("已发布至", "Released to"),
    "item.delegated": (
        "{guardian} 的待办已委托给 {who}，至 {until}",
        "{guardian}'s queue is delegated to {who} until {until}",
    ),
    "item.cannot_decide": ("您不能对此事项作出决定：{why}", "You cannot decide on this item: {why}"),
    "item.hidden_chars": (
        "注意：草稿含有不可见字符，已以转义形式显示。",
        "Note: the draft holds hidden characters, shown escaped.",
    ),
    "item.json_table": ("字段", "Field"),
    "item.value": ("值", "Value"),
    "item.trace": ("查看完整轨迹", "See the full trace"),
    "decide.title": ("您的决定", "Your decision"),
    "decide.approve": ("批准发布", "Approve and release"),
    "decide.comment": ("备注（可选）", "Comment (optional)"),
    "decide.reject": ("驳回", "Reject"),
    "decide.reason": ("驳回理由（必填）", "Reason (required)"),
    "decide.revise": ("退回修改", "Send back"),
    "decide.feedback": ("修改意见（必填，将交给数字员工）", "Feedback for the digital employee (required)"),
    "decide.edit": ("修改后批准", "Edit, then approve"),
    "decide.edit_help": (
        "在此修改草稿；下一步会先显示修改对比，确认后才批准。",
        "Edit the draft here; the next step shows the changes before you confirm.",
    ),
    "decide.preview": ("查看修改", "Show the changes"),
    "decide.confirm_edit": ("确认修改并批准", "Confirm the edit and approve"),
    "decide.diff_title": ("您的修改", "Your changes"),
    "decide.back": ("返回", "Back"),
    "done.approve": ("已批准，正在发布。", "Approved; it is being released."),
    "done.edit": ("已按您的修改批准，正在发布。", "Approved with your edit; it is being released."),
    "done.reject": ("已驳回，不会发布。", "Rejected; nothing is released."),
    "done.revise": ("已退回，数字员工正在重新起草。", "Sent back; the digital employee is drafting again."),
    "done.run": ("任务已提交，数字员工正在起草。", "Run started; the digital employee is drafting."),
    "done.delegated": ("委托已生效。", "The delegation is in force."),
    "done.delegation_ended": ("委托已结束。", "The delegation has ended."),
    "done.user": ("用户已保存。", "User saved."),
    # request
    "request.title": ("发起任务", "Request work"),
    "request.pick": ("选择数字员工", "Pick a digital employee"),
    "request.ask": ("用自己的话描述需求", "Say what you need in your own words"),
    "request.ask_help": (
        "前台会选择合适的数字员工并预填表单，提交前您可以核对。",
        "The front desk picks the digital employee and fills in the form; you check it before anything starts.",
    ),
    "request.ask_submit": ("交给前台", "Ask the front desk"),
    "request.understood": ("前台的理解：{scenario}。{reason}", "The front desk understood: {scenario}. {reason}"),
    "request.not_routed": ("前台无法确定：{reason}", "The front desk could not decide: {reason}"),
    "request.form": ("{name}：填写输入", "{name}: inputs"),
    "request.example": ("用样例填写：{name}", "Fill with sample: {name}"),
    "request.required": ("必填", "required"),
    "request.submit": ("提交任务", "Start the run"),
    "request.guardian": ("监护人：{who}", "Guardian: {who}"),
    "request.none": ("您没有发起任务的权限。", "You do not hold the requester role."),
    # runs
    "runs.title": ("我的任务", "My runs"),
    "runs.empty": ("还没有任务。", "No runs yet."),
    "run.title": ("任务 {id}", "Run {id}"),
    "run.error": ("失败原因", "Why it failed"),
    "run.retry": ("重试", "Retry"),
    "run.download": ("下载已发布的输出", "Download the released output"),
    "run.items": ("草稿", "Drafts"),
    "run.waiting": ("正在处理，请稍后刷新。", "Working on it; refresh in a moment."),
    "run.handed_off": ("已移交至任务", "Handed off to run"),
    "status.queued": ("排队中", "queued"),
    "status.running": ("起草中", "drafting"),
    "status.awaiting_decision": ("待决定", "awaiting decision"),
    "status.approved": ("已批准", "approved"),
    "status.released": ("已发布", "released"),
    "status.rejected": ("已驳回", "rejected"),
    "status.failed": ("失败", "failed"),
    "status.pending": ("待决定", "pending"),
    "status.edited": ("修改后批准", "approved with edit"),
    "status.revised": ("已退回", "sent back"),
    "released.title": ("已发布的输出", "Released outputs"),
    # audit
    "audit.title": ("审计", "Audit"),
    "audit.chain_ok": ("审计链完整：{n} 个事件，链头 {head}", "Audit chain intact: {n} events, head {head}"),
    "audit.chain_broken": ("审计链已被破坏：{why}", "Audit chain BROKEN: {why}"),
    "audit.search": ("检索", "Search"),
    "audit.since": ("起始日期", "From"),
    "audit.until": ("截止日期", "Until"),
    "audit.any": ("不限", "any"),
    "audit.none": ("没有符合条件的事项。", "No items match."),
    "trace.title": ("事项 {id} 的轨迹", "Trace of work item {id}"),
    "trace.chain": ("移交链上的任务：{runs}", "Runs along the hand-off chain: {runs}"),
    # catalogue and people
    "catalogue.title": ("数字员工", "Digital employees"),
    "catalogue.state": ("状态", "State"),
    "catalogue.working": ("工作中", "working"),
    "people.title": ("人员", "People"),
    "people.add": ("添加用户", "Add a user"),
    "people.id": ("账号", "User id"),
    "people.name": ("姓名", "Name"),
    "people.active": ("启用", "Active"),
    "people.disable": ("停用", "Disable"),
    "people.disabled": ("已停用", "disabled"),
    "people.save": ("保存", "Save"),
    "people.language": ("界面语言", "Language"),
    "delegations.title": ("委托", "Delegations"),
    "delegations.new": ("新建委托（例如休假）", "New delegation (e.g. leave)"),
    "delegations.guardian": ("委托人（监护人）", "Guardian"),
    "delegations.delegate": ("受托人", "Delegate"),
    "delegations.until": ("截止", "Until"),
    "delegations.reason": ("原因", "Reason"),
    "delegations.end": ("提前结束", "End now"),
    "delegations.none": ("没有生效的委托。", "No delegations in force."),
    "delegations.create": ("委托", "Delegate"),
    # errors
    "error.title": ("无法完成", "Could not do that"),
    "error.home": ("返回首页", "Back to the start"),
    "method.password": ("密码登录", "password"),
    "method.token": ("API 令牌", "API token"),
    "method.proxy": ("单点登录", "single sign-on"),
    "method.declared": ("自称（未认证）", "declared (not authenticated)"),
    "action.approve": ("批准", "approved"),
    "action.reject": ("驳回", "rejected"),
    "action.edit": ("修改后批准", "approved with an edit"),
    "action.revise": ("退回修改", "sent back"),
}


def translate(lang: str, key: str, **values: object) -> str:
    pair = T.get(key)
    if pair is None:
        return key  # a missing key shows itself, and tests catch it
    text = pair[0] if lang == "zh" else pair[1]
    return text.format(**values) if values else text


def language(request: Request, preferred: str | None = None) -> str:
    """The page language: the switch's cookie, else the user's setting, else the browser's."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    if preferred in LANGUAGES:
        return preferred
    accept = request.headers.get("accept-language", "").lower()
    if accept.startswith("en"):
        return "en"
    return "zh"
