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
from servopt.formulations.variant_selection.dp import Certificate, _Windows, check_certificate, grid_scale, solve_dp
from servopt.formulations.variant_selection.frontier import solve_frontier
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
    assert grid_scale(problem)[0] in (1, 10)  # λ itself need not be on the grid
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
    thirds = dataclasses.replace(problem, workload_rps=100 / 3)  # any λ: only capacities below it need a grid
    assert grid_scale(thirds)[0] == 1 and thirds.default_backend == "dp"
    assert close(servopt.solve(thirds).objective, servopt.solve(thirds, "highs").objective)
    odd = dataclasses.replace(problem, variants=[dataclasses.replace(v, capacity={k: c / 3 for k, c in
                                                                                 v.capacity.items()})
                                                 for v in problem.variants], workload_rps=20.0)
    assert grid_scale(odd)[0] is None and odd.default_backend == "auto"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=30), st.integers(0, 40),
       st.integers(1, 3))
def test_marginal_window_maximum(values, lo, rows):
    width = len(values)
    lo = min(lo, width - 1)
    h = np.vstack([np.asarray(values), np.asarray(values[::-1]), np.full(width, -np.inf)])
    top = np.arange(width, dtype=float) * 0.5
    head, tail = _Windows(h, top).marginal(rows, lo)
    for c in range(rows):
        for t in range(width):
            want = max(h[c, u] for u in range(max(0, lo - t), width - t))
            got = head[c, t] if t <= lo else tail[c, t - lo - 1] - top[t]
            assert got == want or got == pytest.approx(want, rel=1e-12, abs=1e-12)


def fractional(problem: VariantSelection, seed: int) -> VariantSelection:
    """The same problem with a workload off the grid: a third, a decimal, or a float with many digits."""
    rng = np.random.default_rng(seed)
    shift = [1 / 3, 0.37, float(rng.uniform(0, 1))][seed % 3]
    return dataclasses.replace(problem, workload_rps=max(0.1, problem.workload_rps - 1 + shift))


def _assert_brute_force_optimum(problem, solver, proof: str) -> None:
    """``solver`` finds enumeration's optimum (or infeasibility), its plan passes both checkers, and its
    message holds the certificate ``proof``."""
    expected = exhaustive_variant_selection(problem)
    status, plan, message = solver(problem)
    if expected is None:
        assert status is Status.INFEASIBLE and plan is None
        return
    assert status is Status.OPTIMAL and close(plan.objective, expected[0]), (plan.objective, expected)
    assert check_variant_selection_plan(problem, plan) == [] and problem.verify(plan) == []
    assert proof in message


@pytest.mark.parametrize("seed", range(220))
def test_dp_with_fractional_workload_equals_brute_force(seed):
    problem = fractional(unstable(random_variant_selection(5000 + seed, max_variants=5, max_budget=10)), seed)
    _assert_brute_force_optimum(problem, solve_dp, "optimal by the dynamic programme")


@pytest.mark.parametrize("seed", range(220))
def test_frontier_equals_brute_force_with_real_capacities(seed):
    base = unstable(random_variant_selection(7000 + seed, max_variants=5, max_budget=10))
    rng = np.random.default_rng(seed)
    variants = [dataclasses.replace(v, capacity={k: c * float(rng.uniform(0.9, 1.1)) for k, c in v.capacity.items()})
                for v in base.variants]
    problem = fractional(dataclasses.replace(base, variants=variants), seed)
    _assert_brute_force_optimum(problem, solve_frontier, "optimal by the dominance search")


@pytest.mark.parametrize("seed", range(4))
def test_dp_and_frontier_equal_the_milp_with_fractional_workload(seed):
    problem = fractional(infadapter_like(20 + 10 * seed, seed), seed)
    milp = servopt.solve(problem, "highs")
    for name in ("dp", "frontier"):
        got = servopt.solve(problem, name)
        assert got.backend == name and close(got.objective, milp.objective), (name, got.objective, milp.objective)
        assert check_variant_selection_plan(problem, got.plan) == []


def test_certificates_are_checked():
    from servopt.formulations.variant_selection import frontier

    problem = infadapter_like(6)
    status, plan, _ = solve_dp(problem)
    assert check_certificate(problem, plan, Certificate(plan.objective)) is None
    assert "certified optimum" in check_certificate(problem, plan, Certificate(plan.objective + 1e-6))
    worse = problem.evaluate({v.name: 0 for v in problem.variants} | {problem.variants[0].name: 20})
    assert worse is not None and check_certificate(problem, worse, Certificate(plan.objective)) is not None
    cert = frontier.Certificate(plan.objective, 1, 1)
    assert frontier.check_certificate(problem, plan, cert) is None
    assert frontier.check_certificate(problem, worse, cert) is not None
