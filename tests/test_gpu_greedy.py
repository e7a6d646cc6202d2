"""min_gpus's exact greedy (objective gpus): the MILP and brute force as cross-checks, the certificate, dispatch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import servopt
from servopt.exceptions import ValidationError
from servopt.formulations.gpu.greedy import Certificate, check_certificate, solve_greedy
from servopt.result import SolveParams, Status
from servopt.testing.oracles import brute_force_gpu, check_gpu_plan, random_gpu_pool


def problem_for(seed: int, **kw) -> servopt.MinGPUs:
    gpus, deadline = random_gpu_pool(seed, **kw)
    rng = np.random.default_rng(seed)
    capacity = sum(g.max_count * max((b.batch_size for b in g.batches), default=1) * 40 for g in gpus)
    return servopt.MinGPUs(images=int(rng.integers(1, max(2, capacity))), deadline_s=deadline, gpus=gpus)


@pytest.mark.parametrize("seed", range(150))
def test_greedy_equals_the_milp(seed):
    problem = problem_for(seed)
    status, plan, message = solve_greedy(problem)
    milp = servopt.solve(problem, "highs")
    assert status is milp.status
    if status is Status.OPTIMAL:
        assert plan.gpus == milp.objective and check_gpu_plan(problem, plan) == [] and problem.verify(plan) == []
        assert "optimal by the capacity bound" in message


@pytest.mark.parametrize("seed", range(60))
def test_greedy_equals_brute_force(seed):
    problem = problem_for(1000 + seed, max_types=2, max_count=3, max_sizes=3, deadline_runs=6)
    expected = brute_force_gpu(problem)
    status, plan, _ = solve_greedy(problem)
    if expected is None:
        assert status is Status.INFEASIBLE
    else:
        assert status is Status.OPTIMAL and plan.gpus == expected


def test_certificate_is_checked_and_a_wrong_one_is_refused():
    problem = next(p for p in (problem_for(s) for s in range(50)) if solve_greedy(p)[1] is not None
                   and solve_greedy(p)[1].gpus >= 2)
    _, plan, _ = solve_greedy(problem)
    # the right certificate, re-derived from the problem's numbers: exactly one short_by holds
    holds = [k for k in range(1, problem.images + 1)
             if check_certificate(problem, plan, Certificate(plan.gpus, k)) is None]
    assert len(holds) == 1
    assert check_certificate(problem, plan, Certificate(plan.gpus + 1, holds[0])) is not None
    assert check_certificate(problem, plan, Certificate(plan.gpus - 1, holds[0])) is not None


def test_default_backend_only_where_exact():
    gpus, deadline = random_gpu_pool(3)
    for g in gpus:
        object.__setattr__(g, "max_count", max(g.max_count, 1))
    problem = servopt.MinGPUs(images=10, deadline_s=deadline, gpus=gpus)
    solution = servopt.solve(problem)
    assert solution.backend == "greedy" and solution.result is None
    priced = dataclasses.replace(problem, objective="cost")
    assert servopt.solve(priced).backend != "greedy"
    assert dataclasses.replace(problem, formulation="per_gpu").default_backend is None
    with pytest.raises(ValidationError, match="exact only for objective 'gpus'"):
        priced.solve_with("greedy", SolveParams())
    with pytest.raises(ValidationError, match="unknown algorithm"):
        problem.solve_with("knapsack", SolveParams())


def test_ten_thousand_gpus_of_a_hundred_types():
    rng = np.random.default_rng(0)
    gpus = [servopt.GPUType(f"G{g}", max_count=100, batches={
        b: {"latency_ms": round(float(rng.uniform(1, 5)) * b**0.8, 2)} for b in (1, 8, 64)}) for g in range(100)]
    problem = servopt.MinGPUs(images=10**9, deadline_s=600, gpus=gpus)
    solution = servopt.solve(problem)
    milp = servopt.solve(problem, "highs")
    assert solution.backend == "greedy" and solution.objective == milp.objective
    assert check_gpu_plan(problem, solution.plan) == []


def test_max_batches_in_floats_agrees_with_the_exact_decimals():
    import random

    from servopt.exact import dec, floor_div
    from servopt.formulations.gpu.types import max_batches_within

    rng = random.Random(1)
    for _ in range(20_000):
        warm = round(rng.uniform(0, 2000), rng.choice([0, 1, 2]))
        lat = round(rng.uniform(0.1, 300), rng.choice([1, 2]))
        deadline = round(rng.uniform(0.01, 700), rng.choice([0, 1, 2, 3]))
        if rng.random() < 0.4:  # exactly on a busy-time boundary
            deadline = round((warm + rng.randint(0, 50) * lat) / 1000, 6)
        limit = dec(deadline) * 1000
        exact = 0 if dec(warm) > limit else 1 + floor_div(limit - dec(warm), dec(lat))
        assert max_batches_within(deadline, warm, lat) == exact, (deadline, warm, lat)
