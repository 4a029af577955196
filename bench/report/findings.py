"""The Findings: one page a reviewer reads first, and the tables every finding links to.

Each finding says in words what was reproduced, within which tolerance, what does not survive scrutiny and why,
with its deciding numbers, and links to the table those numbers come from (an anchor in ``report.html``, a CSV in
``tables/`` from ``summary.md``). Everything here is computed by the modules it reads; nothing is typed in.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.report.compare import TOLERANCE_NOTE
from bench.report.render import Section, _html_table, _md_table, fmt
from bench.report.review import Review

VERDICT_CLASS = {"reproduced": "v-ok", "holds": "v-ok", "partly reproduced": "v-warn", "holds only pooled": "v-warn",
                 "does not hold on matched data": "v-bad", "does not hold": "v-bad", "data problem": "v-bad"}
STYLE = ("<style>.v-ok{background:#e3f4e1}.v-warn{background:#fbf1d0}.v-bad{background:#f9dcdc}"
         ".v-info{background:#eef2f7}.caption{font-size:0.85em;color:#555;margin-bottom:0}</style>")


@dataclass(frozen=True)
class Finding:
    """One line of the Findings: what, the verdict, the deciding numbers in words, where its table is."""

    title: str
    verdict: str
    words: str
    anchor: str
    csv: str


def reproduction(comparison: pd.DataFrame | None, authors: bool) -> Finding | None:
    """How many published numbers ours reproduce, per kind (tables, per-model values)."""
    if comparison is None or comparison.empty:
        return None
    tables = comparison[comparison["table"] != "cell"]
    per_model = comparison[comparison["table"] == "cell"]

    def count(block: pd.DataFrame) -> str:
        c = block["status"].value_counts()
        judged = int(c.get("within", 0) + c.get("outside", 0))
        extra = ", ".join(f"{int(c[k])} {k}" for k in ("partial", "not run") if c.get(k, 0))
        return f"{int(c.get('within', 0))} of {judged} within tolerance" + (f" ({extra})" if extra else "")

    words = (f"Tables 4, 5, 9 and 10: {count(tables)}; per-model values: {count(per_model)}. {TOLERANCE_NOTE}.")
    if authors:
        words += (" This is the authors' own data through this toolkit's code: it checks the code against their "
                  "published numbers, not the claims (see below).")
    judged = comparison["status"].isin(["within", "outside"])
    verdict = ("cannot be evaluated" if not judged.any() else
               "reproduced" if not (comparison["status"] == "outside").any() else "partly reproduced")
    return Finding("Published tables and per-model values", verdict, words, "comparison", "comparison.csv")


def fronts_finding(fronts: list) -> Finding:
    """The Pareto-front claims in one line: the worst verdict, and which fronts change on matched items."""
    from bench.report.robustness import VERDICTS

    worst = max((r.verdict for r in fronts), key=lambda v: (v != "cannot be evaluated", VERDICTS.index(v)))
    if worst == "cannot be evaluated":
        reasons = "; ".join(r.words.removeprefix("cannot be evaluated: ") for r in fronts)
        return Finding("Claim: the accuracy/energy Pareto fronts", worst,
                       f"None of the {len(fronts)} published fronts can be compared: {reasons}.", fronts[0].anchor,
                       "robustness.csv")
    same = [r.key.removeprefix("pareto_front_") for r in fronts if r.verdict == "holds"]
    moved = [r.words for r in fronts if r.verdict not in ("holds", "cannot be evaluated")]
    pooled = sum(r.verdict != "does not hold" and r.verdict != "cannot be evaluated" for r in fronts)
    words = (f"{pooled} of {len(fronts)} published fronts reproduced pooled; on matched items unchanged: "
             f"{', '.join(same) or 'none'}. " + " ".join(moved))
    return Finding("Claim: the accuracy/energy Pareto fronts", worst, words, fronts[0].anchor, "robustness.csv")


def findings(review: Review, comparison: pd.DataFrame | None, authors: bool) -> list[Finding]:
    out = [f for f in [reproduction(comparison, authors)] if f]
    claims = [r for r in review.robustness if not r.key.startswith("pareto_front_")]
    out += [Finding(f"Claim: {r.text}", r.verdict, r.words, r.anchor, "robustness.csv") for r in claims]
    fronts = [r for r in review.robustness if r.key.startswith("pareto_front_")]
    if fronts:
        out.append(fronts_finding(fronts))
    out += [Finding(q.title, "data problem", q.words, q.anchor, f"quality_{q.key}.csv") for q in review.quality]
    p1, base, shift = review.pass_at_one, review.baselines, review.shift
    out.append(Finding("HumanEval: the paper's accuracy against real pass@1", "measured" if len(p1.per_model) else
                       "cannot be evaluated", p1.words, p1.anchor, "pass_at_1.csv"))
    out.append(Finding("TruthfulQA: what a position-only answer scores", "measured" if len(base.table) else
                       "cannot be evaluated", base.words, base.anchor, "truthfulqa_baselines.csv"))
    out.append(Finding(f"Energy window ({shift.source})", "measured" if len(shift.per_answer) else
                       "cannot be evaluated", shift.words, shift.anchor, "window_shift_answers.csv"))
    return out


def csv_tables(review: Review) -> dict[str, pd.DataFrame]:
    """Every table a finding links to, by file stem (written to ``tables/<stem>.csv``)."""
    out: dict[str, pd.DataFrame] = {}
    if review.robustness:
        out["robustness"] = pd.concat([r.checks.assign(claim=r.key, verdict=r.verdict) for r in review.robustness],
                                      ignore_index=True)
    for q in review.quality:
        out[f"quality_{q.key}"] = q.cells
        if q.impact is not None and len(q.impact.tables):
            out[f"quality_{q.key}_impact"] = q.impact.tables
    out["pass_at_1"] = review.pass_at_one.per_model
    out["pass_at_1_families"] = review.pass_at_one.per_family
    out["truthfulqa_baselines"] = review.baselines.table
    out["window_shift_answers"] = review.shift.per_answer
    out["window_shift_cells"] = review.shift.per_cell
    if len(review.shift.proof):
        out["window_shift_proof"] = review.shift.proof
    return out


def _rows(df: pd.DataFrame, limit: int | None = None) -> tuple[list[str], list[list[str]]]:
    shown = df if limit is None else df.head(limit)
    cells = [[fmt(v, digits=3) if isinstance(v, float) else ("–" if v is None else str(v)) for v in r]
             for r in shown.itertuples(index=False)]
    return [str(c) for c in df.columns], cells


def _html_block(anchor: str, title: str, words: str, tables: list[tuple[str, pd.DataFrame]]) -> str:
    parts = [f"<h3 id='{anchor}'>{html.escape(title)}</h3>", f"<p>{html.escape(words)}</p>"]
    for caption, df in tables:
        if len(df):
            head, body = _rows(df, 60)
            more = f" (first 60 of {len(df)} rows; all in the CSV)" if len(df) > 60 else ""
            parts.append(f"<p class='caption'>{html.escape(caption + more)}</p>" + _html_table(head, body))
    return "\n".join(parts)


def _details(review: Review) -> list[tuple[str, str, str, list[tuple[str, pd.DataFrame]]]]:
    """(anchor, title, words, [(caption, table)]) of every detailed block."""
    out = [(r.anchor, f"Claim: {r.text} — {r.verdict}", r.words, [("checks", r.checks)]) for r in review.robustness]
    for q in review.quality:
        tables = [("affected cells", q.cells)]
        if q.impact is not None and len(q.impact.tables):
            tables.append(("table values that change without the affected answers", q.impact.tables))
        out.append((q.anchor, q.title, q.words + (f" Touches: {q.touches}." if q.touches else ""), tables))
    p1 = review.pass_at_one
    out.append((p1.anchor, "HumanEval: paper accuracy vs real pass@1", p1.words,
                [("per model", p1.per_model), ("per family", p1.per_family)]))
    out.append((review.baselines.anchor, "TruthfulQA position baselines", review.baselines.words,
                [("accuracy of answers that ignore the question", review.baselines.table)]))
    sh = review.shift
    out.append((sh.anchor, f"Energy window: start-stamped vs published ({sh.source})", sh.words,
                [("proof: consecutive answers sharing samples", sh.proof), ("per cell", sh.per_cell),
                 ("per answer", sh.per_answer)]))
    return out


def sections(review: Review, comparison: pd.DataFrame | None, authors: bool) -> tuple[Section, Section]:
    """The Findings (shown first) and the detailed tables they link to (shown after the paper's tables)."""
    items = findings(review, comparison, authors)
    head = ["#", "finding", "verdict", "deciding numbers", "table"]
    html_rows = [[str(i), f.title, f.verdict, f.words, f.anchor] for i, f in enumerate(items, 1)]
    table = _html_table(head, html_rows)
    for f in items:  # the verdict gets its colour, the last column becomes a link to the finding's table
        table = table.replace(f"<td>{html.escape(f.verdict)}</td>",
                              f"<td class='{VERDICT_CLASS.get(f.verdict, 'v-info')}'>{html.escape(f.verdict)}</td>", 1)
        table = table.replace(f"<td>{html.escape(f.anchor)}</td>", f"<td><a href='#{f.anchor}'>table</a></td>", 1)
    lead_html = (STYLE + "<h2 id='findings'>Findings</h2><p>What was reproduced, within which tolerance, and what does not "
                 "survive scrutiny. Each row's numbers are computed from the data; its table is linked.</p>" + table)
    md = ["## Findings", "", "What was reproduced, within which tolerance, and what does not survive scrutiny; each "
          "row's numbers are computed from the data and its table is linked.", "",
          _md_table(head, [[str(i), f.title, f"**{f.verdict}**", f.words, f"[{f.csv}](tables/{f.csv})"]
                           for i, f in enumerate(items, 1)]), ""]
    details = _details(review)
    detail_html = "<h2 id='review'>The re-analysis, table by table</h2>" + "\n".join(
        _html_block(a, t, w, tb) for a, t, w, tb in details)
    detail_md = ["## The re-analysis, table by table", ""]
    for _, title, words, tables in details:
        detail_md += [f"### {title}", "", words, ""]
        for caption, df in tables[:1]:
            if len(df):
                detail_md += [f"{caption}:", "", _md_table(*_rows(df, 30)), ""]
    return Section(lead_html, "\n".join(md)), Section(detail_html, "\n".join(detail_md))


def write_tables(review: Review, tables_dir: Path) -> dict[str, Path]:
    out = {}
    for stem, df in csv_tables(review).items():
        path = tables_dir / f"{stem}.csv"
        df.to_csv(path, index=False)
        out[stem] = path
    return out
