"""`dew keys` with declared identities: the key file is made under a passphrase, high-risk
decisions are signed with it, a rotated key's old signatures still verify."""

from __future__ import annotations

import json

from .test_cli import j

PASSPHRASE = "correct horse battery staple"


def test_a_high_risk_item_is_signed_with_each_signers_own_key_file(dew, tmp_path):
    dew.env["DEW_KEY_PASSPHRASE"] = PASSPHRASE
    run = j(dew("run", "enforcement-document", "--example", "first", "--as", "officer.wu", "--json"))
    item = run["item_id"]
    r = dew("approve", item, "--as", "zhang.min")
    assert r.exit_code == 3 and "requires signed decisions" in r.stderr and "dew keys create" in r.stderr

    assert dew("keys", "create", "--as", "zhang.min").exit_code == 0
    assert dew("keys", "create", "--as", "li.wei").exit_code == 0
    r = dew("keys", "create", "--as", "li.wei")
    assert r.exit_code == 1 and "dew keys rotate" in r.stderr  # a key file is never overwritten
    assert dew("approve", item, "--as", "zhang.min", "--comment", "事实清楚").exit_code == 0  # signed, sign-off 1
    assert dew("approve", item, "--as", "li.wei").exit_code == 0

    rotated = j(dew("keys", "rotate", "--as", "li.wei", "--json"))
    assert rotated["revoked"] == [2] and rotated["new"]["id"] == 3
    keys = j(dew("keys", "list", "--as", "li.wei", "--json"))
    assert [(k["id"], bool(k["revoked_at"])) for k in keys] == [(2, True), (3, False)]
    assert keys[0]["revoke_reason"] == "rotated to key 3"

    verified = dew("audit", "verify")
    assert verified.exit_code == 0 and "2 signed decisions verified" in verified.stdout
    trace = json.dumps(j(dew("audit", "trace", item, "--json")), ensure_ascii=False)
    assert '"signed"' in trace


def test_a_short_passphrase_or_a_missing_key_is_a_clear_refusal(dew):
    dew.env["DEW_KEY_PASSPHRASE"] = "short"
    r = dew("keys", "create", "--as", "zhao.lei")
    assert r.exit_code == 1 and "at least 10 characters" in r.stderr
    dew.env["DEW_KEY_PASSPHRASE"] = PASSPHRASE
    item = j(dew("run", "drill-script", "--example", "first", "--as", "alice", "--json"))["item_id"]
    r = dew("approve", item, "--as", "zhao.lei", "--sign")
    assert r.exit_code == 3 and "has no signing key" in r.stderr and "Traceback" not in r.output
