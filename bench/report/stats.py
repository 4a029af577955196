"""Confidence intervals for the two kinds of mean the paper uses.

* a plain or pooled mean over answers: Student-t 95% interval, ``mean ± t(0.975, n-1) · sd / sqrt(n)``;
* a mean of means (over datasets, models, groups): normal 95% interval with the standard error propagated from the
  parts' standard errors, ``se = sqrt(sum se_i^2) / k``, the parts being independent sets of answers.

Both are computed from (mean, sd, n) triples, so the same code serves per-answer frames and supplied aggregates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

Z = 1.959963984540054
CI_METHOD = (
    "95% intervals: Student t on means over answers (pooled means included); normal with standard errors "
    "propagated from the parts for means of means (over datasets, models or groups)."
)


# Two-sided 95% Student t quantiles for small df (standard table values); larger df use the Cornish-Fisher
# expansion below, whose error is under 4e-6 relative from df = 10 on (checked against scipy in the tests).
_T_SMALL = {1: 12.706204736, 2: 4.30265273, 3: 3.182446305, 4: 2.776445105, 5: 2.570581836, 6: 2.446911851,
            7: 2.364624252, 8: 2.306004135, 9: 2.262157163}


@lru_cache(maxsize=4096)
def t_quantile(df: int) -> float:
    """Two-sided 95% Student t quantile without scipy (its import alone costs seconds on a Pi)."""
    if df < 1:
        return math.nan
    if df in _T_SMALL:
        return _T_SMALL[df]
    z, v = Z, float(df)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
            + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4))


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95% interval half-width (NaN when it cannot be computed) and the answers behind it."""

    mean: float
    half: float
    n: int
    sd: float = math.nan

    @property
    def se(self) -> float:
        return self.half / Z if math.isfinite(self.half) else math.nan


def t_half(sd: float, n: float) -> float:
    """t-interval half-width of a mean of ``n`` answers with sample sd ``sd``."""
    if not (n and n >= 2 and math.isfinite(sd)):
        return math.nan
    return t_quantile(int(n) - 1) * sd / math.sqrt(n)


def pooled(means: np.ndarray, sds: np.ndarray, ns: np.ndarray) -> Estimate:
    """Mean, sd and t-interval of the union of groups given each group's mean, sample sd and count (exact)."""
    keep = np.isfinite(means) & (ns > 0)
    m, s, n = means[keep], sds[keep], ns[keep]
    total = float(n.sum())
    if total == 0:
        return Estimate(math.nan, math.nan, 0)
    mean = float((m * n).sum() / total)
    if total < 2 or not np.all(np.isfinite(s[n >= 2])):
        return Estimate(mean, math.nan, int(total))
    within = float(np.nansum(np.where(n >= 2, (n - 1) * s**2, 0.0)))
    between = float((n * (m - mean) ** 2).sum())
    sd = math.sqrt((within + between) / (total - 1))
    return Estimate(mean, t_half(sd, total), int(total), sd)


def mean_of(parts: list[Estimate]) -> Estimate:
    """Unweighted mean of estimates; half-width from propagated standard errors (NaN if any part lacks one)."""
    parts = [p for p in parts if math.isfinite(p.mean)]
    if not parts:
        return Estimate(math.nan, math.nan, 0)
    k = len(parts)
    mean = sum(p.mean for p in parts) / k
    ses = [p.se for p in parts]
    half = Z * math.sqrt(sum(se * se for se in ses)) / k if all(math.isfinite(se) for se in ses) else math.nan
    return Estimate(mean, half, sum(p.n for p in parts))
