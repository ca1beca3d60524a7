"""Pseudonymisation: what a model is sent has personal data replaced by placeholders, and what it
answers has them put back.

The mapping (placeholder -> value) belongs to one run and lives in its LangGraph state, so the
same value gets the same placeholder in every step and every round, and it is kept (and cleared
by retention) with the run's checkpoints. It never enters a prompt or the audit trail, whose
prompt hashes are of the pseudonymised text the endpoint received.

Everything in a run's state holds real values; only the messages that cross to the model hold
placeholders. So templates, checks, reviewers' notes, tools and the guardian see real values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .recognisers import DESCRIPTIONS, LABELS, Taken, find

Policy = str  # "pseudonymise" | "keep" | "refuse"

_KIND_OF_LABEL = {label: kind for kind, label in LABELS.items()}
_LABEL_ALTERNATION = "|".join(sorted(LABELS.values(), key=len, reverse=True))
# What the model may write back for [PHONE_1]: the placeholder, its brackets swapped for full-width
# ones, or its bare name. Nothing looser: "PHONE_12" must never be read as PHONE_1 followed by "2".
PLACEHOLDER = re.compile(
    rf"[\[【［]\s*(?P<a>(?:{_LABEL_ALTERNATION})_\d+)\s*[\]】］]|(?<![A-Za-z0-9_#])(?P<b>(?:{_LABEL_ALTERNATION})_\d+)(?![A-Za-z0-9_])"
)


def _issued(m: re.Match[str]) -> str:
    """The placeholder a PLACEHOLDER match stands for, in its issued form: [PHONE_1]."""
    return f"[{m.group('a') or m.group('b')}]"


def placeholder(kind: str, n: int) -> str:
    return f"[{LABELS[kind]}_{n}]"


@dataclass
class Pseudonyms:
    """One run's placeholders, and the rules for what to hide.

    `mapping` is the run's (placeholder -> value); new entries are in `added` until the caller
    stores them in the run's state. `always` are values hidden wherever they appear (what the
    recognisers found in inputs that must be pseudonymised); `kept` are values a `pii: keep`
    input may send as they are; `scan` says whether the rest of the text is searched too.
    """

    mapping: dict[str, str] = field(default_factory=dict)
    always: list[tuple[str, str]] = field(default_factory=list)  # (kind, value)
    kept: frozenset[str] = frozenset()
    scan: bool = True
    added: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_value = {v: k for k, v in self.mapping.items()}

    @property
    def active(self) -> bool:
        return self.scan or bool(self.always) or bool(self.mapping)

    def _placeholder_for(self, kind: str, value: str) -> str:
        issued = self._by_value.get(value)
        if issued is not None:
            return issued
        label = LABELS[kind]
        n = 1 + sum(1 for p in self.mapping if p.startswith(f"[{label}_"))
        issued = placeholder(kind, n)
        self.mapping[issued] = value
        self._by_value[value] = issued
        self.added[issued] = value
        return issued

    def hide(self, text: str, *, neutralise: bool = True) -> str:
        """`text` as the model may see it: recognised and known values replaced by placeholders."""
        if not text or not self.active:
            return text
        if neutralise:
            # Placeholder-shaped text the run did not issue (typed by a requester, say) must not come
            # back as a value it happens to share a name with: the model sees it as [PHONE#1].
            text = PLACEHOLDER.sub(lambda m: m.group(0).replace("_", "#"), text)
        spans = [(f.start, f.end, f.kind) for f in find(text)] if self.scan else []
        spans = [s for s in spans if text[s[0] : s[1]] not in self.kept]
        known = {v: kind_of(p) for p, v in self.mapping.items() if v}
        known.update({v: k for k, v in self.always if v and v not in known})
        if known:  # one pass for every known value, longest first so a name wins over its prefix
            pattern = "|".join(re.escape(v) for v in sorted(known, key=len, reverse=True))
            spans += [(m.start(), m.end(), known[m.group(0)]) for m in re.finditer(pattern, text)]
        # Longest first, then earliest: a known "陈伟明" wins over a tagger's "陈伟".
        spans.sort(key=lambda s: (-(s[1] - s[0]), s[0]))
        chosen = Taken()
        for start, end, kind in spans:
            chosen.add(start, end, kind)
        out, last = [], 0
        for start, end, kind in chosen.spans:
            out += [text[last:start], self._placeholder_for(kind, text[start:end])]
            last = end
        out.append(text[last:])
        return "".join(out)

    def restore(self, text: str) -> str:
        """The model's text with every placeholder this run issued put back to its value."""
        if not text or not self.mapping:
            return text

        return PLACEHOLDER.sub(lambda m: self.mapping.get(_issued(m), m.group(0)), text)

    def restore_value(self, value: Any) -> Any:
        """`restore` over every string of a parsed JSON reply (keys included)."""
        if isinstance(value, str):
            return self.restore(value)
        if isinstance(value, list):
            return [self.restore_value(v) for v in value]
        if isinstance(value, dict):
            return {self.restore(k): self.restore_value(v) for k, v in value.items()}
        return value

    def unknown(self, text: str) -> list[str]:
        """Placeholders in a model's text that this run never issued (the model made them up)."""
        names = {_issued(m) for m in PLACEHOLDER.finditer(text or "")}
        return sorted(n for n in names if n not in self.mapping)


def redact(text: str, mapping: Mapping[str, str] | None = None) -> str:
    """`text` with its personal data replaced by the kind of data (`[PHONE]`, `[PERSON]`): for what
    leaves a run to stay (findings, failure reasons, the audit trail), which must not hold values."""
    known = [(kind_of(p), v) for p, v in (mapping or {}).items()]
    hidden = Pseudonyms(always=known)
    text = hidden.hide(text, neutralise=False)
    return PLACEHOLDER.sub(
        lambda m: f"[{LABELS[kind_of(_issued(m))]}]" if _issued(m) in hidden.mapping else m.group(0), text
    )


def kind_of(placeholder_text: str) -> str:
    label = placeholder_text.strip("[]").rsplit("_", 1)[0]
    return _KIND_OF_LABEL.get(label, "person")


def for_run(
    policies: Mapping[str, Policy], default: Policy, inputs: Mapping[str, Any], mapping: Mapping[str, str]
) -> Pseudonyms:
    """The rules for one model call of a run: its inputs' policies and the mapping so far."""
    hidden: list[tuple[str, str]] = []
    kept: set[str] = set()
    for name, value in inputs.items():
        policy = policies.get(name, default)
        for text in strings_in(value):
            for f in find(text):
                (kept.add(f.text) if policy == "keep" else hidden.append((f.kind, f.text)))
    return Pseudonyms(
        mapping=dict(mapping),
        always=list(dict.fromkeys(hidden)),
        kept=frozenset(kept - {v for _, v in hidden}),
        scan=default != "keep",
    )


def strings_in(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):  # keys too: a JSON input's keys reach prompts as much as its values
        for k, v in value.items():
            yield from strings_in(k)
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)


def describe(found_kinds: Iterable[str]) -> str:
    """'a phone number and an ID number' for a refusal that must not quote the values."""
    kinds = list(dict.fromkeys(found_kinds))
    words = [DESCRIPTIONS[k] for k in kinds]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
