"""Every plan servopt returns passes an exact (Fraction, tolerance-free) feasibility check on the return path."""

from __future__ import annotations

import dataclasses
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import servopt
import servopt.exceptions
from servopt import Status
from servopt.exact import dec
from servopt.formulations.gpu.max_throughput import MaxThroughput
from servopt.formulations.gpu.min_gpus import MinGPUs

ROOT = Path(__file__).resolve().parents[1]


def bench_pool(n_gpus: int, n_types: int, seed: int):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_gpus import make_pool
    finally:
        sys.path.pop(0)
    return make_pool(n_gpus, n_types, seed)


def test_scip_plan_short_of_n_is_repaired_not_reported_optimal():
    # outside testing found this: 10,000 GPUs of 10 types, fractional prices; SCIP's feasibility tolerance let its
    # plan process 395 images fewer than N while it reported "optimal" with an objective below the true optimum
    problem = MinGPUs(images=1_207_702_667, deadline_s=600, gpus=bench_pool(10_000, 10, 697), objective="cost")
    model, decode = problem.build()
    raw = servopt.solve(model, "scip")
    short = decode(raw)
    assert short.images < problem.images  # the solver's own answer is infeasible, exactly
    assert problem.verify(short) and "395 fewer" in problem.verify(short)[0]

    solution = servopt.solve(problem, "scip")
    assert solution.status is Status.OPTIMAL
    assert problem.verify(solution.plan) == []
    assert solution.plan.images >= problem.images
    assert "failed the exact feasibility check" in solution.message and "passes the exact check" in solution.message
    exact = servopt.solve(problem, "cpsat", scale=100)
    assert exact.status is Status.OPTIMAL and solution.objective == pytest.approx(exact.objective, abs=1e-9)
    assert servopt.solve(problem).plan.images >= problem.images  # auto picks SCIP here


def test_a_plan_that_cannot_be_repaired_is_an_error_without_plan(monkeypatch):
    a100 = servopt.GPUType("A100", max_count=4, cost_per_hour=4.1, batches={64: {"latency_ms": 20.0,
                                                                                  "warmup_ms": 1500.0}})
    problem = MinGPUs(images=50_000, deadline_s=10, gpus=[a100])
    monkeypatch.setattr(MinGPUs, "verify", lambda self, plan: ["made up violation"])
    solution = servopt.solve(problem, "highs")
    assert solution.status is Status.ERROR and solution.plan is None and solution.objective is None
    assert "made up violation" in solution.message and "no exactly feasible plan" in solution.message


def _pool(rng: np.random.Generator, types: int, big: bool):
    pool = []
    for t in range(types):
        lat = round(float(rng.uniform(2, 50)), 3)
        batches = {b: {"latency_ms": round(lat * (1 + 0.2 * i), 3), "warmup_ms": round(lat * float(rng.uniform(5, 50)), 3)}
                   for i, b in enumerate((1, 8, 64, 256))}
        pool.append(servopt.GPUType(f"gpu{t}", max_count=int(rng.integers(1, 10_000 if big else 40)),
                                    cost_per_hour=round(float(rng.uniform(0.2, 9.0)), int(rng.integers(0, 4))),
                                    batches=batches))
    return pool


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), big=st.booleans(), frac=st.floats(0.01, 0.99))
def test_min_gpus_cost_plans_are_exactly_feasible_and_agree_on_every_backend(seed, big, frac):
    rng = np.random.default_rng(seed)
    pool = _pool(rng, int(rng.integers(2, 5)), big)
    deadline = float(rng.choice([60.0, 3_600.0, 400_000.0])) if big else 60.0
    cap = MinGPUs(images=1, deadline_s=deadline, gpus=pool).capacity()
    if cap < 1:
        return
    n = max(1, min(int(cap * frac), 10**12))
    problem = MinGPUs(images=n, deadline_s=deadline, gpus=pool, objective="cost")
    objectives = {}
    for backend in ("highs", "cpsat", "scip", "gurobi", "cvxpy"):  # all five (Gurobi's model: <= 16 variables)
        if backend == "cpsat":
            (_, overrides), = problem.exact_fallbacks()
            try:
                solution = servopt.solve(problem, backend, **overrides)
            except servopt.exceptions.CapabilityError as exc:  # int64 overflow is refused, never wrapped
                assert "overflow" in str(exc)
                continue
        else:
            solution = servopt.solve(problem, backend)
        assert solution.status is Status.OPTIMAL, (backend, solution.message)
        assert problem.verify(solution.plan) == [], backend
        assert solution.plan.images >= n
        objectives[backend] = solution.objective
    values = list(objectives.values())
    assert max(values) - min(values) <= 1e-6 * max(1.0, abs(values[0])), objectives


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32 - 1))
def test_max_throughput_budget_plans_are_exactly_within_budget(seed):
    rng = np.random.default_rng(seed)
    pool = _pool(rng, int(rng.integers(2, 4)), False)
    budget = round(float(rng.uniform(0.5, 60.0)), 2)
    problem = MaxThroughput(deadline_s=60.0, gpus=pool, budget_per_hour=budget)
    for backend in ("highs", "scip", "cvxpy"):
        solution = servopt.solve(problem, backend)
        if solution.plan is None:
            continue
        cost = sum((dec(g.cost_per_hour) * grp.gpus for grp in solution.plan.groups for g in pool
                    if g.hardware == grp.hardware), Fraction(0))
        assert cost <= dec(budget), backend
        assert problem.verify(solution.plan) == []


def test_the_checkers_find_what_a_tampered_plan_breaks():
    pipeline = servopt.load_problem(ROOT / "examples" / "pipeline_video.yaml")
    plan = servopt.solve(pipeline).plan
    assert pipeline.verify(plan) == []
    first = plan.stages[0]
    fewer = dataclasses.replace(plan, stages=(dataclasses.replace(first, replicas=first.replicas - 1),) +
                                plan.stages[1:]) if first.replicas > 1 else None
    if fewer is not None:
        assert any("replicas" in v for v in pipeline.verify(fewer))
    tight = pipeline.update(sla_ms=plan.latency_ms * (1 - 1e-12)) if hasattr(pipeline, "update") else None
    if tight is not None:
        assert any("SLA" in v for v in tight.verify(plan))

    selection = servopt.load_problem(ROOT / "examples" / "variant_selection_infadapter.yaml")
    vplan = servopt.solve(selection).plan
    assert selection.verify(vplan) == []
    alloc = vplan.variants[0]
    over = dataclasses.replace(vplan, variants=(dataclasses.replace(alloc, rps=alloc.capacity_rps * 2),) +
                               vplan.variants[1:])
    assert selection.verify(over)


def test_k_max_and_the_checker_agree_on_a_decimal_boundary():
    # 0.3 + 7 * 0.1 ms = 1 ms exactly in decimal (1.0000000000000002 in binary): 8 batches fit, and the plan that
    # uses them passes the exact check
    gpu = servopt.GPUType("G", max_count=1, batches={1: {"latency_ms": 0.1, "warmup_ms": 0.3}})
    problem = MinGPUs(images=8, deadline_s=0.001, gpus=[gpu])
    solution = servopt.solve(problem, "highs")
    assert solution.status is Status.OPTIMAL and solution.plan.groups[0].batches_per_gpu == 8
    assert problem.verify(solution.plan) == []
    assert servopt.solve(MinGPUs(images=9, deadline_s=0.001, gpus=[gpu]), "highs").status is Status.INFEASIBLE
