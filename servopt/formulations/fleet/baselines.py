"""Baseline fleet policies (not optimal; whole GPUs only, no MIG): what serving teams do without a planner.

* ``fleet_one_per_gpu``: every model on dedicated GPUs of the type that serves it most cheaply (best batch,
  one instance per GPU), no sharing.
* ``fleet_cheapest_type``: greedy by price: every model on dedicated GPUs of the cheapest type that can run it
  (next cheapest when that type runs out).
* ``fleet_ffd``: first-fit decreasing bin packing: models by required capacity, largest first; each instance goes
  to the first open GPU where it fits (memory, every resident's latency bound with the new slowdowns, and every
  resident model still covered), else a new GPU of the type with the lowest weight per unit of its capacity.

Each returns ``(status, plan, message)`` with a plan that passes the exact checker, or ``infeasible``.
"""

from __future__ import annotations

from typing import Any

from servopt.formulations.fleet.formulation import gpu_weight, plan_from_gpus
from servopt.formulations.fleet.patterns import Pattern, make_pattern
from servopt.result import Status

__all__ = ["one_per_gpu", "cheapest_type", "ffd", "FLEET_POLICIES"]


def _solo(problem: Any, i: int, gtype: Any) -> Pattern | None:
    """The best single-instance pattern of model ``i`` alone on a whole GPU of ``gtype``."""
    perf = problem.performance(problem.models[i], gtype.name)
    if perf is None:
        return None
    best = None
    for b in perf.latency_ms:
        pat = make_pattern(problem, gtype.name, None, gtype.memory_mb, ((i, b, 1),))
        if pat is not None and (best is None or pat.capacity[0] > best.capacity[0]):
            best = pat
    return best


def _dedicated(problem: Any, order_types: Any) -> tuple[Status, Any, str]:
    left = {g.name: g.count for g in problem.gpu_types}
    gpus = []
    for i, m in enumerate(problem.models):
        need = problem.required_rps(m)
        for g in order_types(i):
            pat = _solo(problem, i, g)
            if pat is None:
                continue
            while need > 1e-9 * problem.required_rps(m) and left[g.name] > 0:
                gpus.append((g.name, None, [(None, pat)]))
                left[g.name] -= 1
                need -= pat.capacity[0]
            if need <= 1e-9 * problem.required_rps(m):
                break
        if need > 1e-9 * problem.required_rps(m):
            return Status.INFEASIBLE, None, f"model {m.name!r} cannot be covered on dedicated GPUs"
    return _checked(problem, gpus)


def _checked(problem: Any, gpus: list) -> tuple[Status, Any, str]:
    plan = plan_from_gpus(problem, gpus, proven=False, notes=("baseline heuristic",))
    broken = problem.verify(plan)
    if broken:
        return Status.INFEASIBLE, None, f"the heuristic's plan fails the exact check ({broken[0]})"
    return Status.FEASIBLE, plan, "heuristic baseline: feasible, not proven optimal"


def one_per_gpu(problem: Any) -> tuple[Status, Any, str]:
    """Dedicated GPUs per model, of the type with the least weight per capacity for that model."""
    def order(i: int) -> list:
        scored = []
        for g in problem.gpu_types:
            pat = _solo(problem, i, g)
            if pat is not None:
                scored.append((gpu_weight(problem, g) / pat.capacity[0], g.name, g))
        return [g for _, _, g in sorted(scored, key=lambda t: t[:2])]
    return _dedicated(problem, order)


def cheapest_type(problem: Any) -> tuple[Status, Any, str]:
    """Dedicated GPUs per model, cheapest type first."""
    ranked = sorted(problem.gpu_types, key=lambda g: (g.price_per_hour, g.name))
    return _dedicated(problem, lambda i: ranked)


def ffd(problem: Any) -> tuple[Status, Any, str]:
    """First-fit decreasing bin packing of single instances (module docstring)."""
    n = len(problem.models)
    need = [problem.required_rps(m) for m in problem.models]
    order = sorted(range(n), key=lambda i: -need[i])
    open_gpus: list[list] = []  # [type, items, pattern]
    left = {g.name: g.count for g in problem.gpu_types}

    def totals(gpus: list) -> list[float]:
        cap = [0.0] * n
        for _, _, pat in gpus:
            for (i, _, _), c in zip(pat.items, pat.capacity):
                cap[i] += c
        return cap

    def try_add(gpu: list, i: int) -> Pattern | None:
        g = problem.gpu_type(gpu[0])
        perf = problem.performance(problem.models[i], g.name)
        if perf is None:
            return None
        for b in sorted(perf.latency_ms, reverse=True):
            items = [it for it in gpu[1] if it[0] != i]
            k = next((it[2] for it in gpu[1] if it[0] == i), 0) + 1
            batch_ok = all(it[1] == b for it in gpu[1] if it[0] == i)
            if not batch_ok:
                continue
            pat = make_pattern(problem, g.name, None, g.memory_mb, tuple(items) + ((i, b, k),))
            if pat is not None:
                return pat
        return None

    placed: set[int] = set()
    for i in order:
        while totals(open_gpus)[i] < need[i] * (1 - 1e-12):
            done = False
            for gpu in open_gpus:
                pat = try_add(gpu, i)
                if pat is None:
                    continue
                trial = [x if x is not gpu else [gpu[0], list(pat.items), pat] for x in open_gpus]
                caps = totals(trial)
                if all(caps[j] >= need[j] * (1 - 1e-12) for j in placed) and caps[i] > totals(open_gpus)[i]:
                    gpu[1], gpu[2] = list(pat.items), pat
                    done = True
                    break
            if done:
                continue
            best = None
            for g in problem.gpu_types:
                pat = _solo(problem, i, g) if left[g.name] > 0 else None
                if pat is not None:
                    score = (gpu_weight(problem, g) / pat.capacity[0], g.name)
                    if best is None or score < best[0]:
                        best = (score, g, pat)
            if best is None:
                return Status.INFEASIBLE, None, f"first-fit decreasing ran out of GPUs for {problem.models[i].name!r}"
            _, g, pat = best
            left[g.name] -= 1
            open_gpus.append([g.name, list(pat.items), pat])
        placed.add(i)
    return _checked(problem, [(t, None, [(None, pat)]) for t, _, pat in open_gpus])


#: policy name -> function(problem) -> (status, plan, message)
FLEET_POLICIES = {"fleet_ffd": ffd, "fleet_one_per_gpu": one_per_gpu, "fleet_cheapest_type": cheapest_type}
