"""How the numbers in pii_snippets.yaml were made, and a check of that file.

    .venv/bin/python tests/data/make_pii_numbers.py          # check pii_snippets.yaml, print counts
    .venv/bin/python tests/data/make_pii_numbers.py pool     # print the numbers the snippets were written from

The pool is seeded, so it prints the same numbers every time. Every person and number in the
snippets is made up; the identifiers carry computed check characters so that a recogniser that
validates them sees valid ones, and the hard negatives are built to fail every validation a
recogniser might try (check digit, birth date, Luhn, credit-code check character).
"""

from __future__ import annotations

import datetime
import random
import re
import sys
from collections import Counter
from pathlib import Path

# --- PRC resident identity number, GB 11643-1999 -------------------------------------------------

ID_WEIGHTS = [2 ** (17 - i) % 11 for i in range(17)]  # 7,9,10,5,8,4,2,1,6,3,7,9,10,5,8,4,2
ID_CHECK = "10X98765432"  # indexed by (weighted sum mod 11)
# First two digits: the province-level codes of GB/T 2260 (plus 71/81/82 Taiwan, Hong Kong, Macao).
PROVINCES = {*range(11, 16), *range(21, 24), *range(31, 38), *range(41, 47), *range(50, 55), *range(61, 66), 71, 81, 82}


def id_check_digit(first17: str) -> str:
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def make_id(area: str, birth: str, seq: str) -> str:
    first17 = area + birth + seq
    return first17 + id_check_digit(first17)


def real_date(yyyymmdd: str) -> bool:
    try:
        datetime.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return True


def id_valid(s: str) -> bool:
    """Check digit, province, and a real birth date in 1900..today: what a careful recogniser checks."""
    if not re.fullmatch(r"\d{17}[\dX]", s):
        return False
    if int(s[:2]) not in PROVINCES or not real_date(s[6:14]):
        return False
    if not "19000101" <= s[6:14] <= datetime.date.today().strftime("%Y%m%d"):
        return False
    return id_check_digit(s[:17]) == s[17]


# --- Unified social credit code, GB 32100-2015 ---------------------------------------------------

CC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, S, V, Z
CC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def cc_check_char(first17: str) -> str:
    total = sum(CC_CHARSET.index(c) * w for c, w in zip(first17, CC_WEIGHTS, strict=True))
    return CC_CHARSET[(31 - total % 31) % 31]  # 31 -> '0'


def cc_valid(s: str) -> bool:
    return len(s) == 18 and all(c in CC_CHARSET for c in s) and cc_check_char(s[:17]) == s[17]


# The 9 characters at positions 9-17 are an organisation code (GB 11714) with its own check
# character; real codes have it, so the made-up ones do too.
ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]


def org_check_char(first8: str) -> str:
    total = sum(int(c, 36) * w for c, w in zip(first8, ORG_WEIGHTS, strict=True))
    c9 = 11 - total % 11
    return {10: "X", 11: "0"}.get(c9, str(c9))


def make_credit_code(prefix: str, area: str, org8: str) -> str:
    first17 = prefix + area + org8 + org_check_char(org8)
    return first17 + cc_check_char(first17)


# --- Bank cards, Luhn ------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def luhn_complete(body: str) -> str:
    """Append the digit that makes body Luhn-valid."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def card_valid(s: str) -> bool:
    digits = re.sub(r"[ -]", "", s)
    return bool(re.fullmatch(r"\d{16,19}", digits)) and luhn_valid(digits)


def ambiguous(s: str) -> bool:
    """True when a string passes the validation of more than one kind (kept out of the pool)."""
    return sum([id_valid(s), cc_valid(s), card_valid(s)]) > 1


# --- The pool the snippets were written from ------------------------------------------------------

# County codes (Shenzhen districts, Beijing, Shanghai, Wuhan, Guangzhou, Dongguan, ...) for the first six digits.
SHENZHEN = ["440303", "440304", "440305", "440306", "440307", "440309", "440311"]
ELSEWHERE = ["110101", "110105", "110108", "310104", "310115", "420106", "420102", "440106", "441900", "445202"]
ELSEWHERE += ["430104", "360102", "510107", "500103", "330106", "350203", "441502", "431002", "440513"]
ID_AREAS = SHENZHEN + ELSEWHERE
CC_AREAS = ["440300", "440304", "440305", "440306", "440307", "440309", "110108", "310115", "420106", "440101"]
CC_AREAS += ["441900"]  # (the pool draws by position, so the order matters)
# UnionPay issuer prefixes of the big banks (ICBC, CCB, BoCom, Ping An, CMB ...).
CARD_BINS = ["622202", "622848", "621700", "622588", "622262", "623058", "621226", "625967", "622700"]


def pool(rng: random.Random) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {
        k: [] for k in ("id", "id_x", "cc", "card", "neg_id_check", "neg_id_date", "neg_cc", "neg_order", "cc_more")
    }
    while len(out["id"]) < 60:
        birth = datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(56 * 365))
        s = make_id(rng.choice(ID_AREAS), birth.strftime("%Y%m%d"), f"{rng.randrange(1000):03d}")
        if s[-1] != "X" and not ambiguous(s):
            out["id"].append(s)
    while len(out["id_x"]) < 6:  # the check digit X only comes up 1 time in 11, so look for it
        birth = datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(56 * 365))
        s = make_id(rng.choice(ID_AREAS), birth.strftime("%Y%m%d"), f"{rng.randrange(1000):03d}")
        if s[-1] == "X" and not ambiguous(s):
            out["id_x"].append(s)
    org_chars = CC_CHARSET[:10] + "ABCDEFGHJKLMNPQRTUWXY"
    while len(out["cc"]) < 40:
        area = rng.choice(CC_AREAS)
        prefix = rng.choice(["91"] * 8 + ["92", "93", "12", "52"])
        if rng.random() < 0.6:  # newer codes: organisation code MA5xxxxx
            org8 = "MA5" + "".join(rng.choice(org_chars) for _ in range(5))
        else:  # older codes carried over a numeric organisation code
            org8 = "".join(rng.choice("0123456789") for _ in range(8))
        s = make_credit_code(prefix, area, org8)
        if not ambiguous(s):
            out["cc"].append(s)
    while len(out["card"]) < 24:
        bin6 = rng.choice(CARD_BINS)
        length = 16 if bin6 in ("622588", "625967") else 19
        s = luhn_complete(bin6 + "".join(rng.choice("0123456789") for _ in range(length - 7)))
        if not ambiguous(s):
            out["card"].append(s)
    while len(out["card"]) < 28:  # and a few Visa/Mastercard for the English snippets
        head = ["4", "51", "4", "55"][len(out["card"]) - 24]
        s = luhn_complete(head + "".join(rng.choice("0123456789") for _ in range(15 - len(head))))
        out["card"].append(s)
    # Negatives: ID-shaped with a wrong check digit; ID-shaped with a right check digit but no such date.
    for s in out["id"][:8]:
        bad = s[:17] + rng.choice(
            [c for c in "0123456789X" if c != s[17] and not card_valid(s[:17] + c) and not cc_valid(s[:17] + c)]
        )
        out["neg_id_check"].append(bad)
    for area, birth, seq in [
        ("440305", "19871345", "021"),
        ("440304", "19900230", "113"),
        ("110105", "19830631", "204"),
        ("420106", "19751100", "057"),
        ("440307", "19970229", "338"),
        ("310104", "20080932", "416"),
    ]:
        s = make_id(area, birth, seq)
        if not id_valid(s) and not card_valid(s) and not cc_valid(s):
            out["neg_id_date"].append(s)
    for s in out["cc"][:8]:
        bad = s[:17] + rng.choice(
            [c for c in CC_CHARSET if c != s[17] and not id_valid(s[:17] + c) and not card_valid(s[:17] + c)]
        )
        out["neg_cc"].append(bad)
    # Order/invoice/waybill numbers, 16-20 digits, valid as nothing.
    while len(out["neg_order"]) < 16:
        length = rng.choice([16, 17, 18, 19, 20])
        s = "2026" + "".join(rng.choice("0123456789") for _ in range(length - 4))
        id_checksum_ok = len(s) == 18 and id_check_digit(s[:17]) == s[17]
        if not card_valid(s) and not id_valid(s) and not cc_valid(s) and not luhn_valid(s) and not id_checksum_ok:
            out["neg_order"].append(s)
    # More credit codes, drawn last so that the numbers above stay what the first snippets were written from.
    while len(out["cc_more"]) < 10:
        org8 = "MA5" + "".join(rng.choice(org_chars) for _ in range(5))
        s = make_credit_code("91", rng.choice(CC_AREAS), org8)
        if not ambiguous(s):
            out["cc_more"].append(s)
    return out


def print_pool() -> None:
    for kind, values in pool(random.Random(20260312)).items():
        print(f"# {kind}")
        for s in values:
            note = ""
            if kind in ("id", "id_x"):
                note = f"  born {s[6:10]}-{s[10:12]}-{s[12:14]} {'male' if int(s[16]) % 2 else 'female'}"
            print(s + note)


# --- The check of pii_snippets.yaml ----------------------------------------------------------------

YAML_PATH = Path(__file__).with_name("pii_snippets.yaml")
KINDS = {"id_number", "phone", "credit_code", "bank_card", "email", "plate", "person", "address"}
SOURCES = {"transcript", "hotline", "company", "complaint", "inspection", "misc"}
PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_RE = re.compile(
    rf"[{PLATE_PROVINCES}][A-HJ-NP-Z]·?(?:[A-HJ-NP-Z0-9]{{5}}|[DF][A-HJ-NP-Z0-9]{{5}}|[0-9]{{5}}[DF])"
)
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# Mobiles as the snippets write them: plain, 3-4-4 with spaces or dashes, behind +86 or 0086.
MOBILE_RE = re.compile(r"(?<![\d+])1[3-9]\d(?:\d{8}|[ -]\d{4}[ -]\d{4})(?!\d)")
ID_LIKE_RE = re.compile(r"(?<![0-9A-Z])\d{17}[\dX](?![0-9A-Z])")
CC_LIKE_RE = re.compile(rf"(?<![0-9A-Z])[{CC_CHARSET}]{{18}}(?![0-9A-Z])")
CARD_LIKE_RE = re.compile(r"(?<![\d])(?:\d{16,20}|\d{4}(?:[ -]\d{4}){3}(?:[ -]\d{1,4})?)(?![\d])")


def phone_valid(s: str) -> bool:
    digits = re.sub(r"[\s\-—－()（）+.]", "", s)
    if s.lstrip().startswith(("+", "00")) or not digits.startswith(("0", "1")):
        return 7 <= len(digits) <= 15  # international: just a plausible length
    if digits.startswith("1"):
        return bool(re.fullmatch(r"1[3-9]\d{9}", digits))
    if digits.startswith("0"):
        return bool(re.fullmatch(r"0\d{2,3}\d{7,8}", digits))
    return False


LABELLED_ID_RE = re.compile(r"(?:身份证(?:号码|号)?|公民身份号码|证件号码?)\s*[:：]?\s*$")

VALIDATORS = {
    "id_number": id_valid,
    "credit_code": cc_valid,
    "bank_card": card_valid,
    "phone": phone_valid,
    "email": lambda s: bool(EMAIL_RE.fullmatch(s)),
    "plate": lambda s: bool(PLATE_RE.fullmatch(s)),
}


def check(path: Path = YAML_PATH) -> list[str]:
    import yaml  # only the check needs it; the pool prints without it

    problems: list[str] = []
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    ids = Counter(e["id"] for e in entries)
    problems += [f"duplicate id {i}" for i, n in ids.items() if n > 1]
    per_kind: Counter[str] = Counter()
    per_lang: Counter[str] = Counter()
    per_source: Counter[str] = Counter()
    for e in entries:
        where, text = e["id"], e["text"]
        if set(e) - {"id", "source", "lang", "text", "entities"}:
            problems.append(f"{where}: unknown fields {set(e) - {'id', 'source', 'lang', 'text', 'entities'}}")
        if e["source"] not in SOURCES or e["lang"] not in ("zh", "en"):
            problems.append(f"{where}: bad source/lang {e['source']}/{e['lang']}")
        per_lang[e["lang"]] += 1
        per_source[e["source"]] += 1
        labelled = [(x["kind"], x["text"]) for x in e.get("entities") or []]
        if len(set(labelled)) != len(labelled):
            problems.append(f"{where}: an entity is listed twice")
        for kind, value in labelled:
            per_kind[kind] += 1
            if kind not in KINDS:
                problems.append(f"{where}: unknown kind {kind}")
            if value not in text:
                problems.append(f"{where}: {kind} {value!r} is not in the text")
            if value != value.strip():
                problems.append(f"{where}: {kind} {value!r} has surrounding spaces")
            # An ID written after an ID label is someone's ID even with a mistyped check digit (dew hides
            # it): such a label is allowed when its date exists.
            labelled_id = (
                kind == "id_number"
                and real_date(value[6:14])
                and LABELLED_ID_RE.search(text[max(0, text.find(value) - 12) : text.find(value)])
            )
            if kind in VALIDATORS and not VALIDATORS[kind](value) and not labelled_id:
                problems.append(f"{where}: {kind} {value!r} is not valid")
        # A match inside some labelled value is accounted for.
        covered = "\n".join(v for _, v in labelled)

        # Completeness for what a machine can see: every valid number or machine-shaped value is labelled,
        # and every unlabelled number-shaped string is invalid as every kind (a real hard negative). The
        # negatives must fail a lax recogniser too: an ID-shaped one needs a wrong check digit or a date that
        # does not exist, whatever its province; a run of 16-20 digits must fail Luhn.
        for m in sorted(set(ID_LIKE_RE.findall(text) + CC_LIKE_RE.findall(text) + CARD_LIKE_RE.findall(text))):
            digits = re.sub(r"[ -]", "", m)
            lax_id = len(m) == 18 and m[:17].isdigit() and id_check_digit(m[:17]) == m[17] and real_date(m[6:14])
            luhn = digits.isdigit() and luhn_valid(digits)
            if m not in covered and (id_valid(m) or lax_id or cc_valid(m) or card_valid(m) or luhn):
                problems.append(f"{where}: {m!r} is valid (or nearly) but not labelled")
        for rx, kind in ((MOBILE_RE, "phone"), (EMAIL_RE, "email"), (PLATE_RE, "plate")):
            for m in rx.finditer(text):
                if m.group() not in covered:
                    problems.append(f"{where}: {kind}-shaped {m.group()!r} is not labelled")
    print(f"{len(entries)} snippets; per lang {dict(per_lang)}; per source {dict(sorted(per_source.items()))}")
    print("entities per kind:", ", ".join(f"{k} {per_kind[k]}" for k in sorted(KINDS)))
    return problems


if __name__ == "__main__":
    if sys.argv[1:] == ["pool"]:
        print_pool()
        sys.exit(0)
    found = check()
    for p in found:
        print("PROBLEM:", p)
    sys.exit(1 if found else 0)
