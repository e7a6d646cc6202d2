"""The exact feasibility check of ``pipeline`` plans, run on every solve's return path (no tolerance).

Throughput ``h`` of a replica is the profiled ``throughput_rps`` or ``1000 b / latency_ms``, the queue of a stage
``1000 (b - 1) / λ`` ms; both are exact fractions of the decimals the inputs print as (:mod:`servopt.exact`).
A comparison is computed in floating point first and decided there when the two sides differ by more than
:data:`~servopt.exact.BORDER_RTOL` (relative; a float sum of a few thousand terms is off by less than 1e-12), else
in exact fractions: the answer is always the exact one.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from servopt.exact import dec, near

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
    lam_f = float(problem.workload_rps)
    fixed_v = getattr(problem, "_fixed_variants", None) or {}
    fixed_n = getattr(problem, "_fixed_replicas", None) or {}
    points = []
    latency_f = 0.0
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
        h_f = _float_throughput(point)
        if (n * replica_throughput(point) < dec(problem.workload_rps)) if near(n * h_f, lam_f) else n * h_f < lam_f:
            errors.append(f"{where}: {n} replicas x {float(replica_throughput(point))} RPS < workload "
                          f"{problem.workload_rps} RPS")
        if stage.name in fixed_v and fixed_v[stage.name] != variant.name:
            errors.append(f"{where}: variant {variant.name} but it is fixed to {fixed_v[stage.name]}")
        if stage.name in fixed_n and fixed_n[stage.name] != n:
            errors.append(f"{where}: {n} replicas but they are fixed to {fixed_n[stage.name]}")
        points.append(point)
        latency_f += float(point.latency_ms) + 1000.0 * (point.batch_size - 1) / lam_f
    sla_f = float(problem.sla_ms)
    if not errors and (latency_f > sla_f if not near(latency_f, sla_f) else
                       _exact_latency(points, problem.workload_rps) > dec(problem.sla_ms)):
        latency = _exact_latency(points, problem.workload_rps)
        shown = f"{float(latency)} ms" if float(latency) != float(problem.sla_ms) else f"{latency} ms exactly"
        errors.append(f"end-to-end latency {shown} > SLA {problem.sla_ms} ms")
    return errors


def _float_throughput(point: Any) -> float:
    if point.throughput_rps is not None:
        return float(point.throughput_rps)
    return 1000.0 * point.batch_size / float(point.latency_ms)


def _exact_latency(points: list[Any], workload_rps: float) -> Fraction:
    return sum((stage_latency(p, workload_rps) for p in points), Fraction(0))
