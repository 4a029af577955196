"""Assign blocks to hosts so the fleet finishes together: longest processing time first, models kept together.

Greedy LPT (Graham 1969: within 4/3 of the optimal makespan) over *units*: a model's blocks form one unit (one
model load) unless the model alone is longer than a fair share of the fleet's work, in which case each of its
blocks is a unit of its own. Units go, longest first, to the host where they would finish earliest, counting a
model load only on a host that does not already hold that model, so a split model's blocks still gather where
that saves a reload. Then single blocks move off the busiest host while that lowers the makespan (LPT leaves
a few percent on the table when whole models are coarse). Every host also pays its idle baseline and the common
calibration set.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean

from bench.fleet.costs import Block, CostModel
from bench.fleet.inventory import Host


@dataclass(frozen=True)
class HostPlan:
    """What one host runs, in order, and its predicted hours (work, model loads and fixed overhead, / speed)."""

    host: Host
    blocks: tuple[Block, ...]
    reloads: int
    seconds: float

    @property
    def hours(self) -> float:
        return self.seconds / 3600


@dataclass(frozen=True)
class Assignment:
    hosts: tuple[HostPlan, ...]

    @property
    def makespan_h(self) -> float:
        return max(h.hours for h in self.hosts)

    @property
    def mean_h(self) -> float:
        return mean(h.hours for h in self.hosts)

    @property
    def balance(self) -> float:
        """max / mean predicted hours per host: 1.0 is a perfectly even fleet."""
        return self.makespan_h / self.mean_h if self.mean_h else 1.0


def _units(blocks: list[Block], costs: CostModel, n_hosts: int) -> list[tuple[Block, ...]]:
    by_model: dict[str, list[Block]] = {}
    for b in blocks:
        by_model.setdefault(b.model, []).append(b)
    total = sum(b.seconds for b in blocks) + sum(costs.reload_s(m) for m in by_model)
    share = total / n_hosts
    units: list[tuple[Block, ...]] = []
    for tag, bl in by_model.items():
        whole = sum(b.seconds for b in bl) + costs.reload_s(tag)
        units += [tuple(bl)] if whole <= share else [(b,) for b in bl]
    return units


def assign(blocks: list[Block], hosts: list[Host], costs: CostModel, overhead_s: float = 0.0) -> Assignment:
    """LPT assignment; ``overhead_s`` is what every host spends besides its blocks (idle baseline, calibration)."""
    units = _units(blocks, costs, len(hosts))
    units.sort(key=lambda u: (-sum(b.seconds for b in u), u[0].model, u[0].dataset))
    work = {h.name: overhead_s for h in hosts}  # seconds at speed 1.0
    given: dict[str, list[Block]] = {h.name: [] for h in hosts}
    for unit in units:
        tag = unit[0].model

        def finish(h: Host) -> float:
            has_model = any(b.model == tag for b in given[h.name])
            return (work[h.name] + sum(b.seconds for b in unit) + (0 if has_model else costs.reload_s(tag))) / h.speed

        best = min(hosts, key=finish)  # ties: the first host in inventory order
        work[best.name] = finish(best) * best.speed
        given[best.name] += unit
    _refine(hosts, given, costs, overhead_s)
    plans = []
    for h in hosts:
        ordered = _model_grouped(given[h.name], blocks)
        plans.append(HostPlan(h, ordered, len({b.model for b in ordered}),
                              _seconds(given[h.name], costs, overhead_s) / h.speed))
    return Assignment(tuple(plans))


def _seconds(mine: list[Block], costs: CostModel, overhead_s: float) -> float:
    """A host's work at speed 1.0: its blocks, one load per model, the fixed overhead."""
    return overhead_s + sum(b.seconds for b in mine) + sum(costs.reload_s(m) for m in {b.model for b in mine})


def _refine(hosts: list[Host], given: dict[str, list[Block]], costs: CostModel, overhead_s: float) -> None:
    """Move one block at a time off the busiest host while that lowers the makespan."""
    def finish(h: Host, mine: list[Block]) -> float:
        return _seconds(mine, costs, overhead_s) / h.speed

    for _ in range(10 * sum(len(v) for v in given.values())):  # bounded; each accepted move lowers the makespan
        busiest = max(hosts, key=lambda h: finish(h, given[h.name]))
        top = finish(busiest, given[busiest.name])
        best = None
        for b in given[busiest.name]:
            rest = [x for x in given[busiest.name] if x is not b]
            for h in hosts:
                if h is busiest:
                    continue
                worst = max(finish(busiest, rest), finish(h, given[h.name] + [b]))
                if worst < top - 1e-6 and (best is None or worst < best[0]):
                    best = (worst, b, h)
        if best is None:
            return
        _, b, h = best
        given[busiest.name].remove(b)
        given[h.name].append(b)


def _model_grouped(mine: list[Block], spec_order: list[Block]) -> tuple[Block, ...]:
    """A host's blocks with each model's blocks contiguous (one load each), models and datasets in spec order."""
    rank = {(b.model, b.dataset): i for i, b in enumerate(spec_order)}
    first = {}
    for b in sorted(mine, key=lambda b: rank[(b.model, b.dataset)]):
        first.setdefault(b.model, rank[(b.model, b.dataset)])
    return tuple(sorted(mine, key=lambda b: (first[b.model], rank[(b.model, b.dataset)])))
