"""The exact fleet MILP over patterns (no big-M), its decoder, and the slowdown-aware plan builder.

Bins are whole GPUs of a type and MIG slices of a profile; :mod:`servopt.formulations.fleet.patterns` enumerates
each bin's Pareto-maximal feasible contents. Variables (all integer, >= 0):

* ``x[p]``: whole GPUs of type t running pattern p;
* ``z[t, L]``: GPUs of type t partitioned into MIG layout L;
* ``y[q]``: slices of profile π (of type t) running slice pattern q.

Rows: ``Σ_p x[p] + Σ_L z[t,L] <= count_t``; ``Σ_{q of (t,π)} y[q] <= Σ_L n(L, π) z[t,L]`` (slots of one layout are
interchangeable, so any such counts assign to physical slices); ``Σ cap x + Σ cap y >= rate (1 + headroom)``
per model. Objective: Σ_t w_t (Σ_p x[p] + Σ_L z[t,L]) with w_t = price (cost), 1 (gpus) or the weighted mix.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from servopt.exceptions import SolverError
from servopt.formulations.fleet.patterns import Pattern, enumerate_patterns, slowdowns
from servopt.formulations.fleet.types import FleetGpu, FleetPlacement, FleetPlan
from servopt.model import Model

__all__ = ["bins", "build", "plan_from_gpus", "gpu_weight"]


def gpu_weight(problem: Any, gpu: Any) -> float:
    """The objective weight of one used GPU of type ``gpu``."""
    if problem.objective == "cost":
        return gpu.price_per_hour
    if problem.objective == "gpus":
        return 1.0
    return problem.weights["cost"] * gpu.price_per_hour + problem.weights["gpus"]


def bins(problem: Any) -> tuple[dict[tuple[str, str | None], list[Pattern]], bool]:
    """Patterns per bin key (type, profile or None), and whether any enumeration cap cut feasible contents."""
    out: dict[tuple[str, str | None], list[Pattern]] = {}
    truncated = False
    for g in problem.gpu_types:
        if g.count == 0:
            continue
        keys = [(None, g.memory_mb)] + [(p.profile, p.memory_mb) for p in g.mig]
        for profile, memory in keys:
            pats, cut = enumerate_patterns(problem, g.name, profile, memory, max_instances=problem.max_instances,
                                           max_models=problem.max_models)
            out[(g.name, profile)] = pats
            truncated |= cut
    return out, truncated


def build(problem: Any) -> tuple[Model, Any, bool]:
    """The pattern MILP, its decoder, and whether the pattern set was restricted by a cap."""
    patterns, truncated = bins(problem)
    model = Model(f"fleet:{problem.name}")
    n = len(problem.models)
    cover: list[tuple[list[int], list[float]]] = [([], []) for _ in range(n)]
    obj_cols: list[int] = []
    obj_coefs: list[float] = []
    x_vars: dict[tuple[str, str | None], list[int]] = {}
    z_vars: dict[str, list[int]] = {}
    for g in problem.gpu_types:
        if g.count == 0:
            continue
        w = gpu_weight(problem, g)
        type_cols: list[int] = []
        for key in [(g.name, None)] + [(g.name, p.profile) for p in g.mig]:
            cols = []
            for j, pat in enumerate(patterns[key]):
                ub = g.count if key[1] is None else g.count * 7
                v = model.add_var(f"x[{key[0]}/{key[1] or 'gpu'}#{j}]", kind="integer", ub=ub).index
                cols.append(v)
                for (i, _, _), cap in zip(pat.items, pat.capacity):
                    cover[i][0].append(v)
                    cover[i][1].append(cap)
            x_vars[key] = cols
        for v in x_vars[(g.name, None)]:
            type_cols.append(v)
            obj_cols.append(v)
            obj_coefs.append(w)
        zs = [model.add_var(f"z[{g.name}:{'+'.join(lay)}]", kind="integer", ub=g.count).index for lay in g.layouts]
        z_vars[g.name] = zs
        for v in zs:
            type_cols.append(v)
            obj_cols.append(v)
            obj_coefs.append(w)
        if type_cols:
            model.add_row(type_cols, np.ones(len(type_cols)), ub=float(g.count), name=f"count[{g.name}]")
        for p in g.mig:
            ys = x_vars[(g.name, p.profile)]
            slots = [(z, lay.count(p.profile)) for z, lay in zip(zs, g.layouts) if p.profile in lay]
            if ys:
                model.add_row(ys + [z for z, _ in slots], [1.0] * len(ys) + [-float(c) for _, c in slots], ub=0.0,
                              name=f"slices[{g.name}/{p.profile}]")
    for i, m in enumerate(problem.models):
        cols, coefs = cover[i]
        model.add_row(cols, coefs, lb=problem.required_rps(m), name=f"capacity[{m.name}]")
    model.set_objective_arrays(np.asarray(obj_cols, dtype=np.int64), np.asarray(obj_coefs, dtype=float), "min")

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
        return plan_from_gpus(problem, gpus, proven=not truncated)

    return model, decode, truncated


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
    if not proven:
        notes.append(f"restricted pattern set (at most {problem.max_instances} instances and {problem.max_models} "
                     "models per GPU or slice): the plan is feasible, not proven optimal")
    return FleetPlan(tuple(placements), tuple(used), cost, len(used), objective,
                     rates={m.name: m.rate_rps for m in problem.models}, headroom=problem.headroom,
                     notes=tuple(notes), proven_optimal=proven)

