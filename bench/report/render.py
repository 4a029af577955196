"""Turn the computed report (``ReportData``) into one self-contained HTML page and a Markdown summary.

The HTML inlines every figure as base64 PNG and loads nothing from the network, so it opens offline and survives
being mailed around. Cells show ``mean ± 95% half-width (n)``; published values sit beside ours where known.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field

import pandas as pd

from bench.report import devices as devices_view
from bench.report import protocol as protocol_section
from bench.report.compare import TOLERANCE_NOTE, Claim
from bench.report.metrics import BOUND_TOL, COVERAGE_MIN
from bench.report.plots import Figure
from bench.report.stats import CI_METHOD

TITLES = {
    "t4": "Table 4 — energy per token by base model (J/token; mean and mean within-cell sd)",
    "t5": "Table 5 — energy per answer by precision group × base model (J)",
    "t9": "Table 9 — latency by precision group × base model (s, pooled over answers)",
    "t10": "Table 10 — latency by dataset (s, pooled over answers)",
}
DEFINITIONS = [
    "Energy per answer: mean idle-subtracted energy of the answer window (clipped at 0 as in the paper).",
    "J/token: per answer energy / generated tokens (eval_count), then averaged (mean of ratios).",
    "Latency: mean backend total duration; tokens/s: mean of eval_count / eval seconds.",
    "Accuracy: mean of correct over scored, recorded answers (timeouts and errors are counted, not scored).",
    "\"all\": unweighted mean over the five datasets. Table 5 and Table 4: mean over the group's (base's) models "
    "of each model's 5-dataset mean; Table 4's ± is the mean within-cell sd. Tables 9 and 10: pooled over answers.",
    f"Energy windows: an answer's energy enters the means only when the meter saw at least {COVERAGE_MIN:.0%} of "
    f"its window (idle is subtracted over the measured time); excluded and partially measured answers are counted "
    f"next to each affected figure.",
    "\"meter ±\": the error bound of an energy figure (sampling of the power change at each window edge + the "
    "meter's declared gain, offset and time-stamp uncertainty), averaged like the figure itself.",
    f"Per-phase: prefill = [send, first token], decode = [first token, last token]; a cell's phase value is "
    f"flagged when its error bound allows an error above {BOUND_TOL:.0%} of the true value (bound > "
    f"{BOUND_TOL:g} x (value - bound)).",
]


@dataclass(frozen=True)
class Section:
    """A block another module of the report rendered (its HTML and its Markdown), placed by ``ReportData``."""

    html: str
    markdown: str


@dataclass(frozen=True)
class ReportData:
    """Everything the renderers show, already computed. ``lead`` sections come first (the Findings), ``sections``
    after the paper's tables."""

    run_info: dict
    cells: pd.DataFrame
    tables: pd.DataFrame
    summary: pd.DataFrame
    fronts: dict
    phases: pd.DataFrame
    phase_note: str
    figures: list[Figure]
    comparison: pd.DataFrame | None = None
    claims: list[Claim] = field(default_factory=list)
    roofline: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    energy_marks: dict = field(default_factory=dict)  # (table, row, col, stat) -> bound and coverage text
    protocol: protocol_section.ProtocolSection | None = None
    devices: devices_view.DeviceView | None = None  # a merged fleet folder
    lead: list[Section] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


def fmt(value, half=math.nan, n=None, digits: int = 2) -> str:
    """``12.34 ± 0.56 (n=200)``; ``–`` for a missing value."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(value):
        return "–"
    text = f"{value:.{digits}f}"
    if half is not None and isinstance(half, float) and math.isfinite(half):
        text += f" ± {half:.{digits}f}"
    if n is not None and n == n:
        text += f" (n={int(n)})"
    return text


def _theirs(comparison: pd.DataFrame | None) -> dict:
    if comparison is None:
        return {}
    return {(r.table, r.row, r.col, r.stat): r.theirs for r in comparison.itertuples()}


def table_grid(tables: pd.DataFrame, name: str, comparison: pd.DataFrame | None,
               marks: dict | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one paper table with CI, n, the energy marks (bound, coverage) and the published value."""
    t = tables[tables["table"] == name]
    theirs = _theirs(comparison)
    rows = list(dict.fromkeys(t["row"]))
    cols = sorted({c for c in t["col"] if c != "avg"}) + (["avg"] if "avg" in set(t["col"]) else [])
    out = []
    for r in rows:
        line = [r]
        for c in cols:
            hit = t[(t["row"] == r) & (t["col"] == c)]
            if hit.empty:
                line.append("–")
                continue
            cell = []
            for _, h in hit.iterrows():
                label = "" if h["stat"] == "mean" else f"{h['stat']} "
                text = label + fmt(h["value"], h["half"], h["n"] if h["stat"] == "mean" else None)
                if mark := (marks or {}).get((name, r, c, h["stat"])):
                    text += " " + mark
                pub = theirs.get((name, r, c, h["stat"]))
                if pub is not None and pub == pub:
                    text += f" [paper {pub:.2f}]"
                cell.append(text)
            line.append("; ".join(cell))
        out.append(line)
    return [""] + cols, out


def _html_table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _verdict(holds) -> str:
    return {True: "holds", False: "does not hold"}.get(holds, "cannot be evaluated")


def deciding_words(deciding: dict) -> str:
    """The numbers that decided a claim as words (``llama3.2_1b fp16 17.60 -> q3_K_S 3.75 J/token; reduction
    78.7% (tolerance 10 pp)``)."""
    rest = dict(deciding)
    lead = []
    if {"from", "from_value", "to", "to_value"} <= rest.keys():
        lead.append(f"{rest.pop('base', '')} {rest.pop('from')} {fmt(rest.pop('from_value'))} -> {rest.pop('to')} "
                    f"{fmt(rest.pop('to_value'))} {rest.pop('unit', '')}".strip())
    if "reduction" in rest:
        tol = rest.pop("tolerance_pp", None)
        lead.append(f"reduction {float(rest.pop('reduction')):.1%}" + (f" (tolerance {tol:g} pp)" if tol else ""))

    def one(key: str, value) -> str:
        if isinstance(value, dict):
            return f"{key.replace('_', ' ')}: " + ", ".join(f"{k} {fmt(v)}" for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return f"{key.replace('_', ' ')}: {', '.join(map(str, value)) or 'none'}"
        return f"{key.replace('_', ' ')} {value}" if key != "reason" else str(value)
    return "; ".join(lead + [one(k, v) for k, v in rest.items()])


def claim_rows(claims: list[Claim]) -> list[list[str]]:
    return [[c.text, c.published, c.ours, _verdict(c.holds), deciding_words(c.deciding)] for c in claims]


COUNT_HEADER = ["table", "numbers", "within", "outside", "partial", "not run"]


def comparison_counts(comparison: pd.DataFrame) -> list[list[str]]:
    rows = []
    for table, block in comparison.groupby("table", sort=False):
        counts = block["status"].value_counts()
        rows.append([table, str(len(block)), str(counts.get("within", 0)), str(counts.get("outside", 0)),
                     str(counts.get("partial", 0)), str(counts.get("not run", 0))])
    return rows


def summary_rows(summary: pd.DataFrame, marks: dict | None = None) -> tuple[list[str], list[list[str]]]:
    metrics = ["accuracy", "energy_j", "j_per_token", "latency_s", "tokens_per_s"]
    header = ["model", "datasets", "answers"] + metrics
    marks = marks or {}

    def cell(r, m: str) -> str:
        text = fmt(r[m], r[f"{m}_half"], digits=3 if m == "accuracy" else 2)
        mark = marks.get(("cell", r["model"], "all", m))
        return f"{text} {mark}" if mark else text

    rows = [[r["model"], str(r["n_datasets"]), str(r["n_answers"])] + [cell(r, m) for m in metrics]
            for _, r in summary.iterrows()]
    return header, rows


def _bounded(value, bound, digits: int) -> str:
    """``0.0123 (bound ±0.0004)``: a per-token cost with its error bound (``bound unknown`` when there is none)."""
    text = fmt(value, digits=digits)
    if text == "–":
        return text
    return text + (f" (bound ±{bound:.{digits}f})" if bound == bound else " (bound unknown)")


def phase_verdict(r) -> str:
    """``ok``, or which phase values are flagged by their bound, and the windows left out for coverage."""
    flagged = [p for p in ("prefill", "decode") if r[f"{p}_flagged"]]
    text = f"bound allows > {BOUND_TOL:.0%}: " + ", ".join(flagged) if flagged else "ok"
    excluded = [f"{int(r[f'{p}_excluded_n'])} {p}" for p in ("prefill", "decode") if r[f"{p}_excluded_n"]]
    return text + (f"; excl. (coverage < {COVERAGE_MIN:g}): " + ", ".join(excluded) if excluded else "")


def phase_rows(phases: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = ["model", "dataset", "J/prompt token (prefill)", "J/output token (decode)", "share before 1st token",
              "paper J/token", "host - backend total (s)", "host - backend TTFT (s)", "confidence"]
    rows = []
    for _, r in phases.iterrows():
        rows.append([r["model"], r["dataset"], _bounded(r["j_per_prompt_token"], r["j_per_prompt_token_bound"], 4),
                     _bounded(r["j_per_gen_token_decode"], r["j_per_gen_token_decode_bound"], 4),
                     fmt(r["prefill_energy_share"], digits=3), fmt(r["j_per_token"], digits=3),
                     fmt(r["host_gap_s"], digits=3), fmt(r["ttft_gap_s"], digits=3), phase_verdict(r)])
    return header, rows


def roofline_rows(roof: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = ["model", "model bytes", "tokens/s", "max tokens/s", "% of limit"]
    rows = [[r["model"], fmt(r["model_bytes"], digits=0), fmt(r["tokens_per_s"]), fmt(r["max_tokens_per_s"]),
             fmt(r["pct_of_limit"], digits=1)] for _, r in roof.iterrows()]
    return header, rows


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.6em 0;font-size:0.85em}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f0f0f0}figure{margin:1em 0}img{max-width:100%}
figcaption{font-size:0.85em;color:#555}.note{background:#f7f7e8;padding:0.5em;border-left:3px solid #cc9}
details{margin:0.5em 0}"""


def render_html(d: ReportData) -> str:
    """The whole report as one HTML string (no external resources)."""
    info = d.run_info
    name = html.escape(str(info.get("name", "report")))
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{name} — edge LLM benchmark report"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>Edge LLM benchmark report: {name}</h1>",
             _html_table(["key", "value"], [[k, json.dumps(v, default=str) if isinstance(v, (dict, list)) else v]
                                           for k, v in info.items()])]
    parts += [s.html for s in d.lead]
    if d.notes:
        parts.append("".join(f"<p class='note'>{html.escape(n)}</p>" for n in d.notes))
    if d.claims:
        parts.append("<h2 id='claims'>Headline claims, decided pooled as the paper decides them</h2>")
        parts.append(_html_table(["claim", "published", "ours", "verdict", "deciding numbers"], claim_rows(d.claims)))
    parts.append("<h2>The paper's tables</h2>")
    for name in ("t4", "t5", "t9", "t10"):
        header, rows = table_grid(d.tables, name, d.comparison, d.energy_marks)
        parts.append(f"<h3>{html.escape(TITLES[name])}</h3>" + _html_table(header, rows))
    parts.append("<h2>Figures</h2>")
    for f in d.figures:
        data = base64.b64encode(f.png.read_bytes()).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(f.name)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(f.caption)}</figcaption></figure>")
    parts.append("<h2>Per-model results (mean over datasets, 95% CI)</h2>")
    parts.append(_html_table(*summary_rows(d.summary, d.energy_marks)))
    if d.devices is not None:
        parts.append(devices_view.html_section(d.devices, _html_table))
    parts.append("<h2>Pareto fronts (accuracy vs energy per answer)</h2>")
    parts.append(_html_table(["dataset", "models on the front"], [[k, ", ".join(v)] for k, v in d.fronts.items()]))
    if d.protocol is not None:
        p = d.protocol
        parts.append(f"<h2>{protocol_section.TITLE}</h2><p>{html.escape(p.protocol)}</p>"
                     + "".join(f"<p class='note'>{html.escape(n)}</p>" for n in p.notes)
                     + f"<p>{html.escape(protocol_section.EXPLAIN)}</p>" + _html_table(*protocol_section.effect_rows(p)))
    parts.append("<h2>Per-phase energy</h2>" + f"<p class='note'>{html.escape(d.phase_note)}</p>")
    parts.append("<details><summary>per model × dataset</summary>" + _html_table(*phase_rows(d.phases)) + "</details>")
    if d.roofline is not None:
        bw = info.get("memory_bandwidth_gb_s")
        parts.append(f"<h2>Decode rate vs memory-bandwidth roofline ({html.escape(str(bw))} GB/s)</h2>"
                     "<p>max tokens/s = bandwidth / model bytes (every weight read once per token).</p>"
                     + _html_table(*roofline_rows(d.roofline)))
    if d.comparison is not None:
        parts.append("<h2 id='comparison'>Ours vs published, cell by cell</h2>" + f"<p>{html.escape(TOLERANCE_NOTE)}.</p>")
        parts.append(_html_table(COUNT_HEADER, comparison_counts(d.comparison)))
        cmp_rows = [[r.table, r.row, r.col, r.stat,
                     " ".join(filter(None, (fmt(r.ours, digits=4), d.energy_marks.get((r.table, r.row, r.col, r.stat))))),
                     fmt(r.theirs, digits=4), fmt(r.ratio, digits=3), r.status] for r in d.comparison.itertuples()]
        parts.append("<details><summary>every compared number</summary>"
                     + _html_table(["table", "row", "col", "stat", "ours", "published", "ratio", "status"], cmp_rows)
                     + "</details>")
    parts += [s.html for s in d.sections]
    parts.append("<h2>Definitions and methods</h2><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in DEFINITIONS)
                 + f"<li>{html.escape(CI_METHOD)}</li></ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(d: ReportData, plots_rel: str = "plots") -> str:
    """A Markdown summary: claims, the four tables, per-model results, fronts and the phase note."""
    info = d.run_info
    out = [f"# Edge LLM benchmark report: {info.get('name', '')}", ""]
    out += [f"- **{k}**: {v}" for k, v in info.items()] + [""]
    out += [s.markdown for s in d.lead]
    out += [f"> {n}" for n in d.notes] + ([""] if d.notes else [])
    if d.claims:
        out += ["## Headline claims", "", _md_table(["claim", "published", "ours", "verdict", "deciding"],
                                                    claim_rows(d.claims)), ""]
    for name in ("t4", "t5", "t9", "t10"):
        out += [f"## {TITLES[name]}", "", _md_table(*table_grid(d.tables, name, d.comparison, d.energy_marks)), ""]
    if d.comparison is not None:
        out += ["## Ours vs published", "", TOLERANCE_NOTE + ".", "",
                _md_table(COUNT_HEADER, comparison_counts(d.comparison)), ""]
    out += ["## Per-model results", "", _md_table(*summary_rows(d.summary, d.energy_marks)), ""]
    if d.devices is not None:
        out += devices_view.markdown_section(d.devices, _md_table)
    out += ["## Pareto fronts", ""] + [f"- **{k}**: {', '.join(v)}" for k, v in d.fronts.items()] + [""]
    if d.protocol is not None:
        p = d.protocol
        out += [f"## {protocol_section.TITLE}", "", p.protocol, ""] + [f"> {n}" for n in p.notes] + [""]
        out += [protocol_section.EXPLAIN, "", _md_table(*protocol_section.effect_rows(p)), ""]
    out += ["## Per-phase energy", "", d.phase_note, "", _md_table(*phase_rows(d.phases)), ""]
    if d.roofline is not None:
        out += [f"## Decode rate vs memory-bandwidth roofline ({info.get('memory_bandwidth_gb_s')} GB/s)", "",
                "max tokens/s = bandwidth / model bytes (every weight read once per token).", "",
                _md_table(*roofline_rows(d.roofline)), ""]
    out += [s.markdown for s in d.sections]
    out += ["## Figures", ""] + [f"![{f.name}]({plots_rel}/{f.png.name})" for f in d.figures] + [""]
    out += ["## Definitions", ""] + [f"- {x}" for x in DEFINITIONS] + [f"- {CI_METHOD}", ""]
    return "\n".join(out)

