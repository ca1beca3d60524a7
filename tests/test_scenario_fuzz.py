"""Mutated scenario files never crash or hang dew: each loads, or is refused with problems that
name the file, the line and the field. 10,000 mutants, seeded so a failure is reproducible: lines
deleted, duplicated, moved, re-indented and cut; values of the wrong type; Unicode that breaks
things (direction overrides, zero-width and control characters, look-alike keys, surrogates);
huge values; YAML aliases, anchors, merge keys and foreign tags; whole structures swapped."""

from __future__ import annotations

import random
import re
import signal
from collections import Counter

import pytest

from dew.agents.errors import ScenarioInvalid
from dew.agents.loader import load_text
from tests.conftest import SCENARIOS

NASTY = [
    "!!int 1.5", "!!float abc", "!!binary ~~~", "!!python/object:os.system ls", "!!timestamp yesterday",
    "!!python/object/apply:os.system [id]", "!<tag:evil.com,2026:x> y", "!custom {a: 1}", "!!set {a, b}",
    "&a [*a, *a]", "*nowhere", "&x 1", "<<: *base", "[" * 80 + "]" * 80, "{" * 60 + "}" * 60, "{{", "{% for %}",
    "'{{ inputs.nope }}'", "'{{ 7 * 7 }}'", "'{{ ''.__class__.__mro__ }}'", "\x00", "\x1b[2J", "\x7f", "\u2028",
    "\u202eevil", "\u200bid", "\ufeffbom", "ｉｄ", "👩‍⚖️", "e\u0301\u0301\u0301", "\U000e0041",
    "99999999999999999999999999999", "1e309", "-1", "0x1F", "0o17", ".nan", "-.inf", "null", "[]", "{}", "~",
    "yes", "no", "on", "'", '"', "@x", "`", "- a\n- b", "{a: [b, {c: d}]}", "|\n  text", ">-\n  folded",
    "? complex\n: key", "---\nsecond: document", "...", "%YAML 1.1",
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
]  # fmt: skip
TYPES = ["1", "1.5", "true", "null", "[1, 2]", "{a: b}", "''", "'text'", "[[[]]]", "{steps: []}", "2026-01-01"]
KEYS = ["promt", "kind", "steps", "id", "0", "?", "inputs", "tool", "args", "when", "release", "guardian",
        "Id", "ＩＤ", "i\u200bd", "<<", "!!str id", "- id", "[a]", "{b: c}"]  # fmt: skip
LOCATED = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+): (?P<field>\S[^\n]*?): \S")


def _huge(rng: random.Random) -> str:
    return rng.choice([
        "'" + "长" * 300_000 + "'",
        "[" + ", ".join(["x"] * 2_000) + "]",  # pure-Python YAML takes ~1 s per 20,000 items: kept smaller
        "{" + ", ".join(f"k{i}: {i}" for i in range(1_000)) + "}",
        "'" + "{{ inputs.x }}" * 5_000 + "'",
        "9" * 10_000,
    ])  # fmt: skip


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 4)):
        if not lines:
            lines = [""]
        i = rng.randrange(len(lines))
        op = rng.choice(["value", "type", "unicode", "huge", "delete", "duplicate", "indent", "swap", "truncate",
                         "key", "alias", "block", "tabs"])  # fmt: skip
        key, sep, _ = lines[i].partition(":")
        if op == "value" and sep:
            lines[i] = f"{key}: {rng.choice(NASTY)}"
        elif op == "type" and sep:
            lines[i] = f"{key}: {rng.choice(TYPES)}"
        elif op == "unicode":
            at = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:at] + rng.choice(NASTY[23:31]) + lines[i][at:]
        elif op == "huge" and sep:
            lines[i] = f"{key}: {_huge(rng)}"
        elif op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = " " * rng.choice([1, 3, 8, 40]) + lines[i]
        elif op == "swap":
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "truncate":
            lines = lines[: i + 1]
        elif op == "key" and sep:
            lines[i] = (" " * (len(key) - len(key.lstrip()))) + rng.choice(KEYS) + ":" + lines[i].split(":", 1)[1]
        elif op == "alias":
            lines.insert(i, rng.choice(["base: &base {a: 1}", "x: &a [1]", "y: *a", "<<: {id: evil}",
                                        "lol: &l [lol, lol]\nlols: [*l, *l, *l]"]))  # fmt: skip
        elif op == "block":  # a whole structure somewhere it does not belong
            j = rng.randrange(len(lines))
            lines[j:j] = lines[i : i + rng.randint(2, 12)]
        elif op == "tabs":
            lines[i] = lines[i].replace("  ", "\t")
    return "\n".join(lines) + "\n"


SOURCES = sorted(p for p in SCENARIOS.glob("*.yaml") if p.name != "guardians.yaml")
TEXTS = {p: p.read_text(encoding="utf-8") for p in SOURCES}
MUTANTS_PER_SEED = 500


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


@pytest.mark.parametrize("seed", range(20))  # 20 × 500 = 10,000 mutants
def test_mutated_scenarios_load_or_are_refused_with_file_line_and_field(seed):
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for n in range(MUTANTS_PER_SEED):
            text = mutate(TEXTS[rng.choice(SOURCES)], rng)
            name = f"mutant-{seed}-{n}.yaml"
            signal.alarm(20)  # a hang, not a time measurement: the slowest mutant takes well under a second
            try:
                load_text(text, name)
                outcomes["loaded"] += 1
            except ScenarioInvalid as e:
                outcomes["refused"] += 1
                assert e.problems, name
                for problem in e.problems:
                    located = LOCATED.match(problem)
                    assert located and located["file"] == name, (problem, text[:2000])
                    assert 1 <= int(located["line"]) <= max(1, len(text.splitlines())), (problem, text[:2000])
            except Hang:
                pytest.fail(f"{name} did not load or fail within 20 s:\n{text[:2000]}")
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert outcomes["refused"] > MUTANTS_PER_SEED // 4  # the mutations do reach the checks
    assert outcomes["loaded"] + outcomes["refused"] == MUTANTS_PER_SEED
