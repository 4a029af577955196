"""CommonsenseQA scoring. ``paper``: the authors' rules (evaluate_commonsenseQA.py) with their quirks: the first
letter A-E at the start wins, so "(C, E)" scores as C and "A dog" as A; otherwise a case-insensitive exact choice
text. ``strict``: exactly one letter or choice text, consistent, else invalid."""

from __future__ import annotations

import re

from bench.records import Item, Score
from bench.scoring.common import ans_content, invalid, precheck, verdict

_TAGGED = re.compile(r"<ANS>(.*?)</ANS>", re.IGNORECASE)
_LOOSE = re.compile(r"ANS\s*>?\s*(\S.*)", re.IGNORECASE)
_HTML = re.compile(r"<.*?>")
_LEAD_LETTER = re.compile(r"\(?([A-E])\)?\.?")
_PUNCT = re.compile(r"[^\w\s]")


def _choice_by_text(text: str, item: Item) -> str | None:
    choices = item.fields["choices"]
    for label, choice in zip(choices["label"], choices["text"]):
        if text.lower() == choice.lower():
            return label
    return None


def paper(item: Item, response: str) -> Score:
    text, early = precheck(response)
    if early:
        return early
    match = _TAGGED.search(text) or _LOOSE.search(text)
    extracted = match.group(1).strip() if match else text.strip()
    if extracted in {"</ANS>", "<ANS>", "ANS >"}:
        extracted = ""
    extracted = _HTML.sub("", extracted).strip()
    if extracted in {">", ""}:
        return invalid("no answer after removing tags")
    lead = _LEAD_LETTER.match(extracted)
    if lead:
        candidate = lead.group(1)
    else:
        candidate = _PUNCT.sub("", extracted).strip()
        if not candidate:
            return invalid("no answer after removing punctuation")
    label = candidate if candidate in item.fields["choices"]["label"] else _choice_by_text(candidate, item)
    if label is None:
        return invalid("matches no choice label or text", candidate)
    return verdict(label == item.reference, label, f"label {label}, key {item.reference}")


_STRICT_LEAD = re.compile(r"^\(?([A-E])(?:\)|\.|:|,|\s|$)\s*(.*)$", re.DOTALL)
_LONE_LETTER = re.compile(r"(?<![A-Za-z])([A-E])(?![A-Za-z])")
_WORD = re.compile(r"[A-Za-z]{2,}")
_PAREN_LETTER = re.compile(r"\(([A-E])\)")


def _norm(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def strict(item: Item, response: str) -> Score:
    text, early = precheck(response)
    if early:
        return early
    content = ans_content(text)
    if content is None:
        content = text.strip()
    letters: set[str] = set()
    lead = _STRICT_LEAD.match(content)
    rest = content
    if lead:
        letters.add(lead.group(1))
        rest = lead.group(2)
    letters.update(_PAREN_LETTER.findall(content))
    if all(w.lower() in {"and", "or"} for w in _WORD.findall(content)):  # a bare list of letters: "B, C"
        letters.update(_LONE_LETTER.findall(content))
    by_text = {_norm(t): label for label, t in zip(item.fields["choices"]["label"], item.fields["choices"]["text"])}
    if _norm(rest) in by_text:
        letters.add(by_text[_norm(rest)])
    if not letters:
        return invalid("no choice letter or exact choice text", content[:80])
    if len(letters) > 1:
        return invalid(f"ambiguous: {', '.join(sorted(letters))}", content[:80])
    label = letters.pop()
    return verdict(label == item.reference, label, f"label {label}, key {item.reference}")
