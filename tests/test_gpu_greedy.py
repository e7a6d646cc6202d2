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


def max_problem_for(seed: int, **kw) -> servopt.MaxThroughput:
    gpus, deadline = random_gpu_pool(seed, **kw)
    return servopt.MaxThroughput(deadline_s=deadline, gpus=gpus)


@pytest.mark.parametrize("seed", range(80))
def test_max_throughput_greedy_equals_the_milp(seed):
    from servopt.formulations.gpu.greedy import solve_greedy_max

    problem = max_problem_for(2000 + seed)
    status, plan, message = solve_greedy_max(problem)
    milp = servopt.solve(problem, "highs")
    assert status is milp.status
    if status is Status.OPTIMAL:
        assert plan.images == milp.objective and check_gpu_plan(problem, plan) == [] and problem.verify(plan) == []
        assert "optimal by the capacity bound" in message


@pytest.mark.parametrize("seed", range(40))
def test_max_throughput_greedy_equals_brute_force(seed):
    from servopt.formulations.gpu.greedy import solve_greedy_max

    problem = max_problem_for(3000 + seed, max_types=2, max_count=3, max_sizes=3, deadline_runs=6)
    best = None
    for counts in np.ndindex(*[g.max_count + 1 for g in problem.gpus]):  # every choice of GPUs, each at its best
        if sum(counts) == 0:
            continue
        images = []
        for g, n in zip(problem.gpus, counts):
            caps = [o.images for o in problem.options() if o.hardware == g.hardware]
            if n and not caps:
                break
            images.append(n * max(caps, default=0))
        else:
            best = max(best or 0, sum(images)) if sum(images) else best
    status, plan, _ = solve_greedy_max(problem)
    assert (status is Status.INFEASIBLE) if best is None else (status is Status.OPTIMAL and plan.images == best)


def test_max_throughput_dispatch_and_upper_bound_certificate():
    from servopt.formulations.gpu.greedy import UpperBound, check_upper_bound, solve_greedy_max

    problem = next(p for p in (max_problem_for(s) for s in range(50)) if solve_greedy_max(p)[1] is not None)
    solution = servopt.solve(problem)
    assert solution.backend == "greedy" and solution.result is None
    plan = solution.plan
    assert check_upper_bound(problem, plan, UpperBound(plan.images)) is None
    assert check_upper_bound(problem, plan, UpperBound(plan.images + 1)) is not None
    smaller = dataclasses.replace(plan, images=plan.images - 1)
    assert check_upper_bound(problem, smaller, UpperBound(plan.images)) is not None
    priced = [dataclasses.replace(g, cost_per_hour=1.0) for g in problem.gpus]
    budgeted = servopt.MaxThroughput(deadline_s=problem.deadline_s, gpus=priced, budget_per_hour=2.0)
    assert budgeted.default_backend is None and servopt.solve(budgeted).backend != "greedy"
    with pytest.raises(ValidationError, match="exact only without budget_per_hour"):
        budgeted.solve_with("greedy", SolveParams())


def test_pool_arrays_are_built_once_with_the_problem():
    from servopt.formulations.gpu.arrays import pool_arrays

    problem = problem_for(7)
    arrays = pool_arrays(problem)
    assert pool_arrays(problem) is arrays and problem.__dict__["_pool_arrays"] is arrays
    assert list(arrays.capacity) == sorted(arrays.capacity, reverse=True)
    assert arrays.total == sum(int(c) * int(n) for c, n in zip(arrays.capacity, arrays.count))
    assert problem.capacity() == arrays.total


def test_busy_check_in_floats_agrees_with_the_exact_decimals():
    import random

    from servopt.exact import dec
    from servopt.formulations.gpu.verify import _busy_within

    rng = random.Random(2)
    for _ in range(20_000):
        warm = round(rng.uniform(0.1, 2000), rng.choice([0, 1, 2]))
        lat = round(rng.uniform(0.1, 300), rng.choice([1, 2]))
        k = rng.randint(1, 60)
        deadline = round(rng.uniform(0.01, 20), rng.choice([0, 1, 2, 3]))
        if rng.random() < 0.5:  # exactly on (or a hair off) a busy-time boundary
            deadline = round((warm + (k - 1) * lat) / 1000 + rng.choice([0, 0, 1e-6, -1e-6]), 9)
        exact = dec(warm) + (k - 1) * dec(lat) <= dec(deadline) * 1000
        assert _busy_within(warm, lat, k, deadline) == exact, (warm, lat, k, deadline)
