"""Recognisers of personal and registration data in text: what pseudonymisation hides from a model.

Each recogniser finds spans of one kind. Formats with a check digit are only taken when the check
holds (a case number or an order number that happens to have 18 digits is not an ID number), except
where a label says what the value is ("身份证号码：" before an ID with a mistyped check digit is
still someone's ID). Names come from labelled fields (被询问人：陈伟明) and from rjieba's person-name
tags (jieba's dictionary, compiled into the wheel: no model is downloaded); addresses from a rule
that needs a street and a house number. How well each does is measured on tests/data/pii_snippets.yaml
and reported in docs/privacy.md.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

from .hidden import HIDDEN

# The kinds, in the order they win when two recognisers claim overlapping text.
KINDS = ("id_number", "credit_code", "bank_card", "email", "phone", "plate", "address", "person")
LABELS = {  # what a placeholder calls each kind: the model sees [PHONE_1], never the number
    "id_number": "ID_NUMBER",
    "credit_code": "CREDIT_CODE",
    "bank_card": "BANK_CARD",
    "email": "EMAIL",
    "phone": "PHONE",
    "plate": "PLATE",
    "address": "ADDRESS",
    "person": "PERSON",
}
DESCRIPTIONS = {
    "id_number": "a resident ID number",
    "credit_code": "a unified social credit code",
    "bank_card": "a bank card number",
    "email": "an e-mail address",
    "phone": "a phone number",
    "plate": "a licence plate",
    "address": "a street address",
    "person": "a person's name",
}


@dataclass(frozen=True, order=True)
class Found:
    start: int
    end: int
    kind: str
    text: str


# Digits and Latin letters touching a match mean it is part of a longer token (an order number).
_EDGE_L = r"(?<![0-9A-Za-z])"
_EDGE_R = r"(?![0-9A-Za-z])"


# --- PRC resident ID (GB 11643-1999): area, birth date, sequence, ISO 7064 MOD 11-2 check -------
_ID = re.compile(_EDGE_L + r"([1-9]\d{5})((?:18|19|20)\d{2})(\d{2})(\d{2})(\d{3})([0-9Xx])" + _EDGE_R)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_PROVINCES = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
              50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}  # fmt: skip
_ID_LABEL = re.compile(r"(?:身份证(?:号码|号)?|公民身份号码|证件号码?|ID\s*(?:No\.?|number|card)?)\s*[:：]?\s*$", re.I)
_LABELLED_ID = re.compile(_EDGE_L + r"\d{17}[0-9Xx]" + _EDGE_R)


def id_check_digit(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11]


def _valid_id(m: re.Match[str]) -> bool:
    text = m.group(0)
    if int(text[:2]) not in _PROVINCES:
        return False
    born = _birth_date(text)
    if born is None or not date(1880, 1, 1) <= born <= date.today():
        return False
    return id_check_digit(text[:17]) == text[17].upper()


def _id_numbers(text: str) -> Iterable[tuple[int, int]]:
    for m in _ID.finditer(text):
        if _valid_id(m):
            yield m.span()
    for m in _LABELLED_ID.finditer(text):  # labelled: taken even with a mistyped check digit
        if _ID_LABEL.search(text[max(0, m.start() - 12) : m.start()]) and _birth_date(m.group(0)) is not None:
            yield m.span()


def _birth_date(id_number: str) -> date | None:
    """The date an ID number's digits 7-14 give, or None when no such day exists."""
    try:
        return date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    except ValueError:
        return None


# --- unified social credit code (GB 32100-2015) -----------------------------------------------
_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_CREDIT = re.compile(_EDGE_L + r"[1-9ANY][0-9A-HJ-NP-RTUW-Y]\d{6}[0-9A-HJ-NP-RTUW-Y]{10}" + _EDGE_R)


def credit_check_char(first17: str) -> str:
    total = sum(_CODE_CHARS.index(c) * w for c, w in zip(first17, _CODE_WEIGHTS, strict=True))
    return _CODE_CHARS[(31 - total % 31) % 31]


def _credit_codes(text: str) -> Iterable[tuple[int, int]]:
    for m in _CREDIT.finditer(text):
        code = m.group(0)
        if credit_check_char(code[:17]) == code[17]:
            yield m.span()


# --- bank cards: 15-19 digits, plain or in groups, with a valid Luhn check ----------------------
_CARD = re.compile(_EDGE_L + r"\d{4}(?:[ -]\d{1,4}){2,4}" + _EDGE_R + r"|" + _EDGE_L + r"\d{15,19}" + _EDGE_R)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _bank_cards(text: str) -> Iterable[tuple[int, int]]:
    for m in _CARD.finditer(text):
        # Grouped digits may run on into the next number: try the longest grouping first.
        groups = re.split(r"([ -])", m.group(0))
        for n in range(len(groups), 0, -2):
            candidate = "".join(groups[:n])
            digits = re.sub(r"\D", "", candidate)
            if 15 <= len(digits) <= 19 and luhn_ok(digits):
                yield m.start(), m.start() + len(candidate)
                break


# --- e-mail -------------------------------------------------------------------------------------
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}"
)


def _emails(text: str) -> Iterable[tuple[int, int]]:
    for m in _EMAIL.finditer(text):
        yield m.start(), m.end() - (1 if m.group(0).endswith(".") else 0)


# --- phones: Chinese mobiles and landlines, and international/North American forms --------------
_SEP = r"[ \-－‐—.]?"
_PHONES = [
    # mobile: 1[3-9]x xxxx xxxx, with an optional +86 / 0086 / (86) prefix
    re.compile(_EDGE_L + r"(?:(?:\+|00)86[ \-]?|\(\+?86\)\s?)?1[3-9]\d" + _SEP + r"\d{4}" + _SEP + r"\d{4}" + _EDGE_R),
    # landline: area code 0xx/0xxx (or (0xxx)), then 7-8 digits, optionally grouped, with an extension
    re.compile(
        _EDGE_L + r"(?:\(0\d{2,3}\)\s?|（0\d{2,3}）|0(?:10|2\d|[3-9]\d{2})" + _SEP + r")"
        r"[2-9]\d{2,3}" + _SEP + r"\d{4}(?:\s?(?:转|ext\.?|x)\s?\d{1,5})?" + _EDGE_R
    ),
    # international: +CC then 6-12 more digits in groups
    re.compile(r"(?<![\w+])\+(?!86)[1-9]\d{0,2}(?:[ \-]?(?:\(\d{1,4}\)|\d{1,4})){2,5}" + _EDGE_R),
    # North American: (415) 555-0142, 415-555-0142, 415.555.0142; not China's 400/800 service numbers
    re.compile(_EDGE_L + r"(?:\(\d{3}\)\s?|(?![48]00)\d{3}[\-.])\d{3}[\-.]\d{4}" + _EDGE_R),
    # British: 07700 900461, 020 7946 0958
    re.compile(_EDGE_L + r"0(?:7\d{3} ?\d{6}|20 ?\d{4} ?\d{4})" + _EDGE_R),
]


def _phones(text: str) -> Iterable[tuple[int, int]]:
    for pattern in _PHONES:
        for m in pattern.finditer(text):
            digits = re.sub(r"\D", "", m.group(0))
            if m.group(0).startswith("+") and not 8 <= len(digits) <= 15:
                continue
            yield m.span()


# --- licence plates (GA 36-2018): province, authority letter, five or six characters ------------
_PROVINCE_CHARS = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_P = "A-HJ-NP-Z"  # letters a plate may use: no I, no O
_PLATE = re.compile(
    rf"[{_PROVINCE_CHARS}][{_P}][·•\s]?(?:[DF][{_P}0-9]{{5}}|[{_P}0-9]{{5}}[DF]|[{_P}0-9]{{4}}[{_P}0-9挂学警港澳])"
    + _EDGE_R
)


def _plates(text: str) -> Iterable[tuple[int, int]]:
    for m in _PLATE.finditer(text):
        if sum(c.isdigit() for c in m.group(0)) >= 1:  # 粤BCDEFG is a word, not a plate
            yield m.span()


# --- addresses: a rule needs a road or street and a house number ----------------------------------
_ZH_PLACE = r"(?:[\u4e00-\u9fa5]{2,7}?(?:省|自治区|市|自治州|区|县|镇|乡|街道|村|社区|园区?|新区))"
_ZH_ROAD = r"[\u4e00-\u9fa5A-Za-z0-9]{1,12}?(?:大道|路|街|道|巷|弄|胡同|里)"
_ZH_NUMBER = r"[0-9０-９]+(?:-[0-9]+)?号(?:院)?"
_ZH_TAIL = (
    r"(?:附[0-9]+号)?(?:[\u4e00-\u9fa5A-Za-z0-9]{0,12}?[0-9０-９A-Z一二三四五六七八九十]+(?:栋|幢|座|号楼|单元|楼|层|室|房|铺|号铺|门|区))*"
    r"(?:[0-9]{3,5}(?:室|房)?)?"
)
_ADDRESSES = [
    # At most five place names, taken atomically: the ways of splitting a run of them must not be
    # tried one by one (that is exponential in its length).
    re.compile(rf"(?>{_ZH_PLACE}{{0,5}}){_ZH_ROAD}{_ZH_NUMBER}{_ZH_TAIL}"),
    re.compile(
        r"(?<![\w])(?:(?:Flat|Room|Shop|Unit|Apt\.?|Suite|Villa|Block|Floor|\d+/F)\s?[\w/]*,\s)*"
        r"(?:No\.\s?)?\d{1,5}[A-Za-z]?,?\s(?:(?:[A-Z][a-z]+|\d+(?:st|nd|rd|th))\s){1,4}"
        r"(?:Road|Rd|Street|St|Avenue|Ave|Lane|Ln|Boulevard|Blvd|Drive|Dr|Way|Court|Ct|Place|Pl|Terrace|Square)\b\.?"
        r"(?:,?\s(?:Flat|Apt\.?|Apartment|Unit|Suite|Room)\s?\w+)?"
        r"(?:,\s(?:[A-Z][a-z]+\s?){1,3}(?:District|Area|New Area)?(?=[,.;\n]|$))*"
    ),
]
_ADDRESS_LABEL = re.compile(r"(?:住址|家庭住址|现住址|住所|户籍地址?|联系地址|地址|经营场所|Address)\s*[:：]\s*", re.I)


# Words that come before an address in a sentence ("现住", "位于", "邮寄至"): a place name's rule
# starts as early as it can, so it would take them in.
_LEAD = re.compile(
    r"^[\u4e00-\u9fa5]{0,5}?(?:居住在|住在|现住|暂住|住址|地址|住所|场所|户籍|位于|反映|住|在|于|至|是|的)"
)


def _addresses(text: str) -> Iterable[tuple[int, int]]:
    for pattern in _ADDRESSES:
        for m in pattern.finditer(text):
            start, found = m.start(), m.group(0)
            lead = _LEAD.match(found)
            if lead and _ADDRESSES[0].fullmatch(found[lead.end() :]):
                start += lead.end()
            yield start, m.end()
    # a labelled address: up to the end of the clause, when it names at least a place and a number
    for m in _ADDRESS_LABEL.finditer(text):
        end = m.end()
        clause = re.match(r"(?:(?!  |电话|邮编|邮政|[（(])[^，,；;。\n⟦⟧]){4,60}", text[end:])
        if clause and re.search(r"\d", clause.group(0)) and re.search(r"[市区县路街道号]|Road|Street", clause.group(0)):
            yield end, end + len(clause.group(0).rstrip())


# --- person names -------------------------------------------------------------------------------
# The commonest surnames (about 97% of people), single and double: a name tag whose first
# character is not one of them is far more often a word jieba guessed at than a person.
_SURNAMES_2 = {"欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒", "令狐", "夏侯", "端木", "独孤", "南宫", "西门"}  # fmt: skip
_SURNAMES_1 = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾"
    "夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申"
    "欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉"
    "缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝"
)
_COMMON_SURNAMES = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾"
    "夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
# Words jieba tags as names that, in the text this runs on, almost never are.
_NOT_NAMES = {"高新", "华为", "文明", "安全", "明天", "金额", "石材", "林地", "江边", "于是", "向前", "常规", "齐全", "万元", "成本",
              "高度", "方面", "关于", "任何", "马上", "黄金", "武装", "连续", "包括", "时间", "平方", "和平", "温度", "管理",
              "宁静", "简单", "白天", "车位", "路面", "程序", "伍仟", "贰仟", "叁仟", "肆仟", "陆仟", "柒仟", "玖仟",
              "张贴", "陈列", "谢谢", "付清", "张卡", "石岩", "蓝田", "华鼎", "华楚", "申请人"}  # fmt: skip
_NAME_LABEL = re.compile(
    r"(?:被询问人|被检查人|当事人|来电人|来访人|投诉人|举报人|申请人|被申请人|联系人|法定代表人|法人代表|负责人|经营者|询问人|记录人|"
    r"检查人|执法人员|证人|见证人|代理人|委托代理人|监护人|户主|姓名|签名|财务负责人|办税人|股东|司机|老板是|店长是|"
    r"Name|Caller|Interviewee|Interviewer|Witness|Contact|Complainant|From|To|Legal representative|Director)"
    r"\s*[:：]\s*",
    re.I,
)
_ZH_NAME = r"(?:[\u4e00-\u9fa5]{1,2}[·•][\u4e00-\u9fa5]{1,6}|[\u4e00-\u9fa5]{2,4})"
# A name right after the word for who someone is ("老板叫", "来电人", "驾驶员"), without a colon,
# or alone in a table's column: a surname and one or two more characters, ending where a name ends.
_CUE = (
    r"(?:我叫|他叫|她叫|名叫|叫做|老板是|老板叫|老板|店长|工头是|房东|业主为|业主|本人|丈夫|妻子|儿子|女儿|父亲|母亲|弟弟|哥哥|姐姐|"
    r"妹妹|表哥|表姐|助理|经理|主任|被处罚人|当事人|驾驶员|司机|来电人|诉求人|负责人|经营者|实际控制人|法定代表人由|变更为|和|、)"
)
_END = r"(?=[，,、；;。：:）)（(\s\d称说的已于拒等在是电手联]|$)"
_EN_NAME = r"[A-Z](?:'[A-Z])?[a-z]+(?: [A-Z](?:'[A-Z])?[a-z]+|-[A-Za-z][a-z]+){0,2}"
_CUED = re.compile(_CUE + r"[:：]?((?:" + "|".join(sorted(_SURNAMES_2)) + r")[\u4e00-\u9fa5]{1,2}|[" + "".join(sorted(_SURNAMES_1))
                   + r"](?!某)[\u4e00-\u9fa5]{1,2})" + _END)  # fmt: skip
_COLUMN = re.compile(r"(?:(?<=\s\s)|(?<=\t))([" + "".join(sorted(_SURNAMES_1)) + r"][\u4e00-\u9fa5]{1,2})(?=\s\s|\t)")
_EN_CUED = re.compile(
    r"(?:\b(?:as|from|partner,|representative|landlord|Inspector|Director|Officer|DC|PC|Secretary:|Operator:|"
    r"Inspectors:|Interviewee:)\s|(?<=[A-Za-z]), (?=[A-Z][a-z]+ [A-Z][a-z]+[.,;:\s]))"
    r"([A-Z][a-z]+(?: (?!of\b|and\b|the\b)[A-Z][a-z'\-]*[a-z]+)+)"
)
_TITLED = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof|Officer|Inspector)\.?\s(" + _EN_NAME + r")")


_TITLES = ("先生", "女士", "小姐", "师傅", "老板", "阿姨", "大妈", "大爷", "主任", "经理", "队长", "警官", "局长", "镇", "区", "县",
           "路", "街", "柜", "证", "检查")  # fmt: skip


def _is_zh_name(word: str) -> bool:
    if word in _NOT_NAMES or not 2 <= len(word) <= 4 or word.endswith(_TITLES):
        return False
    if word[:2] in _SURNAMES_2:
        return len(word) >= 3
    # Two characters tagged as a name are a guess more often than three: only the commonest
    # surnames make them a name ("易燃" is not a person; "曾慧" is).
    return word[0] in (_COMMON_SURNAMES if len(word) == 2 else _SURNAMES_1)


@cache
def _tagger() -> Callable[[str], list[tuple[str, str]]]:
    import rjieba  # imported on first use: its dictionary takes ~0.1 s to load

    return rjieba.tag


def _people(text: str) -> Iterable[tuple[int, int]]:
    for m in _NAME_LABEL.finditer(text):  # a labelled field names a person, whatever jieba thinks
        rest = text[m.end() :]
        rest = re.sub(r"^(?:(?:Mr|Mrs|Ms|Miss|Dr|Prof|Officer)\.?\s)", lambda t: " " * len(t.group(0)), rest)
        skip = len(rest) - len(rest.lstrip(" "))
        rest = rest[skip:]
        named = re.match(_ZH_NAME + r"(?=[，,、；;。）)\s（(]|男|女|$)", rest) or re.match(_EN_NAME + r"\b", rest)
        if named and (not re.match(r"[\u4e00-\u9fa5]", named.group(0)) or _plausible_labelled(named.group(0))):
            yield m.end() + skip, m.end() + skip + len(named.group(0))
    for m in _TITLED.finditer(text):
        yield m.span(1)
    for m in _CUED.finditer(text):
        if m.group(1) not in _NOT_NAMES:
            yield m.span(1)
    for m in _COLUMN.finditer(text):
        yield m.span(1)
    for m in _EN_CUED.finditer(text):
        yield m.span(1)
    if re.search(r"[\u4e00-\u9fa5]", text):
        offset = 0
        for word, tag in _tagger()(text):
            start = text.find(word, offset)
            if start < 0:
                continue
            offset = start + len(word)
            if tag in ("nr", "nrfg", "nrt") and _is_zh_name(word):
                yield start, offset
            elif len(word) == 1 and word in _SURNAMES_1 and text[offset : offset + 1] == "某":
                yield start, offset + (2 if text[offset + 1 : offset + 2] == "某" else 1)  # 陈某, 陈某某


def _plausible_labelled(name: str) -> bool:
    if "·" in name or "•" in name:
        return True
    return name[:2] in _SURNAMES_2 or name[0] in _SURNAMES_1


RECOGNISERS: dict[str, Callable[[str], Iterable[tuple[int, int]]]] = {
    "id_number": _id_numbers,
    "credit_code": _credit_codes,
    "bank_card": _bank_cards,
    "email": _emails,
    "phone": _phones,
    "plate": _plates,
    "address": _addresses,
    "person": _people,
}


class Taken:
    """Non-overlapping spans, chosen greedily: `add` keeps a span only if it overlaps none kept.
    Kept sorted by start, so each check is a binary search, not a scan of everything kept."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.spans: list[tuple[int, int, Any]] = []

    def add(self, start: int, end: int, what: Any) -> bool:
        i = bisect.bisect_right(self.starts, start)
        if i > 0 and self.spans[i - 1][1] > start:
            return False
        if i < len(self.spans) and self.spans[i][0] < end:
            return False
        self.starts.insert(i, start)
        self.spans.insert(i, (start, end, what))
        return True


def normalised(text: str) -> tuple[str, list[int]]:
    """`text` as the recognisers read it, and where each of its characters came from.

    Full-width digits and letters become ASCII (NFKC, character by character), and invisible
    characters and soft hyphens are dropped: 「１３８２６５４９０７１」 and a number with a zero-width
    space inside are still phone numbers. Spans found in the result map back to the original."""
    out: list[str] = []
    origin: list[int] = []
    for i, c in enumerate(text):
        if c == "\u00ad" or HIDDEN.match(c):
            continue
        folded = unicodedata.normalize("NFKC", c) if ord(c) > 0x7F else c
        if "\ud800" <= c <= "\udfff":
            folded = "\ufffd"  # a lone surrogate: not text, and the tagger cannot take it
        out.append(folded)
        origin += [i] * len(folded)
    return "".join(out), origin


def find(text: str, kinds: Iterable[str] = KINDS) -> list[Found]:
    """Every recognised span in `text`, without overlaps, in order.

    Where spans overlap, the longer wins, and between equal lengths the kind listed first in
    KINDS (an ID number that also passes the Luhn check is an ID number)."""
    norm, origin = normalised(text)
    rank = {k: i for i, k in enumerate(KINDS)}
    spans = [(s, e, kind) for kind in kinds for s, e in RECOGNISERS[kind](norm) if e > s]
    spans.sort(key=lambda t: (-(t[1] - t[0]), rank[t[2]], t[0]))
    taken = Taken()
    for s, e, kind in spans:
        taken.add(s, e, kind)
    found = []
    for s, e, kind in taken.spans:
        start, end = origin[s], origin[e - 1] + 1
        found.append(Found(start, end, kind, text[start:end]))
    return found
