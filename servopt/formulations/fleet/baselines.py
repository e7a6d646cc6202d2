"""Baseline fleet policies (not optimal): what serving teams do without a planner.

* ``fleet_one_per_gpu``: every model on dedicated GPUs of the type that serves it most cheaply (best batch,
  one instance per GPU), no sharing.
* ``fleet_cheapest_type``: greedy by price: every model on dedicated GPUs of the cheapest type that can run it
  (next cheapest when that type runs out).
* ``fleet_ffd``: first-fit decreasing bin packing: models by required capacity, largest first; each instance goes
  to the first open bin (a whole GPU or a MIG slice) where it fits (memory, every resident's latency bound with
  the new slowdowns, and every resident model still covered), else a new bin: a whole GPU, or a GPU partitioned
  into the allowed layout of one profile repeated (e.g. 7 x 1g.10gb), whichever has the lowest weight per unit of
  the new instance's capacity (a partitioned GPU's weight spread over its slices). The other two use whole GPUs
  only (dedicated GPUs per model, as without MIG).

Each returns ``(status, plan, message)`` with a plan that passes the exact checker, or ``infeasible``.
"""

from __future__ import annotations

from typing import Any

from servopt.formulations.fleet.formulation import gpu_weight, plan_from_gpus
from servopt.formulations.fleet.patterns import Pattern, make_pattern
from servopt.result import Status

__all__ = ["one_per_gpu", "cheapest_type", "ffd", "FLEET_POLICIES"]


def _why(problem: Any, failed: str) -> str:
    """A heuristic's failure, followed by why no plan at all exists where one model alone shows it
    (:func:`~servopt.formulations.fleet.diagnose.reason`): the heuristic's own words alone did not say whether a
    better method could succeed."""
    from servopt.formulations.fleet.diagnose import reason

    proof = reason(problem)
    return failed if proof is None else f"{failed}; no plan exists: {proof}"


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
            return Status.INFEASIBLE, None, _why(problem, f"model {m.name!r} cannot be covered on dedicated GPUs")
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


def _solo_bin(problem: Any, i: int, gtype: Any, profile: str | None) -> Pattern | None:
    """The best single-instance pattern of model ``i`` alone on a whole GPU or one slice of ``profile``."""
    perf = problem.performance(problem.models[i], gtype.name, profile)
    if perf is None:
        return None
    memory = gtype.memory_mb if profile is None else gtype.profile(profile).memory_mb
    best = None
    for b in perf.latency_ms:
        pat = make_pattern(problem, gtype.name, profile, memory, ((i, b, 1),))
        if pat is not None and (best is None or pat.capacity[0] > best.capacity[0]):
            best = pat
    return best


def _homogeneous_layouts(gtype: Any) -> list[tuple[str, int]]:
    """(profile, slices) of the allowed layouts made of one profile only, the most slices of each."""
    out: dict[str, int] = {}
    for lay in gtype.layouts:
        if len(set(lay)) == 1:
            out[lay[0]] = max(out.get(lay[0], 0), len(lay))
    return sorted(out.items())


def ffd(problem: Any) -> tuple[Status, Any, str]:
    """First-fit decreasing bin packing of single instances (module docstring)."""
    n = len(problem.models)
    need = [problem.required_rps(m) for m in problem.models]
    order = sorted(range(n), key=lambda i: -need[i])
    gpus: list[list] = []  # [type, layout or None]
    bins: list[list] = []  # [type, profile or None, items, pattern or None, gpu position, slice position]
    left = {g.name: g.count for g in problem.gpu_types}

    def totals() -> list[float]:
        cap = [0.0] * n
        for bin_ in bins:
            if bin_[3] is not None:
                for (i, _, _), c in zip(bin_[3].items, bin_[3].capacity):
                    cap[i] += c
        return cap

    def try_add(bin_: list, i: int) -> Pattern | None:
        g = problem.gpu_type(bin_[0])
        perf = problem.performance(problem.models[i], g.name, bin_[1])
        if perf is None:
            return None
        memory = g.memory_mb if bin_[1] is None else g.profile(bin_[1]).memory_mb
        for b in sorted(perf.latency_ms, reverse=True):
            items = [it for it in bin_[2] if it[0] != i]
            k = next((it[2] for it in bin_[2] if it[0] == i), 0) + 1
            if not all(it[1] == b for it in bin_[2] if it[0] == i):
                continue
            pat = make_pattern(problem, g.name, bin_[1], memory, tuple(items) + ((i, b, k),))
            if pat is not None:
                return pat
        return None

    placed: set[int] = set()
    for i in order:
        while totals()[i] < need[i] * (1 - 1e-12):
            done = False
            before = totals()
            for bin_ in bins:
                pat = try_add(bin_, i)
                if pat is None:
                    continue
                old = (bin_[2], bin_[3])
                bin_[2], bin_[3] = list(pat.items), pat
                caps = totals()
                if all(caps[j] >= need[j] * (1 - 1e-12) for j in placed) and caps[i] > before[i]:
                    done = True
                    break
                bin_[2], bin_[3] = old
            if done:
                continue
            best = None  # a new whole GPU, or a new GPU partitioned into slices of one profile
            for g in problem.gpu_types:
                if left[g.name] <= 0:
                    continue
                w = gpu_weight(problem, g)
                options = [(None, 1)] + _homogeneous_layouts(g)
                for profile, slices in options:
                    pat = _solo_bin(problem, i, g, profile)
                    if pat is not None:
                        score = (w / (slices * pat.capacity[0]), g.name, profile or "")
                        if best is None or score < best[0]:
                            best = (score, g, profile, slices, pat)
            if best is None:
                return Status.INFEASIBLE, None, _why(
                    problem, f"first-fit decreasing ran out of GPUs for {problem.models[i].name!r}")
            _, g, profile, slices, pat = best
            left[g.name] -= 1
            gpus.append([g.name, None if profile is None else (profile,) * slices])
            for s in range(slices):
                bins.append([g.name, profile, list(pat.items) if s == 0 else [], pat if s == 0 else None,
                             len(gpus) - 1, s])
        placed.add(i)
    contents = []
    for pos, (gname, layout) in enumerate(gpus):
        mine = sorted((b for b in bins if b[4] == pos), key=lambda b: b[5])
        contents.append((gname, layout, [(b[1], b[3]) for b in mine]))
    return _checked(problem, contents)


#: policy name -> function(problem) -> (status, plan, message)
FLEET_POLICIES = {"fleet_ffd": ffd, "fleet_one_per_gpu": one_per_gpu, "fleet_cheapest_type": cheapest_type}
