"""Feasible contents of one GPU (or one MIG slice): the "patterns" of the fleet MILP.

A pattern is a set of placements ``model -> (batch b, instances k)`` on one bin (a whole GPU of a type, or one
slice of a MIG profile) that fits the bin's memory and meets every placed model's latency bound with the slowdown
the pattern itself implies (``Colocation``). Only Pareto-maximal capacity vectors are kept: a pattern whose every
model capacity is at most another's of the same bin never helps a covering problem (exact pruning). Enumeration is
capped (``max_instances`` per bin, ``max_models`` per bin); a cap that cut feasible contents is reported
(``truncated``) and the solve then is not proven optimal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from servopt.formulations.fleet.types import SLO_FACTOR

__all__ = ["Pattern", "slowdowns", "make_pattern", "enumerate_patterns"]


@dataclass(frozen=True)
class Pattern:
    """One feasible bin content: ``items`` = ((model index, batch, instances), ...) sorted by model index."""

    items: tuple[tuple[int, int, int], ...]
    capacity: tuple[float, ...]   # per item, RPS after slowdown
    slowdown: tuple[float, ...]
    memory_mb: float


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


def enumerate_patterns(problem: Any, gpu: str, profile: str | None, memory_mb: float, *, max_instances: int = 4,
                       max_models: int = 3) -> tuple[list[Pattern], bool]:
    """The Pareto-maximal patterns of one bin, and whether a cap cut feasible contents."""
    options = []  # (model index, batch, latency, mem per instance)
    for i, m in enumerate(problem.models):
        perf = problem.performance(m, gpu, profile)
        if perf is None:
            continue
        for b, lat in perf.latency_ms.items():
            if SLO_FACTOR[m.slo] * lat <= m.slo_ms and perf.memory(b) <= memory_mb:
                options.append((i, b, lat, perf.memory(b)))
    by_model: dict[int, list[tuple[int, float, float]]] = {}
    for i, b, lat, mem in options:
        by_model.setdefault(i, []).append((b, lat, mem))
    models = sorted(by_model)
    found: list[Pattern] = []

    def feasible(items: tuple[tuple[int, int, int], ...]) -> Pattern | None:
        sd = slowdowns(problem, gpu, items)
        caps = []
        for (i, b, k), (s, _) in zip(items, sd):
            m = problem.models[i]
            lat = problem.performance(m, gpu, profile).latency_ms[b]
            if SLO_FACTOR[m.slo] * lat * s > m.slo_ms:
                return None
            caps.append(k * 1000.0 * b / (lat * s))
        mem = sum(problem.performance(problem.models[i], gpu, profile).memory(b, k) for i, b, k in items)
        return Pattern(items, tuple(caps), tuple(s for s, _ in sd), mem)

    def grow(start: int, items: tuple, instances: int, memory: float) -> None:
        for j in range(start, len(models)):
            i = models[j]
            for b, _, mem in by_model[i]:
                for k in range(1, max_instances - instances + 1):
                    if memory + k * mem > memory_mb:
                        break
                    new = items + ((i, b, k),)
                    pat = feasible(new)
                    if pat is None:
                        break  # more instances only slow every placement down further (factors >= 1)
                    found.append(pat)
                    if len(new) < max_models:
                        grow(j + 1, new, instances + k, memory + k * mem)

    def extendable(pat: Pattern) -> bool:
        """Whether one more instance fits (then the caps cut feasible contents; slowdowns only grow with more)."""
        present = {i: n for n, (i, _, _) in enumerate(pat.items)}
        for i in models:
            if i in present:
                n = present[i]
                _, b, k = pat.items[n]
                trials = [pat.items[:n] + ((i, b, k + 1),) + pat.items[n + 1:]]
            else:
                trials = [tuple(sorted(pat.items + ((i, b, 1),))) for b, _, _ in by_model[i]]
            for items in trials:
                mem = sum(problem.performance(problem.models[a], gpu, profile).memory(bb, kk) for a, bb, kk in items)
                if mem <= memory_mb and feasible(items) is not None:
                    return True
        return False

    grow(0, (), 0, 0.0)
    truncated = any((sum(k for _, _, k in p.items) >= max_instances or len(p.items) >= max_models) and extendable(p)
                    for p in found)
    return _pareto(found, len(problem.models)), truncated


def _pareto(patterns: list[Pattern], n: int) -> list[Pattern]:
    vectors = []
    for p in patterns:
        v = [0.0] * n
        for (i, _, _), c in zip(p.items, p.capacity):
            v[i] += c
        vectors.append(v)
    order = sorted(range(len(patterns)), key=lambda j: -sum(vectors[j]))
    kept: list[int] = []
    for j in order:
        vj = vectors[j]
        if any(all(a >= b for a, b in zip(vectors[q], vj)) for q in kept):
            continue
        kept.append(j)
    return [patterns[j] for j in sorted(kept)]
