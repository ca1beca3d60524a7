"""How well dew's recognisers find personal data, measured on the labelled set of the tests.

    .venv/bin/python bench/pii.py                   # print the table
    .venv/bin/python bench/pii.py --write docs/privacy.md   # replace the table in the docs

Per kind: labelled entities, found spans, exact hits, recall and precision; then the round trips
(hide, then restore, must give back the text exactly), how many snippets the injection detector
flags (they are all honest text: each flag is a false alarm), and the time to pseudonymise.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

import yaml

from dew.agents.pseudonyms import for_run
from dew.agents.recognisers import KINDS, find
from dew.agents.untrusted import injection_signs

SNIPPETS = Path(__file__).resolve().parent.parent / "tests" / "data" / "pii_snippets.yaml"
BEGIN, END = "<!-- pii-table:begin -->", "<!-- pii-table:end -->"


def measure(snippets: list[dict]) -> dict[str, dict[str, float]]:
    """Recall and precision per kind (an entity counts when found with exactly its labelled text)."""
    table: dict[str, dict[str, float]] = {k: {"labelled": 0, "found": 0, "hit": 0} for k in KINDS}
    for s in snippets:
        labelled = {(e["kind"], e["text"]) for e in s["entities"]}
        found = {(f.kind, f.text) for f in find(s["text"])}
        for kind, row in table.items():
            row["labelled"] += sum(1 for k, _ in labelled if k == kind)
            row["found"] += sum(1 for k, _ in found if k == kind)
            row["hit"] += sum(1 for k, _ in found & labelled if k == kind)
    for row in table.values():
        row["recall"] = row["hit"] / row["labelled"] if row["labelled"] else 1.0
        row["precision"] = row["hit"] / row["found"] if row["found"] else 1.0
    return table


def report(snippets: list[dict]) -> str:
    table = measure(snippets)
    lines = [
        f"Measured on {len(snippets)} snippets ({sum(s['lang'] == 'zh' for s in snippets)} Chinese, "
        f"{sum(s['lang'] == 'en' for s in snippets)} English) by `.venv/bin/python bench/pii.py`.",
        "",
        "| kind | labelled | found | exact hits | recall | precision |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, row in table.items():
        lines.append(
            f"| {kind} | {row['labelled']:.0f} | {row['found']:.0f} | {row['hit']:.0f} | "
            f"{row['recall']:.1%} | {row['precision']:.1%} |"
        )
    exact, timings = 0, []
    for s in snippets:
        p = for_run({}, "pseudonymise", {"text": s["text"]}, {})
        started = time.perf_counter()
        hidden = p.hide(s["text"])
        timings.append((time.perf_counter() - started) * 1000 / max(1, len(s["text"])) * 1000)
        exact += p.restore(hidden) == s["text"]
    flagged = [s["id"] for s in snippets if injection_signs(s["text"])]
    lines += [
        "",
        f"- Round trips (hide, then restore): {exact} of {len(snippets)} exact.",
        f"- Injection detector on these honest snippets: {len(flagged)} flagged"
        + (f" ({', '.join(flagged)})" if flagged else "")
        + ".",
        f"- Pseudonymising: median {statistics.median(timings):.1f} ms per 1,000 characters "
        "(after the first call, which loads jieba's dictionary).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="replace the table between the markers in this file")
    args = parser.parse_args()
    snippets = yaml.safe_load(SNIPPETS.read_text(encoding="utf-8"))
    find("预热 warm-up 陈伟明")  # the dictionary's load is not what is measured
    text = report(snippets)
    print(text)
    if args.write:
        doc = args.write.read_text(encoding="utf-8")
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
        args.write.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}\n{END}", doc), encoding="utf-8")


if __name__ == "__main__":
    main()
