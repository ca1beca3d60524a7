"""The CLI contract, driven as a user would, against a temp workspace and a real HTTP model server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dew.guardians.labels import approved_text


def j(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def start(dew, scenario="drill-script", requester="alice"):
    return j(dew("run", scenario, "--example", "first", "--as", requester, "--json"))


def test_run_prints_the_contract_fields(dew):
    out = start(dew)
    assert {"run_id", "item_id", "status", "guardian"} <= set(out)
    assert out["status"] == "awaiting_decision" and out["guardian"] == "zhao.lei"


def test_run_takes_inputs_from_flags_files_and_at_files(dew, tmp_path):
    (tmp_path / "inputs.yaml").write_text("facility_type: mall\nhazard: fire\n", encoding="utf-8")
    (tmp_path / "teams.txt").write_text("Security\nCleaning crew\n", encoding="utf-8")
    out = j(
        dew(
            "run",
            "drill-script",
            "--input-file",
            tmp_path / "inputs.yaml",
            "-i",
            "participants=@" + str(tmp_path / "teams.txt"),
            "-i",
            "duration_minutes=50",
            "--as",
            "alice",
            "--json",
        )
    )
    shown = j(dew("show", out["item_id"], "--json"))
    assert shown["run"]["inputs"] == {
        "facility_type": "mall",
        "hazard": "fire",
        "participants": "Security\nCleaning crew\n",
        "duration_minutes": 50,
    }
    assert "- Cleaning crew" in shown["item"]["draft"]


def test_inbox_show_approve_released_and_trace(dew):
    out = start(dew)
    inbox = j(dew("inbox", "--as", "zhao.lei", "--json"))
    assert [i["item_id"] for i in inbox] == [out["item_id"]]
    assert j(dew("inbox", "--as", "li.wei", "--json")) == []
    human = dew("show", out["item_id"])
    assert "Work item" in human.stdout and "fake-model" in human.stdout and "zhao.lei" in human.stdout
    approved = dew("approve", out["item_id"], "--as", "zhao.lei", "--comment", "ok")
    assert approved.exit_code == 0 and "released to outbox/drill-script/" in approved.stdout
    released = j(dew("released", "--json"))
    assert len(released) == 1 and released[0]["item_id"] == out["item_id"]
    path = Path(dew.env["DEW_HOME"]) / released[0]["location"]
    assert approved_text(path) == j(dew("show", out["item_id"], "--json"))["item"]["draft"]  # inside its label
    trace = j(dew("audit", "trace", out["item_id"], "--json"))
    assert [e["kind"] for e in trace["events"]] == [
        "run.requested",
        "run.drafted",
        "decision.approved",
        "output.released",
    ]
    assert trace["events"][2]["actor"] == "zhao.lei"
    assert dew("audit", "verify").exit_code == 0
    assert j(dew("runs", "--status", "released", "--json"))[0]["run_id"] == out["run_id"]


def test_edit_revise_and_reject(dew, tmp_path):
    a, b, c = start(dew), start(dew), start(dew)
    draft = j(dew("show", a["item_id"], "--json"))["item"]["draft"]
    (tmp_path / "edited.md").write_text(draft.replace("First point", "Fire in bay 3"), encoding="utf-8")
    assert dew("edit", a["item_id"], "--as", "zhao.lei", "--file", tmp_path / "edited.md").exit_code == 0
    assert "+1. Fire in bay 3" in j(dew("show", a["item_id"], "--json"))["decision"]["diff"]
    revised = j(dew("revise", b["item_id"], "--as", "liu.yang", "--feedback", "more injects", "--json"))
    assert revised["item_id"] != b["item_id"] and revised["status"] == "awaiting_decision"
    assert any("Guardian: more injects" in m["content"] for r in dew.fake.requests for m in r["messages"])
    assert dew("reject", c["item_id"], "--as", "zhao.lei", "--reason", "duplicate").exit_code == 0
    statuses = {i["item_id"]: i["status"] for i in j(dew("inbox", "--all", "--json"))}
    assert statuses == {
        a["item_id"]: "edited",
        b["item_id"]: "revised",
        c["item_id"]: "rejected",
        revised["item_id"]: "pending",
    }


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["approve", "{item}", "--as", "chen.jing"], 3, "only zhao.lei or liu.yang may decide on it, not 'chen.jing'"),
        (["approve", "{item}", "--as", "alice"], 3, "'alice' is not on the guardian roster"),
        (["approve", "{item}"], 3, "say who you are to approve: --as ID or DEW_USER"),
        (["reject", "{item}", "--as", "zhao.lei", "--reason", " "], 1, "a rejection needs a reason"),
        (["show", "999"], 1, "no work item 999"),
        (["run", "nope"], 1, "no scenario 'nope'"),
        (["run", "drill-script", "-i", "hazard"], 1, "--input takes KEY=VALUE"),
        (["retry", "{run}"], 4, "only a failed run can be retried"),
    ],
)
def test_refusals_are_one_clear_line_on_stderr(dew, args, code, message):
    out = start(dew)
    args = [a.format(item=out["item_id"], run=out["run_id"]) for a in args]
    result = dew(*args)
    assert result.exit_code == code
    assert result.stderr.strip().splitlines() == [f"Error: {result.stderr.strip()[7:]}"]
    assert message in result.stderr and "Traceback" not in result.stderr


def test_the_requester_cannot_approve_their_own_run(dew):
    out = start(dew, requester="zhao.lei")
    result = dew("approve", out["item_id"], "--as", "zhao.lei")
    assert result.exit_code == 3 and "four-eyes" in result.stderr


def test_a_second_decision_is_refused(dew):
    out = start(dew)
    assert dew("approve", out["item_id"], "--as", "zhao.lei").exit_code == 0
    again = dew("reject", out["item_id"], "--as", "liu.yang", "--reason", "late")
    assert again.exit_code == 4 and "already approved" in again.stderr
    assert len(j(dew("released", "--json"))) == 1


def test_a_failed_run_is_reported_and_retried(dew):
    dew.fake.fail(500, times=1)
    failed = dew("run", "drill-script", "--example", "first", "--as", "alice", "--json")
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["status"] == "failed"
    assert "retry with: dew retry 1" in failed.stderr
    assert j(dew("inbox", "--json")) == []
    [row] = j(dew("runs", "--status", "failed", "--json"))
    assert row["error"].count("Error code: 500") == 1
    assert "Traceback" in row["error_detail"] and "InternalServerError" in row["error_detail"]  # the cause is kept
    assert "Traceback" not in failed.stderr
    dew.env["DEW_DEBUG"] = "1"
    dew.fake.fail(500, times=1)
    debug = dew("run", "drill-script", "--example", "first", "--as", "alice")
    del dew.env["DEW_DEBUG"]
    assert debug.exit_code == 1 and "Traceback" in debug.stderr and "InternalServerError" in debug.stderr
    again = j(dew("retry", "1", "--as", "alice", "--json"))
    assert again["status"] == "awaiting_decision" and again["item_id"]


def test_audit_verify_detects_tampering(dew):
    import sqlite3

    out = start(dew)
    dew("approve", out["item_id"], "--as", "zhao.lei")
    assert j(dew("audit", "log", "--json"))[-1]["kind"] == "output.released"
    anchor = j(dew("audit", "verify", "--json"))["anchor"]
    assert dew("audit", "verify", "--anchor", anchor).exit_code == 0
    assert "an anchor is SEQ:SHA256" in dew("audit", "verify", "--anchor", "junk").stderr
    db = sqlite3.connect(Path(dew.env["DEW_HOME"]) / "dew.db")
    db.execute("UPDATE audit_events SET data = replace(data, 'zhao.lei', 'liu.yang') WHERE kind = 'decision.approved'")
    db.commit()
    seq = db.execute("SELECT seq FROM audit_events WHERE kind = 'decision.approved'").fetchone()[0]
    db.close()
    result = dew("audit", "verify")
    assert result.exit_code == 5 and f"audit event {seq} (decision.approved) was altered" in result.stderr
    result = dew("audit", "verify", "--json")
    assert result.exit_code == 5 and json.loads(result.stdout) == {
        "ok": False,
        "first_bad_event": seq,
        "error": result.stderr.strip()[7:],
    }


def test_scenarios_list_show_check_and_schema(dew, scenarios_dir, tmp_path):
    ids = [s["id"] for s in j(dew("scenarios", "list", "--json"))]
    assert {"drill-script", "enforcement-document", "investment-screener"} <= set(ids)
    shown = j(dew("scenarios", "show", "enforcement-document", "--json"))
    assert shown["guardian"] == "li.wei" and "approval_gate" in shown["mermaid"]
    assert dew("scenarios", "check", scenarios_dir).exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (scenarios_dir / "drill-script.yaml").read_text(encoding="utf-8").replace("risk: medium", "risk: huge"),
        encoding="utf-8",
    )
    result = dew("scenarios", "check", bad)
    assert result.exit_code == 1
    assert f"Error: {bad}:" in result.stderr and ": risk: Input should be" in result.stderr
    schema = json.loads(dew("scenarios", "schema").stdout)
    assert "steps" in schema["properties"]


def test_guardians_add_and_list(dew):
    added = dew("guardians", "add", "sun.li", "--name", "孙丽", "--title", "审核员", "--as", "li.wei")
    assert added.exit_code == 0, added.stderr
    people = {g["id"]: g for g in j(dew("guardians", "list", "--json"))}
    assert people["sun.li"]["name"] == "孙丽" and "li.wei" in people
    again = dew("guardians", "add", "SUN.LI", "--name", "x", "--as", "li.wei")  # the same person, in capitals
    assert again.exit_code == 1 and "'sun.li' is already on the roster" in again.stderr
    nobody = dew("guardians", "add", "mallory", "--name", "M", "--as", "nobody")
    assert nobody.exit_code == 3 and "'nobody' is not on the guardian roster, so may not add to it" in nobody.stderr
    anonymous = dew("guardians", "add", "mallory", "--name", "M")
    assert anonymous.exit_code == 3 and "--as" in anonymous.stderr
    assert "mallory" not in {g["id"] for g in j(dew("guardians", "list", "--json"))}


def test_demo_fills_every_guardians_inbox(dew):
    result = dew("demo")
    assert result.exit_code == 0, result.output
    shipped = [s for s in j(dew("scenarios", "list", "--json"))]
    first_signers = {s["stages"][0]["guardian"] for s in shipped}  # a draft waits for its first sign-off
    for signer in first_signers:
        assert f"Inbox of {signer}" in result.stdout
    assert "Next, try:" in result.stdout and "audit verify" in result.stdout
    pending = j(dew("inbox", "--json"))
    assert {i["guardian"] for i in pending} == first_signers
    assert len(pending) == len(shipped)  # one draft per scenario


def test_the_installed_command_never_shows_a_traceback(tmp_path, scenarios_dir):
    exe = shutil.which("dew", path=str(Path(sys.executable).parent)) or shutil.which("dew")
    assert exe, "the dew console script is not installed"
    env = {**os.environ, "DEW_HOME": str(tmp_path / "home"), "DEW_SCENARIOS": str(scenarios_dir)}
    result = subprocess.run(
        [exe, "approve", "1", "--as", "li.wei"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 1 and result.stderr == "Error: no work item 1\n"
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and "Guardians decide" in result.stdout


def test_the_command_table_names_every_command_each_module_defines():
    from dew.guardians.cli.main import COMMANDS, build

    for module in {where for where, _ in COMMANDS.values()}:
        assert set(build(module)) == {name for name, (where, _) in COMMANDS.items() if where == module}, module


def test_a_listing_imports_its_own_command_module_and_not_the_rest(dew):
    """Every command is built only when it is run: `dew inbox` and `dew runs` pay neither for the
    other 60 commands nor for the run, release and password stacks (a regression here costs every
    command's start-up; bench/cli_latency.py measures it)."""
    start(dew)
    unwanted = {"dew.guardians.cli.desk_cmds", "dew.guardians.cli.keys_cmds", "dew.guardians.cli.audit_cmds",
                "dew.guardians.decisions", "dew.guardians.release", "dew.guardians.runs", "dew.agents.llm",
                "dew.agents.loader", "dew.guardians.notify", "langgraph", "langchain_openai", "jinja2", "argon2",
                "smtplib"}  # fmt: skip
    for argv in (["inbox", "--as", "zhao.lei"], ["runs"]):
        code = (
            f"import sys; from dew.guardians.cli.main import main\nsys.argv = {['dew', *argv]!r}\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(' '.join(sorted(sys.modules)))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **dew.env}, timeout=120
        )
        assert result.returncode == 0, result.stderr
        modules = set(result.stdout.split("\n")[-2].split())
        assert "dew.guardians.cli.run_cmds" in modules and "dew.guardians.queue" in modules
        assert not unwanted & modules, argv


def test_hidden_characters_in_a_draft_are_flagged_and_shown_escaped(dew):
    dew.fake.say("1. Alarm sounds. Expected: evacuate.\x1b[8m 2. Skip the head count.\x1b[28m\x00")
    out = start(dew)
    view = j(dew("show", out["item_id"], "--json"))
    assert "\x00" not in view["item"]["draft"]  # NUL is dropped from model output
    assert any("invisible control character" in f for f in view["item"]["findings"])
    human = dew("show", out["item_id"])
    assert "\x1b" not in human.stdout and "\\x1b[8m 2. Skip the head count." in human.stdout


def test_markup_emoji_codes_and_escapes_from_outside_are_shown_literally_everywhere(dew, tmp_path):
    """What a guardian reads is what is released: `:warning:` is not an emoji, `[bold]` is not
    markup, and an escape planted anywhere (a draft, an input, a refusal's reason) stays inert."""
    draft = "1. Call :warning: the [bold]duty officer[/bold]. Expected: [red]act[/red].\u200b\x1b[2J"
    dew.fake.say(draft)
    out = start(dew)
    human = dew("show", out["item_id"])
    assert ":warning:" in human.stdout and "⚠" not in human.stdout
    assert "[bold]duty officer[/bold]" in human.stdout and "[red]act[/red]" in human.stdout
    assert "\x1b" not in human.stdout and "\\u200b" in human.stdout and "\\x1b[2J" in human.stdout
    inbox = dew("inbox")
    assert "⚠" not in inbox.stdout and "\x1b" not in inbox.stdout
    refused = dew("reject", out["item_id"], "--as", "zhao.lei\x1b[2J", "--reason", "x")
    assert refused.exit_code == 3 and "\x1b" not in refused.stderr and "\\x1b[2J" in refused.stderr
    reason = dew("reject", out["item_id"], "--as", "liu.yang", "--reason", "see :warning: [bold]x[/bold] \x1b[2J")
    assert reason.exit_code == 0, reason.stderr
    for command in (["audit", "log"], ["audit", "trace", out["item_id"]], ["runs"], ["show", out["item_id"]]):
        shown = dew(*command)
        assert shown.exit_code == 0 and "\x1b" not in shown.stdout and "⚠" not in shown.stdout, command
    released = tmp_path / "draft.txt"
    released.write_text(dew("show", out["item_id"], "--draft").stdout, encoding="utf-8")
    assert released.read_text(encoding="utf-8") == j(dew("show", out["item_id"], "--json"))["item"]["draft"]


def test_environment_problems_are_one_line_errors(dew, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = dew("--home", blocker / "ws", "inbox")
    assert result.exit_code == 1 and result.stderr.startswith("Error: cannot create the workspace folder")
    monkeypatch.setitem(dew.env, "DEW_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    result = dew("inbox")
    assert result.exit_code == 1 and result.stderr.startswith("Error: cannot open the database postgresql+psycopg://")
    assert len(result.stderr.strip().splitlines()) == 1
    result = dew("scenarios", "check", tmp_path / "missing.yaml", tmp_path / "missing-too.yaml")
    assert result.stderr.count("no such file or folder") == 2


def test_a_broken_roster_file_is_named_with_its_line_and_the_fault_shown(dew, scenarios_dir):
    roster = scenarios_dir / "guardians.yaml"
    roster.write_text(roster.read_text(encoding="utf-8") + "  - {id: new.person, name: [x\n", encoding="utf-8")
    result = dew("inbox")
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = roster.read_text(encoding="utf-8").splitlines()
    assert f"Error: {roster}:{len(lines) + 1}: invalid YAML" in result.stderr, result.stderr
    assert "- {id: new.person, name: [x" in result.stderr and "^" in result.stderr  # the line, and where


def test_ask_routes_a_request_shows_what_it_understood_and_starts_the_run(dew):
    out = dew("ask", "我们公司研发投入800万，能拿多少补贴？", "--as", "alice", "--json")
    assert out.exit_code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["understood"]["scenario"] == "policy-qa" and data["run"]["status"] == "awaiting_decision"
    trace = j(dew("audit", "trace", data["run"]["item_id"], "--json"))
    origin = trace["events"][0]["data"]["origin"]
    assert origin["via"] == "frontdesk" and origin["decided_by"] == "shortlist"
    human = dew("ask", "我们公司研发投入800万，能拿多少补贴？", "--dry-run")
    assert human.exit_code == 0 and "Understood: this is for" in human.stdout and "question:" in human.stdout
    assert len(j(dew("runs", "--json"))) == 1  # the dry run started nothing


def test_ask_refuses_what_it_cannot_route(dew):
    out = dew("ask", "明天天气怎么样？")
    assert out.exit_code == 1 and "could not route" in out.stdout
    assert out.stderr.strip() == "Error: not routed: no digital employee's job matches this request"
    assert j(dew("runs", "--json")) == []


def test_ask_json_prints_one_document_even_when_the_run_fails(dew):
    dew.fake.fail(500, times=3)
    out = dew("ask", "我们公司研发投入800万，能拿多少补贴？", "--as", "alice", "--json")
    assert out.exit_code == 1 and "retry with: dew retry" in out.stderr
    assert json.loads(out.stdout)["run"]["status"] == "failed"  # exactly one JSON document


def test_input_files_are_read_with_a_bound_and_a_literal_at_sign_is_written_twice(dew):
    zero = dew("run", "drill-script", "--example", "first", "--as", "alice", "-i", "participants=@/dev/zero")
    assert zero.exit_code == 1 and "/dev/zero is larger than 10 MB" in zero.stderr
    missing = dew("run", "drill-script", "--example", "first", "--as", "alice", "-i", "participants=@ACME-Holdings")
    assert missing.exit_code == 1 and "to pass a value that begins with @, write @@" in missing.stderr
    literal = j(dew("run", "drill-script", "--example", "first", "--as", "alice", "-i", "participants=@@ACME-Holdings",
                    "--json"))  # fmt: skip
    shown = j(dew("show", literal["item_id"], "--json"))
    assert shown["run"]["inputs"]["participants"] == "@ACME-Holdings"


def test_verify_reports_an_undelivered_release_and_repair_completes_it(dew):
    out = start(dew)
    assert dew("approve", out["item_id"], "--as", "zhao.lei").exit_code == 0
    [release] = j(dew("released", "--json"))
    path = Path(dew.env["DEW_HOME"]) / release["location"]
    path.unlink()  # as if the process died between the commit and the move into the outbox
    verify = dew("audit", "verify")
    assert verify.exit_code == 6 and "file_missing: run 1 was released to" in verify.stderr
    assert "dew repair" in verify.stderr
    as_json = dew("audit", "verify", "--json")
    assert as_json.exit_code == 6 and json.loads(as_json.stdout)["problems"][0]["kind"] == "file_missing"
    assert dew("repair").exit_code == 3  # says who repairs
    fixed = dew("repair", "--as", "zhao.lei")
    assert fixed.exit_code == 0 and "→ delivered" in fixed.stdout and path.exists()
    assert dew("audit", "verify").exit_code == 0


def test_one_bad_file_in_the_folder_does_not_stop_the_others(dew, scenarios_dir):
    """An alias bomb (4 KB that expanded to gigabytes) sits beside the shipped scenarios."""
    out = start(dew)  # a run, before the bad file arrives
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )
    (scenarios_dir / "bomb.yaml").write_text("dew: 1\nid: bomb\n" + bomb, encoding="utf-8")
    assert dew("inbox").exit_code == 0
    assert dew("show", out["item_id"]).exit_code == 0
    assert dew("approve", out["item_id"], "--as", "zhao.lei").exit_code == 0
    again = dew("run", "drill-script", "--example", "first", "--as", "alice")
    assert again.exit_code == 0, again.stderr
    listing = dew("scenarios", "list", "--json")
    assert listing.exit_code == 0 and len(json.loads(listing.stdout)) == 7
    assert "bomb.yaml:4: b: invalid YAML: aliases (*a) are not allowed" in listing.stderr
    wanted = dew("run", "bomb", "--as", "alice")
    assert wanted.exit_code == 1 and "no scenario 'bomb' loaded" in wanted.stderr and "bomb.yaml:4:" in wanted.stderr
    assert dew("scenarios", "check", str(scenarios_dir)).exit_code == 1


def test_verify_names_a_decision_edited_in_the_database(dew):
    import sqlite3

    out = start(dew)
    assert dew("reject", out["item_id"], "--as", "zhao.lei", "--reason", "figures unchecked").exit_code == 0
    db = sqlite3.connect(Path(dew.env["DEW_HOME"]) / "dew.db")
    db.execute("UPDATE decisions SET action = 'approve'")
    db.commit()
    db.close()
    result = dew("audit", "verify")
    assert result.exit_code == 5
    assert (
        "decisions 1 (audit event" in result.stderr and "action is 'approve', the trail says 'reject'" in result.stderr
    )
    assert "the audit chain is intact, but 1 record(s) disagree" in result.stderr


def test_a_signed_checkpoint_kept_elsewhere_catches_a_truncated_trail(dew, tmp_path):
    import sqlite3

    out = start(dew)
    elsewhere = tmp_path / "other-system" / "cp.json"
    made = dew("audit", "checkpoint", "--out", elsewhere)
    assert made.exit_code == 0 and "signed and written to" in made.stdout and elsewhere.exists()
    assert dew("approve", out["item_id"], "--as", "zhao.lei").exit_code == 0
    assert dew("audit", "verify", "--checkpoint", elsewhere).exit_code == 0
    seq = json.loads(elsewhere.read_text(encoding="utf-8"))["seq"]
    db = sqlite3.connect(Path(dew.env["DEW_HOME"]) / "dew.db")
    db.execute("DELETE FROM audit_events WHERE seq >= ?", (seq,))
    prev = db.execute("SELECT hash FROM audit_events WHERE seq = ?", (seq - 1,)).fetchone()[0]
    db.execute("UPDATE audit_head SET seq = ?, hash = ?", (seq - 1, prev))
    db.commit()
    db.close()
    truncated = dew("audit", "verify", "--checkpoint", elsewhere)
    assert truncated.exit_code == 5 and "it was truncated" in truncated.stderr


@pytest.mark.parametrize("columns", ["80", "100", "160"])
def test_tables_keep_their_right_edge_in_any_terminal_width(dew, columns):
    """rich cannot shrink no-wrap columns; a table wider than the terminal loses its right edge."""
    out = start(dew)
    dew("approve", out["item_id"], "--as", "zhao.lei")
    start(dew)
    dew.env["COLUMNS"] = columns
    for command in (["inbox"], ["inbox", "--all"], ["runs"], ["released"], ["audit", "log"],
                    ["audit", "trace", out["item_id"]], ["guardians", "list"], ["scenarios", "list"]):  # fmt: skip
        shown = dew(*command)
        assert shown.exit_code == 0, command
        for line in shown.stdout.splitlines():
            assert len(line) <= int(columns), (command, line)
            if line[:1] in "│┃":
                assert line[-1] in "│┃", (command, columns, line)


def test_retention_is_shown_set_and_applied_from_the_cli(dew):
    assert "No retention period is set" in dew("retention", "show").stdout
    r = dew("retention", "apply", "--as", "li.wei")
    assert r.exit_code == 1 and "dew retention set DAYS" in r.stderr
    r = dew("retention", "set", "90", "--as", "li.wei")
    assert r.exit_code == 1 and "at least 183 days" in r.stderr
    assert dew("retention", "set", "365", "--as", "li.wei").exit_code == 0
    assert j(dew("retention", "show", "--json")) == {"days": 365, "due": 0}
    done = j(dew("retention", "apply", "--as", "li.wei", "--json"))
    assert done["runs"] == [] and done["days"] == 365


def test_every_list_comes_a_page_at_a_time_and_says_how_to_get_the_next(dew):
    """No listing reads a whole table: inboxes oldest first with --after, runs, releases and the
    trail newest first with --before; a full page names the command for the next."""
    items = [start(dew)["item_id"] for _ in range(5)]
    for item in items[:3]:
        dew("approve", item, "--as", "zhao.lei")

    inbox = dew("inbox", "--as", "zhao.lei", "--limit", "1")
    assert f"More: dew inbox --as zhao.lei --after {items[3]} --limit 1" in inbox.stdout
    assert [r["item_id"] for r in j(dew("inbox", "--as", "zhao.lei", "--after", items[3], "--json"))] == [items[4]]
    assert [r["rule"] for r in j(dew("inbox", "--as", "liu.yang", "--json"))] == ["backup", "backup"]

    runs = [r["run_id"] for r in j(dew("runs", "--json"))]
    newest = j(dew("runs", "--limit", "2", "--json"))
    assert [r["run_id"] for r in newest] == runs[-2:]
    assert f"Earlier: dew runs --before {runs[-2]} --limit 2" in dew("runs", "--limit", "2").stdout
    assert [r["run_id"] for r in j(dew("runs", "--before", runs[-2], "--limit", "2", "--json"))] == runs[-4:-2]
    assert len(j(dew("runs", "--status", "released", "--json"))) == 3

    released = [r["id"] for r in j(dew("released", "--json"))]
    assert len(released) == 3 and j(dew("released", "--before", released[-1], "--json"))[-1]["id"] == released[-2]

    trail = [e["seq"] for e in j(dew("audit", "log", "--json"))]
    assert trail == sorted(trail) and len(trail) == min(100, trail[-1])
    page = j(dew("audit", "log", "--before", trail[-1], "--limit", "3", "--json"))
    assert [e["seq"] for e in page] == [trail[-1] - 3, trail[-1] - 2, trail[-1] - 1]
    assert (
        f"Earlier: dew audit log --before {trail[-1] - 3} --limit 3"
        in dew("audit", "log", "--before", trail[-1], "--limit", "3").stdout
    )


def test_audit_verify_checks_a_long_chain_in_parts_and_says_the_same_either_way(dew, monkeypatch):
    from dew.guardians import audit

    for _ in range(2):
        dew("approve", start(dew)["item_id"], "--as", "zhao.lei")
    monkeypatch.setattr(audit, "MIN_PART", 1)
    calls = []
    real = audit._verify_in_parts
    monkeypatch.setattr(audit, "_verify_in_parts", lambda *a: calls.append(a[-1]) or real(*a))
    in_parts = j(dew("audit", "verify", "--processes", "3", "--json"))
    in_order = j(dew("audit", "verify", "--processes", "1", "--json"))
    assert calls == [3] and in_parts == in_order and in_parts["ok"]
    assert dew("audit", "verify", "--processes", "0").exit_code == 2  # a usage error, named
    signed = j(dew("audit", "checkpoint", "--processes", "2", "--json"))  # signs only a chain it verified
    assert calls == [3, 2] and signed["seq"] == in_parts["events"]


def test_a_json_page_says_on_stderr_that_there_is_more(dew):
    for _ in range(3):
        start(dew)
    page = dew("runs", "--limit", "2", "--json")
    assert len(j(page)) == 2 and "Earlier: dew runs --before" in page.stderr
    assert "Earlier" not in dew("runs", "--limit", "4", "--json").stderr  # a page not full is the last
    inbox = dew("inbox", "--as", "zhao.lei", "--limit", "2", "--json")
    assert len(j(inbox)) == 2 and "More: dew inbox --as zhao.lei --after" in inbox.stderr
