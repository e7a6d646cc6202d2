"""Brute force for small fleet problems (whole GPUs, no MIG): the reference the pattern MILP is tested against.

Enumerates every content of one GPU directly (each model: absent or any profiled batch with 1..max_instances
instances, or without ``max_instances`` as many as fit its memory and latency bound alone; at most
``max_instances`` instances and ``max_models`` models per GPU when set), with no pruning, then every
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
        opts = [None] + ([(b, k) for b in perf.latency_ms for k in range(1, _k_limit(problem, gpu, i, b) + 1)]
                         if perf is not None else [])
        choices.append(opts)
    out = []
    max_models = problem.max_models or len(problem.models)
    for combo in itertools.product(*choices):
        items = [(i, c[0], c[1]) for i, c in enumerate(combo) if c is not None]
        if not items or len(items) > max_models or (problem.max_instances is not None
                                                    and sum(k for _, _, k in items) > problem.max_instances):
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


def _k_limit(problem: Any, gpu: Any, i: int, b: int) -> int:
    """``max_instances``, or without it the most instances of model ``i`` alone that fit memory and its latency
    bound (more never fit next to anything else either): a finite range, no use of the formulation's bounds."""
    if problem.max_instances is not None:
        return problem.max_instances
    m = problem.models[i]
    perf = problem.performance(m, gpu.name)
    f = dec(problem.colocation.factor(m.name, m.name, gpu.name)[0])
    mem = dec(perf.memory(b))
    k = 1
    while True:
        nxt = k + 1
        if mem > 0 and nxt * mem > dec(gpu.memory_mb):
            return k
        if dec(SLO_FACTOR[m.slo]) * dec(perf.latency_ms[b]) * (1 + (nxt - 1) * (f - 1)) > dec(m.slo_ms):
            return k
        if f == 1 and mem == 0:
            raise ValueError(f"model {m.name!r} on {gpu.name}: nothing bounds its instances; set max_instances")
        k = nxt


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
