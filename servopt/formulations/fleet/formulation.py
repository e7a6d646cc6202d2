"""The exact fleet MILP over patterns (no big-M), its decoder, and the slowdown-aware plan builder.

Bins are whole GPUs of a type and MIG slices of a profile; :mod:`servopt.formulations.fleet.colgen` gives each
bin's patterns (all Pareto-maximal feasible contents, or those column generation found, with a lower bound).
Capacities enter the rows clipped at the model's requirement (``min(c, r)``: the same feasible plans, a tighter LP
relaxation). Variables (all integer, >= 0):

* ``x[p]``: whole GPUs of type t running pattern p;
* ``z[t, L]``: GPUs of type t partitioned into MIG layout L;
* ``y[q]``: slices of profile π (of type t) running slice pattern q.

Rows: ``Σ_p x[p] + Σ_L z[t,L] <= count_t``; ``Σ_{q of (t,π)} y[q] <= Σ_L n(L, π) z[t,L]`` (slots of one layout are
interchangeable, so any such counts assign to physical slices); ``Σ cap x + Σ cap y >= rate (1 + headroom)``
per model. Objective: Σ_t w_t (Σ_p x[p] + Σ_L z[t,L]) with w_t = price (cost), 1 (gpus) or the weighted mix.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from servopt.exceptions import SolverError
from servopt.formulations.fleet.colgen import GAP_TOL, Generated, bin_keys, generate
from servopt.formulations.fleet.pattern_milp import gpu_weight, milp
from servopt.formulations.fleet.patterns import Pattern, enumerate_patterns, slowdowns
from servopt.formulations.fleet.types import FleetGpu, FleetPlacement, FleetPlan
from servopt.model import Model

__all__ = ["bins", "milp", "build", "plan_from_gpus", "gpu_weight", "caps_text"]


def bins(problem: Any) -> tuple[dict[tuple[str, str | None], list[Pattern]], bool]:
    """Patterns per bin key (type, profile or None) by full enumeration, and whether a user cap cut a content."""
    out: dict[tuple[str, str | None], list[Pattern]] = {}
    truncated = False
    for g, profile, memory in bin_keys(problem):
        pats, cut = enumerate_patterns(problem, g.name, profile, memory, max_instances=problem.max_instances,
                                       max_models=problem.max_models)
        out[(g.name, profile)] = pats
        truncated |= cut
    return out, truncated


def build(problem: Any) -> tuple[Model, Any, Generated]:
    """The pattern MILP, its decoder, and what the pattern set proves (:mod:`servopt.formulations.fleet.colgen`)."""
    gen = generate(problem)
    patterns = gen.patterns
    model, x_vars, z_vars = milp(problem, patterns)

    def decode(result: Any) -> FleetPlan:
        values = np.rint(np.asarray(result.values)).astype(int)
        gpus: list[tuple[str, tuple[str, ...] | None, list[tuple[str | None, Pattern]]]] = []
        for g in problem.gpu_types:
            if g.count == 0:
                continue
            for pat, v in zip(patterns[(g.name, None)], x_vars[(g.name, None)]):
                gpus.extend((g.name, None, [(None, pat)]) for _ in range(values[v]))
            queues = {p.profile: [pat for pat, v in zip(patterns[(g.name, p.profile)], x_vars[(g.name, p.profile)])
                                  for _ in range(values[v])] for p in g.mig}
            for lay, z in zip(g.layouts, z_vars[g.name]):
                for _ in range(values[z]):
                    slices = [(prof, queues[prof].pop() if queues[prof] else None) for prof in lay]
                    gpus.append((g.name, lay, slices))
            if any(queues.values()):
                raise SolverError(f"backend {result.backend!r}: more {g.name} slice patterns than layout slots")
        plan = plan_from_gpus(problem, gpus, proven=False)
        return _with_bound(problem, plan, gen, result)

    return model, decode, gen


def _with_bound(problem: Any, plan: FleetPlan, gen: Generated, result: Any) -> FleetPlan:
    """``plan`` with its lower bound, gap, proof status and the notes saying how they were obtained."""
    from dataclasses import replace

    from servopt.result import Status

    z = plan.objective
    lb = gen.lower_bound
    optimal = result.status is Status.OPTIMAL
    if gen.complete and result.best_bound is not None and math.isfinite(result.best_bound):
        lb = max(lb if lb is not None else -math.inf, z if optimal else result.best_bound)
    if lb is not None and problem.objective == "gpus":
        lb = math.ceil(lb - 1e-6)  # GPU counts are integers
    if lb is not None:
        lb = min(lb, z)
    gap = None if lb is None else (z - lb) / max(abs(z), 1e-12)
    proven = (gen.complete and optimal) or (gap is not None and gap <= GAP_TOL)
    notes = list(plan.notes) + list(gen.notes)
    if not proven:
        if gen.truncated:
            notes.append(f"restricted pattern set ({caps_text(problem)}): the plan is feasible, not proven "
                         "optimal")
        elif lb is not None:
            notes.append(f"lower bound {lb:.6g} ({gen.method}): gap {100 * gap:.4g} %, the plan is feasible, not "
                         "proven optimal")
        else:  # the MILP's best bound holds only over the incomplete pattern set: no bound on the problem
            notes.append(f"no lower bound ({gen.method} did not prove its LP bound, and the MILP's bound holds "
                         "only over the columns generated): the plan is feasible, not proven optimal")
    return replace(plan, notes=tuple(notes), proven_optimal=proven, lower_bound=lb, gap=gap)


def caps_text(problem: Any) -> str:
    """The caps the problem gives, in words: ``max_models 1: at most 1 model per GPU or slice``."""
    given = [(key, n, what) for key, what in (("max_instances", "instance"), ("max_models", "model"))
             if (n := getattr(problem, key)) is not None]
    if not given:
        return "max_instances / max_models"
    return (", ".join(f"{key} {n}" for key, n, _ in given) + ": at most "
            + " and ".join(f"{n} {what}{'s' if n != 1 else ''}" for _, n, what in given) + " per GPU or slice")


def plan_from_gpus(problem: Any, gpus: list, proven: bool = True, notes: tuple[str, ...] = ()) -> FleetPlan:
    """A plan from GPU contents: ``[(type, layout or None, [(profile or None, Pattern or None), ...]), ...]``."""
    index: Counter = Counter()
    placements, used = [], []
    scaled, default_used = set(), False
    for gpu_type, layout, slices in gpus:
        g = problem.gpu_type(gpu_type)
        if layout is None and (not slices or slices[0][1] is None):
            continue
        k = index[gpu_type]
        index[gpu_type] += 1
        used.append(FleetGpu(gpu_type, k, k // g.gpus_per_node, tuple(layout) if layout is not None else None))
        for s, (profile, pat) in enumerate(slices):
            if pat is None:
                continue
            sd = slowdowns(problem, gpu_type, pat.items)
            names = [problem.models[i].name for i, _, _ in pat.items]
            for (i, b, inst), (factor, source) in zip(pat.items, sd):
                m = problem.models[i]
                perf = problem.performance(m, gpu_type, profile)
                if perf.scaled_from:
                    scaled.add(f"{m.name} on {gpu_type}/{profile}")
                default_used |= source == "default"
                lat = perf.latency_ms[b] * factor
                placements.append(FleetPlacement(
                    model=m.name, gpu_type=gpu_type, gpu_index=k, mig_profile=profile,
                    slice_index=s if layout is not None else None, instances=inst, batch_size=b,
                    capacity_rps=inst * 1000.0 * b / lat, latency_ms=lat, memory_mb=perf.memory(b, inst),
                    slowdown=factor, slowdown_source=source,
                    co_located=tuple(n for n in names if n != m.name)))
    cost = sum(problem.gpu_type(g.gpu_type).price_per_hour for g in used)
    objective = sum(gpu_weight(problem, problem.gpu_type(g.gpu_type)) for g in used)
    notes = list(notes)
    if default_used:
        notes.append(f"co-location slowdown: the default factor {problem.colocation.default_slowdown:g} was used "
                     "for pairs without a measured factor")
    if scaled:
        notes.append("MIG latencies scaled by 7/compute from the whole GPU (no slice profile): "
                     + ", ".join(sorted(scaled)))
    return FleetPlan(tuple(placements), tuple(used), cost, len(used), objective,
                     rates={m.name: m.rate_rps for m in problem.models}, headroom=problem.headroom,
                     notes=tuple(notes), proven_optimal=proven)


