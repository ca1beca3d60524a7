"""Official-document format (公文格式) against the elements of GB/T 9704—2012.

`check_official_document` lists problems, each with its line and the element concerned;
`fix_official_document` makes the corrections that are mechanical and safe (brackets, colons,
dates, punctuation) and says what it changed. Anything needing judgement (a missing title, a
missing signature) is left to the drafter and the guardian.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from ..tools import tool

DOC_TYPES = (
    "通知",
    "通报",
    "决定",
    "决议",
    "命令",
    "令",
    "公告",
    "通告",
    "意见",
    "报告",
    "请示",
    "批复",
    "函",
    "纪要",
    "议案",
    "公报",
)
NO_RECIPIENT_TYPES = ("公告", "通告", "纪要", "公报", "命令", "令")
AUTHORITY = re.compile(
    r"(人民政府|人民代表大会常务委员会|委员会|管理局|执法局|办公室|办公厅|政府|局|厅|部|委|署|院|中心|处|科|所|"
    r"街道办事处|管委会|支队|大队|中队|分局|站|队|公司|集团|协会|学校|医院|法院|检察院|党委|党组)$"
)
NUMBER = re.compile(
    r"^(?P<prefix>[\u4e00-\u9fff]{1,12})\s*(?P<open>[〔\[［（(【])\s*(?P<year>\d{2,4})\s*"
    r"(?P<close>[〕\]］）)】])\s*(?P<serial>\d+)\s*号$"
)
CN_DIGITS = {
    "〇": 0,
    "零": 0,
    "○": 0,
    "Ｏ": 0,
    "一": 1,
    "二": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
CN_DATE = re.compile(
    r"^(?P<y>[〇零○Ｏ一二三四五六七八九]{4})年(?P<m>[一二三四五六七八九十]{1,3})月(?P<d>[一二三四五六七八九十]{1,3})日$"
)
DATE = re.compile(r"^(?P<y>\d{4})年(?P<m>\d{1,2})月(?P<d>\d{1,2})日$")
HALF_PUNCT = re.compile(r"(?<=[\u4e00-\u9fff])([,;:?!])(?=[\u4e00-\u9fff“]|\s*$)")
BODY_OPENING = re.compile(r"如下|^为|^根据|^按照|^经(研究|审定|批准|查明|调查)|^现将|^近期|^近日")
HALF_PARENS = re.compile(r"(?<=[\u4e00-\u9fff])\(|\)(?=[\u4e00-\u9fff，。；：])")
FULL = {",": "，", ";": "；", ":": "：", "?": "？", "!": "！"}


def _lines(text: str) -> list[tuple[int, str]]:
    return [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]


def _cn_number(text: str) -> int:
    if "十" in text:
        tens, _, ones = text.partition("十")
        return (CN_DIGITS.get(tens, 1) if tens else 1) * 10 + (CN_DIGITS[ones] if ones else 0)
    return CN_DIGITS[text]


def _structure(text: str) -> dict[str, Any]:
    """Find the elements by position: head (mark, number), title, recipient, body, signature, date."""
    lines = _lines(text)
    found: dict[str, Any] = {"lines": lines}
    head = lines[:4]
    for n, line in head:
        if NUMBER.match(line.replace(" ", "")):
            found["number"] = (n, line)
            break
    for n, line in head:
        if line.endswith("文件") or (AUTHORITY.search(line) and "关于" not in line and not NUMBER.match(line)):
            found["mark"] = (n, line)
            break
    start = max([found[k][0] for k in ("mark", "number") if k in found], default=0)
    for i, (n, line) in enumerate(lines):
        if n > start and ("关于" in line or line.endswith(DOC_TYPES)) and len(line) <= 80:
            found["title"] = (n, line)
            # A long title may run over two lines: the second ends with the document type.
            nxt = lines[i + 1] if i + 1 < len(lines) else None
            if (
                nxt
                and not line.rstrip("。．.，,；;！!").endswith(DOC_TYPES)
                and len(nxt[1]) <= 40
                and nxt[1].rstrip("。．.，,；;！!").endswith(DOC_TYPES)
                and not nxt[1].endswith(("：", ":"))
            ):
                found["title"] = (nxt[0], line + nxt[1])
            break
    if "title" in found:
        after = [(n, ln) for n, ln in lines if n > found["title"][0]]
        # The recipient line is short and ends with a colon; a body's opening sentence ("为……，
        # 现通知如下：") also ends with one, so its usual openings are ruled out.
        if (
            after
            and len(after[0][1]) <= 40
            and after[0][1].endswith(("：", ":"))
            and not BODY_OPENING.search(after[0][1])
        ):
            found["recipient"] = after[0]
    for n, line in reversed(lines):
        compact = line.replace(" ", "")
        if DATE.match(compact) or CN_DATE.match(compact):
            found["date"] = (n, line)
            break
        if n < (lines[-1][0] - 6):
            break
    if "date" in found:
        before = [(n, ln) for n, ln in lines if n < found["date"][0]]
        if before and AUTHORITY.search(before[-1][1]) and len(before[-1][1]) <= 40:
            found["signature"] = before[-1]
    return found


def _match(pattern: re.Pattern[str], text: str) -> re.Match[str]:
    """The match of a line already classified by this very pattern."""
    m = pattern.match(text)
    if m is None:
        raise ValueError(f"line does not have the form of its element: {text[:40]}")
    return m


@tool()
def check_official_document(text: str) -> list[str]:
    """Format problems of an official document (公文) against GB/T 9704—2012, one per line found."""
    s = _structure(text)
    problems: list[str] = []

    def add(line: int | None, element: str, what: str) -> None:
        problems.append(f"{'第' + str(line) + '行' if line else '全文'} {element}：{what}")

    if "mark" not in s:
        add(None, "发文机关标志", "缺失（版头应有发文机关全称或规范化简称，如“××市人民政府文件”）")
    if "number" not in s:
        add(None, "发文字号", "缺失（格式：机关代字〔年份〕序号号，如“深府〔2026〕12号”）")
    else:
        n, line = s["number"]
        m = _match(NUMBER, line.replace(" ", ""))
        if (m["open"], m["close"]) != ("〔", "〕"):
            add(n, "发文字号", f"年份应使用六角括号〔〕，不用“{m['open']}{m['close']}”")
        if len(m["year"]) != 4:
            add(n, "发文字号", f"年份应标全称（四位数字），不是“{m['year']}”")
        if m["serial"].startswith("0"):
            add(n, "发文字号", f"序号不编虚位（“{m['serial']}”应为“{int(m['serial'])}”）")
    if "title" not in s:
        add(None, "标题", "缺失（一般为“××关于××的××”，以文种结尾）")
    else:
        n, line = s["title"]
        if line[-1] in "。．.，,；;！!":
            add(n, "标题", "末尾不加标点")
        if not line.rstrip("。．.，,；;！!").endswith(DOC_TYPES):
            add(n, "标题", f"应以文种结尾（{'、'.join(DOC_TYPES[:8])}等）")
    doc_type = next((t for t in DOC_TYPES if "title" in s and s["title"][1].rstrip("。．.，,；;！!").endswith(t)), None)
    if "recipient" in s:
        n, line = s["recipient"]
        if line.endswith(":"):
            add(n, "主送机关", "后应使用全角冒号“：”")
    elif doc_type not in NO_RECIPIENT_TYPES and "title" in s:
        add(s["title"][0] + 1, "主送机关", "缺失（标题下一行顶格写主送机关，后加全角冒号）")
    for n, line in s["lines"]:
        if line.startswith("附件") and len(line) > 2 and line[2] in ":：" and line[2] == ":":
            add(n, "附件说明", "“附件”后应使用全角冒号“：”")
        if line.startswith("附件") and line[-1:] in "。；;，,":
            add(n, "附件说明", "附件名称后不加标点")
        for m in HALF_PUNCT.finditer(line):
            add(n, "标点", f"中文行文中使用了半角标点“{m.group(1)}”，应为“{FULL[m.group(1)]}”")
            break
        if HALF_PARENS.search(line):
            add(n, "标点", "中文行文中使用了半角括号“()”，应为“（）”")
    body = "\n".join(ln for _, ln in s["lines"])
    if ("见附件" in body or "详见附件" in body) and not any(ln.startswith("附件") for _, ln in s["lines"]):
        add(None, "附件说明", "正文提到附件，但没有附件说明")
    if "date" not in s:
        add(None, "成文日期", "缺失（署名下方，用阿拉伯数字标全年、月、日，如“2026年11月22日”）")
    else:
        n, line = s["date"]
        compact = line.replace(" ", "")
        if CN_DATE.match(compact):
            add(n, "成文日期", "应使用阿拉伯数字（GB/T 9704—2012），如“2026年11月22日”")
        else:
            m = _match(DATE, compact)
            if m["m"].startswith("0") or m["d"].startswith("0"):
                add(n, "成文日期", "月、日不编虚位（如“1月5日”，不写“01月05日”）")
            try:
                date(int(m["y"]), int(m["m"]), int(m["d"]))
            except ValueError:
                add(n, "成文日期", f"“{compact}”不是有效日期")
        if "signature" not in s:
            add(n - 1, "发文机关署名", "缺失（成文日期上方应署发文机关全称或规范化简称）")
    return problems


@tool()
def fix_official_document(text: str) -> dict[str, Any]:
    """Apply the mechanical GB/T 9704—2012 corrections (brackets, colons, dates, punctuation, title
    punctuation) and list each change; problems that need judgement are left as they are."""
    s = _structure(text)
    out = text.splitlines()
    changes: list[str] = []

    def replace(n: int, new: str, why: str) -> None:
        old = out[n - 1]
        if new != old.strip():
            indent = old[: len(old) - len(old.lstrip())]
            out[n - 1] = indent + new
            changes.append(f"第{n}行 {why}：“{old.strip()}” → “{new}”")

    if "number" in s:
        n, line = s["number"]
        m = _match(NUMBER, line.replace(" ", ""))
        replace(n, f"{m['prefix']}〔{m['year']}〕{int(m['serial'])}号", "发文字号")
    if "title" in s:
        n, _ = s["title"]  # the title's last line (a long title may take two)
        replace(n, out[n - 1].strip().rstrip("。．.，,；;！!"), "标题末尾不加标点")
    if "recipient" in s and s["recipient"][1].endswith(":"):
        n, line = s["recipient"]
        replace(n, line[:-1] + "：", "主送机关后用全角冒号")
    if "date" in s:
        n, line = s["date"]
        compact = line.replace(" ", "")
        cn = CN_DATE.match(compact)
        if cn:
            year = "".join(str(CN_DIGITS[c]) for c in cn["y"])
            replace(n, f"{year}年{_cn_number(cn['m'])}月{_cn_number(cn['d'])}日", "成文日期用阿拉伯数字")
        else:
            m = _match(DATE, compact)
            replace(n, f"{m['y']}年{int(m['m'])}月{int(m['d'])}日", "成文日期不编虚位")
    for i, line in enumerate(out):
        fixed = HALF_PUNCT.sub(lambda m: FULL[m.group(1)], line)
        if fixed.strip().startswith("附件:"):
            fixed = fixed.replace("附件:", "附件：", 1)
        if fixed != line:
            changes.append(f"第{i + 1}行 标点改为全角：“{line.strip()}” → “{fixed.strip()}”")
            out[i] = fixed
    return {"text": "\n".join(out) + ("\n" if text.endswith("\n") else ""), "changes": changes}


@tool()
def render_template(template: str, data: dict[str, Any]) -> str:
    """Render a Jinja2 template (sandboxed; undefined names are errors) with the given data, e.g.
    to let a tool-using agent fill a fixed form."""
    from ..templating import render

    out = render(template, data, where="render_template")
    if len(out) > MAX_RENDERED:
        raise ValueError(f"the rendered text is {len(out)} characters; the limit is {MAX_RENDERED}")
    return out


MAX_RENDERED = 200_000
