"""How often does the embedded model's draft pass each scenario's own checks?

    python bench/scenario_pass_rates.py [--repeat 3] [--write docs/pass-rates.md]

Runs every sample of every shipped scenario `--repeat` times through the real embedded
SmolLM2 server (or whatever DEW_LLM_* names), in a throw-away workspace, and counts a draft as
passing when it reached the guardian with no findings: no check, reviewer or gate rule left a
problem. Prints a table; --write also records it as Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dew.agents.llm import settings_from_env
from dew.agents.names import shipped_directory
from dew.guardians.runs import start_run
from dew.guardians.workspace import Settings, Workspace


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", type=Path, help="write the results as Markdown to this file")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="dew-pass-"))
    ws = Workspace(Settings(home=home, scenarios_dir=shipped_directory(), database_url=f"sqlite:///{home / 'dew.db'}"))
    llm = settings_from_env()
    model = "embedded SmolLM2-135M-Instruct (Q4_1, llama.cpp server)" if llm.embedded else llm.describe()
    rows = []
    try:
        for sid, loaded in sorted(ws.catalogue.items()):
            for example in loaded.spec.examples:
                passed, failed, times, findings = 0, 0, [], {}
                for _ in range(args.repeat):
                    t0 = time.monotonic()
                    r = start_run(ws, sid, dict(example.inputs), requester="bench")
                    times.append(time.monotonic() - t0)
                    if r.run.status != "awaiting_decision":
                        failed += 1
                        findings[f"run failed: {(r.run.error or '')[:60]}"] = findings.get("run failed", 0) + 1
                        continue
                    if not r.item.findings:
                        passed += 1
                    for f in r.item.findings:
                        key = f.split(":")[0]
                        findings[key] = findings.get(key, 0) + 1
                rows.append((sid, example.name, passed, failed, args.repeat, statistics.median(times), findings))
                print(
                    f"{sid:22} {example.name[:28]:30} pass {passed}/{args.repeat} failed {failed} "
                    f"median {statistics.median(times):5.1f}s  {findings}",
                    flush=True,
                )
    finally:
        ws.close()
    if args.write:
        lines = [
            "# How the embedded model does on the shipped scenarios",
            "",
            f"Measured {date.today().isoformat()} with `python bench/scenario_pass_rates.py --repeat {args.repeat} "
            f"--write docs/pass-rates.md` on a {os.cpu_count()}-core {platform.machine()} machine; model: {model}.",
            "",
            "A draft *passes* when it reaches the guardian with no findings: every check, reviewer and gate rule "
            "of the scenario was satisfied. A failed run is one the model could not complete (it stays retryable). "
            "Whatever the numbers, every draft still waits for its guardian; the findings tell them what to look at.",
            "",
            "| scenario | sample | passed | runs failed | median time | findings that stopped a pass (count) |",
            "|---|---|---|---|---|---|",
        ]
        for sid, name, passed, failed, n, med, findings in rows:
            found = ", ".join(f"{k} ({v})" for k, v in sorted(findings.items())) or "–"
            lines.append(f"| `{sid}` | {name} | {passed}/{n} | {failed} | {med:.1f} s | {found} |")
        lines += ["", "## In plain words", ""]
        for sid in sorted({r[0] for r in rows}):
            mine = [r for r in rows if r[0] == sid]
            passed, total = sum(r[2] for r in mine), sum(r[4] for r in mine)
            if passed == total:
                verdict = "passes its own checks on every sample."
            elif passed == 0:
                verdict = (
                    "**does not pass its own checks with the embedded model** on any sample: every draft "
                    "reaches the guardian with findings. Use a larger model (see the README) for real work."
                )
            else:
                verdict = (
                    f"passes its own checks on {passed} of {total} runs; the rest reach the guardian with findings."
                )
            lines.append(f"- `{sid}` {verdict}")
        args.write.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
