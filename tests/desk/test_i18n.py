"""Every label of the desk in both languages: each key a template or page uses is in the one
translation table, with Chinese and English text, including the keys built from enum values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dew.guardians.desk import i18n
from dew.guardians.models import Action, AuthMethod, DecideRule, ItemStatus, Role, RunStatus

TEMPLATES = Path(i18n.__file__).parent / "templates"
# A whole key: t('inbox.title'); a key built from a value, t('status.' ~ x), is checked below.
LITERAL = re.compile(r"""\bt\(\s*['"]([a-z_.]+[a-z_])['"]""")


def test_every_literal_key_in_the_templates_and_pages_is_translated():
    sources = [*TEMPLATES.glob("*.html"), Path(i18n.__file__).parent / "web.py"]
    used = {key for path in sources for key in LITERAL.findall(path.read_text(encoding="utf-8"))}
    assert used, "no keys found: the pattern is wrong"
    assert sorted(used - set(i18n.T)) == []


@pytest.mark.parametrize(
    "prefix, values",
    [
        ("status.", [*RunStatus, *ItemStatus]),
        ("risk.", ["low", "medium", "high"]),
        ("rule.", list(DecideRule)),
        ("method.", list(AuthMethod)),
        ("action.", list(Action)),
        ("role.", list(Role)),
    ],
)
def test_keys_built_from_values_exist(prefix, values):
    assert sorted(f"{prefix}{v}" for v in values if f"{prefix}{v}" not in i18n.T) == []


def test_both_languages_are_filled_in():
    for key, (zh, en) in i18n.T.items():
        assert zh.strip() and en.strip(), key
        assert zh.count("{") == en.count("{"), f"{key}: the two texts take different values"


def test_done_messages_are_translated():
    web = (Path(i18n.__file__).parent / "web.py").read_text(encoding="utf-8")
    for done in re.findall(r'done="([a-z_]+)"', web):
        assert f"done.{done}" in i18n.T, done
