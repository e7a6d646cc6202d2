"""variant_selection's exact dynamic programming: brute force, the MILP, scaling of decimal data, fallbacks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import servopt
from servopt.exceptions import ValidationError
from servopt.testing.oracles import (
    check_variant_selection_plan,
    exhaustive_variant_selection,
    random_variant_selection,
)
from servopt.formulations.variant_selection.dp import _Windows, grid_scale, solve_dp
from servopt.formulations.variant_selection.problem import Variant, VariantSelection
from servopt.result import Status

N_BRUTE = 300


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def unstable(problem: VariantSelection) -> VariantSelection:
    return dataclasses.replace(problem, prefer_stable=False)


def infadapter_like(n: int, seed: int = 0, budget: int = 20, workload: float = 120.0) -> VariantSelection:
    rng = np.random.default_rng(seed)
    variants = []
    for m in range(n):
        t = m / max(1, n - 1)
        slope = 24.4 * (1 - t) + 3.8 * t
        capacity = {k: float(max(0, round(slope * k - 3 + rng.normal(0, 1)))) for k in range(1, budget + 1)}
        variants.append(Variant(f"v{m}", round(0.69 + 0.09 * t + float(rng.uniform(0, 0.004)), 5), capacity,
                                load_time_s=round(float(rng.uniform(6.4, 8.6)), 2), min_cores=2,
                                current_cores=budget if m == n - 1 else 0))
    return VariantSelection(workload, budget, variants, gamma=float(rng.choice([0.001, 0.05])))


@pytest.mark.parametrize("seed", range(N_BRUTE))
def test_dp_equals_brute_force(seed):
    problem = unstable(random_variant_selection(seed, max_variants=5, max_budget=12))
    expected = exhaustive_variant_selection(problem)
    status, plan, _ = solve_dp(problem)
    if expected is None:
        assert status is Status.INFEASIBLE and plan is None
        return
    assert status is Status.OPTIMAL
    assert check_variant_selection_plan(problem, plan) == []
    assert close(plan.objective, expected[0]), (plan.objective, expected)


@pytest.mark.parametrize("seed", range(6))
def test_dp_equals_milp_on_larger_instances(seed):
    problem = infadapter_like(30 + 10 * seed, seed)
    dp = servopt.solve(problem)
    milp = servopt.solve(problem, "highs")
    assert dp.backend == "dp" and dp.status is Status.OPTIMAL and milp.status is Status.OPTIMAL
    assert close(dp.objective, milp.objective), (dp.objective, milp.objective)
    assert check_variant_selection_plan(problem, dp.plan) == []


@pytest.mark.parametrize("seed", range(40))
def test_decimal_capacities_are_scaled_exactly(seed):
    base = unstable(random_variant_selection(seed, max_variants=4, max_budget=8))
    variants = [dataclasses.replace(v, capacity={k: c + 0.5 for k, c in v.capacity.items()}) for v in base.variants]
    problem = dataclasses.replace(base, variants=variants, workload_rps=base.workload_rps + 0.25)
    assert grid_scale(problem)[0] == 100
    expected = exhaustive_variant_selection(problem)
    status, plan, _ = solve_dp(problem)
    if expected is None:
        assert status is Status.INFEASIBLE
    else:
        assert status is Status.OPTIMAL and close(plan.objective, expected[0])


def test_loading_cost_decides_between_equal_variants():
    # the same capacity and accuracy; only the load time differs: the cheaper load wins
    cap = {2: 40.0, 4: 90.0}
    problem = VariantSelection(60, 8, [Variant("slow", 0.8, cap, load_time_s=9.0),
                                       Variant("fast", 0.8, cap, load_time_s=1.0)], gamma=0.5)
    status, plan, _ = solve_dp(problem)
    assert status is Status.OPTIMAL and plan.deployment == {"fast": 4}


def test_keeping_the_running_variant_costs_no_loading_time():
    cap = {2: 40.0, 4: 90.0}
    problem = VariantSelection(60, 8, [Variant("running", 0.8, cap, load_time_s=9.0, current_cores=4),
                                       Variant("other", 0.8, cap, load_time_s=1.0)], gamma=0.5)
    assert solve_dp(problem)[1].deployment == {"running": 4}


def test_infeasible_load_is_a_result_with_the_servable_maximum():
    problem = VariantSelection(500, 4, [Variant("a", 0.7, {2: 40.0, 4: 90.0})])
    solution = servopt.solve(problem)
    assert solution.backend == "dp" and solution.status is Status.INFEASIBLE
    assert "90 RPS" in solution.message


def test_prefer_stable_and_large_tables_fall_back_to_the_milp():
    problem = infadapter_like(5)
    assert problem.default_backend == "dp"
    stable = dataclasses.replace(problem, prefer_stable=True)
    assert stable.default_backend == "auto" and servopt.solve(stable).backend != "dp"
    with pytest.raises(ValidationError, match="prefer_stable"):
        servopt.solve(stable, "dp")
    huge = infadapter_like(3, budget=4000, workload=50_000.0)
    assert grid_scale(huge)[0] is None and huge.default_backend == "auto"
    with pytest.raises(ValidationError, match="use a MILP backend"):
        servopt.solve(huge, "dp")
    thirds = dataclasses.replace(problem, workload_rps=100 / 3)
    assert grid_scale(thirds)[0] is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=30), st.integers(0, 40),
       st.integers(0, 2), st.floats(0, 2))
def test_sliding_window_maximum(values, top, k, mu):
    width = len(values)
    table = np.vstack([np.asarray(values), np.asarray(values[::-1]), np.full(width, -np.inf)])
    shift = np.arange(width, dtype=float)
    got = _Windows(table, mu, shift).rows(k, top)
    for c in range(k, 3):
        for s in range(width):
            want = max(table[c - k, s - x] + mu * x for x in range(0, min(top, s) + 1))
            assert got[c - k, s] == pytest.approx(want, rel=1e-12, abs=1e-12) or (want == got[c - k, s])
