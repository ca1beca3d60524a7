"""Search a local folder of documents (Markdown or text) shipped with a scenario.

Deterministic BM25 over words (Latin script) and character bigrams (Chinese), so the same
question always finds the same passages, and every answer can cite where it came from.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..tools import ToolContext, tool

_CJK = re.compile(r"[\u3400-\u9fff]+")
_WORD = re.compile(r"[A-Za-z0-9]+(?:[.'-][A-Za-z0-9]+)*")
STOP = {
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
}
CJK_STOP = {"我们", "什么", "怎么", "如何", "可以", "是否", "哪些", "公司", "企业", "请问"}


def tokens(text: str) -> list[str]:
    out = [w.lower() for w in _WORD.findall(text) if w.lower() not in STOP]
    for run in _CJK.findall(text):
        if len(run) == 1:
            out.append(run)
        out.extend(b for b in (run[i : i + 2] for i in range(len(run) - 1)) if b not in CJK_STOP)
    return out


def _passages(path: Path) -> list[dict[str, Any]]:
    """Split a document into passages at headings and blank lines, keeping the nearest heading."""
    text = path.read_text(encoding="utf-8")
    title = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.strip()), path.stem)
    out, heading, buf = [], title, []

    def flush():
        body = " ".join(" ".join(buf).split())
        if body:
            out.append({"source": path.name, "title": title, "section": heading, "passage": body})
        buf.clear()

    for line in text.splitlines():
        if line.startswith("#"):
            flush()
            heading = line.lstrip("# ").strip()
        elif not line.strip():
            flush()
        elif line.lstrip().startswith(">"):
            continue  # a block quote is an editor's note about the document, not its content
        else:
            buf.append(line.strip())
    flush()
    return out


@lru_cache(maxsize=16)
def _index(folder: str, stamp: tuple) -> tuple[list[dict], list[Counter], Counter, float]:
    passages = []
    for path in sorted(Path(folder).glob("*")):
        if path.suffix in (".md", ".txt"):
            passages.extend(_passages(path))
    counts = [Counter(tokens(p["section"] + " " + p["passage"])) for p in passages]
    df = Counter(t for c in counts for t in c)
    avg = sum(sum(c.values()) for c in counts) / max(len(counts), 1)
    return passages, counts, df, avg


def _folder(corpus: str, context: ToolContext) -> Path:
    base = (context.scenario_dir or Path.cwd()).resolve()
    folder = (base / corpus).resolve()
    if Path(corpus).is_absolute() or not folder.is_relative_to(base):
        raise ValueError(f"corpus '{corpus}' is outside the scenario folder; only folders inside it can be searched")
    if not folder.is_dir():
        raise ValueError(f"corpus folder '{corpus}' not found next to the scenario ({folder})")
    return folder


@tool()
def search_corpus(
    query: str, corpus: str, top_k: int = 3, min_score: float = 1.0, min_terms: int = 2, context: ToolContext = None
) -> list[dict[str, Any]]:
    """Find the passages of a local document folder that best match a question, with their source.

    Returns at most `top_k` passages that share at least `min_terms` distinct terms with the
    question and score at least `min_score`; an empty list means nothing in the corpus answers it
    (one shared word such as "时间" is not an answer).
    """
    folder = _folder(corpus, context or ToolContext())
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(folder.glob("*")))
    passages, counts, df, avg = _index(str(folder), stamp)
    n = len(passages)
    q = Counter(tokens(query))
    scored = []
    for passage, tf in zip(passages, counts, strict=False):
        length = sum(tf.values())
        if sum(1 for term in q if term in tf) < min_terms:
            continue
        score = 0.0
        for term in q:
            if term not in tf:
                continue
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            score += idf * tf[term] * 2.2 / (tf[term] + 1.2 * (0.25 + 0.75 * length / max(avg, 1)))
        if score >= min_score:
            scored.append({**passage, "score": round(score, 3)})
    scored.sort(key=lambda p: (-p["score"], p["source"], p["passage"]))
    return scored[:top_k]


NOT_FOUND = ("未找到", "not found")


@tool()
def check_citations(text: str, passages: list[dict[str, Any]]) -> list[str]:
    """Problems with how an answer cites the numbered passages it was given: every citation [n]
    must name a passage, an answer must cite at least one, and with no passages it must say that
    nothing was found (未找到 / not found) instead of answering."""
    normalized = text.translate(str.maketrans("０１２３４５６７８９【】［］，、", "0123456789[][],,"))
    cited = sorted(
        {int(n) for group in re.findall(r"\[(\d+(?:\s*,\s*\d+)*)\]", normalized) for n in re.split(r"\s*,\s*", group)}
    )
    says_not_found = any(p in text.lower() for p in NOT_FOUND)
    if not passages:
        if says_not_found and not cited:
            return []
        return ["no passage answers the question: the answer must say 未找到 (not found) and cite nothing"]
    problems = [f"[{n}] cites no passage (there are {len(passages)})" for n in cited if not 1 <= n <= len(passages)]
    if not cited and not says_not_found:
        problems.append("the answer cites no passage: support each statement with a citation such as [1]")
    return problems
