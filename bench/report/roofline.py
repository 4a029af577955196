"""Decode rate against a memory-bandwidth roofline.

Generating one token reads every weight once, so ``max tokens/s = bandwidth / model bytes`` bounds decode speed on a
memory-bound device. Bandwidth is given in GB/s (1 GB = 1e9 bytes); model bytes are the run's ``size_bytes``.
"""

from __future__ import annotations

import logging
import math

import pandas as pd

log = logging.getLogger(__name__)


def roofline(summary: pd.DataFrame, bandwidth_gb_s: float) -> pd.DataFrame:
    """Per model: measured tokens/s ("all"), model bytes (from the run's identity), the bound, the rate as % of it."""
    rows = []
    for _, r in summary.iterrows():
        size = float(r.get("size_bytes", math.nan))
        limit = bandwidth_gb_s * 1e9 / size if size > 0 else math.nan
        tps = float(r.get("tokens_per_s", math.nan))
        rows.append({"model": r["model"], "base": r["base"], "quant": r["quant"], "model_bytes": size,
                     "tokens_per_s": tps, "max_tokens_per_s": limit,
                     "pct_of_limit": 100 * tps / limit if math.isfinite(limit) and limit > 0 else math.nan})
        if not size > 0:
            log.info("roofline: no model size known for %s", r["model"])
    return pd.DataFrame(rows, columns=["model", "base", "quant", "model_bytes", "tokens_per_s", "max_tokens_per_s",
                                       "pct_of_limit"])
