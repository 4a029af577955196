"""One answer's power trace, as the runner stores it: meter samples plus the answer's window stamps."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnswerTrace:
    """Samples ``(t_ns, power_w)`` on the host monotonic clock; the answer window is ``[t_send_ns, t_last_ns]``
    with the first token at ``t_first_ns`` (None if unknown). ``idle_w`` draws the idle baseline when known."""

    label: str
    samples: tuple[tuple[int, float], ...]
    t_send_ns: int
    t_last_ns: int
    t_first_ns: int | None = None
    idle_w: float = math.nan


def as_trace(value: Any) -> AnswerTrace | None:
    """Accept an ``AnswerTrace`` or a mapping with the same keys; anything unusable gives None (and a warning)."""
    if value is None:
        return None
    if isinstance(value, AnswerTrace):
        trace = value
    elif isinstance(value, Mapping):
        # bench.results.traces() names the stamps t_first_token_ns / t_last_token_ns and carries model/dataset.
        first = value.get("t_first_ns", value.get("t_first_token_ns"))
        label = value.get("label") or " · ".join(str(value[k]) for k in ("model", "dataset", "item_id") if k in value)
        try:
            trace = AnswerTrace(
                label=label or "answer",
                samples=tuple((int(t), float(p)) for t, p in value["samples"]),
                t_send_ns=int(value["t_send_ns"]),
                t_last_ns=int(value.get("t_last_ns", value.get("t_last_token_ns"))),
                t_first_ns=None if first is None else int(first),
                idle_w=float(value.get("idle_w") if value.get("idle_w") is not None else math.nan),
            )
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("power trace skipped: %s", exc)
            return None
    else:
        log.warning("power trace skipped: unsupported type %s", type(value).__name__)
        return None
    if len(trace.samples) < 2 or trace.t_last_ns <= trace.t_send_ns:
        log.warning("power trace %r skipped: fewer than 2 samples or an empty window", trace.label)
        return None
    return trace
