"""The exact feasibility check of ``variant_selection`` plans, run on every solve's return path, and the exact
load split it checks against.

For fixed cores the optimal split of λ is greedy (most accurate variant first); it is computed here in exact
fractions (:func:`servopt.exact.dec`), so a plan's loads never exceed a capacity and cover λ exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from servopt.exact import dec

__all__ = ["exact_split", "violations"]


def exact_split(workload_rps: float, capacities: Sequence[float], accuracies: Sequence[float]) -> list[float] | None:
    """The greedy split of λ over capacities (most accurate first, ties in order), or None if they cannot serve it.

    Decided and computed exactly; each load is the nearest float to its exact value, so it never exceeds its
    capacity (rounding to nearest is monotone).

    >>> exact_split(10.0, [4.0, 8.0], [0.7, 0.9])
    [2.0, 8.0]
    >>> exact_split(12.5, [4.0, 8.0], [0.7, 0.9]) is None
    True
    """
    lam = dec(workload_rps)
    caps = [dec(c) for c in capacities]
    if sum(caps, Fraction(0)) < lam:
        return None
    rps = [Fraction(0)] * len(caps)
    remaining = lam
    for i in sorted(range(len(caps)), key=lambda j: -accuracies[j]):
        if remaining <= 0:
            break
        take = min(caps[i], remaining)
        rps[i] = take
        remaining -= take
    return [float(r) for r in rps]


def violations(problem: Any, plan: Any) -> list[str]:
    """Every constraint ``plan`` breaks, decided exactly (empty: the plan is feasible).

    Variants exist and appear once; cores are allowed counts ([min_cores, max_cores], profiled) within the
    budget; the capacities of the chosen cores cover λ exactly; each load is within [0, capacity] and equals the
    exact greedy split.
    """
    errors: list[str] = []
    variants = {v.name: v for v in problem.variants}
    seen: dict[str, int] = {}
    for alloc in plan.variants:
        v = variants.get(alloc.name)
        if v is None:
            errors.append(f"variant {alloc.name!r} is not in the problem")
            continue
        if alloc.name in seen:
            errors.append(f"variant {alloc.name!r} appears twice")
            continue
        if not isinstance(alloc.cores, int) or alloc.cores not in v.allowed_cores(problem.core_budget):
            errors.append(f"{alloc.name}: {alloc.cores!r} cores is not an allowed core count")
            continue
        seen[alloc.name] = alloc.cores
    if errors:
        return errors
    total = sum(seen.values())
    if total > problem.core_budget:
        errors.append(f"{total} cores exceed the budget {problem.core_budget}")
    if plan.cores != total:
        errors.append(f"plan says {plan.cores} cores, its variants add up to {total}")
    caps = [v.capacity[seen[v.name]] if v.name in seen else 0.0 for v in problem.variants]
    split = exact_split(problem.workload_rps, caps, [v.accuracy for v in problem.variants])
    if split is None:
        errors.append(f"the chosen cores serve at most {float(sum(map(dec, caps), Fraction(0)))} RPS < workload "
                      f"{problem.workload_rps} RPS")
        return errors
    want = {v.name: r for v, r in zip(problem.variants, split)}
    for alloc in plan.variants:
        if not 0 <= dec(alloc.rps) <= dec(variants[alloc.name].capacity[alloc.cores]):
            errors.append(f"{alloc.name}: load {alloc.rps} RPS outside [0, capacity "
                          f"{variants[alloc.name].capacity[alloc.cores]}]")
        elif alloc.rps != want[alloc.name]:
            errors.append(f"{alloc.name}: load {alloc.rps} RPS, the exact split gives {want[alloc.name]}")
    return errors
