"""The report's figures, each written as PNG and SVG. matplotlib is imported lazily (Agg backend)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.catalog import QUANT_ORDER
from bench.report.traces import AnswerTrace
from bench.suite import PAPER_DATASETS

log = logging.getLogger(__name__)

DPI = 110


@dataclass(frozen=True)
class Figure:
    """One written figure: a short name, a caption, and its two files."""

    name: str
    caption: str
    png: Path
    svg: Path


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller files, much faster to write
    matplotlib.rcParams["svg.hashsalt"] = "bench-report"  # stable ids, reproducible SVG
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir: Path, name: str, caption: str) -> Figure:
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.savefig(png, dpi=DPI)
    fig.savefig(svg, metadata={"Date": None})
    _plt().close(fig)
    log.debug("wrote %s", png)
    return Figure(name, caption, png, svg)


def _quant_key(q: str) -> int:
    return QUANT_ORDER.index(q) if q in QUANT_ORDER else len(QUANT_ORDER)


def pareto_plot(cells_: pd.DataFrame, summary: pd.DataFrame, fronts_: dict[str, list[str]], out_dir: Path) -> Figure:
    """Accuracy vs energy per answer, one panel per dataset plus ``all`` (``summary``: the cells'
    `model_summary`); front members ringed and joined."""
    plt = _plt()
    present = set(cells_["dataset"])
    panels = [d for d in PAPER_DATASETS if d in present] + sorted(present - set(PAPER_DATASETS))
    panels.append("all")
    ncol = 3
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
    bases = sorted(set(cells_["base"]))
    colours = {b: plt.cm.tab10(i % 10) for i, b in enumerate(bases)}
    for ax, ds in zip(axes.flat, panels):
        data = summary if ds == "all" else cells_[cells_["dataset"] == ds]
        for b in bases:
            d = data[data["base"] == b]
            ax.scatter(d["energy_j"], d["accuracy"], s=18, color=colours[b], label=b)
        if not (np.isfinite(data["energy_j"].to_numpy(float)) & np.isfinite(data["accuracy"].to_numpy(float))).any():
            ax.text(0.5, 0.5, "no scored answers with energy", ha="center", va="center", transform=ax.transAxes,
                    color="#777777")
        on = data[data["model"].isin(fronts_.get(ds, []))].sort_values("energy_j")
        ax.plot(on["energy_j"], on["accuracy"], "-", color="black", lw=0.8)
        ax.scatter(on["energy_j"], on["accuracy"], s=70, facecolors="none", edgecolors="black", lw=1.0)
        ax.set_title("all datasets (means)" if ds == "all" else ds, fontsize=10)
        ax.set_xlabel("energy per answer (J)")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle("Accuracy vs energy per answer; ringed = Pareto front")
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.09, top=0.90, wspace=0.28, hspace=0.45)
    return _save(fig, out_dir, "pareto", "Accuracy vs energy per answer per dataset and over all datasets; ringed "
                 "points joined by the line are the Pareto front (no other model both more accurate and cheaper).")


def _by_quant_lines(ax, summary: pd.DataFrame, metric: str, ylabel: str) -> None:
    quants = sorted(set(summary["quant"]), key=_quant_key)
    for base, block in summary.groupby("base"):
        block = block.set_index("quant").reindex(quants)
        x = np.arange(len(quants))
        y = block[metric].to_numpy(dtype=float)
        err = block.get(f"{metric}_half", pd.Series(np.nan, index=block.index)).to_numpy(dtype=float)
        ax.errorbar(x, y, yerr=np.where(np.isfinite(err), err, 0), marker="o", ms=4, capsize=2, label=base)
    ax.set_xticks(np.arange(len(quants)), quants, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def jpt_plot(summary: pd.DataFrame, out_dir: Path) -> Figure:
    """The paper's J/token ("all" means of the `model_summary`) by quantization level, one line per base model."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    _by_quant_lines(ax, summary, "j_per_token", "J / generated token")
    ax.set_title("Energy per token by quantization (mean over datasets, 95% CI)")
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.2, top=0.92)
    return _save(fig, out_dir, "jpt_by_quant", "Energy per generated token (the paper's J/token: whole-answer energy "
                 "/ eval_count, mean over datasets) by quantization level, per base model; bars are 95% intervals.")


def latency_plot(table10_: pd.DataFrame, out_dir: Path) -> Figure:
    """Table 10 as bars with 95% t-intervals."""
    plt = _plt()
    t = table10_[table10_["stat"] == "mean"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    half = t["half"].to_numpy(dtype=float)
    ax.bar(t["col"], t["value"], yerr=np.where(np.isfinite(half), half, 0), capsize=3, color="#4c72b0")
    for x, (v, h, n) in enumerate(zip(t["value"], half, t["n"])):
        ax.annotate(f"{v:.1f}s\nn={n}", (x, v + (h if np.isfinite(h) else 0)), ha="center", va="bottom", fontsize=7,
                    xytext=(0, 3), textcoords="offset points")
    ax.tick_params(axis="x", labelrotation=20)
    top = np.nanmax(t["value"].to_numpy(dtype=float) + np.where(np.isfinite(half), half, 0)) if len(t) else 1.0
    ax.set_ylim(0, top * 1.25 if np.isfinite(top) and top > 0 else 1.0)
    ax.set_ylabel("mean latency (s)")
    ax.set_title("Latency by dataset, pooled over all answers (Table 10)")
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.2, top=0.9)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out_dir, "latency_by_dataset", "Mean latency (backend total duration) per dataset, pooled over "
                 "every answer of every model (the paper's Table 10), with 95% t-intervals.")


def phase_plot(summary: pd.DataFrame, out_dir: Path) -> Figure | None:
    """Prefill J per prompt token and decode J per generated token by quantization, per base model (from the
    `model_summary`)."""
    metrics = ["j_per_prompt_token", "j_per_gen_token_decode"]
    if not summary[metrics].notna().any().any():
        log.info("no per-phase energy in this run; phase plot skipped")
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _by_quant_lines(axes[0], summary, "j_per_prompt_token", "J / prompt token (prefill)")
    axes[0].set_title("Prefill: J per prompt token")
    _by_quant_lines(axes[1], summary, "j_per_gen_token_decode", "J / generated token (decode)")
    axes[1].set_title("Decode: J per generated token")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.2, top=0.92, wspace=0.25)
    return _save(fig, out_dir, "phase_costs", "The two per-token costs by quantization level per base model: prefill "
                 "energy / prompt tokens and decode energy / generated tokens (means over datasets, 95% CI).")


def trace_plot(trace: AnswerTrace, out_dir: Path, name: str = "power_trace") -> Figure:
    """One answer's power samples with the answer window shaded and the first token marked."""
    plt = _plt()
    t = np.array([s[0] for s in trace.samples], dtype=float)
    p = np.array([s[1] for s in trace.samples], dtype=float)
    x = (t - trace.t_send_ns) / 1e9
    end = (trace.t_last_ns - trace.t_send_ns) / 1e9
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.step(x, p, where="post", color="#333333", lw=1.0, label="power")
    if trace.t_first_ns is not None:
        first = (trace.t_first_ns - trace.t_send_ns) / 1e9
        ax.axvspan(0, first, color="#dd8452", alpha=0.3, label="load + prefill")
        ax.axvspan(first, end, color="#4c72b0", alpha=0.25, label="decode")
    else:
        ax.axvspan(0, end, color="#4c72b0", alpha=0.25, label="answer window")
    if math.isfinite(trace.idle_w):
        ax.axhline(trace.idle_w, color="green", ls="--", lw=0.8, label=f"idle {trace.idle_w:.2f} W")
    ax.set_xlabel("seconds since request sent")
    ax.set_ylabel("power (W)")
    ax.set_title(trace.label, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9)
    return _save(fig, out_dir, name, f"Power trace of one answer ({trace.label}); the shaded span is the energy "
                 "window integrated for the answer, split at the first token.")
