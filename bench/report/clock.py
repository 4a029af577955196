"""The report's word on a meter read on another machine: how many answers' windows were converted from that
machine's clock, how far the conversion may be off, and which exceeded the spec's tolerance (flagged per answer in
the frame's ``clock_flag``; the clock bound is also part of each window's energy bound)."""

from __future__ import annotations

import pandas as pd


def notes(frame: pd.DataFrame) -> list[str]:
    """One note when any answer came from a remote meter; none for a meter on the measured machine."""
    if "clock_bound_ms" not in frame or frame["clock_bound_ms"].isna().all():
        return []
    bound = frame["clock_bound_ms"].dropna()
    flagged = int((frame["clock_flag"] == 1).sum())
    text = (f"The meter was read on another machine: {len(bound)} answers' windows were converted from its clock "
            f"(offset and drift estimated from timed round trips), with a conversion bound of {bound.median():.3f} ms "
            f"at the median and {bound.max():.3f} ms at most; the bound is part of each window's energy bound.")
    if flagged:
        text += (f" {flagged} answers exceeded the spec's clock tolerance and are flagged (clock_flag = 1 in the "
                 f"answers frame).")
    return [text]
