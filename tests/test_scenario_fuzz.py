"""Mutated scenario files never crash dew: each loads, or is refused with problems that name the
file and the line (issue 7, finding 7). Seeded, so a failure is reproducible; 400 mutants here,
the adversary's full run was 600."""

from __future__ import annotations

import random
import re

import pytest

from dew.agents.errors import ScenarioInvalid
from dew.agents.loader import load_text
from tests.conftest import SCENARIOS

NASTY = [
    "!!int 1.5", "!!float abc", "!!binary ~~~", "!!python/object:os.system ls", "!!timestamp yesterday",
    "&a [*a, *a]", "*nowhere", "[" * 80 + "]" * 80, "{{", "{% for %}", "'{{ inputs.nope }}'", "\x00", "\x1b[2J",
    "‮evil", "99999999999999999999999999999", "-1", "null", "[]", "{}", "~", "yes", "'", '"', "@x", "`",
    "- a\n- b", "{a: [b, {c: d}]}", "ｉｄ", "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
]  # fmt: skip
LOCATED = re.compile(r"^[^:\n]+:\d+: \S")  # file:line: what


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.choice(["value", "delete", "duplicate", "indent", "swap", "truncate", "key"])
        if op == "value" and ":" in lines[i]:
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {rng.choice(NASTY)}"
        elif op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = " " * rng.choice([1, 3, 8]) + lines[i]
        elif op == "swap":
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "truncate":
            lines = lines[: i + 1]
        elif op == "key" and ":" in lines[i]:
            lines[i] = rng.choice(["promt", "kind", "steps", "id", "0", "?"]) + ":" + lines[i].split(":", 1)[1]
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


SOURCES = sorted(p for p in SCENARIOS.glob("*.yaml") if p.name != "guardians.yaml")


@pytest.mark.parametrize("seed", range(8))
def test_mutated_scenarios_load_or_are_refused_with_file_and_line(seed):
    rng = random.Random(seed)
    refused = 0
    for n in range(50):
        source = rng.choice(SOURCES)
        text = mutate(source.read_text(encoding="utf-8"), rng)
        name = f"mutant-{seed}-{n}.yaml"
        try:
            load_text(text, name)
        except ScenarioInvalid as e:
            refused += 1
            assert e.problems, name
            for problem in e.problems:
                assert LOCATED.match(problem) and problem.startswith(f"{name}:"), (problem, text)
    assert refused > 10  # the mutations do reach the checks
