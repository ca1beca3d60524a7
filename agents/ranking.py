"""Lexical ranking, one implementation for the whole project: BM25 over words and Chinese bigrams.

The corpus search tool ranks passages with it and the front desk ranks scenarios with it. It is
deterministic, so the same question always finds the same passages and the same shortlist.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

_CJK = re.compile(r"[\u3400-\u9fff]+")
_WORD = re.compile(r"[A-Za-z0-9]+(?:[.'-][A-Za-z0-9]+)*")
STOP = set(
    [
        "the",
        "a",
        "an",
        "of",
        "to",
        "and",
        "or",
        "in",
        "on",
        "for",
        "is",
        "are",
        "be",
        "we",
        "our",
        "can",
        "what",
        "how",
        "which",
        "do",
        "does",
        "i",
        "my",
        "it",
        "with",
        "at",
        "by",
        "as",
        "from",
    ]
)
CJK_STOP = {"我们", "什么", "怎么", "如何", "可以", "是否", "哪些", "公司", "企业", "请问"}

K1, B = 1.2, 0.75  # the usual BM25 constants


def tokens(text: str) -> list[str]:
    """Lower-cased words (Latin script) and overlapping character bigrams (Chinese)."""
    out = [w.lower() for w in _WORD.findall(text) if w.lower() not in STOP]
    for run in _CJK.findall(text):
        if len(run) == 1:
            out.append(run)
        out.extend(b for b in (run[i : i + 2] for i in range(len(run) - 1)) if b not in CJK_STOP)
    return out


@dataclass(frozen=True)
class Match:
    index: int  # position of the document in the indexed list
    score: float
    shared: int  # distinct query terms the document contains


@dataclass(frozen=True)
class BM25:
    counts: tuple[Counter[str], ...]
    df: Counter[str]
    avg_length: float

    @classmethod
    def index(cls, texts: Iterable[str]) -> BM25:
        counts = tuple(Counter(tokens(t)) for t in texts)
        df: Counter[str] = Counter(term for c in counts for term in c)
        avg = sum(sum(c.values()) for c in counts) / max(len(counts), 1)
        return cls(counts, df, avg)

    def rank(self, query: str, *, min_score: float = 0.0, min_terms: int = 1) -> list[Match]:
        """Documents sharing at least `min_terms` distinct terms with the query and scoring at
        least `min_score`, best first (ties keep index order)."""
        n = len(self.counts)
        terms = set(tokens(query))
        found = []
        for i, tf in enumerate(self.counts):
            shared = [t for t in terms if t in tf]
            if not shared or len(shared) < min_terms:
                continue
            length = sum(tf.values())
            norm = K1 * (1 - B + B * length / max(self.avg_length, 1))
            score = 0.0
            for t in shared:
                idf = math.log(1 + (n - self.df[t] + 0.5) / (self.df[t] + 0.5))
                score += idf * tf[t] * (K1 + 1) / (tf[t] + norm)
            if score >= min_score:
                found.append(Match(i, round(score, 3), len(shared)))
        found.sort(key=lambda m: (-m.score, m.index))
        return found
