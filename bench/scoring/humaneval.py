"""HumanEval scoring, in the sandbox (`sandbox.py`, `execution.py`).

``paper``: as the authors ran it with HF ``code_eval``: the answer with ``<ANS>``/``</ANS>`` removed, a newline and
the item's ``test`` code, executed as one program under code_eval's reliability guard, installed packages
importable; ``check()`` is never called, so "passed" means "the answer and the test definitions run without an
exception". ``strict``: real pass@1: the prompt + the completion are defined in the sandbox and the dataset's
``check(entry_point)`` runs in a separate trusted judge process that calls the candidate over a pipe.
"""

from __future__ import annotations

import re

from bench.records import Item, Score
from bench.scoring.common import invalid, precheck, verdict
from bench.scoring.execution import Outcome, run_check, run_program
from bench.scoring.sandbox import Limits

LIMITS = Limits()
_BLOCK = re.compile(r"<ANS>(.*?)(?:</ANS>|$)", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)
_TAG = re.compile(r"</?ANS>", re.IGNORECASE)


def paper_program(item: Item, response: str) -> str:
    return response.replace("<ANS>", "").replace("</ANS>", "") + "\n" + item.fields["test"]


def completion(response: str) -> str:
    """The code of an answer: its first ``<ANS>`` block (else all of it), the first fenced block inside that, with
    any tag still left removed (a stray ``</ANS>`` with no opening tag, or one inside the fence), indentation kept."""
    block = _BLOCK.search(response)
    code = block.group(1) if block else response
    fenced = _FENCE.search(code)
    code = fenced.group(1) if fenced else code
    return _TAG.sub("", code).strip("\n")


def strict_program(item: Item, response: str) -> str:
    """What runs in the sandbox: the prompt (signature, docstring, helpers) and the completion, no test code."""
    return f"{item.fields['prompt']}{completion(response)}\n"


def _score(outcome: Outcome, how: str) -> Score:
    details = {"status": outcome.status, "duration_s": round(outcome.duration_s, 3), "sandbox": list(outcome.layers),
               **({"evidence": outcome.evidence} if outcome.evidence else {}),
               **({"sandbox_missing": list(outcome.missing)} if outcome.missing else {})}
    if outcome.status == "error":
        return invalid(outcome.reason, **details)
    return verdict(outcome.passed, None, f"{how}: {outcome.reason}", **details)


def paper(item: Item, response: str) -> Score:
    text, early = precheck(response)
    if early:
        return early
    return _score(run_program(paper_program(item, text), LIMITS, guard=True), "answer + test code (check not called)")


def strict(item: Item, response: str) -> Score:
    text, early = precheck(response)
    if early:
        return early
    if not completion(text).strip():
        return invalid("no code in the answer")
    f = item.fields
    return _score(run_check(strict_program(item, text), f["prompt"], f["test"], f["entry_point"], LIMITS), "pass@1")
