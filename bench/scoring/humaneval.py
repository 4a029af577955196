"""HumanEval scoring, in the sandbox. ``paper``: as the authors' script ran it: the answer with ``<ANS>``/``</ANS>``
removed, then a newline and the item's ``test`` code, executed; ``check()`` is never called, so "passed" means
"the answer and the test definitions run without an exception". ``strict``: real pass@1: prompt + completion
(the ``<ANS>`` block or a fenced code block, else the answer) + test + ``check(entry_point)``."""

from __future__ import annotations

import re

from bench.records import Item, Score
from bench.scoring.common import ans_content, invalid, precheck, verdict
from bench.scoring.sandbox import Limits, run_python

LIMITS = Limits()
_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)


def paper_program(item: Item, response: str) -> str:
    return response.replace("<ANS>", "").replace("</ANS>", "") + "\n" + item.fields["test"]


def completion(response: str) -> str:
    """The code of an answer: its ``<ANS>`` block, inside it (or else) the first fenced block, else all of it."""
    content = ans_content(response)
    code = content if content is not None else response
    fenced = _FENCE.search(code)
    return fenced.group(1) if fenced else code


def strict_program(item: Item, response: str) -> str:
    f = item.fields
    return f"{f['prompt']}{completion(response)}\n\n{f['test']}\n\ncheck({f['entry_point']})\n"


def _run(program: str, how: str) -> Score:
    result = run_python(program, LIMITS)
    details = {"status": result.status, "duration_s": round(result.duration_s, 3),
               "protections": list(result.protections)}
    if result.status == "sandbox_error":
        return invalid(result.reason, **details)
    return verdict(result.passed, None, f"{how}: {result.reason}", **details)


def paper(item: Item, response: str) -> Score:
    text, early = precheck(response)
    if early:
        return early
    return _run(paper_program(item, text), "answer + test code (check not called)")


def strict(item: Item, response: str) -> Score:
    text, early = precheck(response)
    if early:
        return early
    if not completion(text).strip():
        return invalid("no code in the answer")
    return _run(strict_program(item, text), "pass@1")
