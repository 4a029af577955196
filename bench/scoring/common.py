"""Helpers every scorer shares: response hygiene and the ``<ANS>`` tag conventions."""

from __future__ import annotations

import re

from bench.records import Score

# Longer answers are invalid: no answer in the paper's data exceeds 3,000 characters, and the authors' regexes are
# quadratic on pathological input, so this bounds scoring time without changing any of their verdicts.
MAX_RESPONSE_CHARS = 65_536

_TAG_BLOCK = re.compile(r"<ANS>(.*?)(?:</ANS>|$)", re.IGNORECASE | re.DOTALL)


def as_text(response: object) -> str:
    """Any answer as ``str``: bytes decoded with replacement, lone surrogates replaced, None as empty."""
    if response is None:
        return ""
    if isinstance(response, (bytes, bytearray)):
        return bytes(response).decode("utf-8", errors="replace")
    text = str(response)
    return text.encode("utf-8", errors="replace").decode("utf-8")


def precheck(response: object) -> tuple[str, Score | None]:
    """The answer as text, or a ready invalid Score when it is empty or too long."""
    text = as_text(response)
    if not text.strip():
        return text, invalid("empty answer")
    if len(text) > MAX_RESPONSE_CHARS:
        return text, invalid(f"answer too long ({len(text)} chars > {MAX_RESPONSE_CHARS})")
    return text, None


def invalid(reason: str, extracted: str | None = None, **details: object) -> Score:
    return Score(correct=False, extracted=extracted, reason=f"invalid: {reason}", details=details)


def verdict(correct: bool, extracted: str | None, reason: str, **details: object) -> Score:
    return Score(correct=bool(correct), extracted=extracted, reason=reason, details=details)


def ans_content(text: str) -> str | None:
    """Strict-mode extraction: the first ``<ANS>`` block (closing tag optional), else None."""
    match = _TAG_BLOCK.search(text)
    if not match:
        return None
    return re.sub(r"</?ANS>", " ", match.group(1), flags=re.IGNORECASE).strip()


def words(text: str) -> str:
    """Lower-case words of letters and digits, single-spaced: how strict mode compares an answer with a choice."""
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())
