"""The notification routes of `/api/v1`: a person's channels, and (for admins) the deliveries
still pending or failed. Who may do what is decided in `guardians/notify.py`; secrets never leave.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from dew.guardians import notify

from .security import CallerDep, RowId

router = APIRouter(prefix="/api/v1")


def _ws(request: Request):
    return request.app.state.ws


@router.get("/notifications/channels", tags=["notifications"])
def channels(
    request: Request, caller: CallerDep, user: Annotated[str | None, Query(max_length=64)] = None
) -> list[dict[str, Any]]:
    """Your notification channels; an admin sees everyone's (or one user's, with `user`)."""
    return [notify.channel_view(c) for c in notify.visible_channels(_ws(request), caller.principal.id, user)]


class ChannelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(
        default=None, max_length=64, description="whose channel (an admin's choice); default: yours"
    )
    kind: str = Field(max_length=20, description="webhook | dingtalk | wecom | email")
    target: str = Field(max_length=2000, description="the http(s) URL, or the email address")
    secret: str | None = Field(
        default=None, max_length=500, description="HMAC key (webhook) or signing secret (DingTalk)"
    )
    scenario: str | None = Field(default=None, max_length=200, description="only this scenario's items")
    events: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list, max_length=3, description="item.queued | item.reminder | item.escalated; empty: all"
    )


@router.post("/notifications/channels", tags=["notifications"], status_code=201)
def add_channel(body: ChannelRequest, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Add a channel for yourself (or, as an admin, for anyone). The secret is kept, never shown."""
    p = caller.principal
    channel = notify.add_channel(
        _ws(request),
        body.user or p.id,
        body.kind,
        body.target,
        actor=p.id,
        secret=body.secret,
        scenario=body.scenario,
        events=body.events,
    )
    return notify.channel_view(channel)


@router.delete("/notifications/channels/{channel_id}", tags=["notifications"])
def remove_channel(channel_id: RowId, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Remove one of your channels (an admin: anyone's); what it still had to send is dropped."""
    return notify.channel_view(notify.remove_channel(_ws(request), channel_id, actor=caller.principal.id))


@router.get("/notifications", tags=["notifications"])
def deliveries(request: Request, caller: CallerDep) -> list[dict[str, Any]]:
    """Deliveries still pending or failed for good, oldest first (admins)."""
    ws = _ws(request)
    rows = notify.status(ws, actor=caller.principal.id)
    channels = {c.id: c for c in notify.list_channels(ws, include_removed=True)}
    return [notify.notification_view(n, channels.get(n.channel_id)) for n in rows]


@router.post("/notifications/{notification_id}/retry", tags=["notifications"], status_code=202)
def retry(notification_id: RowId, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Try a failed delivery again on the next pass, with a fresh count of attempts (admins)."""
    note = notify.retry(_ws(request), notification_id, actor=caller.principal.id)
    return notify.notification_view(note)
