"""Why a fleet has no plan, in one sentence, decided from one model at a time (``FleetProblem.explain_infeasible``).

Two proofs, both cheap (each model alone, every GPU type and slice, every profiled batch):

* **no single placement**: a model has no GPU or slice (of a type with ``count > 0``; a slice of a profile some
  layout uses) with a profiled batch whose memory fits and whose latency bound ``F * latency_ms(b) <= slo_ms``
  holds with one instance alone. Co-location only adds slowdown and memory, so no plan can place it;
* **capacity**: a model's requirement ``rate_rps * (1 + headroom)`` exceeds what every GPU it can run on, given
  to it alone, serves: per GPU the best of the whole GPU and of every MIG layout (each slice at its best batch and
  instance count). A neighbour only slows a model's instances and takes memory, so sharing never gives it more.

When neither finds a model, the infeasibility (if any) is about the models together: they compete for the GPUs.
The solve still runs first (its phase 1 proves infeasibility on its own, and the tests of column generation rely
on it); these proofs only word its answer.
"""

from __future__ import annotations

import math
from typing import Any

from servopt.formulations.fleet.types import SLO_FACTOR

__all__ = ["unplaceable", "short_of_capacity", "reason"]

#: a model counts as short of capacity only below ``required * (1 - REL_TOL)``: far above the rounding of these
#: sums, so the proof never rejects a fleet the exact checker would accept
REL_TOL = 1e-9


def _bins(problem: Any) -> list[tuple[Any, str | None, float]]:
    """(GPU type, profile or None, memory) of every bin a plan can use: types with count > 0, and the slices of
    profiles at least one of the type's layouts holds."""
    out = []
    for g in problem.gpu_types:
        if g.count == 0:
            continue
        out.append((g, None, g.memory_mb))
        used = {prof for lay in g.layouts for prof in lay}
        out.extend((g, p.profile, p.memory_mb) for p in g.mig if p.profile in used)
    return out


def _label(g: Any, profile: str | None) -> str:
    return g.name if profile is None else f"{g.name}/{profile}"


def unplaceable(problem: Any) -> str | None:
    """The first model that has no feasible single placement (one instance alone on one GPU or slice), with the
    cause and its closest option; None when every model has one.

    Examples
    --------
    >>> from servopt.formulations.fleet.problem import FleetProblem
    >>> from servopt.formulations.fleet.types import FleetModel, GpuType, Performance
    >>> b = FleetModel("b", 100.0, 5.0, "p99", {"L4": Performance({1: 5.0, 4: 10.0}, 1000.0)})
    >>> print(unplaceable(FleetProblem(models=[b], gpu_types=[GpuType("L4", 4, 20000.0, 1.0)])))
    ... # doctest: +NORMALIZE_WHITESPACE
    model 'b': no GPU type with count > 0 has a batch that meets slo_ms 5 (p99: 2 x latency <= slo_ms; best:
    L4 batch 1, 2 x 5 ms = 10 ms)
    """
    bins = _bins(problem)
    for m in problem.models:
        factor = SLO_FACTOR[m.slo]
        options = []  # (where, batch, latency, memory of one instance, the bin's memory) of every profiled batch
        for g, profile, memory in bins:
            perf = problem.performance(m, g.name, profile)
            if perf is not None:
                options.extend((_label(g, profile), b, lat, perf.memory(b), memory)
                               for b, lat in perf.latency_ms.items())
        meets = [o for o in options if m.slo_ms / (factor * o[2]) >= 1]  # the pattern search's single-option test
        fits = [o for o in options if o[3] <= o[4]]
        if any(o[3] <= o[4] for o in meets):
            continue
        if not options:
            return f"model {m.name!r}: " + _no_bin(problem, m)
        slo = f"slo_ms {m.slo_ms:g} ({m.slo}: {factor:g} x latency <= slo_ms"

        def fastest(opts: list) -> str:
            where, b, lat, _, _ = min(opts, key=lambda o: (o[2], o[0], o[1]))
            return f"{where} batch {b}, {factor:g} x {lat:g} ms = {factor * lat:g} ms"

        def smallest(opts: list) -> str:
            where, b, _, mem, limit = min(opts, key=lambda o: (o[3] / o[4], o[0], o[1]))
            return f"{where} batch {b}, {mem:g} MB of {limit:g} MB"

        if not meets:
            return (f"model {m.name!r}: no GPU type with count > 0 has a batch that meets {slo}; best: "
                    f"{fastest(fits or options)}" + ("" if fits else "; nor does any batch fit memory") + ")")
        if not fits:
            return (f"model {m.name!r}: no batch of one instance fits the memory of a GPU or slice it can run on "
                    f"(smallest: {smallest(options)})")
        return (f"model {m.name!r}: no GPU or slice with count > 0 has a batch that both fits its memory and meets "
                f"{slo}; fastest that fits: {fastest(fits)}; smallest that meets the SLO: {smallest(meets)})")
    return None


def _no_bin(problem: Any, m: Any) -> str:
    """Why ``m`` has no bin at all: its performance entries name only types with count 0 (or unused profiles)."""
    zero = sorted({key.partition("/")[0] for key in m.performance if problem.gpu_type(key.partition("/")[0]).count
                   == 0})
    if zero and len(zero) == len({key.partition("/")[0] for key in m.performance}):
        return (f"it runs only on GPU type(s) with count 0 ({', '.join(zero)}); give one of them count > 0 or add a "
                "performance entry for another type")
    return (f"no GPU type with count > 0 can run it (performance entries: {', '.join(sorted(m.performance))}; a "
            "MIG profile is used only where a layout holds it)")


def _best_alone(problem: Any, m: Any, g: Any, profile: str | None, memory: float) -> float:
    """The most RPS ``m`` alone gets from one bin: the best batch and instance count (``math.inf`` when nothing
    bounds the instances)."""
    perf = problem.performance(m, g.name, profile)
    if perf is None:
        return 0.0
    f, _ = problem.colocation.factor(m.name, m.name, g.name)
    factor = SLO_FACTOR[m.slo]
    best = 0.0
    for b, lat in perf.latency_ms.items():
        slack = m.slo_ms / (factor * lat)
        mem = perf.memory(b)
        if slack < 1 or mem > memory:
            continue
        # k instances run at slowdown 1 + (k - 1)(f - 1): throughput k / s grows with k only while f < 2
        k_max = math.inf if f < 2 else 1
        if f > 1:
            k_max = min(k_max, 1 + math.floor((slack - 1) / (f - 1) + 1e-9))
        if mem > 0:
            k_max = min(k_max, math.floor(memory / mem + 1e-9))
        if problem.max_instances is not None:
            k_max = min(k_max, problem.max_instances)
        if math.isinf(k_max):
            return math.inf
        k_max = max(int(k_max), 1)
        best = max(best, k_max * 1000.0 * b / (lat * (1 + (k_max - 1) * (f - 1))))
    return best


def short_of_capacity(problem: Any) -> str | None:
    """The first model whose requirement exceeds what all the GPUs it can run on serve it alone; None if none."""
    bins = _bins(problem)
    for m in problem.models:
        required = problem.required_rps(m)
        per_type: list[tuple[str, int, float]] = []
        total = 0.0
        for g in problem.gpu_types:
            if g.count == 0:
                continue
            whole = _best_alone(problem, m, g, None, g.memory_mb)
            slices = {prof: _best_alone(problem, m, g, prof, mem)
                      for t, prof, mem in bins if t is g and prof is not None}
            per_gpu = max([whole] + [sum(slices.get(prof, 0.0) for prof in lay) for lay in g.layouts])
            if per_gpu > 0:
                per_type.append((g.name, g.count, per_gpu))
                total += g.count * per_gpu
        if total < required * (1 - REL_TOL):
            served = ", ".join(f"{t}: {n} x {c:.6g} RPS" for t, n, c in per_type)
            gpus = sum(n for _, n, _ in per_type)
            return (f"model {m.name!r} needs {required:.6g} RPS (rate_rps {m.rate_rps:g} x (1 + headroom "
                    f"{problem.headroom:g})), and the {gpus} GPU(s) it can run on, serving it alone, give at most "
                    f"{total:.6g} RPS ({served or 'none'}); add GPUs of those types or lower rate_rps or headroom")
    return None


def reason(problem: Any) -> str | None:
    """Why no plan can exist, when a model alone already shows it (:func:`unplaceable`, then
    :func:`short_of_capacity`); None otherwise."""
    return unplaceable(problem) or short_of_capacity(problem)
