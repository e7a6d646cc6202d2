"""Brute force for small fleet problems (whole GPUs, no MIG): the reference the pattern MILP is tested against.

Enumerates every content of one GPU directly (each model: absent or any profiled batch with 1..max_instances
instances; at most ``max_instances`` instances and ``max_models`` models per GPU), with no pruning, then every
multiset of contents per GPU type within its count, and returns the least objective that covers every model.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

from servopt.exact import dec
from servopt.formulations.fleet.types import SLO_FACTOR

__all__ = ["brute_force_fleet"]


def _contents(problem: Any, gpu: Any) -> list[dict[int, Fraction]]:
    choices = []
    for i, m in enumerate(problem.models):
        perf = problem.performance(m, gpu.name)
        opts = [None] + ([(b, k) for b in perf.latency_ms for k in range(1, problem.max_instances + 1)]
                         if perf is not None else [])
        choices.append(opts)
    out = []
    for combo in itertools.product(*choices):
        items = [(i, c[0], c[1]) for i, c in enumerate(combo) if c is not None]
        if not items or len(items) > problem.max_models or sum(k for _, _, k in items) > problem.max_instances:
            continue
        mem = sum(problem.performance(problem.models[i], gpu.name).memory(b, k) for i, b, k in items)
        if dec(mem) > dec(gpu.memory_mb):
            continue
        caps: dict[int, Fraction] = {}
        ok = True
        for i, b, k in items:
            m = problem.models[i]
            s = Fraction(1)
            for j, _, kj in items:
                others = kj - 1 if j == i else kj
                if others > 0:
                    s += others * (dec(problem.colocation.factor(m.name, problem.models[j].name, gpu.name)[0]) - 1)
            lat = dec(problem.performance(m, gpu.name).latency_ms[b]) * s
            if dec(SLO_FACTOR[m.slo]) * lat > dec(m.slo_ms):
                ok = False
                break
            caps[i] = k * 1000 * b / lat
        if ok:
            out.append(caps)
    return out


def brute_force_fleet(problem: Any) -> float | None:
    """The optimal objective (None: infeasible) over whole GPUs, by exhaustive search."""
    from servopt.formulations.fleet.formulation import gpu_weight

    need = [dec(m.rate_rps) * (1 + dec(problem.headroom)) for m in problem.models]
    per_type = []
    for g in problem.gpu_types:
        contents = _contents(problem, g)
        options = []
        for n in range(g.count + 1):
            for multi in itertools.combinations_with_replacement(range(len(contents)), n):
                cap = [Fraction(0)] * len(need)
                for c in multi:
                    for i, v in contents[c].items():
                        cap[i] += v
                options.append((n * gpu_weight(problem, g), cap))
        per_type.append(options)
    best = None
    for combo in itertools.product(*per_type):
        weight = sum(w for w, _ in combo)
        if best is not None and weight >= best:
            continue
        if all(sum(cap[i] for _, cap in combo) >= need[i] for i in range(len(need))):
            best = weight
    return best
