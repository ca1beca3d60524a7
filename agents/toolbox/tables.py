"""Tables: read CSV, score rows with an explained weighted method, check cited figures."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from ..tools import tool


def _number(text: str) -> float | int | str:
    cleaned = text.strip().replace(",", "").rstrip("%")
    try:
        value = float(cleaned)
    except ValueError:
        return text.strip()
    if value != value or value in (float("inf"), float("-inf")):  # nan / inf are not figures
        return text.strip()
    return int(value) if value.is_integer() and "." not in cleaned else value


@tool()
def read_table(csv_text: str) -> list[dict[str, Any]]:
    """Parse CSV text (first line: column names) into rows; numeric cells become numbers."""
    reader = csv.reader(io.StringIO(csv_text.strip()))
    rows = [r for r in reader if any(cell.strip() for cell in r)]
    if not rows:
        raise ValueError("the table is empty")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header) or not all(header):
        raise ValueError(f"the header must name every column once: {header}")
    out = []
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"row {line_no} has {len(row)} cells, the header has {len(header)}")
        out.append({h: _number(cell) for h, cell in zip(header, row, strict=False)})
    return out


@tool(model_args=("csv_text", "top"))  # weights, preferences and exclusions are the scenario's, never a model's
def score_table(
    csv_text: str,
    weights: dict[str, float],
    name_column: str,
    top: int = 5,
    prefer: dict[str, list[str]] | None = None,
    prefer_points: float = 10.0,
    exclude_if_above: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Rank the rows of a table by a weighted, explained score.

    Each weighted column is scaled to 0..1 across the rows (min-max; a negative weight means
    lower is better) and contributes |weight| / sum(|weights|) × 100 points at most. A row whose
    `prefer` column contains one of the listed words earns `prefer_points` more. A row above an
    `exclude_if_above` limit is excluded, with the reason. Every point is accounted for.
    """
    rows = read_table(csv_text)
    if not rows:
        raise ValueError("the table has a header but no rows")
    if name_column not in rows[0]:
        raise ValueError(f"no column '{name_column}' (columns: {', '.join(rows[0])})")
    for column in [*weights, *(prefer or {}), *(exclude_if_above or {})]:
        if column not in rows[0]:
            raise ValueError(f"no column '{column}' (columns: {', '.join(rows[0])})")
    total = sum(abs(w) for w in weights.values()) or 1.0
    candidates, excluded = [], []
    for row in rows:
        reasons = []
        for c, limit in (exclude_if_above or {}).items():
            if not isinstance(row[c], (int, float)):  # unknown is not "below the limit"
                reasons.append(f"{c} not given ({row[c]!r})")
            elif row[c] > limit:
                reasons.append(f"{c} {row[c]} > {limit:g}")
        if reasons:
            excluded.append({"name": row[name_column], "reasons": reasons})
        else:
            candidates.append(row)
    ranges = {}  # over the candidates only: an excluded row does not shift anyone's scale
    for column in weights:
        values = [r[column] for r in candidates]
        if not all(isinstance(v, (int, float)) for v in values):
            raise ValueError(f"column '{column}' is weighted but not numeric in every row")
        ranges[column] = (min(values, default=0), max(values, default=0))
    ranked = []
    for row in candidates:
        parts, score = {}, 0.0
        for column, weight in weights.items():
            lo, hi = ranges[column]
            if hi == lo:
                scaled = 1.0  # the column does not tell the rows apart: everyone gets its points
            else:
                scaled = (row[column] - lo) / (hi - lo)
                if weight < 0:
                    scaled = 1.0 - scaled
            points = round(scaled * abs(weight) / total * 100, 2)
            parts[column] = {"value": row[column], "points": points}
            score += points
        for column, words in (prefer or {}).items():
            hit = next((w for w in words if w.lower() in str(row[column]).lower()), None)
            if hit:
                parts[f"prefer:{column}"] = {"value": row[column], "points": prefer_points, "matched": hit}
                score += prefer_points
        ranked.append({"name": row[name_column], "score": round(score, 2), "parts": parts, "row": row})
    ranked.sort(key=lambda r: (-r["score"], str(r["name"])))
    for i, r in enumerate(ranked, start=1):
        r["rank"] = i
        r["shortlisted"] = i <= top
    method = (
        "min-max scaled columns, weights "
        + ", ".join(f"{c} {w:+g}" for c, w in weights.items())
        + (
            f"; +{prefer_points:g} points for "
            + "; ".join(f"{c} containing {', '.join(ws)}" for c, ws in prefer.items())
            if prefer
            else ""
        )
        + (
            "; excluded when " + ", ".join(f"{c} > {v:g}" for c, v in exclude_if_above.items())
            if exclude_if_above
            else ""
        )
    )
    return {"method": method, "ranking": ranked, "shortlist": [r["name"] for r in ranked[:top]], "excluded": excluded}


# ASCII-only boundaries: a figure right next to a Chinese character ("资本5000万元") is still a figure.
_FIGURE = re.compile(r"(?<![0-9A-Za-z.])[-−]?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?![0-9A-Za-z])")
_LIST_NUMBER = re.compile(r"(?m)^\s*\d{1,2}(?:[.)．]\s|、)")


def _figures(text: str) -> list[str]:
    text = _LIST_NUMBER.sub(" ", text)
    return [m.group(0) for m in _FIGURE.finditer(text)]


def _as_float(figure: str) -> float:
    return float(figure.replace(",", "").replace("−", "-"))


def _numbers_in(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, str):
        return [_as_float(f) for f in _figures(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers_in(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers_in(v)]
    return []


@tool()
def check_figures(text: str, csv_text: str = "", data: Any = None, also_allowed: str = "") -> list[str]:
    """Problems for every figure in `text` that appears nowhere in the data: a CSV table, any JSON
    `data`, or `also_allowed` text.

    List numbering at the start of a line is not a figure. 1,820 and 1820, 9.1 and 9.10 match.
    Only Arabic figures are read: 万/亿 units and Chinese numerals (五千万) are not checked.
    """
    known: set[float] = set(_numbers_in(data))
    if csv_text.strip():
        for row in read_table(csv_text):
            known.update(_numbers_in(row))
    for figure in _figures(also_allowed):
        known.add(_as_float(figure))
    problems, seen = [], set()
    for figure in _figures(text):
        value = _as_float(figure)
        if value not in known and figure not in seen:
            seen.add(figure)
            problems.append(f"the figure {figure} is not in the data")
    return problems
