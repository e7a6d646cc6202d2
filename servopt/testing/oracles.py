"""Independent checkers and brute-force references for plans (used by the tests; safe to use in production).

A checker re-derives every constraint of its formulation from the problem's inputs alone (it shares no code
with the model builders) and returns the list of violations: an empty list means the plan is feasible.

Sections are appended per formulation; keep each checker independent of the code it checks.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from fractions import Fraction
from typing import Any

from servopt.formulations.gpu.max_throughput import MaxThroughput
from servopt.formulations.gpu.min_gpus import MinGPUs

__all__ = ["check_gpu_plan", "gpu_runs", "brute_force_gpu", "exhaustive_gpu"]


# ------------------------------------------------------------------------------ min_gpus / max_throughput


def _d(x: float) -> Fraction:
    """A number as the decimal it prints as (the exact semantics of servopt.exact, restated independently)."""
    return Fraction(repr(float(x))) if not isinstance(x, int) else Fraction(x)


def _offered(gpu: Any, batch_size: int, slo_ms: float | None) -> tuple[Any, str | None]:
    point = next((p for p in gpu.batches if p.batch_size == batch_size), None)
    if point is None:
        return None, f"{gpu.hardware} has no profiled batch size {batch_size}"
    if gpu.max_batch_size is not None and batch_size > gpu.max_batch_size:
        return None, f"batch size {batch_size} exceeds {gpu.hardware}'s max_batch_size {gpu.max_batch_size}"
    if slo_ms is not None and _d(point.latency_ms) > _d(slo_ms):
        return None, f"{gpu.hardware} batch {batch_size} takes {point.latency_ms} ms > SLO {slo_ms} ms"
    return point, None


def check_gpu_plan(problem: Any, plan: Any) -> list[str]:
    """Violations of a ``min_gpus`` / ``max_throughput`` plan (empty list: the plan is feasible).

    Checked from the JSON form (``plan.to_dict()``) and the problem's inputs only: every group's hardware is in
    the pool and offers its batch size (max batch size, latency SLO); ``1 <= batches_per_gpu <= max_batches + 1``;
    busy time ``W + (k-1) L <= T``; group and total images and GPU counts add up; GPUs per type within
    ``max_count``; images >= N (``min_gpus``); cost per hour within the budget (``max_throughput``); and the
    plan's ``objective`` equals what it claims to optimise.
    """
    data = plan.to_dict() if hasattr(plan, "to_dict") else dict(plan)
    errors: list[str] = []
    pool = {g.hardware: g for g in problem.gpus}
    used: Counter[str] = Counter()
    images = gpus = 0
    cost = 0.0
    limit_ms = problem.deadline_s * 1000.0
    for n, grp in enumerate(data["groups"]):
        where = f"group {n} ({grp['hardware']}, batch {grp['batch_size']})"
        gpu = pool.get(grp["hardware"])
        if gpu is None:
            errors.append(f"{where}: hardware not in the pool")
            continue
        point, why = _offered(gpu, grp["batch_size"], problem.latency_slo_ms)
        if why:
            errors.append(f"{where}: {why}")
            continue
        k, count = grp["batches_per_gpu"], grp["gpus"]
        if not (isinstance(k, int) and k >= 1):
            errors.append(f"{where}: batches_per_gpu {k!r} is not an integer >= 1")
            continue
        if not (isinstance(count, int) and count >= 1):
            errors.append(f"{where}: gpus {count!r} is not an integer >= 1")
            continue
        if gpu.max_batches is not None and k - 1 > gpu.max_batches:
            errors.append(f"{where}: {k} batches exceed max_batches {gpu.max_batches} + 1")
        busy = _d(point.warmup_ms) + (k - 1) * _d(point.latency_ms)
        if busy > _d(problem.deadline_s) * 1000:
            errors.append(f"{where}: busy {busy} ms > deadline {limit_ms} ms")
        if grp["images"] != count * grp["batch_size"] * k:
            errors.append(f"{where}: images {grp['images']} != gpus x batch x batches")
        used[gpu.hardware] += count
        images += count * grp["batch_size"] * k
        gpus += count
        cost += count * (gpu.cost_per_hour or 0.0)
    for hw, count in used.items():
        if count > pool[hw].max_count:
            errors.append(f"{count} {hw} GPUs used, only {pool[hw].max_count} available")
    if data["gpus"] != gpus:
        errors.append(f"plan says {data['gpus']} GPUs, groups add up to {gpus}")
    if data["images"] != images:
        errors.append(f"plan says {data['images']} images, groups add up to {images}")
    priced = all(pool[hw].cost_per_hour is not None for hw in used)
    if priced and (data["cost_per_hour"] is None or not math.isclose(data["cost_per_hour"], cost, rel_tol=1e-9,
                                                                      abs_tol=1e-9)):
        errors.append(f"plan says cost {data['cost_per_hour']} per hour, groups add up to {cost}")
    if isinstance(problem, MinGPUs) and images < problem.images:
        errors.append(f"{images} images processed < {problem.images} requested")
    budget = getattr(problem, "budget_per_hour", None)
    if budget is not None and sum((_d(pool[hw].cost_per_hour or 0) * n for hw, n in used.items()),
                                  Fraction(0)) > _d(budget):
        errors.append(f"cost {cost} per hour exceeds the budget {budget}")
    objective = getattr(plan, "objective", None)
    if objective is not None:
        name = getattr(problem, "objective", "images")
        claimed = {"gpus": gpus, "cost": cost, "images": images}[name]
        if not math.isclose(objective, claimed, rel_tol=1e-9, abs_tol=1e-9):
            errors.append(f"plan objective {objective} != its {name} {claimed}")
    return errors


def gpu_runs(problem: Any, gpu: Any, limit: int = 100_000) -> list[tuple[int, int]]:
    """Every (batch size, batches) one GPU of type ``gpu`` can run within the deadline, by enumeration."""
    runs = []
    for p in gpu.batches:
        if _offered(gpu, p.batch_size, problem.latency_slo_ms)[1]:
            continue
        for k in itertools.count(1):
            if k > limit:
                raise ValueError(f"{gpu.hardware} runs more than {limit} batches: too large to enumerate")
            if gpu.max_batches is not None and k - 1 > gpu.max_batches:
                break
            if _d(p.warmup_ms) + (k - 1) * _d(p.latency_ms) > _d(problem.deadline_s) * 1000:
                break
            runs.append((p.batch_size, k))
    return runs


def _score(problem: Any, counts: dict[int, int], images: int) -> float | None:
    """The objective of using ``counts`` GPUs per type processing ``images``, or None if infeasible."""
    gpus = sum(counts.values())
    cost = sum(n * (problem.gpus[g].cost_per_hour or 0.0) for g, n in counts.items())
    if isinstance(problem, MinGPUs):
        if images < problem.images:
            return None
        return float(gpus) if problem.objective == "gpus" else cost
    budget = problem.budget_per_hour
    exact_cost = sum((n * _d(problem.gpus[g].cost_per_hour or 0) for g, n in counts.items()), Fraction(0))
    if gpus < 1 or (budget is not None and exact_cost > _d(budget)):
        return None
    return float(images)


def _better(problem: Any, a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return b if a is None else a
    return max(a, b) if isinstance(problem, MaxThroughput) else min(a, b)


def brute_force_gpu(problem: Any) -> float | None:
    """The optimal objective by enumeration (None: infeasible), for small pools.

    Enumerates every count vector (GPUs used per type); for each, the most images those GPUs process is the sum
    over GPUs of the best (batch size, batches) each can run, found by :func:`gpu_runs`. GPUs of one type are
    interchangeable and independent, so this is exact; :func:`exhaustive_gpu` checks it on tiny pools.
    """
    best_per_type = {}
    for g, gpu in enumerate(problem.gpus):
        runs = gpu_runs(problem, gpu)
        if runs and gpu.max_count > 0:
            best_per_type[g] = max(b * k for b, k in runs)
    types = sorted(best_per_type)
    best = None
    for counts in itertools.product(*(range(problem.gpus[g].max_count + 1) for g in types)):
        vector = dict(zip(types, counts))
        images = sum(n * best_per_type[g] for g, n in vector.items())
        best = _better(problem, best, _score(problem, vector, images))
    return best


def exhaustive_gpu(problem: Any, limit: int = 200_000) -> float | None:
    """The optimal objective by enumerating every GPU's own choice (idle or any (batch, batches) run).

    Exponential in the pool size: raises ValueError beyond ``limit`` assignments.
    """
    choices = []
    for g, gpu in enumerate(problem.gpus):
        runs = [None] + gpu_runs(problem, gpu)
        choices += [[(g, r) for r in runs]] * gpu.max_count
    size = math.prod(len(c) for c in choices)
    if size > limit:
        raise ValueError(f"{size} assignments exceed the limit {limit}")
    best = None
    for assignment in itertools.product(*choices):
        counts: Counter[int] = Counter()
        images = 0
        for g, run in assignment:
            if run is not None:
                counts[g] += 1
                images += run[0] * run[1]
        best = _better(problem, best, _score(problem, dict(counts), images))
    return best


def random_gpu_pool(seed: int, *, max_types: int = 3, max_count: int = 4, max_sizes: int = 6,
                    deadline_runs: int = 40) -> tuple[list[Any], float]:
    """A small random heterogeneous pool and a deadline, for property tests and benchmarks.

    Latencies are multiples of 0.1 ms and, for a third of the seeds, the deadline equals a busy time
    ``W + (k-1) L`` exactly, so floating-point rounding at the boundary is exercised. Returns ``(gpus, deadline_s)``
    with ``gpus`` a list of :class:`~servopt.formulations.gpu.types.GPUType` and deadlines of up to about
    ``deadline_runs`` batches.
    """
    import numpy as np

    from servopt.formulations.gpu.types import GPUType

    rng = np.random.default_rng(seed)
    sizes_all = [1, 2, 4, 8, 16, 32, 64, 128]
    gpus = []
    for g in range(int(rng.integers(1, max_types + 1))):
        floor_ms = round(float(rng.uniform(1.0, 10.0)), 1)
        slope = float(rng.uniform(0.02, 1.5))
        sizes = sorted(rng.choice(sizes_all, size=int(rng.integers(1, max_sizes + 1)), replace=False).tolist())
        batches = {}
        for b in sizes:
            lat = round(max(floor_ms, floor_ms * 0.5 + slope * b) * float(rng.uniform(0.9, 1.1)), 1)
            point: dict[str, float] = {"latency_ms": max(lat, 0.1)}
            if rng.random() < 0.7:
                point["warmup_ms"] = round(lat * float(rng.uniform(1.0, 15.0)), 1)
            batches[int(b)] = point
        gpus.append(GPUType(
            hardware=f"G{g}",
            max_count=int(rng.integers(0 if rng.random() < 0.1 else 1, max_count + 1)),
            batches=batches,
            cost_per_hour=float(rng.integers(1, 21)) / 4.0,
            max_batches=None if rng.random() < 0.6 else int(rng.integers(0, 8)),
            max_batch_size=None if rng.random() < 0.8 else int(rng.choice(sizes)),
        ))
    points = [p for gpu in gpus for p in gpu.batches]
    p = points[int(rng.integers(len(points)))]
    k = int(rng.integers(1, deadline_runs + 1))
    if rng.random() < 1 / 3:  # exactly on a busy-time boundary (in decimal)
        deadline_ms = round(p.warmup_ms + (k - 1) * p.latency_ms, 1)
    else:
        deadline_ms = float(rng.uniform(0.5, 1.0)) * (p.warmup_ms + (k - 1) * p.latency_ms)
    return gpus, deadline_ms / 1000.0


# ------------------------------------------------------------------------------ variant_selection / pipeline
# Independent of servopt.formulations.variant_selection.problem / pipeline: these re-derive every constraint and the
# objective from the problem's inputs (fields of the problem dataclasses) and the plan's JSON form.

__all__ += [
    "check_variant_selection_plan",
    "check_pipeline_plan",
    "exhaustive_variant_selection",
    "exhaustive_pipeline",
    "random_variant_selection",
    "random_pipeline",
]

#: relative tolerance on load/capacity, SLA and objective comparisons (the formulations' RATE_RTOL)
_ADAPTIVE_RTOL = 1e-9


def _close(a: float, b: float, tol: float = 1e-7) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def check_variant_selection_plan(problem: Any, plan: Any) -> list[str]:
    """Violations of a ``variant_selection`` plan (empty list: feasible and internally consistent).

    Checks: variants exist and appear once; cores are profiled counts within [min_cores, max_cores] and the
    budget; 0 <= rps <= capacity(cores); served loads add up to λ; reported cores, average accuracy, loading
    cost (largest load time among variants whose cores change to a new non-zero value) and objective equal
    their values recomputed from the inputs.
    """
    data = plan.to_dict() if hasattr(plan, "to_dict") else dict(plan)
    errors: list[str] = []
    variants = {v.name: v for v in problem.variants}
    lam = problem.workload_rps
    cores: dict[str, int] = {}
    served = total_acc = 0.0
    for row in data["variants"]:
        name, n, rps = row["name"], row["cores"], row["rps"]
        v = variants.get(name)
        if v is None:
            errors.append(f"variant {name!r} is not in the problem")
            continue
        if name in cores:
            errors.append(f"variant {name!r} appears twice")
        if not isinstance(n, int) or n < 1:
            errors.append(f"{name}: cores {n!r} is not an integer >= 1 (unloaded variants are omitted)")
            continue
        top = min(problem.core_budget, v.max_cores if v.max_cores is not None else problem.core_budget)
        if n not in v.capacity or not v.min_cores <= n <= top:
            errors.append(f"{name}: {n} cores is not a profiled count within [{v.min_cores}, {top}]")
            continue
        cores[name] = n
        if rps < -_ADAPTIVE_RTOL * lam:
            errors.append(f"{name}: negative load {rps}")
        if rps > v.capacity[n] + _ADAPTIVE_RTOL * max(1.0, lam):
            errors.append(f"{name}: serves {rps} RPS > capacity {v.capacity[n]} on {n} cores")
        served += rps
        total_acc += rps * v.accuracy
    if not math.isclose(served, lam, rel_tol=1e-7, abs_tol=1e-7):
        errors.append(f"served load {served} != workload {lam}")
    total = sum(cores.values())
    if total > problem.core_budget:
        errors.append(f"{total} cores exceed the budget {problem.core_budget}")
    if data["cores"] != total:
        errors.append(f"plan says {data['cores']} cores, variants add up to {total}")
    avg = total_acc / lam
    if not _close(data["average_accuracy"], avg):
        errors.append(f"plan says average accuracy {data['average_accuracy']}, loads give {avg}")
    changed = [v.load_time_s for v in problem.variants
               if cores.get(v.name, 0) > 0 and cores.get(v.name, 0) != v.current_cores]
    lc = max(changed, default=0.0)
    if not _close(data["loading_cost_s"], lc):
        errors.append(f"plan says loading cost {data['loading_cost_s']} s, changed variants give {lc} s")
    load_max = max(v.load_time_s for v in problem.variants)
    objective = problem.alpha * avg - problem.beta * total / problem.core_budget
    if load_max > 0:
        objective -= problem.gamma * lc / load_max
    claimed = getattr(plan, "objective", None)
    if claimed is not None and not _close(claimed, objective):
        errors.append(f"plan objective {claimed} != recomputed {objective}")
    return errors


def _ranks(values: list[float]) -> list[float]:
    levels = sorted(set(values))
    if len(levels) < 2:
        return [1.0 for _ in values]
    return [levels.index(a) / (len(levels) - 1) for a in values]


def check_pipeline_plan(problem: Any, plan: Any) -> list[str]:
    """Violations of a ``pipeline`` plan (empty list: feasible and internally consistent).

    Checks: one entry per stage in order; the variant and batch size are profiled; 1 <= replicas <=
    max_replicas and replicas x throughput >= λ; each stage's latency is its profiled latency and its queue
    (b - 1)/λ; the end-to-end latency is their sum and within the SLA; cores, accuracy (with the problem's
    aggregation and normalisation) and objective equal their values recomputed from the inputs. Fixed variants
    or replicas of a restricted problem (FA2 / RIM) are respected.
    """
    data = plan.to_dict() if hasattr(plan, "to_dict") else dict(plan)
    errors: list[str] = []
    lam = problem.workload_rps
    rows = data["stages"]
    if [r["name"] for r in rows] != [s.name for s in problem.stages]:
        return [f"stages {[r['name'] for r in rows]} != the pipeline's {[s.name for s in problem.stages]}"]
    fixed_v = getattr(problem, "_fixed_variants", None) or {}
    fixed_n = getattr(problem, "_fixed_replicas", None) or {}
    latency = cores = 0.0
    accs: list[float] = []
    batches = 0
    for stage, row in zip(problem.stages, rows):
        where = f"stage {stage.name!r}"
        names = [v.name for v in stage.variants]
        if row["variant"] not in names:
            errors.append(f"{where}: unknown variant {row['variant']!r}")
            continue
        v = stage.variants[names.index(row["variant"])]
        point = next((p for p in v.batches if p.batch_size == row["batch_size"]), None)
        if point is None:
            errors.append(f"{where}: {v.name} has no profiled batch size {row['batch_size']}")
            continue
        n = row["replicas"]
        if not isinstance(n, int) or not 1 <= n <= problem.max_replicas:
            errors.append(f"{where}: replicas {n!r} not an integer in 1..{problem.max_replicas}")
            continue
        h = point.throughput_rps if point.throughput_rps is not None else 1000.0 * point.batch_size / point.latency_ms
        if n * h < lam * (1 - _ADAPTIVE_RTOL):
            errors.append(f"{where}: {n} replicas x {h} RPS < workload {lam}")
        if stage.name in fixed_v and fixed_v[stage.name] != v.name:
            errors.append(f"{where}: variant {v.name} but it is fixed to {fixed_v[stage.name]}")
        if stage.name in fixed_n and fixed_n[stage.name] != n:
            errors.append(f"{where}: {n} replicas but they are fixed to {fixed_n[stage.name]}")
        queue = 1000.0 * (point.batch_size - 1) / lam
        if not _close(row["latency_ms"], point.latency_ms):
            errors.append(f"{where}: latency {row['latency_ms']} != profiled {point.latency_ms}")
        if not _close(row["queue_ms"], queue):
            errors.append(f"{where}: queue {row['queue_ms']} != (b - 1)/λ = {queue} ms")
        latency += point.latency_ms + queue
        cores += v.cores * n
        batches += point.batch_size
        raw = [u.accuracy for u in stage.variants]
        accs.append((_ranks(raw) if problem.normalize == "rank" else raw)[names.index(v.name)])
    if errors:
        return errors
    if latency > problem.sla_ms + _ADAPTIVE_RTOL * max(1.0, problem.sla_ms):
        errors.append(f"end-to-end latency {latency} ms > SLA {problem.sla_ms} ms")
    if not _close(data["latency_ms"], latency):
        errors.append(f"plan says latency {data['latency_ms']} ms, stages add up to {latency}")
    if not _close(data["cores"], cores):
        errors.append(f"plan says {data['cores']} cores, stages add up to {cores}")
    acc = {"sum": sum(accs), "average": sum(accs) / len(accs), "product": math.prod(accs)}[problem.accuracy]
    if not _close(data["accuracy"], acc):
        errors.append(f"plan says accuracy {data['accuracy']}, recomputed {acc}")
    objective = problem.alpha * acc - problem.beta * cores - problem.delta * batches
    claimed = getattr(plan, "objective", None)
    if claimed is not None and not _close(claimed, objective):
        errors.append(f"plan objective {claimed} != recomputed {objective}")
    return errors


def exhaustive_variant_selection(problem: Any) -> tuple[float, int, dict[str, int]] | None:
    """The optimum by enumerating every core vector: (objective, fewest changes among optima, cores).

    Loads are split by the fractional-knapsack rule (most accurate variant first), which is the optimal split
    for fixed cores. None when nothing serves λ. Exponential: for small instances only.
    """
    vs = list(problem.variants)
    lam = problem.workload_rps
    choices = []
    for v in vs:
        top = min(problem.core_budget, v.max_cores if v.max_cores is not None else problem.core_budget)
        choices.append([0] + [k for k in v.capacity if v.min_cores <= k <= top])
    load_max = max(v.load_time_s for v in vs)
    order = sorted(range(len(vs)), key=lambda i: -vs[i].accuracy)
    found: list[tuple[float, int, tuple[int, ...]]] = []
    for counts in itertools.product(*choices):
        if sum(counts) > problem.core_budget:
            continue
        caps = [vs[i].capacity[c] if c else 0.0 for i, c in enumerate(counts)]
        if sum(caps) < lam * (1 - _ADAPTIVE_RTOL):
            continue
        left, acc = lam, 0.0
        for i in order:
            take = min(caps[i], left)
            acc += take * vs[i].accuracy
            left -= take
        lc = max((vs[i].load_time_s for i, c in enumerate(counts) if c and c != vs[i].current_cores), default=0.0)
        obj = problem.alpha * acc / lam - problem.beta * sum(counts) / problem.core_budget
        if load_max > 0:
            obj -= problem.gamma * lc / load_max
        changes = sum(1 for i, c in enumerate(counts) if c != vs[i].current_cores)
        found.append((obj, changes, counts))
    if not found:
        return None
    best = max(f[0] for f in found)
    ties = [f for f in found if f[0] >= best - _ADAPTIVE_RTOL * max(1.0, abs(best))]
    obj, changes, counts = min(ties, key=lambda f: f[1])
    return best, changes, {v.name: c for v, c in zip(vs, counts) if c}


def exhaustive_pipeline(problem: Any, limit: int = 2_000_000) -> tuple[float, int] | None:
    """The optimum by enumerating every (variant, batch, replicas) per stage: (objective, fewest changes).

    Replicas run over 1..max_replicas (no use of the n* = ceil(λ/h) argument the formulation relies on). None
    when no plan is feasible. Raises ValueError beyond ``limit`` combinations.
    """
    lam = problem.workload_rps
    fixed_v = getattr(problem, "_fixed_variants", None) or {}
    fixed_n = getattr(problem, "_fixed_replicas", None) or {}
    current = problem.current or {}
    per_stage = []
    for stage in problem.stages:
        raw = [v.accuracy for v in stage.variants]
        used = _ranks(raw) if problem.normalize == "rank" else raw
        opts = []
        for v, a in zip(stage.variants, used):
            if stage.name in fixed_v and fixed_v[stage.name] != v.name:
                continue
            for p in v.batches:
                h = p.throughput_rps if p.throughput_rps is not None else 1000.0 * p.batch_size / p.latency_ms
                for n in range(1, problem.max_replicas + 1):
                    if stage.name in fixed_n and fixed_n[stage.name] != n:
                        continue
                    if n * h < lam * (1 - _ADAPTIVE_RTOL):
                        continue
                    dep = current.get(stage.name)
                    change = 0 if dep is None else (v.name != dep.variant) + (p.batch_size != dep.batch_size)
                    opts.append((p.latency_ms + 1000.0 * (p.batch_size - 1) / lam, a, v.cores * n, p.batch_size,
                                 change))
        per_stage.append(opts)
    size = math.prod(len(o) for o in per_stage)
    if size > limit:
        raise ValueError(f"{size} combinations exceed the limit {limit}")
    sla = problem.sla_ms + _ADAPTIVE_RTOL * max(1.0, problem.sla_ms)
    found: list[tuple[float, int]] = []
    for combo in itertools.product(*per_stage):
        if sum(o[0] for o in combo) > sla:
            continue
        accs = [o[1] for o in combo]
        acc = {"sum": sum(accs), "average": sum(accs) / len(accs), "product": math.prod(accs)}[problem.accuracy]
        obj = problem.alpha * acc - problem.beta * sum(o[2] for o in combo) - problem.delta * sum(o[3] for o in combo)
        found.append((obj, sum(o[4] for o in combo)))
    if not found:
        return None
    best = max(f[0] for f in found)
    return best, min(c for o, c in found if o >= best - _ADAPTIVE_RTOL * max(1.0, abs(best)))


def random_variant_selection(seed: int, *, max_variants: int = 4, max_budget: int = 10) -> Any:
    """A small random ``VariantSelection`` for property tests (decimal data: CP-SAT takes it with scale=).

    Capacities are whole RPS (so served loads are integral and the model is all-integer), accuracies have three
    decimals, load times one; about a third of the seeds repeat accuracies or load times (ties), and the current
    deployment is random. λ ranges up to a little above what the budget serves (some instances are infeasible).
    """
    import numpy as np

    from servopt.formulations.variant_selection.problem import Variant, VariantSelection

    rng = np.random.default_rng(seed)
    budget = int(rng.integers(2, max_budget + 1))
    ties = rng.random() < 1 / 3
    variants = []
    for i in range(int(rng.integers(1, max_variants + 1))):
        slope = float(rng.uniform(2.0, 30.0))
        counts = sorted({int(c) for c in rng.integers(1, budget + 1, size=int(rng.integers(1, 5)))})
        capacity = {c: float(max(0, round(slope * c + float(rng.normal(0, 3))))) for c in counts}
        min_cores = 1 if rng.random() < 0.7 else int(rng.integers(1, 3))
        acc = round(float(rng.choice([0.7, 0.75, 0.8])) if ties else float(rng.uniform(0.5, 0.95)), 3)
        load = round(float(rng.choice([2.0, 5.0])) if ties else float(rng.uniform(0.0, 9.0)), 1)
        current = int(rng.choice([0] + counts)) if rng.random() < 0.6 else 0
        variants.append(Variant(f"v{i}", acc, capacity, load_time_s=load, current_cores=current,
                                min_cores=min_cores, max_cores=None if rng.random() < 0.8 else budget))
    total = sum(max(v.capacity.values()) for v in variants)
    lam = float(max(1, int(rng.integers(1, max(2, int(total * 1.1) + 1)))))
    return VariantSelection(
        workload_rps=lam, core_budget=budget, variants=variants,
        alpha=1.0, beta=float(rng.choice([0.0, 0.05, 0.5])), gamma=float(rng.choice([0.0, 0.001, 0.2])),
        prefer_stable=bool(rng.random() < 0.5),
    )


def random_pipeline(seed: int, *, max_stages: int = 3, max_variants: int = 3, max_replicas: int = 4,
                    accuracy: str | None = None) -> Any:
    """A small random ``Pipeline`` for property tests (decimal data: CP-SAT takes sum/average with scale=).

    Latencies have one decimal, accuracies three; some batch sizes carry a measured throughput; about a third of
    the seeds repeat values (ties); most seeds have a current deployment and half prefer stable plans.
    """
    import numpy as np

    from servopt.formulations.pipeline.problem import Pipeline
    from servopt.formulations.pipeline.types import BatchProfile, Stage, StageDeployment, StageVariant

    rng = np.random.default_rng(seed)
    method = accuracy or str(rng.choice(["sum", "average", "product"]))
    normalize = "none" if method == "product" else str(rng.choice(["rank", "none"]))
    ties = rng.random() < 1 / 3
    lam = float(rng.integers(1, 40))
    stages, current = [], {}
    for s in range(int(rng.integers(1, max_stages + 1))):
        variants = []
        for v in range(int(rng.integers(1, max_variants + 1))):
            base = round(float(rng.choice([20.0, 40.0]) if ties else rng.uniform(5.0, 120.0)), 1)
            sizes = sorted({int(b) for b in rng.choice([1, 2, 4, 8], size=int(rng.integers(1, 4)))})
            batches = []
            for b in sizes:
                lat = round(base * (1 + 0.6 * (b - 1)) * float(rng.uniform(0.9, 1.1)), 1)
                thr = round(float(rng.uniform(0.5, 1.0)) * 1000.0 * b / lat, 1) if rng.random() < 0.3 else None
                batches.append(BatchProfile(b, max(lat, 0.1), thr))
            acc = round(float(rng.choice([0.6, 0.8]) if ties else rng.uniform(0.3, 0.95)), 3)
            variants.append(StageVariant(f"m{v}", acc, float(rng.choice([0.5, 1.0, 2.0])), batches))
        stages.append(Stage(f"s{s}", variants))
        if rng.random() < 0.7:
            v = variants[int(rng.integers(len(variants)))]
            current[f"s{s}"] = StageDeployment(v.name, v.batches[int(rng.integers(len(v.batches)))].batch_size)
    fastest = sum(min(p.latency_ms for v in st.variants for p in v.batches) for st in stages)
    return Pipeline(
        workload_rps=lam, sla_ms=round(fastest * float(rng.uniform(0.9, 3.0)), 1), stages=stages,
        alpha=float(rng.choice([1.0, 2.0, 10.0])), beta=float(rng.choice([0.0, 0.1, 1.0])),
        delta=float(rng.choice([0.0, 1e-6, 0.01])), accuracy=method, normalize=normalize,
        max_replicas=int(rng.integers(1, max_replicas + 1)), prefer_stable=bool(rng.random() < 0.5),
        current=current or None,
    )
