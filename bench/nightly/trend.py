"""The trend plot: each metric's change from the baseline night by night, inside its tolerance band.

Each point is the change the night was judged with (undisturbed answers matched with its baseline's), in percent
(accuracy: in points), so the plot shows exactly what raised or did not raise an alarm, and panels share a scale
a reader can judge; the y range is at least twice the tolerance, so a 0.2% wobble does not look like a jump.
Drifted nights are red, failed nights (exit 2) are marked on every panel but have no point (they are not valid
measurements: a busy machine's, say), each baseline night is a dashed line at 0, and the x axis counts whole
nights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.nightly import history
from bench.nightly.drift import METRICS, Metric


@dataclass(frozen=True)
class Panel:
    metric: Metric
    nights: tuple[int, ...]
    change_pct: tuple[float, ...]   # percent (relative metrics) or points (accuracy) vs the night's baseline
    drifted: tuple[bool, ...]
    tolerance_pct: float


@dataclass(frozen=True)
class Trend:
    panels: tuple[Panel, ...]
    failed_nights: tuple[int, ...]
    baseline_nights: tuple[int, ...]


def trend_data(db) -> Trend | None:
    """What the plot shows, from the history DB (None before any night was judged against a baseline)."""
    judged = history.judged(db)
    if not judged:
        return None
    baselines = tuple(sorted({j.baseline_night_id for j in judged}))
    panels = []
    for m in METRICS:
        rows = [j for j in judged if j.metric == m.name]
        if not rows:
            continue
        points = sorted([(j.night_id, 100.0 * j.change, j.drifted) for j in rows]
                        + [(b, 0.0, False) for b in baselines])
        nights, changes, drifted = zip(*points)
        panels.append(Panel(m, nights, changes, drifted, 100.0 * rows[-1].tolerance))
    failed = tuple(n.id for n in history.nights(db) if n.exit_code == 2)
    return Trend(tuple(panels), failed, baselines)


def figure(trend: Trend):
    """The matplotlib figure of ``trend`` (the caller saves and closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(trend.panels), 1, figsize=(8, 1.7 * len(trend.panels) + 0.6), sharex=True,
                             squeeze=False)
    for ax, panel in zip(axes[:, 0], trend.panels):
        tol = panel.tolerance_pct
        ax.axhspan(-tol, tol, color="tab:green", alpha=0.12, linewidth=0)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.plot(panel.nights, panel.change_pct, color="tab:blue", marker="o", markersize=4, linewidth=1)
        hot = [(n, c) for n, c, d in zip(panel.nights, panel.change_pct, panel.drifted) if d]
        if hot:
            ax.plot(*zip(*hot), linestyle="none", marker="o", markersize=8, color="tab:red", label="drift")
        for night in trend.failed_nights:
            ax.axvline(night, color="tab:red", linestyle=":", linewidth=1)
        for night in trend.baseline_nights:
            ax.axvline(night, color="black", linestyle="--", linewidth=1)
        finite = [abs(c) for c in panel.change_pct if c == c]
        limit = max(2 * tol, 1.15 * max(finite, default=0.0))
        ax.set_ylim(-limit, limit)
        unit = "points" if panel.metric.kind == "absolute" else "%"
        ax.set_ylabel(f"{panel.metric.name}\n({unit})", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("night (dashed: baseline; dotted red: failed night, exit 2; red dot: drift; "
                           "band: tolerance)", fontsize=7)
    fig.suptitle("Change from the baseline, night by night", fontsize=9)
    fig.tight_layout()
    return fig


def write(db, out: Path) -> Path | None:
    """Redraw the plot from the history DB (nothing before a night has metrics)."""
    trend = trend_data(db)
    if trend is None:
        return None
    fig = figure(trend)  # selects the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    try:
        fig.savefig(out, dpi=90)
    finally:
        plt.close(fig)
    return out
