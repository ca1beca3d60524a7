"""The signing-key page of the web desk: a guardian creates a key in their browser (WebCrypto
Ed25519, non-extractable, kept in the browser's IndexedDB by static/sign.js), registers its
public half here, and revokes keys. Signing itself happens in the browser on the decision forms;
the server only verifies (guardians/signing.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dew.agents.errors import InputInvalid
from dew.guardians import signing
from dew.guardians.access import reads_everything

from .security import RowId
from .web import _caller, _form, _redirect, _ws, render

router = APIRouter(include_in_schema=False)


@router.get("/keys")
def keys_page(request: Request) -> Response:
    caller = _caller(request)
    p = caller.principal
    mine = [signing.key_view(k) for k in signing.list_keys(_ws(request), p.id)]
    others = []
    if reads_everything(p):
        others = [signing.key_view(k) for k in signing.list_keys(_ws(request)) if k.person != p.id]
    return render(request, "keys.html", caller, mine=mine, others=others)


@router.post("/keys")
async def register_key(request: Request) -> Response:
    caller = _caller(request)
    form = await _form(request, caller)
    p = caller.principal
    row = signing.register_key(_ws(request), person=p.id, public_key=form.get("public_key", ""), kind="browser",
                               label=form.get("label", ""), method=p.method)  # fmt: skip
    return _redirect("/keys", done="key_created", key=row.id)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: RowId, request: Request) -> Response:
    caller = _caller(request)
    form = await _form(request, caller)
    p = caller.principal
    if not form.get("reason", "").strip():
        raise InputInvalid("say why the key is revoked")
    signing.revoke_key(_ws(request), key_id, actor=p.id, reason=form.get("reason", ""), method=p.method)
    return _redirect("/keys", done="key_revoked")
