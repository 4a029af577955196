"""The dataset registry: every dataset the toolkit runs, declared once.

A `Dataset` binds what the stages need to know about one dataset: its adapter (where its items come from, how they
are identified, and their task version), the prompt it is asked with, and its scorer in each mode. The spec's
dataset names, the runner's items and prompts, the score stage, the run identity and the report's list of the
paper's datasets all come from ``DATASETS``; nothing else in the package lists datasets.

This module sits above ``bench.datasets``, ``bench.prompts`` and ``bench.scoring`` (it composes them, none of them
imports it). Adding a dataset is its module (an `Adapter`, a renderer and two scorers; the paper's five keep
theirs in those three packages) plus one entry in ``DATASETS``; its fixtures and paper selection are data under
``bench/catalog/``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping

from bench import prompts
from bench.datasets import DataSource, read_items
from bench.datasets import bigbenchhard as bbh_data, commonsenseqa as csqa_data, gsm8k as gsm_data
from bench.datasets import humaneval as he_data, truthfulqa as tqa_data
from bench.datasets.base import Adapter
from bench.errors import CatalogError, did_you_mean
from bench.records import Item, Score
from bench.scoring import MODES, Scorer
from bench.scoring import bigbenchhard as bbh_scoring, commonsenseqa as csqa_scoring, gsm8k as gsm_scoring
from bench.scoring import humaneval as he_scoring, truthfulqa as tqa_scoring

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Dataset:
    """One dataset as the toolkit runs it. ``scorers`` maps every scoring mode to its scorer; ``in_paper`` marks the
    paper's five, in the paper's order (fetched by default, the columns of its tables, what "all" averages);
    ``executes_answers``: its answers are programs the scorers run, so a run or a scoring of it first requires a
    complete sandbox (`bench.scoring.execution.require`)."""

    adapter: Adapter
    render: Callable[[Item], str]
    scorers: Mapping[str, Scorer]
    in_paper: bool = False
    executes_answers: bool = False

    def __post_init__(self) -> None:
        if set(self.scorers) != set(MODES):
            raise CatalogError(f"dataset {self.name}: expected a scorer for each mode ({', '.join(MODES)}), "
                               f"got {', '.join(sorted(self.scorers)) or 'none'}")

    @property
    def name(self) -> str:
        return self.adapter.name

    @property
    def version(self) -> str:
        """The task version recorded with every run of this dataset."""
        return self.adapter.task_version


def _declare(*datasets: Dataset) -> dict[str, Dataset]:
    return {d.name: d for d in datasets}


def _modes(paper: Scorer, strict: Scorer) -> dict[str, Scorer]:
    return {"paper": paper, "strict": strict}


DATASETS: dict[str, Dataset] = _declare(
    Dataset(csqa_data.ADAPTER, prompts.commonsenseqa, _modes(csqa_scoring.paper, csqa_scoring.strict), in_paper=True),
    Dataset(bbh_data.ADAPTER, prompts.bigbenchhard, _modes(bbh_scoring.paper, bbh_scoring.strict), in_paper=True),
    Dataset(gsm_data.ADAPTER, prompts.gsm8k, _modes(gsm_scoring.paper, gsm_scoring.strict), in_paper=True),
    Dataset(tqa_data.ADAPTER, prompts.truthfulqa, _modes(tqa_scoring.paper, tqa_scoring.strict), in_paper=True),
    Dataset(he_data.ADAPTER, prompts.humaneval, _modes(he_scoring.paper, he_scoring.strict), in_paper=True,
            executes_answers=True),
    # strict variant, not in the paper: the same items, choices shuffled and lettered; one rule in both modes
    Dataset(tqa_data.LETTERED, prompts.truthfulqa_lettered, _modes(tqa_scoring.lettered, tqa_scoring.lettered)),
)

PAPER_DATASETS: tuple[str, ...] = tuple(name for name, d in DATASETS.items() if d.in_paper)
"""The paper's five, in its order."""


def dataset(name: str) -> Dataset:
    """The declaration of ``name``; an unknown name is one line naming the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise CatalogError(did_you_mean("dataset", name, list(DATASETS))) from None


def load_items(name: str, source: DataSource) -> list[Item]:
    """The items of dataset ``name`` from ``source`` (see `bench.datasets.read_items`)."""
    return read_items(dataset(name).adapter, source)


def render(item: Item) -> str:
    """The exact prompt string sent to the model for ``item``."""
    return dataset(item.dataset).render(item)


def score(item: Item, response: str, mode: str) -> Score:
    """Score one answer to ``item`` under ``mode`` ("paper" or "strict")."""
    if mode not in MODES:
        raise CatalogError(did_you_mean("scoring mode", mode, list(MODES)))
    result = dataset(item.dataset).scorers[mode](item, response)
    log.debug("%s %s [%s]: %s (%s)", item.dataset, item.item_id, mode, result.correct, result.reason)
    return result
