"""Characters a reader cannot see, and how to show them: for every place that prints untrusted
text (model output, inputs) to a terminal or a page. Small on purpose: the CLI imports it at start."""

from __future__ import annotations

import re

# Characters a terminal or editor does not show as themselves: C0/C1 controls other than tab and
# newlines (terminal escapes can hide or rewrite text), Unicode bidirectional controls, and
# zero-width characters (which make two different strings print alike), and Unicode tag characters
# (invisible copies of ASCII, used to smuggle instructions past a reader).
HIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
    "\U000e0000-\U000e007f]"
)


def visible(text: str) -> str:
    """`text` with every hidden character written as a visible escape such as \\x1b."""
    return HIDDEN.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
