"""pipeline's exact Pareto dynamic programming: brute force, the MILP, dominance filters, limits and edge cases."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import servopt
from servopt.exceptions import ValidationError
from servopt.policies import run_policy
from servopt.testing.oracles import check_pipeline_plan, exhaustive_pipeline, random_pipeline
from servopt.formulations.pipeline.problem import BatchProfile, Pipeline, Stage, StageVariant
from servopt.formulations.pipeline.dp import pareto_mask, solve_dp
from servopt.formulations.pipeline.mckp import Knapsack, solve_mckp
from servopt.formulations.pipeline.parametric import product_bounds, solve_product
from servopt.result import SolveParams, Status

N_BRUTE = 400


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-7 * max(1.0, abs(a), abs(b))


@functools.lru_cache(maxsize=None)
def brute(seed: int, accuracy: str | None = None):
    problem = random_pipeline(seed, max_stages=4 if accuracy == "product" else 3, max_variants=3,
                              accuracy=accuracy)
    return problem, exhaustive_pipeline(problem)


def variant(name, acc, cores, **lat):
    return StageVariant(name, acc, cores, [BatchProfile(int(b[1:]), ms) for b, ms in lat.items()])


def medium(seed: int, accuracy: str = "sum", stages: int = 6, variants: int = 5, **kw) -> Pipeline:
    """A random pipeline too big to enumerate (5 variants x 4 batch sizes per stage), binding SLA."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(stages):
        base = float(rng.uniform(20, 60))
        vs = []
        for m in range(variants):
            l1 = base * (1 + m) * float(rng.uniform(0.8, 1.2))
            acc = (0.90 if accuracy == "product" else 0.5) + 0.02 * m + float(rng.uniform(0, 0.01))
            vs.append(StageVariant(f"v{m}", round(acc, 4), float(rng.choice([1, 2, 4])),
                                   [BatchProfile(b, round(l1 * b**0.8, 2)) for b in (1, 2, 4, 8)]))
        out.append(Stage(f"s{s}", vs))
    args = dict(workload_rps=float(rng.integers(5, 60)), sla_ms=round(stages * float(rng.uniform(150, 500)), 1),
                stages=out, alpha=float(rng.choice([2.0, 10.0, 50.0])), beta=float(rng.choice([0.1, 1.0])),
                delta=1e-6, accuracy=accuracy, max_replicas=int(rng.integers(3, 30)))
    args.update(kw)
    return Pipeline(**args)


# ------------------------------------------------------------------------------------- against brute force
def assert_dp_matches(problem, expected):
    """``solve_dp`` proves ``problem`` infeasible exactly when brute force finds nothing, else it returns a plan
    that passes the exact checker with brute force's objective (and, for stable plans, its number of changes)."""
    status, plan, _ = solve_dp(problem)
    if expected is None:
        assert status is Status.INFEASIBLE and plan is None
        return
    assert status is Status.OPTIMAL
    assert check_pipeline_plan(problem, plan) == []
    assert close(plan.objective, expected[0]), (plan.objective, expected)
    if problem.prefer_stable and problem.current:
        assert plan.changes == expected[1]


@pytest.mark.parametrize("seed", range(N_BRUTE))
def test_dp_equals_brute_force(seed):
    assert_dp_matches(*brute(seed))


@pytest.mark.parametrize("seed", range(360))
def test_dp_equals_brute_force_on_product(seed):
    # product with and without prefer_stable (random_pipeline: half the seeds prefer stable plans)
    assert_dp_matches(*brute(seed, "product"))


# ------------------------------------------------------------------------------------------- against MILP
@pytest.mark.parametrize("accuracy", ["sum", "average", "product"])
@pytest.mark.parametrize("seed", range(8))
def test_dp_equals_milp_beyond_enumeration(seed, accuracy):
    problem = medium(seed, accuracy, stages=5 if accuracy == "product" else 7)
    milp = servopt.solve(problem, "highs")
    dp = servopt.solve(problem, "dp")
    assert dp.backend == "dp" and dp.status is milp.status
    if milp.status is Status.OPTIMAL:
        assert close(dp.objective, milp.objective), (dp.objective, milp.objective)
        assert check_pipeline_plan(problem, dp.plan) == []


@pytest.mark.parametrize("seed", range(6))
def test_dp_equals_milp_with_prefer_stable(seed):
    base = medium(seed, "sum", stages=5)
    current = {s.name: (s.variants[seed % len(s.variants)].name, 2) for s in base.stages}
    problem = base.update(current=current, prefer_stable=True)
    milp = servopt.solve(problem, "highs")
    dp = servopt.solve(problem, "dp")
    if milp.status is Status.OPTIMAL:
        assert close(dp.objective, milp.objective)
        assert dp.plan.changes == milp.plan.changes


@pytest.mark.parametrize("policy", ["fa2", "rim"])
def test_restricted_problems_of_the_baselines(policy):
    problem = medium(3, "sum", stages=4)
    via_dp = run_policy(problem, policy, options={"backend": "dp"})
    via_milp = run_policy(problem, policy, options={"backend": "highs"})
    assert via_dp.status == via_milp.status
    if via_milp.plan is not None:
        assert close(via_dp.objective, via_milp.objective)


# ----------------------------------------------------------------------------------------------- interface
def test_dp_is_the_default_backend_and_reports_no_milp_result():
    problem = medium(1)
    solution = servopt.solve(problem)
    assert solution.backend == "dp" and solution.result is None and solution.status is Status.OPTIMAL
    assert solution.to_dict()["backend"] == "dp"
    assert servopt.solve(problem, "auto").backend == "dp"


def test_unknown_algorithm_is_a_validation_error():
    with pytest.raises(ValidationError, match="unknown algorithm"):
        medium(1).solve_with("branch-and-price", SolveParams())


def test_infeasible_workload_and_sla_are_results_with_reasons():
    one = Stage("only", [variant("a", 0.5, 1, b1=100.0)])
    slow = Pipeline(workload_rps=50.0, sla_ms=1000.0, stages=[one], max_replicas=2)  # 2 x 10 RPS < 50
    solution = servopt.solve(slow)
    assert solution.status is Status.INFEASIBLE and "cannot serve 50 RPS" in solution.message
    tight = Pipeline(workload_rps=5.0, sla_ms=50.0, stages=[one])
    solution = servopt.solve(tight)
    assert solution.status is Status.INFEASIBLE and "above sla_ms 50" in solution.message


def test_time_limit_returns_the_incumbent_as_feasible():
    problem = medium(2, "sum", stages=12)
    status, plan, message = solve_dp(problem, SolveParams(time_limit_s=1e-9))
    assert status is Status.FEASIBLE and "time limit" in message
    assert check_pipeline_plan(problem, plan) == []
    assert plan.objective <= servopt.solve(problem, "dp").objective + 1e-9


def test_ties_between_identical_variants_still_give_the_optimum():
    same = [variant(f"copy{i}", 0.7, 1, b1=40.0, b4=120.0) for i in range(4)]
    problem = Pipeline(workload_rps=10.0, sla_ms=400.0, stages=[Stage(f"s{k}", same) for k in range(3)],
                       normalize="none", max_replicas=3)
    expected = exhaustive_pipeline(problem)
    assert close(servopt.solve(problem, "dp").objective, expected[0])


def test_product_with_a_zero_accuracy_variant():
    stages = [Stage("a", [variant("zero", 0.0, 1, b1=10.0), variant("good", 0.9, 4, b1=30.0)]),
              Stage("b", [variant("x", 0.8, 1, b1=20.0), variant("y", 0.95, 2, b1=60.0)])]
    problem = Pipeline(workload_rps=20.0, sla_ms=100.0, stages=stages, accuracy="product", alpha=20.0)
    assert close(servopt.solve(problem, "dp").objective, exhaustive_pipeline(problem)[0])


# ---------------------------------------------------------------------------------------- Pareto filters
def naive_pareto(w, x, y=None, c=None):
    n = len(w)
    y = np.zeros(n) if y is None else y
    c = np.zeros(n, dtype=int) if c is None else c
    keep = []
    for i in range(n):
        dominated = False
        for j in range(n):
            if j == i:
                continue
            if w[j] <= w[i] and x[j] >= x[i] and y[j] >= y[i] and c[j] <= c[i]:
                same = w[j] == w[i] and x[j] == x[i] and y[j] == y[i] and c[j] == c[i]
                if not same or j < i:
                    dominated = True
                    break
        keep.append(not dominated)
    return np.array(keep)


points = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6), st.integers(0, 2)),
                  min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(points, st.booleans(), st.booleans())
def test_pareto_mask_keeps_exactly_the_non_dominated_points(pts, with_y, with_c):
    arr = np.array(pts, dtype=float)
    w, x = arr[:, 0], arr[:, 1]
    y = arr[:, 2] if with_y else None
    c = arr[:, 3].astype(int) if with_c else None
    got = pareto_mask(w, x, y, c)
    want = naive_pareto(w, x, y, c)
    # identical points: exactly one of each kept (which one may differ)
    key = lambda i: (w[i], x[i], 0 if y is None else y[i], 0 if c is None else c[i])  # noqa: E731
    assert sorted(map(key, np.flatnonzero(got))) == sorted(map(key, np.flatnonzero(want)))


def test_solves_instances_far_beyond_enumeration():
    problem = medium(4, "sum", stages=8, variants=5)
    combos = 1
    for sl in problem.options().stage_slices:
        combos *= sl.stop - sl.start
    assert combos > 10**10  # far beyond brute force, yet:
    assert servopt.solve(problem, "dp").status is Status.OPTIMAL


def test_matches_enumeration_on_every_choice_of_a_small_instance():
    # two stages, every (variant, batch) pair scored by hand
    problem = Pipeline(workload_rps=20.0, sla_ms=600.0, accuracy="sum", normalize="none", stages=[
        Stage("d", [variant("n", 0.45, 1, b1=50.0, b8=300.0), variant("x", 0.69, 4, b1=120.0, b8=700.0)]),
        Stage("c", [variant("r18", 0.70, 1, b1=30.0, b8=150.0), variant("r50", 0.76, 2, b1=60.0, b8=280.0)])])
    best = None
    for (v1, b1), (v2, b2) in itertools.product([("n", 1), ("n", 8), ("x", 1), ("x", 8)],
                                                [("r18", 1), ("r18", 8), ("r50", 1), ("r50", 8)]):
        plan = problem.evaluate([(v1, b1), (v2, b2)])
        if plan is not None and (best is None or plan.objective > best):
            best = plan.objective
    assert close(servopt.solve(problem).objective, best)


@pytest.mark.parametrize("seed", range(20))
def test_pareto_mask_on_larger_sets_with_many_ties(seed):
    # more than 64 points: the vectorised first pass of the three-criteria filter runs
    rng = np.random.default_rng(seed)
    n = int(rng.integers(65, 300))
    w = rng.integers(0, 8, n).astype(float)
    x = rng.integers(0, 12, n).astype(float)
    y = x + rng.integers(0, 4, n) if seed % 2 else rng.integers(0, 12, n).astype(float)
    got, want = pareto_mask(w, x, y), naive_pareto(w, x, y)
    key = lambda i: (w[i], x[i], y[i])  # noqa: E731
    assert sorted(map(key, np.flatnonzero(got))) == sorted(map(key, np.flatnonzero(want)))


def adversarial(seed: int, stages: int = 3, variants: int = 4, batches: tuple[int, ...] = (1, 2, 4),
                max_replicas: int = 50) -> Pipeline:
    """Every variant on the latency/accuracy front, α up to 1000, an SLA just above the fastest choice."""
    rng = np.random.default_rng(seed)
    out, fastest = [], 0.0
    for s in range(stages):
        lo = float(rng.uniform(20, 80))
        lat = np.sort(rng.uniform(lo, lo * float(rng.uniform(2, 8)), variants))
        lat[0] = lo
        top = float(rng.uniform(0.9, 0.97))
        accs = np.sort(rng.uniform(top, min(0.9995, top + 0.08), variants)) + 1e-7 * np.arange(variants)
        power = float(rng.uniform(0.7, 0.95))
        out.append(Stage(f"s{s}", [StageVariant(f"v{m}", round(float(accs[m]), 7), float(rng.choice([1, 2, 4])),
                                                [BatchProfile(b, round(float(lat[m]) * b**power, 3)) for b in batches])
                                   for m in range(variants)]))
        fastest += lo
    return Pipeline(workload_rps=float(rng.uniform(5, 40)), sla_ms=round(fastest * float(rng.uniform(1.05, 2.5)), 3),
                    stages=out, alpha=float(rng.choice([10.0, 100.0, 1000.0])), beta=float(rng.choice([0.01, 0.1, 1.0])),
                    delta=1e-6, accuracy="product", max_replicas=max_replicas)


@pytest.mark.parametrize("seed", range(40))
def test_dp_equals_brute_force_on_adversarial_product_pipelines(seed):
    problem = adversarial(seed, max_replicas=5)
    assert_dp_matches(problem, exhaustive_pipeline(problem))


@pytest.mark.parametrize("seed", range(4))
def test_dp_equals_milp_on_larger_adversarial_product_pipelines(seed):
    problem = adversarial(100 + seed, stages=6, variants=6)
    milp = servopt.solve(problem, "highs")
    dp = servopt.solve(problem, "dp")
    assert dp.status is milp.status
    if milp.status is Status.OPTIMAL:
        assert close(dp.objective, milp.objective), (dp.objective, milp.objective)


# ------------------------------------------------------------------ the knapsack and the parametric product search
def brute_choices(weights, values, limit, accuracies=None, alpha=0.0):
    """The best objective (Σ v, plus α Π a when accuracies are given) over every choice that fits; None if none."""
    best = None
    for choice in itertools.product(*[range(w.size) for w in weights]):
        if sum(w[c] for w, c in zip(weights, choice)) > limit:
            continue
        value = sum(v[c] for v, c in zip(values, choice))
        if accuracies is not None:
            value += alpha * float(np.prod([a[c] for a, c in zip(accuracies, choice)]))
        best = value if best is None else max(best, value)
    return best


def random_choices(seed: int):
    """Small random stages: integer weights half the time (ties), some negative values, a limit that may bind."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5))
    sizes = rng.integers(1, 6, n)
    if seed % 2:
        weights = [rng.integers(0, 8, k).astype(float) for k in sizes]
        values = [rng.integers(-5, 8, k).astype(float) for k in sizes]
    else:
        weights = [rng.uniform(0, 8, k) for k in sizes]
        values = [rng.uniform(-3, 5, k) for k in sizes]
    return weights, values, float(rng.integers(0, 6 * n)), rng


@pytest.mark.parametrize("seed", range(600))
def test_knapsack_equals_brute_force(seed):
    weights, values, limit, rng = random_choices(seed)
    best = brute_choices(weights, values, limit)
    floor = -np.inf if seed % 3 else (0.0 if best is None else best) + float(rng.integers(-2, 3))
    result = solve_mckp(weights, values, limit, floor)
    if best is None:
        assert result.status == "infeasible" and result.picks is None
        return
    if best < floor - 1e-6:  # nothing reaches the floor: "below", or the optimum itself
        assert result.status == "below" or close(result.value, best)
        return
    assert result.status == "optimal" and close(result.value, best)
    assert sum(w[p] for w, p in zip(weights, result.picks)) <= limit
    assert close(sum(v[p] for v, p in zip(values, result.picks)), best)


@pytest.mark.parametrize("seed", range(600))
def test_parametric_product_equals_brute_force(seed):
    weights, values, limit, rng = random_choices(seed)
    accuracies = [np.round(rng.uniform(0.5, 1.0, w.size), 2 if seed % 4 else 6) for w in weights]
    if seed % 5 == 0:  # zero accuracies (a product of 0 whatever the other stages choose)
        accuracies[0][rng.integers(0, accuracies[0].size)] = 0.0
    alpha = float(rng.choice([0.5, 10.0, 1000.0]))
    best = brute_choices(weights, values, limit, accuracies, alpha)
    status, picks, value = solve_product(weights, values, accuracies, alpha, limit)
    if best is None:
        assert status == "infeasible" and picks is None
        return
    assert status == "optimal" and close(value, best), (value, best)
    assert sum(w[p] for w, p in zip(weights, picks)) <= limit


@pytest.mark.parametrize("seed", range(40, 200))
def test_more_adversarial_product_pipelines_equal_brute_force(seed):
    problem = adversarial(seed, stages=3, variants=3, batches=(1, 4), max_replicas=5)
    assert_dp_matches(problem, exhaustive_pipeline(problem))


@pytest.mark.parametrize("seed", range(4))
def test_dp_equals_milp_on_product_with_prefer_stable(seed):
    base = adversarial(200 + seed, stages=5, variants=5)
    current = {s.name: (s.variants[(seed + i) % len(s.variants)].name, 2) for i, s in enumerate(base.stages)}
    problem = base.update(current=current, prefer_stable=True)
    milp = servopt.solve(problem, "highs")
    dp = servopt.solve(problem, "dp")
    assert dp.status is milp.status
    if milp.status is Status.OPTIMAL:
        assert close(dp.objective, milp.objective), (dp.objective, milp.objective)
        assert dp.plan.changes == milp.plan.changes and check_pipeline_plan(problem, dp.plan) == []


@pytest.mark.parametrize("seed", range(4))
def test_dp_equals_milp_on_adversarial_sum_pipelines(seed):
    # every variant on the latency/accuracy front, 12 stages (far beyond enumeration), a tight SLA
    rng = np.random.default_rng(300 + seed)
    stages = []
    fastest = 0.0
    for s in range(12):
        lo = float(rng.uniform(20, 80))
        lat = np.sort(rng.uniform(lo, lo * 6, 6))
        lat[0] = lo
        accs = np.sort(rng.uniform(0.4, 0.95, 6)) + 1e-7 * np.arange(6)
        variants = [StageVariant(f"v{m}", round(float(accs[m]), 7), float(rng.choice([1, 2, 4])),
                                 [BatchProfile(b, round(float(lat[m]) * b**0.8, 3)) for b in (1, 2, 4)])
                    for m in range(6)]
        stages.append(Stage(f"s{s}", variants))
        fastest += lo
    problem = Pipeline(workload_rps=float(rng.uniform(5, 40)), sla_ms=round(fastest * float(rng.uniform(1.05, 2.5)), 3),
                       stages=stages, alpha=float(rng.choice([2.0, 10.0, 100.0])), beta=0.1, delta=1e-6,
                       accuracy="sum", normalize="none", max_replicas=50)
    milp = servopt.solve(problem, "highs")
    dp = servopt.solve(problem, "dp")
    assert dp.status is milp.status
    if milp.status is Status.OPTIMAL:
        assert close(dp.objective, milp.objective), (dp.objective, milp.objective)


@pytest.mark.parametrize("seed", range(300))
def test_option_bounds_are_upper_bounds_on_every_choice_using_the_option(seed):
    weights, values, limit, rng = random_choices(seed)
    accuracies = [np.round(rng.uniform(0.5, 1.0, w.size), 3) for w in weights]
    alpha = float(rng.choice([0.5, 10.0, 1000.0]))
    status, _, _ = solve_product(weights, values, accuracies, alpha, limit, thetas=(thetas := []))
    sums = Knapsack(weights, limit).option_bounds(values)
    products = product_bounds(weights, values, accuracies, alpha, limit, thetas) if status == "optimal" else None
    starts = np.cumsum([0] + [w.size for w in weights])
    best_sum = np.full(starts[-1], -np.inf)
    best_product = np.full(starts[-1], -np.inf)
    for choice in itertools.product(*[range(w.size) for w in weights]):
        if sum(w[c] for w, c in zip(weights, choice)) > limit:
            continue
        v = sum(x[c] for x, c in zip(values, choice))
        f = v + alpha * float(np.prod([a[c] for a, c in zip(accuracies, choice)]))
        for s, c in enumerate(choice):
            best_sum[starts[s] + c] = max(best_sum[starts[s] + c], v)
            best_product[starts[s] + c] = max(best_product[starts[s] + c], f)
    slack = 1e-9 * np.maximum(1.0, np.abs(best_sum))
    assert np.all(sums >= best_sum - slack)
    assert np.all(np.isinf(sums) == np.isinf(best_sum))  # -inf exactly where no choice with the option fits
    if products is not None:
        assert np.all(products >= best_product - 1e-9 * np.maximum(1.0, np.abs(best_product)))
