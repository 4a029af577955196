"""Adding a backend is its module plus one line in ``bench.backends.KINDS``: the spec loader, the runner and
``bench models`` reach a new kind through the registry alone (here this test module is the new kind's module)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from bench import backends, models as model_store
from bench.backends._common import verdict
from bench.backends.stream import timed_generate
from bench.catalog import models as catalog_models
from bench.errors import CatalogError, SpecError
from bench.records import Accounting
from bench.runner import run
from bench.spec import parse_spec

from runner_support import answer_rows

KIND = "echo"
TAG = "echo:1b-q4_0"
REPLY = ["<ANS>", "A", "</ANS>"]

SPEC = f"""
[experiment]
name = "echo"
[backend]
kind = "{KIND}"
warmup = false
[models]
tags = ["{TAG}"]
[datasets.commonsenseqa]
source = "fixtures"
selection = "all"
limit = 2
[meter]
driver = "sim"
options = {{ rate_hz = 50, seed = 1 }}
[idle]
fixed_w = 2.85
"""


class EchoBackend:
    """A backend that answers every prompt with REPLY: it only yields chunks, the shared timed generate does the
    rest."""

    name = KIND

    def __init__(self, options: dict) -> None:
        self.options = options

    def describe(self) -> dict:
        return {"backend": KIND}

    def prepare(self, model) -> dict:  # noqa: ANN001
        return {"backend": KIND, "digest": model.digest}

    def generate(self, model, prompt: str, options: dict, timeout_s: float):  # noqa: ANN001
        def chunks(deadline_ns: int):
            yield from REPLY
            yield Accounting(prompt_eval_count=len(prompt.split()), eval_count=len(REPLY), done_reason="stop")

        return timed_generate(model.tag, timeout_s, time.monotonic_ns() + int(timeout_s * 1e9), chunks)

    def close(self) -> None:
        pass


# -- the kind's module interface (what KINDS points at) --------------------------------------------------------

BACKEND = EchoBackend


def from_spec(spec) -> EchoBackend:  # noqa: ANN001
    return EchoBackend(dict(spec.options))


def check(entries, host, allow_digest_override=False):  # noqa: ANN001
    return [verdict(e, e.digest, "echo", allow_digest_override) for e in entries]


def pull(entries, host, progress=None, allow_digest_override=False):  # noqa: ANN001
    return check(entries, host, allow_digest_override)


@pytest.fixture
def echo_kind(monkeypatch):
    """One line in KINDS, and one catalog entry (data) for a model of the new kind."""
    monkeypatch.setitem(backends.KINDS, KIND, __name__)
    base = catalog_models()["qwen2.5:0.5b-instruct-q4_0"]
    entry = dataclasses.replace(base, tag=TAG, backend=KIND, digest="e" * 64)
    monkeypatch.setattr("bench.catalog.models", lambda: {**catalog_models(), TAG: entry})
    return entry


def test_a_new_kind_runs_through_the_registry_alone(echo_kind, tmp_path):
    spec = parse_spec(SPEC, "echo.toml")
    assert spec.backend.kind == KIND and isinstance(backends.backend_for(spec), EchoBackend)
    [r] = model_store.check(None, [TAG])
    assert (r.status, r.where) == ("ok", "echo")
    outcome = run(spec, tmp_path / "out", progress=False)
    assert outcome.counts == {"ok": 2}
    rows = answer_rows(tmp_path / "out" / "results.db")
    assert {r["response"] for r in rows} == {"<ANS>A</ANS>"} and {r["eval_count"] for r in rows} == {3}
    assert all(r["t_send_ns"] < r["t_first_token_ns"] <= r["t_last_token_ns"] for r in rows)


def test_an_unknown_kind_is_one_line():
    with pytest.raises(SpecError, match=r"backend\.kind: expected one of ollama, llamacpp, got 'vllm'"):
        parse_spec(SPEC.replace(f'kind = "{KIND}"', 'kind = "vllm"'), "t.toml")
    with pytest.raises(CatalogError, match="unknown backend 'vllm'"):
        backends.get_backend("vllm")
