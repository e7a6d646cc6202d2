"""The exact checker of fleet plans (Fractions, no tolerance): every constraint a plan breaks, in words.

Recomputed from the problem, never read from the plan: memory per GPU/slice, slowdowns from the co-located
instances, latency bounds, capacity per model against ``rate * (1 + headroom)``, GPU counts per type, MIG layouts,
and the cost / GPU count / objective the plan reports.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

from servopt.exact import dec
from servopt.formulations.fleet.types import SLO_FACTOR, FleetPlan

__all__ = ["violations"]


def _close(a: float, b: Fraction) -> bool:
    return abs(dec(a) - b) <= Fraction(1, 10**6) * max(1, abs(b))


def violations(problem: Any, plan: FleetPlan) -> list[str]:
    """Every constraint ``plan`` breaks (empty when it is feasible)."""
    out: list[str] = []
    gpus = {}
    for g in plan.gpus:
        if (g.gpu_type, g.gpu_index) in gpus:
            out.append(f"GPU {g.gpu_type}#{g.gpu_index} listed twice")
        gpus[(g.gpu_type, g.gpu_index)] = g
        t = problem.gpu_type(g.gpu_type)
        if g.node != g.gpu_index // t.gpus_per_node:
            out.append(f"GPU {g.gpu_type}#{g.gpu_index}: node {g.node}, expected {g.gpu_index // t.gpus_per_node}")
        if g.mig_layout is not None and tuple(sorted(g.mig_layout)) not in t.layouts:
            out.append(f"GPU {g.gpu_type}#{g.gpu_index}: MIG layout {list(g.mig_layout)} is not allowed")
    for t in problem.gpu_types:
        n = sum(1 for g in plan.gpus if g.gpu_type == t.name)
        if n > t.count:
            out.append(f"{n} GPUs of type {t.name} used, {t.count} available")
    bins: dict[tuple, list] = defaultdict(list)
    for p in plan.placements:
        g = gpus.get((p.gpu_type, p.gpu_index))
        if g is None:
            out.append(f"placement of {p.model} on unlisted GPU {p.gpu_type}#{p.gpu_index}")
            continue
        if (g.mig_layout is None) != (p.mig_profile is None):
            out.append(f"placement of {p.model} on {p.gpu_type}#{p.gpu_index}: MIG profile {p.mig_profile} does not "
                       "match the GPU's partition")
            continue
        if g.mig_layout is not None and (p.slice_index is None or not 0 <= p.slice_index < len(g.mig_layout)
                                         or g.mig_layout[p.slice_index] != p.mig_profile):
            out.append(f"placement of {p.model} on {p.gpu_type}#{p.gpu_index}: slice {p.slice_index} is not a "
                       f"{p.mig_profile}")
            continue
        bins[(p.gpu_type, p.gpu_index, p.slice_index)].append(p)
    models = {m.name: m for m in problem.models}
    capacity: dict[str, Fraction] = defaultdict(Fraction)
    for (gtype, gi, si), group in bins.items():
        names = [p.model for p in group]
        if len(set(names)) != len(names):
            out.append(f"{gtype}#{gi} slice {si}: a model placed twice")
        profile = group[0].mig_profile
        t = problem.gpu_type(gtype)
        limit = dec(t.memory_mb) if profile is None else dec(t.profile(profile).memory_mb)
        memory = Fraction(0)
        for p in group:
            m = models.get(p.model)
            perf = problem.performance(m, gtype, profile) if m is not None else None
            if perf is None:
                out.append(f"{p.model} cannot run on {gtype}{'/' + profile if profile else ''}")
                continue
            if p.batch_size not in perf.latency_ms or p.instances < 1:
                out.append(f"{p.model} on {gtype}#{gi}: batch {p.batch_size} not profiled or no instances")
                continue
            one = dec(perf.memory_table[p.batch_size]) if perf.memory_table is not None else \
                dec(perf.instance_mb) + dec(perf.per_batch_mb) * p.batch_size
            memory += p.instances * one
            s = Fraction(1)
            for q in group:
                others = q.instances - (1 if q.model == p.model else 0)
                if others > 0:
                    f, _ = problem.colocation.factor(p.model, q.model, gtype)
                    s += others * (dec(f) - 1)
            lat = dec(perf.latency_ms[p.batch_size]) * s
            if not _close(p.slowdown, s):
                out.append(f"{p.model} on {gtype}#{gi}: slowdown {p.slowdown:g} reported, {float(s):g} recomputed")
            if dec(SLO_FACTOR[m.slo]) * lat > dec(m.slo_ms):
                out.append(f"{p.model} on {gtype}#{gi}: {m.slo} latency {float(SLO_FACTOR[m.slo] * lat):g} ms "
                           f"exceeds the SLO {m.slo_ms:g} ms")
            cap = p.instances * 1000 * p.batch_size / lat
            if not _close(p.capacity_rps, cap):
                out.append(f"{p.model} on {gtype}#{gi}: capacity {p.capacity_rps:g} reported, {float(cap):g} exact")
            capacity[p.model] += cap
        if memory > limit:
            out.append(f"{gtype}#{gi} slice {si}: memory {float(memory):g} MB exceeds {float(limit):g} MB")
    for m in problem.models:
        need = dec(m.rate_rps) * (1 + dec(problem.headroom))
        if capacity[m.name] < need:
            out.append(f"{m.name}: capacity {float(capacity[m.name]):g} RPS < required {float(need):g}")
    cost = sum((dec(problem.gpu_type(g.gpu_type).price_per_hour) for g in plan.gpus), Fraction(0))
    if not _close(plan.cost_per_hour, cost) or plan.gpu_count != len(plan.gpus):
        out.append(f"reported cost {plan.cost_per_hour:g} / GPUs {plan.gpu_count} differ from {float(cost):g} / "
                   f"{len(plan.gpus)}")
    return out
