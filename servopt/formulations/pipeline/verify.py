"""The exact feasibility check of ``pipeline`` plans, run on every solve's return path (no tolerance).

Throughput ``h`` of a replica is the profiled ``throughput_rps`` or ``1000 b / latency_ms``, the queue of a stage
``1000 (b - 1) / λ`` ms; both are exact fractions of the decimals the inputs print as (:mod:`servopt.exact`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from servopt.exact import dec

__all__ = ["replica_throughput", "stage_latency", "violations"]


def replica_throughput(point: Any) -> Fraction:
    """RPS of one replica at a profiled batch, exactly."""
    if point.throughput_rps is not None:
        return dec(point.throughput_rps)
    return 1000 * dec(point.batch_size) / dec(point.latency_ms)


def stage_latency(point: Any, workload_rps: float) -> Fraction:
    """A stage's latency plus its batching queue ``1000 (b - 1) / λ``, milliseconds, exactly."""
    return dec(point.latency_ms) + Fraction(1000 * (point.batch_size - 1)) / dec(workload_rps)


def violations(problem: Any, plan: Any) -> list[str]:
    """Every constraint ``plan`` breaks, decided exactly (empty: the plan is feasible).

    One entry per stage in order; the variant and batch size are profiled; ``1 <= replicas <= max_replicas``
    and ``replicas x h >= λ``; fixed variants and replicas of a restricted problem are kept; the end-to-end
    latency (stage latencies plus queues) is within the SLA.
    """
    errors: list[str] = []
    names = [s.name for s in plan.stages]
    if names != [s.name for s in problem.stages]:
        return [f"stages {names} != the pipeline's {[s.name for s in problem.stages]}"]
    lam = dec(problem.workload_rps)
    fixed_v = getattr(problem, "_fixed_variants", None) or {}
    fixed_n = getattr(problem, "_fixed_replicas", None) or {}
    latency = Fraction(0)
    for stage, row in zip(problem.stages, plan.stages):
        where = f"stage {stage.name!r}"
        variant = next((v for v in stage.variants if v.name == row.variant), None)
        if variant is None:
            errors.append(f"{where}: unknown variant {row.variant!r}")
            continue
        point = next((p for p in variant.batches if p.batch_size == row.batch_size), None)
        if point is None:
            errors.append(f"{where}: {variant.name} has no profiled batch size {row.batch_size}")
            continue
        n = row.replicas
        if not isinstance(n, int) or not 1 <= n <= problem.max_replicas:
            errors.append(f"{where}: replicas {n!r} not an integer in 1..{problem.max_replicas}")
            continue
        h = replica_throughput(point)
        if n * h < lam:
            errors.append(f"{where}: {n} replicas x {float(h)} RPS < workload {problem.workload_rps} RPS")
        if stage.name in fixed_v and fixed_v[stage.name] != variant.name:
            errors.append(f"{where}: variant {variant.name} but it is fixed to {fixed_v[stage.name]}")
        if stage.name in fixed_n and fixed_n[stage.name] != n:
            errors.append(f"{where}: {n} replicas but they are fixed to {fixed_n[stage.name]}")
        latency += stage_latency(point, problem.workload_rps)
    if not errors and latency > dec(problem.sla_ms):
        errors.append(f"end-to-end latency {float(latency)} ms > SLA {problem.sla_ms} ms")
    return errors
