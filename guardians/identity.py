"""Who someone is, as dew compares it: one pattern, one normal form.

Every identity that enters dew (a requester, an actor, a roster id; a scenario's guardian and
backups are held to the same pattern at load) passes through `person_id`: it is brought to
Unicode compatibility form (NFKC: full-width `ｌｉ` is `li`) and lower case, and must then match
`PERSON_PATTERN`, which admits only ASCII letters, digits and `.`, `_`, `-`. So `LI.WEI` *is*
`li.wei`, while `li.wei ` (a trailing space), `li.wei` + a zero-width space, `li.wei@x`,
`li.wei[dim][/dim]` and look-alikes in other scripts (Cyrillic `а`) are refused with a message
saying why, instead of passing as someone else and printing like them.
"""

from __future__ import annotations

import re
import unicodedata

from dew.agents.names import PERSON_PATTERN

from .errors import IdentityInvalid

_PERSON = re.compile(PERSON_PATTERN)


def person_id(raw: object, *, what: str = "an identity") -> str:
    """The normal form of an identity, or IdentityInvalid naming what is wrong with it."""
    if not isinstance(raw, str) or not raw:
        raise IdentityInvalid(f"{what} is empty")
    normal = unicodedata.normalize("NFKC", raw).casefold()
    if _PERSON.fullmatch(normal):
        return normal
    shown = raw.encode("unicode_escape").decode("ascii")[:80]
    bad = sorted({c for c in normal if not (c.isascii() and (c.isalnum() or c in "._-"))})
    if bad:
        names = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed')}" for c in bad[:4])
        reason = f"holds characters an identity may not have ({names})"
    elif len(normal) > 64:
        reason = "is longer than 64 characters"
    else:
        reason = "must begin and end with a letter or digit"
    raise IdentityInvalid(f"{what} '{shown}' {reason}; an identity is 1–64 of a–z, 0–9, '.', '_', '-' (e.g. li.wei)")


def same_person(a: str, b: str) -> bool:
    """Whether two recorded identities are one person. Rows written before identities were
    validated may hold variants (`LI.WEI`, a zero-width space): those compare equal here, so the
    four-eyes rule holds for them too."""
    return person_key(a) == person_key(b)


def person_key(raw: str) -> str:
    """The form `same_person` compares: equal for two identities exactly when they are one person."""
    normal = unicodedata.normalize("NFKC", raw).casefold().strip()
    return "".join(c for c in normal if unicodedata.category(c) not in ("Cc", "Cf", "Zs"))
