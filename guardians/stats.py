"""Figures for the people who run the programme, computed from dew's own records.

Every figure counts **work items** (drafts put in a guardian's queue) whose `created_at` lies in
the period asked for (`since` ≤ created_at < `until`); what became of an item counts with it,
whenever that happened, so a period's figures settle as its last items are decided. Groups are
by scenario, by guardian (the item's `guardian`: the owner of the queue it waits or was decided
in; a decision by a backup or a delegate still counts for the owner), or by model (every model
named in the item's provenance; an item drafted by two models counts for each, so groups by
model need not add up to the total; an item no model drafted is in the group `None`).

    items               work items queued in the period
    runs                distinct runs those items belong to
    pending             items not decided yet
    approved, edited,   items decided that way (an edit is an approval with changes; a revision
    rejected, revised   sends the run back to the agent, which queues a new item)
    decided             approved + edited + rejected + revised
    approval rate       (approved + edited) / decided
    edit rate           edited / (approved + edited): of the approved drafts, the share a guardian
                        changed before approving
    edit size           per edited item, from the diff kept with the decision: lines = lines
                        removed + lines added; characters = the fewest characters removed and
                        added to turn each block of removed lines into the block of added lines
                        that follows it (their indel distance: len(a) + len(b) − 2·LCS(a, b); line
                        breaks not counted). Reported as the mean over edited items.
    revision rounds     items per run minus one, averaged over runs: (items − runs) / runs
    time to decision    decision.created_at − item.created_at, over decided items (a staged item's
                        final decision; its earlier sign-offs do not end it); median and 90th
                        percentile, by linear interpolation between the nearest ranks (the
                        inclusive method, as a spreadsheet's PERCENTILE.INC)
    overdue             items with a deadline that were decided after it, or are still pending
                        past it now (the deadline of the sign-off stage they were decided at or
                        wait at)
    escalated           items with at least one `item.escalated` audit event
    released, recalled  items whose output was released, and of those the releases recalled
    findings per draft  checker and reviewer findings queued with the items / items
    with findings       items queued with at least one finding

A rate whose denominator is zero is None ("–"), never 0. Counts are aggregated in SQL (one
query per kind of figure, never one per item); times to decision and edit sizes are read as one
row per decided or edited item, because percentiles and character diffs are not portable SQL.

`operations` is the other set: the state of the workspace now (runs by status, queues,
notifications, the audit trail's length), read at each scrape of the desk's `/metrics`.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rapidfuzz.distance import Indel
from sqlalchemy import and_, case, distinct, func, null, or_, text, true
from sqlmodel import col, select

from dew.agents.errors import InputInvalid
from dew.guardians.errors import NotAuthorized

from .access import reads_everything
from .db import transaction
from .models import (
    AuditEvent,
    AuditHead,
    Decision,
    ItemStatus,
    Notification,
    Release,
    Role,
    Run,
    ScenarioState,
    SignOff,
    WorkItem,
    utcnow,
)

if TYPE_CHECKING:
    from .auth import Principal
    from .workspace import Workspace

GROUPINGS = ("scenario", "guardian", "model")


# --- what each group's figures are ---------------------------------------------------------------------
@dataclass
class Figures:
    key: str | None  # the scenario, guardian or model; None: the total (or, by model, no model)
    items: int = 0
    runs: int = 0
    pending: int = 0
    approved: int = 0
    edited: int = 0
    rejected: int = 0
    revised: int = 0
    overdue: int = 0
    escalated: int = 0
    released: int = 0
    recalled: int = 0
    findings: int = 0
    with_findings: int = 0
    decision_seconds: list[float] = field(default_factory=list, init=False, repr=False)
    edit_chars: list[int] = field(default_factory=list, init=False, repr=False)
    edit_lines: list[int] = field(default_factory=list, init=False, repr=False)

    @property
    def decided(self) -> int:
        return self.approved + self.edited + self.rejected + self.revised

    @property
    def approval_rate(self) -> float | None:
        return _ratio(self.approved + self.edited, self.decided)

    @property
    def edit_rate(self) -> float | None:
        return _ratio(self.edited, self.approved + self.edited)

    @property
    def revision_rounds(self) -> float | None:
        return _ratio(self.items - self.runs, self.runs)

    @property
    def findings_per_draft(self) -> float | None:
        return _ratio(self.findings, self.items)

    @property
    def mean_edit_chars(self) -> float | None:
        return _ratio(sum(self.edit_chars), len(self.edit_chars))

    @property
    def mean_edit_lines(self) -> float | None:
        return _ratio(sum(self.edit_lines), len(self.edit_lines))

    @property
    def median_decision_seconds(self) -> float | None:
        return statistics.median(self.decision_seconds) if self.decision_seconds else None

    @property
    def p90_decision_seconds(self) -> float | None:
        return percentile(self.decision_seconds, 90)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "items": self.items,
            "runs": self.runs,
            "pending": self.pending,
            "decided": self.decided,
            "approved": self.approved,
            "edited": self.edited,
            "rejected": self.rejected,
            "revised": self.revised,
            "approval_rate": self.approval_rate,
            "edit_rate": self.edit_rate,
            "mean_edit_chars": self.mean_edit_chars,
            "mean_edit_lines": self.mean_edit_lines,
            "revision_rounds": self.revision_rounds,
            "median_decision_seconds": self.median_decision_seconds,
            "p90_decision_seconds": self.p90_decision_seconds,
            "overdue": self.overdue,
            "escalated": self.escalated,
            "released": self.released,
            "recalled": self.recalled,
            "findings": self.findings,
            "findings_per_draft": self.findings_per_draft,
            "with_findings": self.with_findings,
        }


@dataclass
class Report:
    by: str
    since: datetime | None
    until: datetime | None
    generated_at: datetime
    groups: list[Figures]
    total: Figures
    scope: str | None = None  # a guardian's own queue, when that is all the reader may see

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "generated_at": self.generated_at.isoformat(),
            "scope": self.scope,
            "groups": [g.to_dict() for g in self.groups],
            "total": self.total.to_dict(),
        }


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def percentile(values: list[float], p: int) -> float | None:
    """The p-th percentile by linear interpolation between the nearest ranks (inclusive method)."""
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


# --- who may see which figures ----------------------------------------------------------------------------
def scope_for(p: Principal) -> str | None:
    """Whose items `p`'s figures may cover: everyone's (None) for admins, auditors and a declared
    identity at a terminal; a guardian's own queue for a guardian; nobody else sees figures."""
    if reads_everything(p):
        return None
    if p.has(Role.GUARDIAN):
        return p.id
    raise NotAuthorized(
        f"only admins and auditors (and guardians, for their own queue) may see the figures; "
        f"'{p.id}' holds {', '.join(sorted(p.roles)) or 'no role'}"
    )


# --- the period ---------------------------------------------------------------------------------------------
def parse_moment(text: str | None, *, end: bool = False) -> datetime | None:
    """A date (YYYY-MM-DD: its start, or with `end` the start of the next day, so the day is
    included) or an ISO 8601 date and time (UTC unless it says otherwise)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputInvalid(f"'{text}' is not a date (YYYY-MM-DD) or an ISO 8601 date and time") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if end and len(text.strip()) == 10:
        try:
            moment += timedelta(days=1)
        except OverflowError:
            raise InputInvalid(f"'{text}' is too far in the future") from None
    return moment


# --- computing them -----------------------------------------------------------------------------------------
def compute(
    ws: Workspace,
    *,
    by: str = "scenario",
    since: datetime | None = None,
    until: datetime | None = None,
    guardian: str | None = None,
    now: datetime | None = None,
) -> Report:
    """The figures of the items queued in [since, until), grouped `by` scenario, guardian or model;
    only the items of `guardian`'s own queue when given (see `scope_for`)."""
    if by not in GROUPINGS:
        raise InputInvalid(f"cannot group figures by '{by}' (one of: {', '.join(GROUPINGS)})")
    if since and until and since >= until:
        raise InputInvalid("the period is empty: 'since' must come before 'until'")
    now = now or utcnow()
    filters = []
    if since is not None:
        filters.append(col(WorkItem.created_at) >= since)
    if until is not None:
        filters.append(col(WorkItem.created_at) < until)
    if guardian is not None:
        filters.append(col(WorkItem.guardian) == guardian)
    with transaction(ws.engine) as s:
        dialect = s.get_bind().dialect.name
        if dialect == "postgresql":
            # PostgreSQL guesses 100 rows per unnested JSON array, so the plan looks costly enough
            # to compile: at 50,000 items compiling took longer than running (bench/stats_scale.py).
            s.execute(text("SET LOCAL jit = off"))
        grouping = _grouping(by, dialect, filters)
        groups = _counts(s, grouping, filters, now)
        total = _counts(s, None, filters, now).get(None) or Figures(key=None)
        _per_item(s, grouping, filters, dialect, groups, total)
    ordered = sorted(groups.values(), key=lambda f: (-f.items, f.key is None, f.key or ""))
    return Report(by=by, since=since, until=until, generated_at=now, groups=ordered, total=total, scope=guardian)


@dataclass
class _Grouping:
    key: Any  # the column each item is grouped by
    source: Any = None  # a subquery (item_id, key) to join, when the key is not a column of the item

    def scoped(self, query, filters: list):
        """`query` over the items in question, joined to their group's key."""
        if self.source is not None:
            query = query.join(self.source, self.source.c.item_id == WorkItem.id)
        return query.where(*filters)


def _grouping(by: str, dialect: str, filters: list) -> _Grouping:
    if by == "scenario":
        return _Grouping(col(WorkItem.scenario_id))
    if by == "guardian":
        return _Grouping(col(WorkItem.guardian))
    # The models an item's provenance names: a JSON array, unnested by each database its own way.
    if dialect == "postgresql":
        calls = func.json_array_elements(col(WorkItem.provenance)).table_valued("value").lateral("calls")
        model = func.json_extract_path_text(calls.c.value, "model")
    else:
        calls = func.json_each(col(WorkItem.provenance)).table_valued("value").alias("calls")
        model = func.json_extract(calls.c.value, "$.model")
    pairs = (
        select(col(WorkItem.id).label("item_id"), model.label("key"))
        .select_from(WorkItem)
        .outerjoin(calls, true())
        .where(*filters)  # unnest only the items in question
        .distinct()
        .subquery("item_models")
    )
    return _Grouping(pairs.c.key, pairs)


def _counts(s, grouping: _Grouping | None, filters: list, now: datetime) -> dict[str | None, Figures]:
    """The counted figures of each group (of all the items, keyed None, without a grouping): one query."""
    key = grouping.key if grouping is not None else null()

    def count_where(condition) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    escalated = (
        select(col(AuditEvent.item_id).label("item_id"))
        .where(AuditEvent.kind == "item.escalated", col(AuditEvent.item_id).is_not(None))
        .distinct()
        .subquery("escalated")
    )
    findings = func.json_array_length(col(WorkItem.findings))
    overdue = and_(
        col(WorkItem.due_at).is_not(None),
        or_(
            and_(col(WorkItem.decided_at).is_(None), col(WorkItem.due_at) < now),
            col(WorkItem.decided_at) > col(WorkItem.due_at),
        ),
    )
    # One aggregate per field of _COUNTED, in its order.
    aggregates: list[Any] = [
        func.count(col(WorkItem.id)),
        func.count(distinct(col(WorkItem.run_id))),
        *(count_where(col(WorkItem.status) == status) for status in _STATUSES),
        count_where(overdue),
        count_where(escalated.c.item_id.is_not(None)),
        func.count(col(Release.id)),
        func.count(col(Release.recalled_at)),
        func.coalesce(func.sum(findings), 0),
        count_where(findings > 0),
    ]
    query = (
        select(key, *aggregates)
        .select_from(WorkItem)
        .outerjoin(Release, col(Release.item_id) == WorkItem.id)
        .outerjoin(escalated, escalated.c.item_id == WorkItem.id)
    )
    if grouping is not None:
        query = grouping.scoped(query, filters).group_by(key)
    else:
        query = query.where(*filters)
    out: dict[str | None, Figures] = {}
    for k, *values in s.execute(query).all():
        if values[0]:  # a total over no items is no figures at all
            out[k] = Figures(k, **{name: int(v or 0) for name, v in zip(_COUNTED, values, strict=True)})
    return out


def _per_item(s, grouping: _Grouping, filters: list, dialect: str, groups: dict, total: Figures) -> None:
    """Times to decision and edit sizes: one row per decided (edited) item and group, never one
    query per item. The total takes each item once, even when it is in several groups (models)."""
    waited: dict[int, float] = {}
    decided = grouping.scoped(
        select(grouping.key, col(WorkItem.id), _seconds(col(WorkItem.created_at), col(Decision.created_at), dialect))
        .select_from(WorkItem)
        .join(Decision, col(Decision.item_id) == WorkItem.id),
        filters,
    )
    for k, item_id, seconds in s.execute(decided).all():
        groups[k].decision_seconds.append(float(seconds))
        waited[item_id] = float(seconds)
    total.decision_seconds = list(waited.values())

    sizes: dict[int, tuple[int, int]] = {}
    edited = grouping.scoped(
        select(grouping.key, col(WorkItem.id), col(Decision.diff))
        .select_from(WorkItem)
        .join(Decision, col(Decision.item_id) == WorkItem.id)
        .where(Decision.action == "edit"),
        filters,
    )
    for k, item_id, diff in s.execute(edited).all():
        if item_id not in sizes:
            sizes[item_id] = edit_size(diff or "")
        groups[k].edit_chars.append(sizes[item_id][0])
        groups[k].edit_lines.append(sizes[item_id][1])
    total.edit_chars = [chars for chars, _ in sizes.values()]
    total.edit_lines = [lines for _, lines in sizes.values()]


def _seconds(start, end, dialect: str) -> Any:
    """end − start in seconds, worked out by the database (fetching both times costs more)."""
    if dialect == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


_STATUSES = (ItemStatus.PENDING, ItemStatus.APPROVED, ItemStatus.EDITED, ItemStatus.REJECTED, ItemStatus.REVISED)
_COUNTED = ("items", "runs", *(str(s) for s in _STATUSES), "overdue", "escalated", "released", "recalled",
            "findings", "with_findings")  # fmt: skip


# --- edit size -------------------------------------------------------------------------------------------------
def edit_size(diff: str) -> tuple[int, int]:
    """(characters, lines) changed by an edit, from its unified diff (see the module's doc)."""
    chars = lines = 0
    removed: list[str] = []
    added: list[str] = []

    def block() -> int:
        return int(Indel.distance("".join(removed), "".join(added)))

    in_hunk = False
    for line in diff.split("\n"):  # the diff's own line ends; a line's text may hold other breaks
        if line.startswith("@@"):
            in_hunk = True
        if not in_hunk or line.startswith(("@@", " ", "\\")) or not line:
            if removed or added:
                chars += block()
                removed, added = [], []
            continue
        if line[0] == "-":
            if added:  # a new change block begins
                chars += block()
                removed, added = [], []
            removed.append(line[1:])
            lines += 1
        elif line[0] == "+":
            added.append(line[1:])
            lines += 1
    if removed or added:
        chars += block()
    return chars, lines


# --- the state of things now, for /metrics ---------------------------------------------------------------
@dataclass
class Operations:
    runs: dict[str, int]  # by status
    pending: dict[str, int]  # pending items by scenario
    overdue: dict[str, int]  # pending items past their deadline, by scenario
    oldest_pending: dict[str, float]  # seconds the oldest pending item of each scenario has waited
    notifications: dict[str, int]  # by status: pending, sent, failed
    decisions: dict[str, int]  # by action
    signoffs: int
    releases: int
    recalls: int
    audit_events: int  # the audit trail's head: its events are numbered 1..head without gaps
    paused: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def operations(ws: Workspace, *, now: datetime | None = None) -> Operations:
    """Counts of the workspace's state now, each one aggregate query."""
    now = now or utcnow()
    pending_items = col(WorkItem.status) == ItemStatus.PENDING
    with transaction(ws.engine) as s:
        runs = dict(s.execute(select(Run.status, func.count()).group_by(col(Run.status))).all())
        queued = s.execute(
            select(WorkItem.scenario_id, func.count(), func.min(col(WorkItem.created_at)))
            .where(pending_items)
            .group_by(col(WorkItem.scenario_id))
        ).all()
        overdue = dict(
            s.execute(
                select(WorkItem.scenario_id, func.count())
                .where(pending_items, col(WorkItem.due_at).is_not(None), col(WorkItem.due_at) < now)
                .group_by(col(WorkItem.scenario_id))
            ).all()
        )
        notifications = dict(
            s.execute(select(Notification.status, func.count()).group_by(col(Notification.status))).all()
        )
        decisions = dict(s.execute(select(Decision.action, func.count()).group_by(col(Decision.action))).all())
        signoffs = s.execute(select(func.count()).select_from(SignOff)).scalar_one()
        releases, recalls = s.execute(
            select(func.count(), func.count(col(Release.recalled_at))).select_from(Release)
        ).one()
        head = s.get(AuditHead, 1)
        paused = list(s.exec(select(ScenarioState.scenario_id).where(col(ScenarioState.paused).is_(True))).all())
    return Operations(
        runs={str(k): int(v) for k, v in runs.items()},
        pending={str(scenario): int(n) for scenario, n, _ in queued},
        overdue={str(k): int(v) for k, v in overdue.items()},
        oldest_pending={str(scenario): max(0.0, (now - oldest).total_seconds()) for scenario, _, oldest in queued},
        notifications={str(k): int(v) for k, v in notifications.items()},
        decisions={str(k): int(v) for k, v in decisions.items()},
        signoffs=int(signoffs),
        releases=int(releases),
        recalls=int(recalls),
        audit_events=head.seq if head else 0,
        paused=sorted(paused),
    )
