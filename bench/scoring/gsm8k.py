"""GSM8K scoring. ``paper``: the authors' integer regexes (evaluate_gsm8k.py): ANS tags removed, then the number
after a final ``=``, else the trailing number (``$``, ``%``, commas allowed), else a number before a trailing ``>``
or ``>>``; ``int(float(x))``, so 7.9 counts as 7. ``strict``: lm-evaluation-harness ideas: ``#### n``
(strict-match), else the last number of the ``<ANS>`` block or of the whole answer (flexible-extract), compared
as exact decimals."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from bench.records import Item, Score
from bench.scoring.common import ans_content, invalid, precheck, verdict

_TAGS = re.compile(r"(</?ANS>|ANS\s*<|ANS\s*>)")
_AFTER_EQUALS = re.compile(r"=\s*\$?([0-9,]+(?:\.[0-9]+)?%?)\s*(?:>>)?(?:\s*>)?$")
_TRAILING = re.compile(r"\$?([0-9,]+(?:\.[0-9]+)?%?)\s*(?:>>)?(?:\s*>)?$")
_BEFORE_GT = re.compile(r"(?:/[0-9]+)?[^=]*?(\d+(?:\.[0-9]+)?%?)\s*(?:>>|>)$")
_TAIL = 8192  # every paper pattern is anchored at the end; only the tail can matter


def _to_int(text: str) -> int | None:
    try:
        return int(float(text.replace(",", "").replace("%", "")))
    except ValueError:
        return None


def paper_gold(item: Item) -> int | str:
    gold = str(item.reference).strip(" $%g").replace(",", "")
    try:
        return int(gold)
    except ValueError:
        return gold


def paper_extract(text: str) -> int | None:
    text = text.strip()
    if not text or text == "ANS":
        return None
    cleaned = _TAGS.sub(" ", text).strip()
    tail = cleaned[-_TAIL:]
    for pattern in (_AFTER_EQUALS, _TRAILING):
        match = pattern.search(tail)
        if match:
            return _to_int(match.group(1))
    if ">>" in cleaned or cleaned.endswith(">"):
        match = _BEFORE_GT.search(tail)
        if match:
            return _to_int(match.group(1))
    return None


def paper(item: Item, response: str) -> Score:
    text, early = precheck(response)
    if early:
        return early
    value = paper_extract(text)
    if value is None:
        return invalid("no integer answer")
    gold = paper_gold(item)
    return verdict(value == gold, str(value), f"{value} vs gold {gold}")


_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
_FLEX = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


def _decimal(text: str) -> Decimal | None:
    cleaned = text.replace(",", "").replace("$", "").rstrip(".")
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


def strict(item: Item, response: str) -> Score:
    text, early = precheck(response)
    if early:
        return early
    gold = _decimal(str(item.reference))
    match = _STRICT.search(text)
    how = "strict-match"
    candidate = match.group(1) if match else None
    if candidate is None:
        how = "flexible-extract"
        region = ans_content(text)
        region = region if region else text
        found = [m.group(0) for m in _FLEX.finditer(region) if any(ch.isdigit() for ch in m.group(0))]
        candidate = found[-1] if found else None
    if candidate is None:
        return invalid("no number")
    value = _decimal(candidate)
    if value is None:
        return invalid("unparsable number", candidate)
    return verdict(value == gold, candidate, f"{how}: {value} vs gold {gold}")
