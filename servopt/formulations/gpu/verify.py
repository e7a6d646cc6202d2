"""The exact feasibility check of ``min_gpus`` / ``max_throughput`` plans, run on every solve's return path.

Integers for counts and images, :func:`servopt.exact.dec` fractions for times and prices: no tolerance. An empty
list means every constraint holds exactly.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from servopt.exact import dec

if TYPE_CHECKING:
    from servopt.formulations.gpu.plan import GPUPlan

__all__ = ["violations"]


def violations(problem: Any, plan: GPUPlan) -> list[str]:
    """Every constraint ``plan`` breaks, decided exactly (empty: the plan is feasible).

    Checks each group's hardware, batch size (profiled, within ``max_batch_size`` and the per-batch latency
    SLO), ``1 <= batches_per_gpu <= max_batches + 1``, busy time ``W + (k-1) L <= T``, and images =
    GPUs x batch x batches; GPUs per type within ``max_count``; the totals; images >= N (``min_gpus``) and
    cost per hour within the budget (``max_throughput``).
    """
    errors: list[str] = []
    pool = {g.hardware: g for g in problem.gpus}
    slo = getattr(problem, "latency_slo_ms", None)
    used: Counter[str] = Counter()
    images = gpus = 0
    for n, grp in enumerate(plan.groups):
        where = f"group {n} ({grp.hardware}, batch {grp.batch_size})"
        gpu = pool.get(grp.hardware)
        if gpu is None:
            errors.append(f"{where}: hardware not in the pool")
            continue
        point = gpu.point(grp.batch_size)
        if point is None:
            errors.append(f"{where}: {gpu.hardware} has no profiled batch size {grp.batch_size}")
            continue
        if gpu.max_batch_size is not None and grp.batch_size > gpu.max_batch_size:
            errors.append(f"{where}: above max_batch_size {gpu.max_batch_size}")
        if slo is not None and float(point.latency_ms) > float(slo):  # floats order as their decimals do
            errors.append(f"{where}: {point.latency_ms} ms per batch > latency SLO {slo} ms")
        k, count = grp.batches_per_gpu, grp.gpus
        if not (isinstance(k, int) and k >= 1 and isinstance(count, int) and count >= 1):
            errors.append(f"{where}: batches_per_gpu {k!r} and gpus {count!r} must be integers >= 1")
            continue
        if gpu.max_batches is not None and k - 1 > gpu.max_batches:
            errors.append(f"{where}: {k} batches exceed max_batches {gpu.max_batches} + 1")
        if not _busy_within(point.warmup_ms, point.latency_ms, k, problem.deadline_s):
            busy = dec(point.warmup_ms) + (k - 1) * dec(point.latency_ms)
            errors.append(f"{where}: busy {float(busy)} ms > deadline {float(dec(problem.deadline_s) * 1000)} ms")
        if grp.images != count * grp.batch_size * k:
            errors.append(f"{where}: images {grp.images} != gpus x batch x batches")
        used[gpu.hardware] += count
        images += count * grp.batch_size * k
        gpus += count
    for hw, count in used.items():
        if count > pool[hw].max_count:
            errors.append(f"{count} {hw} GPUs used, only {pool[hw].max_count} available")
    if plan.gpus != gpus:
        errors.append(f"plan says {plan.gpus} GPUs, its groups add up to {gpus}")
    if plan.images != images:
        errors.append(f"plan says {plan.images} images, its groups add up to {images}")
    requested = getattr(problem, "images", None)
    if requested is not None and images < requested:
        errors.append(f"the plan processes {images:,} images, {requested - images:,} fewer than the {requested:,} "
                      "requested")
    budget = getattr(problem, "budget_per_hour", None)
    if budget is not None:
        cost = sum((dec(pool[hw].cost_per_hour or 0) * n for hw, n in used.items()), dec(0))
        if cost > dec(budget):
            errors.append(f"cost {float(cost)} per hour exceeds the budget {budget}")
    return errors


def _busy_within(warmup_ms: float, latency_ms: float, k: int, deadline_s: float) -> bool:
    """Whether ``W + (k - 1) L <= 1000 T`` holds for the decimals the numbers print as.

    Decided in floating point when the two sides are farther apart than any rounding could move them (each float
    is within half an ulp of its decimal, each of the four operations adds at most half an ulp: a relative error
    far below the 1e-9 margin used), else exactly with :func:`servopt.exact.dec` fractions.
    """
    w, l, d = float(warmup_ms), float(latency_ms), float(deadline_s)
    if k < 2**50 and all(math.isfinite(x) for x in (w, l, d)):
        busy, limit = w + (k - 1) * l, d * 1000.0
        margin = 1e-9 * (abs(w) + (k - 1) * abs(l) + abs(limit)) + 1e-300
        if busy < limit - margin:
            return True
        if busy > limit + margin:
            return False
    return dec(warmup_ms) + (k - 1) * dec(latency_ms) <= dec(deadline_s) * 1000
