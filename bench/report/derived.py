"""Everything one report derives from its cells, computed once: the build writes it, ``numbers.json`` quotes it,
and ``recompute_check`` derives it again from the answers frame to compare."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench.report import aggregate, energy_bounds, pareto, phases


@dataclass(frozen=True)
class Derived:
    """A report's aggregates. ``summary``: each model's "all" mean and half-width of every metric; ``qualities``:
    the bound and coverage counts behind every energy figure (keyed like the comparison's rows)."""

    cells: pd.DataFrame
    tables: pd.DataFrame
    summary: pd.DataFrame
    fronts: dict[str, list[str]]
    phases: pd.DataFrame
    qualities: dict[tuple[str, str, str, str], energy_bounds.Quality]


def from_cells(cells_: pd.DataFrame) -> Derived:
    summary = aggregate.model_summary(cells_)
    return Derived(cells=cells_, tables=aggregate.paper_tables(cells_), summary=summary,
                   fronts=pareto.fronts(cells_, summary=summary), phases=phases.phase_table(cells_),
                   qualities=energy_bounds.qualities(cells_, summary=summary))
