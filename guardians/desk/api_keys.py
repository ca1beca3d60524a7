"""The signing-key routes of `/api/v1`: a person registers the public half of a key they hold
(made by `dew keys create`, or by WebCrypto in their browser), lists and revokes keys. The private
half never comes here; who may do what is decided in `guardians/signing.py`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from dew.guardians import signing
from dew.guardians.access import reads_everything
from dew.guardians.errors import NotAuthorized

from .security import CallerDep, RowId

router = APIRouter(prefix="/api/v1")


def _ws(request: Request):
    return request.app.state.ws


@router.get("/keys", tags=["signing"])
def keys(
    request: Request, caller: CallerDep, person: Annotated[str | None, Query(max_length=64)] = None
) -> list[dict[str, Any]]:
    """Your signing keys; admins and auditors see everyone's (or one person's, with `person`)."""
    p = caller.principal
    if person is not None and person != p.id and not reads_everything(p):
        raise NotAuthorized("only admins and auditors see other people's signing keys")
    whose = person if person is not None else (None if reads_everything(p) else p.id)
    return [signing.key_view(k) for k in signing.list_keys(_ws(request), whose)]


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public_key: str = Field(max_length=64, description="base64 of the raw 32-byte Ed25519 public key")
    kind: str = Field(default="browser", max_length=20, description="file | browser: where the private half is kept")
    label: str = Field(default="", max_length=100, description="which device or file, so you can tell keys apart")


@router.post("/keys", tags=["signing"], status_code=201)
def register(body: NewKey, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Register the public half of a key you hold; it then signs your decisions."""
    p = caller.principal
    row = signing.register_key(_ws(request), person=p.id, public_key=body.public_key, kind=body.kind,
                               label=body.label, method=p.method)  # fmt: skip
    return signing.key_view(row)


class Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(max_length=2000)


@router.post("/keys/{key_id}/revoke", tags=["signing"])
def revoke(key_id: RowId, body: Revocation, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Revoke a key (yours, or anyone's as an admin): it signs nothing new; what it signed stays valid."""
    p = caller.principal
    return signing.key_view(signing.revoke_key(_ws(request), key_id, actor=p.id, reason=body.reason, method=p.method))
