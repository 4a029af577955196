"""Which measurement protocol a run followed, and what it did to the numbers.

The paper's scripts sent no warm-up and left Ollama's keep-alive at its default, so the first answer of each model
on each dataset was the request that loaded the model: its latency and energy include the load. ``paper`` repeats
that; ``paper-clean`` warms each model up (outside every answer window) after a cooldown. This section says which one
ran and shows, per model, how much the first answer of each (model, dataset) block differs from the rest, next to
what the server reported as load time. It also states what Ollama does silently: prompts cut to the context,
answers ended by the repeat guard (kept, no timings), and prompt tokens served from the prompt cache (which is why
J per prompt token divides by evaluated tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.report.metrics import answered, evaluated_prompt_tokens

LOAD_COLUMNS = ["model", "blocks", "first_s", "rest_s", "first_over_rest", "first_load_s", "rest_load_s",
                "first_energy_j", "rest_energy_j"]


@dataclass(frozen=True)
class ProtocolSection:
    """What the renderers show: the protocol in words, the per-model load effect, and notes on Ollama's quiet
    behaviours."""

    protocol: str
    load_effect: pd.DataFrame
    notes: list[str]


def describe(spec) -> str:  # noqa: ANN001 - a bench.spec.Spec (the report does not import the spec stage)
    """The protocol of a spec in one line."""
    b, c = spec.backend, spec.cooldown
    warm = "a warm-up with the answers' options before each model" if b.warmup else "no warm-up"
    keep = f"keep_alive {b.keep_alive!r}" if b.keep_alive is not None else "the server's default keep-alive"
    cool = f"cooldown to {c.max_temp_c:g} °C (up to {c.max_wait_s:g} s)" if c.max_wait_s > 0 else "no cooldown"
    ctx = spec.options.get("num_ctx")
    context = f"num_ctx {ctx}" if ctx is not None else "the server's default context"
    effect = ("model loads happen in the warm-ups, outside every answer window" if b.warmup else
              "the first answer of each model's block loads the model inside its energy window (unless it is still "
              "loaded), as in the paper")
    return f"{warm}, {keep}, {cool}, {context}: {effect}"


def load_effect(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model: the first answer of each (model, dataset) block against the block's other answers."""
    need = {"model", "dataset", "t_send_ns", "host_total_s"}
    if frame.empty or not need <= set(frame.columns):
        return pd.DataFrame(columns=LOAD_COLUMNS)
    rows = frame.loc[answered(frame) & frame["t_send_ns"].notna()].sort_values("t_send_ns")
    if rows.empty:
        return pd.DataFrame(columns=LOAD_COLUMNS)
    first = ~rows.duplicated(["model", "dataset"], keep="first")
    out = []
    for model, group in rows.groupby("model", sort=True):
        f, r = group[first.loc[group.index]], group[~first.loc[group.index]]

        def mean(part: pd.DataFrame, col: str) -> float:
            return float(pd.to_numeric(part[col], errors="coerce").mean()) if col in part and len(part) else np.nan

        first_s, rest_s = mean(f, "host_total_s"), mean(r, "host_total_s")
        out.append({"model": model, "blocks": len(f), "first_s": first_s, "rest_s": rest_s,
                    "first_over_rest": first_s / rest_s if rest_s and np.isfinite(rest_s) else np.nan,
                    "first_load_s": mean(f, "load_s"), "rest_load_s": mean(r, "load_s"),
                    "first_energy_j": mean(f, "energy_j"), "rest_energy_j": mean(r, "energy_j")})
    return pd.DataFrame(out, columns=LOAD_COLUMNS)


def quiet_behaviours(frame: pd.DataFrame) -> list[str]:
    """One line each for what Ollama does without saying so, as seen in this run."""
    notes = []
    rows = frame.loc[answered(frame)] if not frame.empty else frame

    def col(name: str) -> pd.Series:
        return pd.to_numeric(rows[name], errors="coerce") if name in rows else pd.Series(dtype="float64")

    truncated = col("prompt_truncated")
    if truncated.notna().any():
        n = int((truncated == 1).sum())
        ctx = sorted({int(x) for x in col("num_ctx").dropna()})
        notes.append(f"{n} of {int(truncated.notna().sum())} answers had their prompt cut to the context "
                     f"(num_ctx {', '.join(map(str, ctx))}): Ollama drops the middle of a longer prompt silently; "
                     "those answers are flagged (prompt_truncated) in the answers table.")
    complete = col("complete")
    if (complete == 0).any():
        n = int((complete == 0).sum())
        notes.append(f"{n} answer{'s' if n != 1 else ''} ended without a final chunk (Ollama's repeat guard "
                     "stops a looping answer that way): their text is kept and scored, as the paper's call kept it, "
                     "but they have no token counts or backend durations.")
    cached, prompt = col("prompt_cached_tokens"), col("prompt_eval_count")
    known = cached.notna() & prompt.notna()
    if known.any():
        total, reused = float(prompt[known].sum()), float(cached[known].sum())
        evaluated = evaluated_prompt_tokens(prompt[known].to_numpy(), cached[known].to_numpy()).sum()
        notes.append(f"Ollama's prompt cache served {reused:.0f} of {total:.0f} prompt tokens ({reused / total:.0%}) "
                     f"in the {int(known.sum())} answers where it is known; prompt_eval_count counts them as "
                     f"evaluated, so J per prompt token here divides the prefill energy by the {evaluated:.0f} "
                     "evaluated tokens instead.")
    elif len(rows) and "prompt_eval_count" in rows:
        notes.append("The backend did not say which prompt tokens came from a prompt cache: J per prompt token "
                     "divides by prompt_eval_count, which may count cached tokens as evaluated.")
    return notes


def section(frame: pd.DataFrame, protocol: str | None) -> ProtocolSection | None:
    """The report section, or None when there is nothing to say (e.g. the authors' per-answer data)."""
    effect, notes = load_effect(frame), quiet_behaviours(frame)
    if protocol is None and effect.empty and not notes:
        return None
    return ProtocolSection(protocol or "not recorded", effect, notes)


def effect_rows(section_: ProtocolSection) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the load-effect table, formatted."""
    def f(x: float, digits: int = 2) -> str:
        return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"

    header = ["model", "blocks", "first answer s", "other answers s", "first / other", "load s (first)",
              "load s (other)", "J (first)", "J (other)"]
    body = [[r.model, str(r.blocks), f(r.first_s), f(r.rest_s), f(r.first_over_rest), f(r.first_load_s, 3),
             f(r.rest_load_s, 3), f(r.first_energy_j), f(r.rest_energy_j)] for r in section_.load_effect.itertuples()]
    return header, body


TITLE = "Protocol and what Ollama did quietly"
EXPLAIN = ("First answer = the first answer of each (model, dataset) block, against the block's other answers "
           "(host-stamped seconds, idle-subtracted joules, Ollama's load_duration).")


__all__ = ["EXPLAIN", "LOAD_COLUMNS", "ProtocolSection", "TITLE", "describe", "load_effect", "quiet_behaviours",
           "effect_rows", "section"]
