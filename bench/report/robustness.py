"""Each headline claim tested the way a careful reviewer would, beyond its pooled verdict.

The pooled verdict (``compare.evaluate_claims``) re-decides a claim on the same kind of aggregate the authors
published. Here the same comparison is also made on **matched items** (both sides averaged over the questions both
answered), **within each family** (base model) where a claim orders precision groups, with the **composition** of
every group average shown (which models and families it pools), and, for the per-token claim, split into **tokens
per answer and energy per answer**. The verdict is one of ``VERDICTS``:

* ``holds``: pooled, on matched items and within every family;
* ``holds only pooled``: pooled and matched, but not within a family or not per answer;
* ``does not hold on matched data``: pooled only; the same comparison on matched items misses the claim;
* ``does not hold``: not even pooled; ``cannot be evaluated``: the run lacks what the claim compares.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import pandas as pd

from bench.report import aggregate, pareto
from bench.report.compare import CLAIM_TOL, Claim
from bench.report.matching import answered_once, common_items
from bench.report.metrics import derive

log = logging.getLogger(__name__)

HOLDS, ONLY_POOLED, NOT_MATCHED, FAILS, UNKNOWN = (
    "holds", "holds only pooled", "does not hold on matched data", "does not hold", "cannot be evaluated")
VERDICTS = (HOLDS, ONLY_POOLED, NOT_MATCHED, FAILS, UNKNOWN)
CHECK_COLUMNS = ["check", "scope", "numbers", "holds"]
"""One row per check; ``holds`` is True/False where the check decides, None where it only informs."""


@dataclass(frozen=True)
class Robustness:
    """One claim's robustness: the verdict, its deciding numbers in words, and the checks behind it."""

    key: str
    text: str
    verdict: str
    words: str
    checks: pd.DataFrame

    @property
    def anchor(self) -> str:
        return f"robust-{self.key}"


def verdict(pooled: bool | None, matched: bool | None, scoped: list[bool | None]) -> str:
    if pooled is None:
        return UNKNOWN
    if not pooled:
        return FAILS
    if matched is False:
        return NOT_MATCHED
    return ONLY_POOLED if any(s is False for s in scoped) else HOLDS


def _check(check: str, scope: str, numbers: str, holds) -> dict:
    return {"check": check, "scope": scope, "numbers": numbers, "holds": None if holds is None else bool(holds)}


def _table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def _not_evaluable(claim: Claim) -> Robustness:
    return Robustness(claim.key, claim.text, UNKNOWN, claim.deciding.get("reason", "cannot be evaluated on this run"),
                      _table([]))


def _pct(x: float) -> str:
    return f"{x:.1%}" if math.isfinite(x) else "n/a"


def _cut(before: float, after: float) -> float:
    return 1 - after / before if math.isfinite(before) and math.isfinite(after) and before > 0 else math.nan


def _within(cut: float, claimed: float) -> bool | None:
    return abs(cut - claimed) <= CLAIM_TOL if math.isfinite(cut) else None


@dataclass(frozen=True)
class Answers:
    """The per-answer metrics once (recorded answers with a known item, first answer per item): the matched
    comparisons below filter this instead of re-aggregating the frame."""

    rows: pd.DataFrame

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Answers:
        once = answered_once(frame)
        rows = derive(once)
        rows["item_id"] = once["item_id"]
        return cls(rows[rows["dataset"].isin(aggregate.paper_cells(rows)["dataset"].unique())])

    def common(self, models: list[str]) -> pd.DataFrame:
        return common_items(self.rows, models)

    @staticmethod
    def model_all(rows: pd.DataFrame, metric: str) -> pd.Series:
        """Each model's unweighted mean over datasets of its per-dataset mean ("all")."""
        return rows.groupby(["model", "dataset"])[metric].mean().groupby("model").mean()


def energy_per_token(claim: Claim, summary: pd.DataFrame, answers: Answers) -> Robustness:
    """J/token down "up to X%": the deciding pair on matched items, every family's best pair, and the pair split
    into tokens per answer and energy per answer (a model that writes more tokens per answer can cut J/token without
    cutting the energy of an answer)."""
    if claim.holds is None:
        return _not_evaluable(claim)
    claimed, d = float(claim.published.rstrip("%")) / 100, claim.deciding
    s = summary.set_index("model")

    def tag(quant: str) -> str:
        return str(s.index[(s["base"] == d["base"]) & (s["quant"] == quant)][0])

    src, dst = tag(d["from"]), tag(d["to"])
    cuts = {}
    for base, block in s.groupby("base"):
        fp = block.index[block["quant"] == "fp16"]
        for q in block.index[block["quant"] != "fp16"] if len(fp) else []:
            jpt = Answers.model_all(answers.common([fp[0], q]), "j_per_token")
            cuts[(base, q)] = _cut(jpt.get(fp[0], math.nan), jpt.get(q, math.nan))
    same = cuts.get((d["base"], dst), math.nan)
    e_cut = _cut(s.at[src, "energy_j"], s.at[dst, "energy_j"])
    tokens = s.at[dst, "tokens"] / s.at[src, "tokens"]
    rows = [
        _check("pooled (as published)", d["base"], f"{d['from']} {d['from_value']:.2f} -> {d['to']} "
               f"{d['to_value']:.2f} J/token: -{_pct(d['reduction'])}", claim.holds),
        _check("matched items, same pair", d["base"], f"-{_pct(same)}", _within(same, claimed)),
        _check("per answer, same pair", d["base"],
               f"energy {s.at[src, 'energy_j']:.1f} -> {s.at[dst, 'energy_j']:.1f} J (-{_pct(e_cut)}); tokens "
               f"{s.at[src, 'tokens']:.1f} -> {s.at[dst, 'tokens']:.1f} (x{tokens:.1f}); accuracy "
               f"{s.at[src, 'accuracy']:.3f} -> {s.at[dst, 'accuracy']:.3f}", _within(e_cut, claimed)),
    ]
    for base in sorted({b for b, _ in cuts}):
        best = max(((c, q) for (b, q), c in cuts.items() if b == base and math.isfinite(c)), default=None)
        if best:
            rows.append(_check("matched items, family's largest cut", base,
                               f"fp16 -> {s.at[best[1], 'quant']}: -{_pct(best[0])}", None))
    words = (f"Pooled -{_pct(d['reduction'])} ({d['base']} {d['from']} {d['from_value']:.2f} -> {d['to']} "
             f"{d['to_value']:.2f} J/token; claimed {_pct(claimed)}), -{_pct(same)} on the items both answered. But "
             f"{d['to']} writes {tokens:.1f}x the tokens per answer ({s.at[src, 'tokens']:.1f} -> "
             f"{s.at[dst, 'tokens']:.1f}), so the energy of an answer falls only {_pct(e_cut)} "
             f"({s.at[src, 'energy_j']:.1f} -> {s.at[dst, 'energy_j']:.1f} J), and accuracy goes "
             f"{s.at[src, 'accuracy']:.3f} -> {s.at[dst, 'accuracy']:.3f}.")
    return Robustness(claim.key, claim.text, verdict(True, rows[1]["holds"], [rows[2]["holds"]]), words, _table(rows))


def _per_dataset(rows: pd.DataFrame) -> str:
    return ", ".join(f"{ds} {n}" for ds, n in rows.groupby("dataset").size().items())


def latency(claim: Claim, pooled_cells: pd.DataFrame, answers: Answers) -> Robustness:
    """Latency down "up to X%" between Table 9 cells (pooled over the cells' answers): the same cells over the
    items both sides answered, with each side's answers per dataset."""
    if claim.holds is None:
        return _not_evaluable(claim)
    claimed, d = float(claim.published.rstrip("%")) / 100, claim.deciding
    pc = aggregate.paper_cells(pooled_cells)
    members = {(b, g): sorted(set(blk["model"])) for (b, g), blk in pc.groupby(["base", "precision_group"])}
    rows, cuts, same = [], [], None
    for (base, group), models in sorted(members.items()):
        fp = members.get((base, "fp16"))
        if group == "fp16" or not fp:
            continue
        both = answers.common(fp + models)
        before = both.loc[both["model"].isin(fp), "latency_s"].mean()
        after = both.loc[both["model"].isin(models), "latency_s"].mean()
        cut = _cut(before, after)
        cuts.append((cut, f"{base} fp16 -> {group}"))
        deciding = (base, group) == (d["base"], d["to"])
        rows.append(_check("matched items" + (", same cells" if deciding else ""), f"{base} fp16 -> {group}",
                           f"{before:.2f} s -> {after:.2f} s: -{_pct(cut)} over "
                           f"{_per_dataset(both[both['model'] == fp[0]])} items", _within(cut, claimed) if deciding
                           else None))
        if deciding:
            same = (cut, both, fp, models)
    def recorded(models: list[str]) -> pd.Series:
        return pc[pc["model"].isin(models)].groupby("dataset")["n_answers"].sum()

    before, after = (recorded(same[2]), recorded(same[3])) if same else (pd.Series(dtype=int), pd.Series(dtype=int))
    differ = [f"{int(before.get(ds, 0))} {ds} answers against {int(after.get(ds, 0))}"
              for ds in sorted(set(before.index) | set(after.index)) if before.get(ds, 0) != after.get(ds, 0)]
    sides = (", ".join(f"{ds} {int(n)}" for ds, n in before.items()), ", ".join(f"{ds} {int(n)}" for ds, n in after.items()))
    rows.insert(0, _check("pooled (as published)", f"{d['base']} {d['from']} -> {d['to']}",
                          f"{d['from_value']:.2f} s -> {d['to_value']:.2f} s: -{_pct(d['reduction'])}; answers "
                          f"{sides[0]} vs {sides[1]}", claim.holds))
    best = max((c for c in cuts if math.isfinite(c[0])), default=None)
    matched = next((r["holds"] for r in rows if r["check"] == "matched items, same cells"), None)
    words = (f"Pooled -{_pct(d['reduction'])} ({d['base']} {d['from']} {d['from_value']:.2f} s -> {d['to']} "
             f"{d['to_value']:.2f} s; claimed {_pct(claimed)})"
             + (f" compares {'; '.join(differ)}" if differ else "")
             + (f"; on the items both answered -{_pct(same[0])}" if same else "")
             + (f"; the largest cut on matched items is -{_pct(best[0])} ({best[1]})." if best else "."))
    return Robustness(claim.key, claim.text, verdict(True, matched, []), words, _table(rows))


def _group_avgs(cells_: pd.DataFrame) -> dict[str, float]:
    t5 = aggregate.table5(cells_)
    col = t5[(t5["col"] == "avg") & (t5["row"] != "avg")]
    return {r: float(v) for r, v in zip(col["row"], col["value"]) if math.isfinite(v)}


def _family_groups(cells_: pd.DataFrame) -> dict[str, dict[str, float]]:
    t5 = aggregate.table5(cells_)
    body = t5[(t5["col"] != "avg") & (t5["row"] != "avg")]
    out: dict[str, dict[str, float]] = {}
    for r in body.itertuples():
        if math.isfinite(r.value):
            out.setdefault(r.col, {})[r.row] = float(r.value)
    return out


def composition(cells_: pd.DataFrame) -> pd.DataFrame:
    """What each precision group's Table 5 average pools: its models, their families, answers per dataset."""
    pc = aggregate.paper_cells(cells_)
    rows = []
    for group in aggregate.GROUP_ORDER:
        block = pc[pc["precision_group"] == group]
        if len(block):
            fams = block.groupby("base")["model"].nunique()
            rows.append({"group": group, "models": int(block["model"].nunique()),
                         "families": ", ".join(f"{b} ({n})" for b, n in fams.items()),
                         "answers": ", ".join(f"{ds} {int(n)}" for ds, n in
                                              block.groupby("dataset")["n_answers"].sum().items())})
    return pd.DataFrame(rows, columns=["group", "models", "families", "answers"])


def _blame(claimed: list[str], families: dict[str, dict[str, float]]) -> str:
    """Why a pooled order differs from every family's: the families one group's average pools and the other's
    does not (for each claimed pair a < b that the families reverse)."""
    out = []
    for a, b in zip(claimed, claimed[1:]):
        both = [v for v in families.values() if a in v and b in v]
        if both and all(v[b] < v[a] for v in both):
            only = {f: v[b] for f, v in families.items() if b in v and a not in v}
            if only:
                out.append(f" {b}'s average is above {a}'s only because it also pools "
                           + ", ".join(f"{f} ({x:.2f} J)" for f, x in sorted(only.items()))
                           + f", which have no {a} model.")
    return "".join(out)


def _order(values: dict[str, float]) -> str:
    return " < ".join(f"{g} {values[g]:.2f}" for g in sorted(values, key=values.get))


def group_order(claim: Claim, pooled_cells: pd.DataFrame, matched_cells: pd.DataFrame) -> Robustness:
    """An order of precision groups by Table 5's avg column ("q8_0 cheapest", "q8_0 < q4 < fp16 < q3"): on
    matched items, and within every family that has at least two of the groups."""
    if claim.holds is None:
        return _not_evaluable(claim)
    claimed = claim.published.split(" < ")

    def holds(values: dict[str, float]) -> bool | None:
        if len(claimed) == 1:
            return min(values, key=values.get) == claimed[0] if claimed[0] in values and len(values) > 1 else None
        present = [g for g in claimed if g in values]
        return sorted(present, key=values.get) == present if len(present) > 1 else None

    pooled = _group_avgs(pooled_cells)
    matched = _group_avgs(matched_cells) if len(matched_cells) else {}
    rows = [_check("pooled (as published)", "Table 5 avg", _order(pooled), claim.holds),
            _check("matched items (every model, the same items)", "Table 5 avg",
                   _order(matched) if matched else "no items in common", holds(matched) if matched else None)]
    broken = []
    for base, values in sorted(_family_groups(pooled_cells).items()):
        ok = holds(values)
        if ok is not None:
            rows.append(_check("within family", base, _order(values), ok))
            broken += [f"{base}: {_order(values)}"] if not ok else []
    rows += [_check("composition", r.group, f"{r.models} models ({r.families}); answers {r.answers}", None)
             for r in composition(pooled_cells).itertuples()]
    words = (f"Pooled {_order(pooled)} J" + (f"; on the items every model answered {_order(matched)} J" if matched
                                               else "") + ".")
    families = _family_groups(pooled_cells)
    if broken:
        words += " Within families it breaks: " + "; ".join(broken) + "." + _blame(claimed, families)
    else:
        words += f" The same holds within {', '.join(sorted(f for f, v in families.items() if holds(v) is not None))}."
    return Robustness(claim.key, claim.text, verdict(True, rows[1]["holds"], [r["holds"] for r in rows[2:]]), words,
                      _table(rows))


def front(claim: Claim, published: list[str], matched: dict[str, list[str]], matched_cells: pd.DataFrame) -> Robustness:
    """One published Pareto set against the front on the items every model answered."""
    if claim.holds is None:
        return _not_evaluable(claim)
    ds = claim.key.removeprefix("pareto_front_")
    theirs, mine = set(published), set(matched.get(ds, []))
    ok = mine == theirs if ds in matched else None
    gone, new = sorted(theirs - mine), sorted(mine - theirs)
    items = matched_cells.loc[matched_cells["dataset"] == ds, "n_answers"]
    over = f" over the {int(items.min())} items every model answered" if len(items) else ""
    rows = [_check("pooled (as published)", ds, f"{len(theirs)} models", claim.holds),
            _check("matched items", ds, f"{len(mine)} models{over}; leave: {', '.join(gone) or 'none'}; join: "
                   f"{', '.join(new) or 'none'}", ok)]
    words = (f"{ds}: on matched items{over} " + ("the front is the same." if ok else
             f"{', '.join(gone) or 'none'} leave(s) and {', '.join(new) or 'none'} join(s)." if ok is False
             else "the front cannot be computed."))
    return Robustness(claim.key, claim.text, verdict(claim.holds, ok, []), words, _table(rows))


def evaluate(claims: list[Claim], pooled_cells: pd.DataFrame, summary: pd.DataFrame, frame: pd.DataFrame,
             published_fronts: dict[str, list[str]]) -> list[Robustness]:
    """Robustness of every headline claim; ``claims`` are the pooled verdicts (from ``pooled_cells`` and their
    `model_summary`), ``frame`` the per-answer data."""
    answers = Answers.of(frame)
    matched_cells = aggregate.cells(common_items(frame)) if len(answers.rows) else pd.DataFrame()
    matched_fronts = pareto.fronts(matched_cells) if len(matched_cells) else {}
    out = []
    for c in claims:
        if c.key == "energy_per_token_reduction":
            out.append(energy_per_token(c, summary, answers))
        elif c.key == "latency_reduction":
            out.append(latency(c, pooled_cells, answers))
        elif c.key in ("cheapest_group_per_answer", "group_order_per_answer"):
            out.append(group_order(c, pooled_cells, matched_cells))
        elif c.key.startswith("pareto_front_"):
            ds = c.key.removeprefix("pareto_front_")
            out.append(front(c, published_fronts.get(ds, []), matched_fronts, matched_cells))
    log.info("claim robustness: %s", {r.key: r.verdict for r in out})
    return out
