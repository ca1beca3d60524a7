"""dew installs as one package, `dew`, so it can share an environment with other `agents` packages."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path


def test_the_distribution_claims_no_top_level_agents_or_guardians():
    top = {Path(str(f)).parts[0] for f in distribution("dew").files or []}
    assert "agents" not in top and "guardians" not in top
    assert "dew" in top


def test_dew_works_beside_another_top_level_agents_package(tmp_path):
    # A stand-in for the OpenAI Agents SDK, which installs a top-level `agents` package, placed
    # first on the path, exactly where an installed one would win.
    for name in ("agents", "guardians"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"OTHER = {name!r}\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    code = (
        "import agents, guardians; assert agents.OTHER == 'agents' and guardians.OTHER == 'guardians';"
        "from dew.agents.loader import load_directory; from dew.agents.names import shipped_directory;"
        "from dew.agents.tools import registry;"
        "assert len(load_directory(shipped_directory())) >= 7 and 'score_table' in registry();"
        "import agents; assert agents.OTHER == 'agents'"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    dew = Path(sys.executable).parent / "dew"
    listing = subprocess.run(
        [str(dew), "scenarios", "list", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert listing.returncode == 0, listing.stderr
    assert '"enforcement-document"' in listing.stdout
