"""The trend plot: each metric's change from the baseline night by night, inside its tolerance band.

Change is in percent of the baseline's value (accuracy: in points), so panels share a scale a reader can judge;
the y range is at least twice the tolerance, so a 0.2% wobble does not look like a jump. Drifted nights are red,
failed nights (exit 2) are marked on every panel but their numbers are not drawn (they are not valid
measurements: a busy machine's, say), the baseline night is a dashed line, and the x axis counts whole nights.
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
    change_pct: tuple[float, ...]   # percent (relative metrics) or points (accuracy) vs the reference night
    drifted: tuple[bool, ...]
    tolerance_pct: float


@dataclass(frozen=True)
class Trend:
    panels: tuple[Panel, ...]
    failed_nights: tuple[int, ...]
    reference_night: int            # the baseline, or the first night with metrics when none is chosen
    is_baseline: bool


def trend_data(db) -> Trend | None:
    """What the plot shows, from the history DB (None before any night has metrics)."""
    values = history.metric_values(db)
    if not values:
        return None
    judged = history.judged(db)
    failed = tuple(n.id for n in history.nights(db) if n.exit_code == 2)
    base = history.baseline_night(db)
    reference = base if base is not None else min(n for n, _ in values)
    panels = []
    for m in METRICS:
        ref = values.get((reference, m.name))
        nights = sorted(n for n, metric in values if metric == m.name and n not in failed)  # failed: marked only
        if ref is None or not nights:
            continue
        tolerances = [judged[(n, m.name)][1] for n in nights if (n, m.name) in judged]
        panels.append(Panel(m, tuple(nights), tuple(_change_pct(m, values[(n, m.name)], ref) for n in nights),
                            tuple(judged.get((n, m.name), (False, 0.0))[0] for n in nights),
                            100.0 * (tolerances[-1] if tolerances else m.tolerance)))
    return Trend(tuple(panels), failed, reference, base is not None)


def _change_pct(m: Metric, value: float, ref: float) -> float:
    """Percent of the reference (relative metrics) or points (accuracy, a difference of fractions)."""
    if m.kind == "absolute":
        return 100.0 * (value - ref)
    return 100.0 * (value / ref - 1.0) if ref else float("nan")


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
        ax.axvline(trend.reference_night, color="black", linestyle="--", linewidth=1)
        finite = [abs(c) for c in panel.change_pct if c == c]
        limit = max(2 * tol, 1.15 * max(finite, default=0.0))
        ax.set_ylim(-limit, limit)
        unit = "points" if panel.metric.kind == "absolute" else "%"
        ax.set_ylabel(f"{panel.metric.name}\n({unit})", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    what = "baseline" if trend.is_baseline else "first night (no baseline chosen)"
    axes[-1, 0].set_xlabel(f"night (dashed: {what}, night {trend.reference_night}; dotted red: failed night, exit 2; "
                           f"red dot: drift; band: tolerance)", fontsize=7)
    fig.suptitle("Change from the baseline, night by night", fontsize=9)
    fig.tight_layout()
    return fig


def write(db, out: Path) -> Path | None:
    """Redraw the plot from the history DB (nothing before a night has metrics)."""
    trend = trend_data(db)
    if trend is None or not trend.panels:
        return None
    fig = figure(trend)  # selects the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    try:
        fig.savefig(out, dpi=90)
    finally:
        plt.close(fig)
    return out
