"""Typed records that flow between the stages.

Every timestamp named ``*_ns`` is an integer on the host's CLOCK_MONOTONIC (``time.monotonic_ns()``), the clock the
meter daemon stamps its samples with; ``*_utc`` fields are ISO-8601 strings for humans. Units are in the names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping


def canonical_json(value: Any) -> str:
    """One byte-exact JSON form (sorted keys, no spaces, UTF-8 kept) so hashes are stable across runs and hosts."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Item:
    """One benchmark question as its dataset's upstream record, plus the gold reference the scorers use."""

    dataset: str
    item_id: str
    fields: Mapping[str, Any]
    reference: Any

    @property
    def sha256(self) -> str:
        """Hash of the upstream record's canonical content: what the paper's selection pins."""
        return sha256_text(canonical_json(dict(self.fields)))


@dataclass(frozen=True)
class Accounting:
    """A backend's own account of one answer, as its final (done) chunk reports it (None where it gave none).

    ``num_ctx`` is the context the answer ran with (a longer prompt was cut to it: ``prompt_eval_count >= num_ctx``);
    ``prompt_cached_tokens`` is how many of the ``prompt_eval_count`` tokens the server reused from its prompt cache
    instead of evaluating them.
    """

    prompt_eval_count: int | None = None
    prompt_eval_duration_ns: int | None = None
    eval_count: int | None = None
    eval_duration_ns: int | None = None
    load_duration_ns: int | None = None
    total_duration_ns: int | None = None
    done_reason: str | None = None
    prompt_cached_tokens: int | None = None
    num_ctx: int | None = None


@dataclass(frozen=True, kw_only=True)
class Completion(Accounting):
    """One model answer: the backend's ``Accounting`` (Ollama-shaped) and the runner's own host-clock stamps.

    ``t_send_ns`` is taken right before the request goes out, ``t_first_token_ns`` when the first token arrives
    (None if no token came), ``t_last_token_ns`` right after the last byte. ``complete`` is False when the stream
    ended without a final (done) chunk, so without an account: Ollama ends a looping answer that way, and the text
    is kept as the paper's non-streaming call kept it.
    """

    text: str
    t_send_ns: int
    t_first_token_ns: int | None
    t_last_token_ns: int
    complete: bool = True

    @property
    def prompt_truncated(self) -> bool | None:
        """Whether the server cut the prompt to its context (Ollama does so silently); None when unknown."""
        if self.prompt_eval_count is None or self.num_ctx is None:
            return None
        return self.prompt_eval_count >= self.num_ctx


@dataclass(frozen=True)
class EnergyReading:
    """The meter's answer for one monotonic-time window.

    ``energy_j`` is the raw integral of power over the covered part of the window; ``coverage`` is the fraction of
    the window covered by samples (1.0 = no gaps; 0 when no sample lies inside it); ``n_samples`` counts samples
    inside the window. ``edge_j`` / ``edge_w``: the worst-case sampling error at the two edges and the power change
    there, from which ``bench.energy`` builds the window's error bound. For a meter on another machine,
    ``clock_offset_ns`` is the offset (meter host - this host) used to convert the window and ``clock_bound_ns``
    the bound on its error; both None for one clock. ``reason``: why nothing could be measured, when the caller
    knows better than the numbers (e.g. "meter unreachable"); stored with the window.
    """

    start_ns: int
    end_ns: int
    energy_j: float
    mean_w: float
    n_samples: int
    coverage: float
    edge_j: float = 0.0
    edge_w: float = 0.0
    clock_offset_ns: int | None = None
    clock_bound_ns: int | None = None
    reason: str = ""

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def covered_s(self) -> float:
        return self.duration_s * self.coverage


@dataclass(frozen=True)
class IdleBaseline:
    """Idle power measured before a run (the paper: 104 min, mean 2.85 W) or fixed by the spec."""

    mean_w: float
    sd_w: float
    n_samples: int
    start_ns: int
    end_ns: int
    source: str  # "measured" or "fixed"


@dataclass(frozen=True)
class Score:
    """A scorer's verdict on one answer: ``correct`` is False for invalid answers, with the reason."""

    correct: bool
    extracted: str | None
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)

