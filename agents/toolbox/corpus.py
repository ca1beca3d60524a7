"""Search a local folder of documents (Markdown or text) shipped with a scenario.

Deterministic BM25 over words (Latin script) and character bigrams (Chinese), so the same
question always finds the same passages, and every answer can cite where it came from.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..ranking import BM25
from ..tools import ToolContext, tool


def _passages(path: Path) -> list[dict[str, Any]]:
    """Split a document into passages at headings and blank lines, keeping the nearest heading."""
    text = path.read_text(encoding="utf-8")
    title = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.strip()), path.stem)
    out: list[dict[str, Any]] = []
    heading, buf = title, list[str]()

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
def _index(folder: str, stamp: tuple) -> tuple[list[dict], BM25]:
    passages = []
    for path in sorted(Path(folder).glob("*")):
        if path.suffix in (".md", ".txt"):
            passages.extend(_passages(path))
    return passages, BM25.index(p["section"] + " " + p["passage"] for p in passages)


def _folder(corpus: str, context: ToolContext) -> Path:
    base = (context.scenario_dir or Path.cwd()).resolve()
    folder = (base / corpus).resolve()
    if Path(corpus).is_absolute() or not folder.is_relative_to(base):
        raise ValueError(f"corpus '{corpus}' is outside the scenario folder; only folders inside it can be searched")
    if not folder.is_dir():
        raise ValueError(f"corpus folder '{corpus}' not found next to the scenario ({folder})")
    return folder


@tool(model_args=("query", "top_k"))  # which corpus counts, and how strict a match is, are the scenario's
def search_corpus(
    query: str,
    corpus: str,
    top_k: int = 3,
    min_score: float = 1.0,
    min_terms: int = 2,
    context: ToolContext | None = None,
) -> list[dict[str, Any]]:
    """Find the passages of a local document folder that best match a question, with their source.

    Returns at most `top_k` passages that share at least `min_terms` distinct terms with the
    question and score at least `min_score`; an empty list means nothing in the corpus answers it
    (one shared word such as "时间" is not an answer).
    """
    folder = _folder(corpus, context or ToolContext())
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(folder.glob("*")))
    passages, index = _index(str(folder), stamp)
    scored = [
        {**passages[m.index], "score": m.score} for m in index.rank(query, min_score=min_score, min_terms=min_terms)
    ]
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
