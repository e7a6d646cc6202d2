"""Feasible contents of one GPU (or one MIG slice): the "patterns" of the fleet MILP.

A pattern is a set of placements ``model -> (batch b, instances k)`` on one bin (a whole GPU of a type, or one
slice of a MIG profile) that fits the bin's memory and meets every placed model's latency bound with the slowdown
the pattern itself implies (``Colocation``). Only Pareto-maximal capacity vectors are kept, capacities clipped at
each model's requirement: a pattern whose every clipped model capacity is at most another's of the same bin never
helps a covering problem (exact pruning). The enumeration is finite without caps (bounds implied by memory,
latency and capacity: :mod:`servopt.formulations.fleet.space`); optional caps (``max_instances``, ``max_models``
per bin) that cut a feasible content are reported (``truncated``) and the solve then is not proven optimal.
"""

from __future__ import annotations

from typing import Any

from servopt.formulations.fleet.space import BinSpace, Pattern
from servopt.formulations.fleet.types import SLO_FACTOR

__all__ = ["Pattern", "slowdowns", "make_pattern", "enumerate_patterns", "pareto"]


def slowdowns(problem: Any, gpu: str, items: tuple[tuple[int, int, int], ...]) -> list[tuple[float, str]]:
    """Per item: (slowdown s, source) with s = 1 + Σ over the other instances on the bin of (f_pair - 1)."""
    out = []
    names = [problem.models[i].name for i, _, _ in items]
    for a, (_, _, ka) in enumerate(items):
        s, measured, default = 1.0, False, False
        for c, (_, _, kc) in enumerate(items):
            others = kc - 1 if c == a else kc
            if others <= 0:
                continue
            f, is_measured = problem.colocation.factor(names[a], names[c], gpu)
            s += others * (f - 1.0)
            measured |= is_measured
            default |= not is_measured
        out.append((s, "default" if default else ("measured" if measured else "none")))
    return out


def make_pattern(problem: Any, gpu: str, profile: str | None, memory_mb: float,
                 items: tuple[tuple[int, int, int], ...]) -> Pattern | None:
    """The pattern of ``items`` on one bin, or None when it breaks memory or a latency bound."""
    items = tuple(sorted(items))
    perfs = [problem.performance(problem.models[i], gpu, profile) for i, _, _ in items]
    if any(p is None or b not in p.latency_ms for p, (_, b, _) in zip(perfs, items)):
        return None
    mem = sum(p.memory(b, k) for p, (_, b, k) in zip(perfs, items))
    if mem > memory_mb:
        return None
    caps, sds = [], []
    for (i, b, k), p, (s, _) in zip(items, perfs, slowdowns(problem, gpu, items)):
        m = problem.models[i]
        if SLO_FACTOR[m.slo] * p.latency_ms[b] * s > m.slo_ms:
            return None
        caps.append(k * 1000.0 * b / (p.latency_ms[b] * s))
        sds.append(s)
    return Pattern(items, tuple(caps), tuple(sds), mem)


def enumerate_patterns(problem: Any, gpu: str, profile: str | None, memory_mb: float, *,
                       max_instances: int | None = None, max_models: int | None = None,
                       node_budget: int | None = None) -> tuple[list[Pattern], bool]:
    """The Pareto-maximal patterns of one bin, and whether a user cap cut feasible contents.

    Without caps the set is complete (every content an optimal plan needs, up to dominance; bounds in
    :mod:`servopt.formulations.fleet.space`). Raises :class:`~servopt.formulations.fleet.space.SearchBudget` past
    ``node_budget`` feasible contents.
    """
    space = BinSpace(problem, gpu, profile, memory_mb, max_instances=max_instances, max_models=max_models)
    found, truncated = space.search(node_budget=node_budget)
    return pareto(found, space.required), truncated


def pareto(patterns: list[Pattern], required: list[float]) -> list[Pattern]:
    """The patterns no other dominates, capacities clipped at each model's requirement (exact for covering).

    Capacity beyond ``required[i]`` on one bin never helps model ``i`` (the bin alone covers it), so comparing
    ``min(c_i, r_i)`` keeps every pattern an optimal plan needs; of equal vectors the first is kept.
    """
    vectors = []
    for p in patterns:
        v: dict[int, float] = {}
        for (i, _, _), c in zip(p.items, p.capacity):
            v[i] = v.get(i, 0.0) + min(c, required[i])
        vectors.append(v)
    order = sorted(range(len(patterns)), key=lambda j: (-len(vectors[j]), -sum(vectors[j].values()), j))
    kept: list[int] = []
    by_model: dict[int, list[int]] = {}
    for j in order:
        vj = vectors[j]
        first = min(vj, key=lambda i: len(by_model.get(i, ())))
        if any(all(vectors[q].get(i, 0.0) >= c for i, c in vj.items()) for q in by_model.get(first, ())):
            continue
        kept.append(j)
        for i in vj:
            by_model.setdefault(i, []).append(j)
    return [patterns[j] for j in sorted(kept)]
