"""Rule-based triage of free text: category, responsible department and urgency, with the words
that decided them, so a guardian can see why a case went where it went."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..tools import tool


class Category(BaseModel):
    department: str
    keywords: list[str]


@tool(model_args=("text",))  # categories and urgent words are the scenario's
def classify_text(
    text: str,
    categories: dict[str, Category],
    urgent_keywords: list[str],
    fallback_category: str = "其他",
    fallback_department: str = "区政务服务数据管理局（人工分拨）",
) -> dict[str, Any]:
    """Pick the category whose keywords occur most often in the text (ties: first listed), its
    department, and urgency "high" when an urgent keyword occurs; report the matched words."""
    scores = []
    for order, (name, cat) in enumerate(categories.items()):
        cat = Category.model_validate(cat) if isinstance(cat, dict) else cat
        matched = [k for k in cat.keywords if k.lower() in text.lower()]
        scores.append((len(matched), -order, name, cat, matched))
    count, _, name, cat, matched = max(scores)
    urgent = [k for k in urgent_keywords if k.lower() in text.lower()]
    if count == 0:
        return {
            "category": fallback_category,
            "department": fallback_department,
            "matched": [],
            "urgency": "high" if urgent else "normal",
            "urgent_matched": urgent,
            "note": "no category keyword matched: route by hand",
        }
    return {
        "category": name,
        "department": cat.department,
        "matched": matched,
        "urgency": "high" if urgent else "normal",
        "urgent_matched": urgent,
    }


@tool()
def require_mentions(text: str, words: list[str]) -> list[str]:
    """Problems for each word or phrase the text fails to mention (e.g. the department named by triage)."""
    return [f"does not mention “{w}”" for w in words if w and w not in text]
