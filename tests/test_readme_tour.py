"""The README's five-minute tour, run as a newcomer would type it, line by line.

Each line of the tour's code block runs in a shell, in order, in a fresh folder holding a copy of
the scenarios, after `dew demo`; its exit code must be what its comment says ("refused (exit N)"),
else 0. The model is the loopback fake OpenAI server, so the tour's item numbers are stable.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def tour() -> list[tuple[str, str]]:
    """(command, comment) for every command of the tour, continuation lines joined."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- tour -->\n```bash\n(.+?)\n```", readme, re.S)
    assert block, "the README's tour block (<!-- tour -->) is missing"
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in block.group(1).splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        parts = re.split(r"\s+#\s", line, maxsplit=1)
        command, comment = parts[0].strip(), (parts[1] if len(parts) > 1 else "")
        if command:
            out.append((command, comment))
        elif out and line.startswith("#"):  # a comment continued on its own line
            out[-1] = (out[-1][0], out[-1][1] + " " + line.lstrip("# "))
    return out


def test_the_tour_parses_into_commands():
    commands = [c for c, _ in tour()]
    assert commands[0] == "dew inbox" and any(
        c.startswith("dew run drill-script") and "@teams.txt" in c for c in commands
    )


@pytest.fixture
def shell(tmp_path, fake_llm):
    shutil.copytree(REPO / "scenarios", tmp_path / "scenarios", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEW_", "OPENAI_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", COLUMNS="160",
               DEW_LLM_BASE_URL=fake_llm.url, DEW_LLM_MODEL="fake-model",
               # signing keys go to the tour's own config folder, and the passphrase a person would
               # type at `dew keys create`'s prompt (there is no terminal here) comes from the environment
               DEW_CONFIG_DIR=str(tmp_path / "config"), DEW_KEY_PASSPHRASE="a passphrase only she knows")  # fmt: skip

    def run(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip

    return run


def test_every_line_of_the_tour_does_what_its_comment_says(shell):
    demo = shell("dew demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    outputs: dict[str, str] = {}
    for command, comment in tour():
        done = shell(command)
        refused = re.search(r"refused \(exit (\d)\)", comment)
        expected = int(refused.group(1)) if refused else 0
        assert done.returncode == expected, (
            f"{command}\n  expected exit {expected}: {comment}\n{done.stdout}{done.stderr}"
        )
        if refused:
            assert done.stderr.startswith("Error: ") and "Traceback" not in done.stderr
        outputs[command] = done.stdout
    # What the comments promise, beyond exit codes:
    assert " 8 " in outputs["dew inbox --as zhao.lei"]  # the revised draft is work item 8
    assert (
        "now waits for sign-off 2 by li.wei"
        in outputs['dew approve 3 --as zhang.min --comment "facts match the transcript"']
    )
    assert "outbox/enforcement-document/3-" in outputs["dew released"]
    assert "work item 9 for zhang.min" in outputs["dew approve 5 --as xu.jie"]  # the hand-off
    assert "Audit events of the hand-off chain" in outputs["dew audit trace 9"]
    assert "intact" in outputs["dew audit verify"]
    assert "2 signed decisions verified" in outputs["dew audit verify"]  # zhang.min's and li.wei's
    assert "李伟 (li.wei)" in outputs["dew released verify .dew/outbox/enforcement-document/3-*.txt"]
