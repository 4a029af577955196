"""BIG-Bench Hard scoring. ``paper``: the authors' rules (evaluate_bbh.py), quirks included: the ``<ANS>`` text runs
to the end of the answer, option texts are cut from the rendered prompt between "Options" and "Print", a normalised
answer that is a *substring* of an option counts as that option, and any prompt containing "sort" compares with
commas and spaces removed. ``strict``: one unambiguous answer of the target's kind (letter, boolean, yes/no, number,
word list), in the spirit of lm-evaluation-harness's flexible filters."""

from __future__ import annotations

import re
import string

from bench.prompts import bigbenchhard as rendered_prompt
from bench.records import Item, Score
from bench.scoring.common import ans_content, invalid, precheck, verdict, words

_ANS_TO_END = re.compile(r"<ANS>(.*?)(?:</ANS>)?$", re.IGNORECASE | re.DOTALL)
_EMPTY_TAG = re.compile(r"^<([A-Z0-9]+)>\s*</\1>$", re.IGNORECASE)
_OPEN_TAG = re.compile(r"^<([A-Z0-9]+)>", re.IGNORECASE)
_PAREN_GT = re.compile(r"^\(([A-Z0-9])\)>?$", re.IGNORECASE)
_PAREN = re.compile(r"^\(([A-Z0-9])\)$", re.IGNORECASE)
_TAG_CONTENT = re.compile(r"<[^>]+>([^<]+)</[^>]+>")
_ANS_LOOSE = re.compile(r"ANS\s*>?\s*(<([A-Z0-9/]+)>|\(?([A-Z0-9/]+)\)?)", re.IGNORECASE)
_HTML = re.compile(r"<.*?>")
_JUNK = {"</ANS>", "<ANS>", "ANS >", ">", "", "ANS"}
_LETTERS = set(string.ascii_lowercase)


def _paper_clean(response: str) -> str | None:
    response = response.strip()
    match = _ANS_TO_END.search(response)
    if match:
        extracted = match.group(1).strip()
        if _EMPTY_TAG.match(extracted):
            return _OPEN_TAG.match(extracted).group(1)
        paren = _PAREN_GT.match(extracted)
        if paren:
            return paren.group(1)
    else:
        content = _TAG_CONTENT.search(response)
        if content:
            return content.group(1).strip()
        loose = _ANS_LOOSE.search(response)
        extracted = (loose.group(2) or loose.group(3)) if loose else response
    paren = _PAREN.match(extracted)
    if paren:
        return paren.group(1)
    extracted = " ".join(_HTML.sub("", extracted).split())
    if extracted.upper() in _JUNK:
        return None
    return extracted


def _paper_clean_further(text: str | None) -> str | None:
    if text is None:
        return None
    text = _HTML.sub("", text).strip()
    if text in {">", ""}:
        return None
    text = re.sub(r"^\((.*?)\)$", r"\1", text)
    return text or None


def _paper_options(prompt: str) -> list[str] | None:
    if "options" not in prompt.lower():
        return None
    start, end = prompt.find("Options") + 8, prompt.find("Print")
    tokens = prompt[start:end].replace("\n", "").strip().split("(")
    if "" in tokens:
        tokens.remove("")
    return [f"({token}" for token in tokens]


def _paper_normalize(text: str) -> str:
    text = text.lower().replace("(", "").replace(")", "")
    parts = text.split()
    if len(parts) > 1 and parts[0].rstrip(") .").isalpha() and len(parts[0]) <= 2:
        text = " ".join(parts[1:])
    return " ".join("".join(c if c.isalnum() else " " for c in text).split())


def paper(item: Item, response: str) -> Score:
    text, early = precheck(response)
    if early:
        return early
    prompt = rendered_prompt(item)
    options = _paper_options(prompt)
    cleaned = _paper_clean_further(_paper_clean(text))
    if cleaned is None:
        return invalid("no answer after cleaning")
    answer, key = cleaned.lower(), item.reference.lower()
    if answer == key:
        return verdict(True, answer, "exact match")
    if options is not None and "(" in key and ")" in key:
        letter = _paper_clean_further(key)
        if answer == letter:
            return verdict(True, answer, "option letter")
        if answer in _LETTERS:
            return verdict(False, answer, f"option letter {answer}, key {letter}")
        wanted = _paper_normalize(answer)
        for index, option in enumerate(options):
            norm = _paper_normalize(option)
            if wanted in norm:
                got = string.ascii_lowercase[index]
                return verdict(got == letter, answer, f"option text -> ({got}), key ({letter})")
        return invalid("matches no option", answer)
    if "sort" in prompt.lower():
        same = answer.replace(",", "").replace(" ", "") == key.replace(",", "").replace(" ", "")
        return verdict(same, answer, "word list without commas/spaces")
    return verdict(False, answer, f"{answer!r} != {key!r}")


_ANSWER_IS = re.compile(r"(?:the answer is|the answer:|the final answer:)\s*(.*)", re.IGNORECASE | re.DOTALL)
_OPTION_LINE = re.compile(r"^\(([A-R])\)\s*(.*)$", re.MULTILINE)
_PAREN_LETTER = re.compile(r"\(([A-R])\)")
_BARE_LETTER = re.compile(r"^\(?([A-R])\)?[.:]?$")
_NUMBER = re.compile(r"-?\d+")
_VOCAB = {"true": ("true", "false"), "false": ("true", "false"), "yes": ("yes", "no"), "no": ("yes", "no"),
          "valid": ("valid", "invalid"), "invalid": ("valid", "invalid")}


def _strict_content(text: str) -> str:
    content = ans_content(text)
    if content is None:
        said = _ANSWER_IS.search(text)
        content = said.group(1) if said else text
    content = re.sub(r"<[^>]*>", " ", content)
    return " ".join(content.split()).strip().rstrip(".").strip("\"'` ")


def strict(item: Item, response: str) -> Score:
    text, early = precheck(response)
    if early:
        return early
    content = _strict_content(text)
    if not content:
        return invalid("empty answer block")
    target = item.reference.strip()
    if re.fullmatch(r"\([A-R]\)", target):
        letters = set(_PAREN_LETTER.findall(content))
        bare = _BARE_LETTER.match(content)
        if bare:
            letters.add(bare.group(1))
        if not letters:
            options = {words(body): letter for letter, body in _OPTION_LINE.findall(item.fields["input"])}
            if words(content) in options:
                letters.add(options[words(content)])
        if len(letters) != 1:
            return invalid("no option letter" if not letters else f"ambiguous: {sorted(letters)}", content[:80])
        got = letters.pop()
        return verdict(f"({got})" == target, f"({got})", f"option ({got}), key {target}")
    if target.lower() in _VOCAB:
        pair = _VOCAB[target.lower()]
        said = set(re.findall(rf"\b({'|'.join(pair)})\b", content.lower()))
        if len(said) != 1:
            return invalid(f"expected one of {pair}", content[:80])
        got = said.pop()
        return verdict(got == target.lower(), got, f"{got} vs {target}")
    if re.fullmatch(r"-?\d+", target):
        numbers = _NUMBER.findall(content)
        if not numbers:
            return invalid("no number", content[:80])
        return verdict(int(numbers[-1]) == int(target), numbers[-1], f"last number {numbers[-1]} vs {target}")
    if item.fields.get("subtask") == "word_sorting":
        got = content.replace(",", " ").split()
        return verdict(got == target.split(), " ".join(got), "word list")
    if item.fields.get("subtask") == "dyck_languages":
        same = content.replace(" ", "") == target.replace(" ", "")
        return verdict(same, content, "bracket sequence without spaces")
    return verdict(words(content) == words(target), content, "normalised exact match")
