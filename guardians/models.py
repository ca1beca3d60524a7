"""The workspace database: SQLModel tables. Schema changes go through alembic (guardians/migrations)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class RunStatus(StrEnum):
    """(queued →) running → awaiting_decision → (approved → released | rejected); a live run may fail
    and be retried. `queued` is a run the server accepted and a worker has not taken yet."""

    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_DECISION = "awaiting_decision"
    APPROVED = "approved"
    RELEASED = "released"
    REJECTED = "rejected"
    FAILED = "failed"


class ItemStatus(StrEnum):
    """pending → approved | edited | rejected | revised (a revision queues a new item)."""

    PENDING = "pending"
    APPROVED = "approved"
    EDITED = "edited"
    REJECTED = "rejected"
    REVISED = "revised"


class Action(StrEnum):
    """What a guardian decides. Each action says once what it does to the item and the run."""

    APPROVE = "approve"
    REJECT = "reject"
    EDIT = "edit"
    REVISE = "revise"

    @property
    def item_status(self) -> ItemStatus:
        return _ITEM_STATUS[self]

    @property
    def run_status(self) -> RunStatus:
        return _RUN_STATUS[self]

    @property
    def releases(self) -> bool:
        """Approving, as drafted or as edited, is what releases an output."""
        return self in (Action.APPROVE, Action.EDIT)


_ITEM_STATUS = {
    Action.APPROVE: ItemStatus.APPROVED,
    Action.REJECT: ItemStatus.REJECTED,
    Action.EDIT: ItemStatus.EDITED,
    Action.REVISE: ItemStatus.REVISED,
}
_RUN_STATUS = {
    Action.APPROVE: RunStatus.APPROVED,
    Action.EDIT: RunStatus.APPROVED,
    Action.REJECT: RunStatus.REJECTED,
    Action.REVISE: RunStatus.RUNNING,
}


class Guardian(SQLModel, table=True):
    """A person on the roster who may own queues and decide on work items."""

    __tablename__ = "guardians"
    id: str = Field(primary_key=True, max_length=64)
    name: str
    title: str = ""
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class ScenarioVersion(SQLModel, table=True):
    """The exact text of every scenario version a run was started with, by content hash."""

    __tablename__ = "scenario_versions"
    sha256: str = Field(primary_key=True, max_length=64)
    scenario_id: str = Field(index=True)
    version: str
    text: str = Field(sa_column=Column(Text, nullable=False))
    first_seen: datetime = Field(default_factory=utcnow)


class _Keyed:
    id: int | None

    @property
    def key(self) -> int:
        """The primary key of a row that has been flushed (never None from then on)."""
        if self.id is None:
            raise RuntimeError(f"{type(self).__name__} has no id before it is flushed")
        return self.id


class Run(_Keyed, SQLModel, table=True):
    __tablename__ = "runs"
    # A client's own key for a request (the API's Idempotency-Key): asking again with it, after an
    # answer was lost, finds the run it started instead of starting another.
    __table_args__ = (UniqueConstraint("requester", "request_key", name="uq_runs_requester_request_key"),)
    id: int | None = Field(default=None, primary_key=True)
    scenario_id: str = Field(index=True)
    scenario_sha256: str = Field(foreign_key="scenario_versions.sha256")
    requester: str
    inputs: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # Set when another scenario's release handed off to this run: the chain auditors follow.
    parent_run_id: int | None = Field(default=None, foreign_key="runs.id", index=True)
    status: str = Field(index=True, default=RunStatus.RUNNING)  # a RunStatus
    error: str | None = Field(default=None, sa_column=Column(Text))
    # Why an unexpected error failed the run, as a traceback: for whoever repairs it, never for the trail.
    error_detail: str | None = Field(default=None, sa_column=Column(Text))
    # When retention cleared the inputs (and the drafts, edits and checkpoints of the run): the
    # trail keeps their hashes, and `retention.cleared` events name every cleared run.
    cleared_at: datetime | None = None
    attempts: int = 1
    priority: int = 0  # higher first when runs wait for workers: the scenario's, or the request's (a batch)
    request_key: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


PRIORITIES = {"urgent": 10, "normal": 0, "batch": -10}


class WorkItem(_Keyed, SQLModel, table=True):
    """A draft waiting in (or decided from) a guardian's queue. A revision makes a new item."""

    __tablename__ = "work_items"
    __table_args__ = (
        UniqueConstraint("run_id", "revision", name="uq_work_items_run_revision"),
        Index("ix_work_items_status_id", "status", "id"),  # everyone's inbox, a page at a time
    )
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", index=True)
    revision: int = 0
    scenario_id: str = Field(index=True)
    guardian: str = Field(index=True)
    backups: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    risk: str
    draft: str = Field(sa_column=Column(Text, nullable=False))
    findings: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    provenance: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(index=True, default=ItemStatus.PENDING)  # an ItemStatus
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None
    # Deadlines: when the item should be decided by (from the scenario), and how far the sweep
    # has taken it: reminded, then escalated to the backups (1), then to a named person (2).
    due_at: datetime | None = Field(default=None, index=True)
    reminded_at: datetime | None = None
    escalation: int = 0
    escalated_to: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Staged sign-off: the stage now waiting (0-based) of the scenario's `signoff` stages.
    stage: int = 0


class ItemDecider(SQLModel, table=True):
    """One person who may decide a work item, and why: its guardian (`owner`), each backup, each
    person it was escalated to, with the item's status. The item's JSON lists say the same; these
    rows are what an inbox reads, one index range per person (guardians/inboxes.py keeps them in
    the transaction that changes the item). `person` is the identity's loose form
    (identity.person_key), so variants of one identity find one inbox, as `same_person` compares."""

    __tablename__ = "item_deciders"
    __table_args__ = (Index("ix_item_deciders_person_status_item", "person", "status", "item_id"),)
    item_id: int = Field(foreign_key="work_items.id", primary_key=True)
    person: str = Field(primary_key=True, max_length=200)
    rule: str = Field(primary_key=True, max_length=20)  # owner | backup | escalation
    status: str = Field(max_length=20)  # the item's ItemStatus


class Decision(_Keyed, SQLModel, table=True):
    __tablename__ = "decisions"
    id: int | None = Field(default=None, primary_key=True)
    # One decision per work item, enforced by the database even when two decisions race.
    item_id: int = Field(foreign_key="work_items.id", unique=True)
    run_id: int = Field(foreign_key="runs.id", index=True)
    action: str  # an Action
    actor: str
    note: str | None = Field(default=None, sa_column=Column(Text))  # comment, reason or feedback
    edited_output: str | None = Field(default=None, sa_column=Column(Text))
    diff: str | None = Field(default=None, sa_column=Column(Text))
    # How the actor proved who they are (an AuthMethod) and why they could decide (a DecideRule).
    auth_method: str = Field(default="declared")
    rule: str = Field(default="owner")
    delegation_id: int | None = Field(default=None, foreign_key="delegations.id")
    # A decision made with a signing key: the exact statement signed and the Ed25519 signature.
    signing_key_id: int | None = Field(default=None, foreign_key="signing_keys.id")
    signed_statement: str | None = Field(default=None, sa_column=Column(Text))
    signature: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Release(_Keyed, SQLModel, table=True):
    __tablename__ = "releases"
    id: int | None = Field(default=None, primary_key=True)
    # Exactly once: one release per run and per item.
    run_id: int = Field(foreign_key="runs.id", unique=True)
    item_id: int = Field(foreign_key="work_items.id", unique=True)
    destination: str
    location: str
    sha256: str
    created_at: datetime = Field(default_factory=utcnow)
    # A recall (the brake): the output was withdrawn after release; the file stays, marked.
    recalled_at: datetime | None = None
    recalled_by: str | None = None
    recall_reason: str | None = Field(default=None, sa_column=Column(Text))


class AuditEvent(SQLModel, table=True):
    """One append-only, hash-chained record. `data` is stored exactly as it was hashed."""

    __tablename__ = "audit_events"
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: str
    kind: str = Field(index=True)
    actor: str
    run_id: int | None = Field(default=None, index=True)
    item_id: int | None = Field(default=None, index=True)
    data: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str
    hash: str


class AuditHead(SQLModel, table=True):
    """The chain's tip, one row. Appends lock it, so concurrent writers form one chain."""

    __tablename__ = "audit_head"
    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    seq: int = 0
    hash: str = ""


# --- people who sign in ----------------------------------------------------------------------------
class Role(StrEnum):
    ADMIN = "admin"  # people, scenarios, settings
    GUARDIAN = "guardian"  # decides on the queues they own, cover or are delegated
    REQUESTER = "requester"  # starts runs, sees their own runs and released outputs
    AUDITOR = "auditor"  # reads everything, changes nothing


class AuthMethod(StrEnum):
    """How a person proved who they are, recorded with every decision."""

    DECLARED = "declared"  # `--as` in a workspace without users: nobody proved anything
    PASSWORD = "password"  # a web session opened with a password
    TOKEN = "token"  # an API token the person created for themselves
    ISSUED_TOKEN = "issued_token"  # an API token an admin issued for them (integrations): it never decides
    PROXY = "proxy"  # a trusted reverse proxy's user header (the office's single sign-on)


class DecideRule(StrEnum):
    """Why someone could decide on a work item."""

    OWNER = "owner"
    BACKUP = "backup"
    DELEGATE = "delegate"
    ESCALATION = "escalation"  # an overdue item escalated to the person an admin named


class User(SQLModel, table=True):
    """Someone who signs in. The id is the same person id the roster, runs and decisions use."""

    __tablename__ = "users"
    id: str = Field(primary_key=True, max_length=64)
    name: str
    roles: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    password_hash: str | None = None  # argon2id; None: no web login (tokens only)
    active: bool = True
    locale: str = "zh"
    created_at: datetime = Field(default_factory=utcnow)


class ApiToken(_Keyed, SQLModel, table=True):
    """An API token: shown once, stored only as its SHA-256 (it has 256 random bits: no KDF needed)."""

    __tablename__ = "api_tokens"
    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="users.id", index=True)
    name: str = ""
    prefix: str  # the first characters, so a person can tell their tokens apart
    token_sha256: str = Field(unique=True, max_length=64)
    created_by: str | None = None  # who created it, when not the user (None: the user, or before 0006)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class WebSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random value; the table only its SHA-256."""

    __tablename__ = "web_sessions"
    id: str = Field(primary_key=True, max_length=64)  # SHA-256 of the cookie value
    user_id: str = Field(foreign_key="users.id", index=True)
    csrf_token: str
    method: str  # an AuthMethod
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None


class LoginAttempt(SQLModel, table=True):
    """Failed password logins, counted per account and per client address to slow down guessing."""

    __tablename__ = "login_attempts"
    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(index=True)  # "user:li.wei" or "ip:10.0.0.7"
    at: datetime = Field(default_factory=utcnow, index=True)


class Delegation(_Keyed, SQLModel, table=True):
    """A guardian's queue handed to a colleague for a period (leave). It ends by itself."""

    __tablename__ = "delegations"
    id: int | None = Field(default=None, primary_key=True)
    guardian: str = Field(index=True)
    delegate: str = Field(index=True)
    starts_at: datetime
    ends_at: datetime
    reason: str = ""
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class SignOff(_Keyed, SQLModel, table=True):
    """One approval of a stage before the last, in a staged sign-off. The last stage's approval is
    the item's Decision; any rejection ends the item there."""

    __tablename__ = "signoffs"
    __table_args__ = (UniqueConstraint("item_id", "stage", name="uq_signoffs_item_stage"),)
    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="work_items.id", index=True)
    stage: int
    stage_name: str
    actor: str
    auth_method: str
    rule: str
    note: str | None = Field(default=None, sa_column=Column(Text))
    signing_key_id: int | None = Field(default=None, foreign_key="signing_keys.id")
    signed_statement: str | None = Field(default=None, sa_column=Column(Text))
    signature: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ScenarioState(SQLModel, table=True):
    """What people have set on a digital employee at run time: the brake, and whom overdue items
    escalate to after its backups."""

    __tablename__ = "scenario_states"
    scenario_id: str = Field(primary_key=True, max_length=200)
    paused: bool = False
    paused_reason: str = ""
    changed_by: str = ""
    changed_at: datetime = Field(default_factory=utcnow)
    escalate_to: str | None = None


class NotificationChannel(_Keyed, SQLModel, table=True):
    """Where to tell someone that an item waits: a webhook, a DingTalk or WeCom group robot, email."""

    __tablename__ = "notification_channels"
    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="users.id", index=True)  # whose queue events go here
    kind: str  # webhook | dingtalk | wecom | email
    target: str  # the URL, or the email address
    secret: str | None = None  # HMAC key (webhook), signing secret (DingTalk)
    scenario_id: str | None = None  # only this scenario's items; None: all
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # empty: all
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class Notification(_Keyed, SQLModel, table=True):
    """One message to deliver, written in the transaction of what it announces, sent afterwards
    with retries (a failed delivery never blocks a run or a decision)."""

    __tablename__ = "notifications"
    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = Field(foreign_key="notification_channels.id", index=True)
    event: str  # item.queued | item.reminder | item.escalated
    item_id: int | None = Field(default=None, foreign_key="work_items.id")
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", index=True)  # pending | sent | failed
    attempts: int = 0
    next_at: datetime = Field(default_factory=utcnow, index=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


class SigningKey(_Keyed, SQLModel, table=True):
    """The public half of a person's Ed25519 signing key. The private half stays with the person
    (a passphrase-protected file, or a non-extractable key in their browser); the server only ever
    verifies. A revoked key signs nothing new; what it signed before stays verifiable."""

    __tablename__ = "signing_keys"
    id: int | None = Field(default=None, primary_key=True)
    person: str = Field(index=True, max_length=64)
    public_key: str = Field(unique=True, max_length=64)  # base64 of the 32 raw bytes
    fingerprint: str = Field(max_length=64)  # SHA-256 of the raw key, hex: what people compare
    kind: str  # file | browser
    label: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = Field(default=None, sa_column=Column(Text))


class WorkspaceSetting(SQLModel, table=True):
    """A setting of the whole workspace that people change at run time (e.g. the retention period)."""

    __tablename__ = "workspace_settings"
    key: str = Field(primary_key=True, max_length=64)
    value: Any = Field(sa_column=Column(JSON, nullable=False))
    changed_by: str
    changed_at: datetime = Field(default_factory=utcnow)


class EndpointUsage(SQLModel, table=True):
    """Requests and tokens sent to a rate-limited model endpoint in one second, counted across every
    worker on the database (throttle.py sums the seconds of the last minute)."""

    __tablename__ = "endpoint_usage"
    endpoint: str = Field(primary_key=True, max_length=255)
    window_start: int = Field(
        sa_column=Column(BigInteger, primary_key=True)
    )  # the second's start, in seconds since the epoch, by the database's clock
    requests: int = 0
    tokens: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
