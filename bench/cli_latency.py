"""How long a CLI command takes, as a person at a terminal waits for it.

    python bench/cli_latency.py [--repeat 15] [--json FILE]

Builds a SQLite workspace of 7 work items (the shipped scenarios' first examples, drafted by the
scripted model, each waiting for its guardian), then times `dew inbox --as GUARDIAN`, `dew show
ITEM` and `dew runs` as new processes, with `python -c pass`, `python -c "import sqlmodel"` and
the same with typer and rich's console and table as floors: what any Python program, any program
on SQLModel, and any CLI on dew's required stack pays before doing anything. The
commands and floors are interleaved, one of each in turn, so a change in the machine's load hits
all alike. Prints the median, the fastest and the slowest of each.
The first round, not counted, writes the bytecode.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dew.agents.names import shipped_directory

STACK = "import sqlmodel, typer, rich.console, rich.table"  # what every dew command imports, dew aside


def workspace(home: Path) -> tuple[str, int]:
    """A workspace with the shipped scenarios' first examples waiting: (a guardian, an item id)."""
    from dew.agents.testing import ScriptedModelProvider
    from dew.guardians.runs import start_run
    from dew.guardians.workspace import Settings, Workspace

    settings = Settings(home=home, scenarios_dir=shipped_directory(), database_url=f"sqlite:///{home / 'dew.db'}")
    with Workspace(settings, ScriptedModelProvider()) as ws:
        results = [
            start_run(ws, s.id, dict(s.spec.examples[0].inputs), requester="bench.requester")
            for s in ws.catalogue.values()
            if s.spec.examples
        ]
        waiting = [r for r in results if r.item is not None]
        if not waiting:
            raise SystemExit("no scenario's example waits for a guardian: nothing to time")
        return waiting[0].item.guardian, waiting[0].item.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="times each command is run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="dew-cli-bench-"))
    try:
        guardian, item = workspace(home)
        dew = shutil.which("dew", path=str(Path(sys.executable).parent)) or "dew"
        env = {**os.environ, "DEW_HOME": str(home), "NO_COLOR": "1"}
        for name in ("DEW_DATABASE_URL", "DEW_ENGINE", "DEW_SCENARIOS"):  # the workspace built above
            env.pop(name, None)
        env["DEW_SCENARIOS"] = str(shipped_directory())
        # As an installed dew runs: bytecode written by the first call and read by the others. With
        # PYTHONDONTWRITEBYTECODE (set on some machines) an editable checkout's modules would be
        # compiled again on every call; the cache goes to the bench's folder, not the checkout.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import sqlmodel'": [sys.executable, "-c", "import sqlmodel"],
            "… sqlmodel, typer, rich": [sys.executable, "-c", STACK],
            f"dew inbox --as {guardian}": [dew, "inbox", "--as", guardian],
            f"dew show {item}": [dew, "show", str(item)],
            "dew runs": [dew, "runs"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat + 1):  # the first round warms the page cache and the bytecode
            for name, argv in commands.items():
                t0 = time.perf_counter()
                done = subprocess.run(argv, env=env, cwd=home, capture_output=True)
                elapsed = time.perf_counter() - t0
                if done.returncode != 0:
                    raise SystemExit(f"{name} failed: {done.stderr.decode(errors='replace')}")
                times[name].append(elapsed)
        results = {name: sorted(t[1:]) for name, t in times.items()}
        print(f"{'command':<34} {'median s':>9} {'fastest':>8} {'slowest':>8}")
        for name, t in results.items():
            print(f"{name:<34} {statistics.median(t):>9.3f} {t[0]:>8.3f} {t[-1]:>8.3f}")
        if args.json:
            summary = {name: {"median": statistics.median(t), "min": t[0], "max": t[-1]} for name, t in results.items()}
            args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
