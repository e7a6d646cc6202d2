"""Backend conformance: known-answer problems x every registered backend.

A (problem, backend) pair is skipped only when ``servopt.backends.check_capabilities`` raises
``CapabilityError`` for it (CP-SAT and continuous variables); the skip reason is that error. The expected
answers were worked out by hand; ``test_known_answers_hold_by_enumeration`` re-derives every pure-integer one by
brute force, so a wrong expectation cannot hide.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from _solution_check import assert_bound_consistent, assert_feasible

from servopt import CapabilityError, Model, SolveParams, Status, ValidationError, quicksum, solve
from servopt.backends import REGISTRY, check_capabilities

BACKENDS = list(REGISTRY)
INF = math.inf


@dataclass(frozen=True)
class KnownAnswer:
    name: str
    build: Callable[[], Model]
    status: Status
    objective: float | None = None
    #: extra solve parameters per backend (the scaled-coefficient problem gives CP-SAT its factor)
    params: dict[str, dict] = field(default_factory=dict)


def lp_basic() -> Model:
    m = Model("lp_basic")
    x, y = m.add_continuous("x", ub=3), m.add_continuous("y")
    m.add_constraint(x + y <= 4, name="a")
    m.add_constraint(x + 3 * y <= 6, name="b")
    m.maximize(3 * x + 2 * y)  # x = 3, y = 1
    return m


def lp_free_and_ranged() -> Model:
    m = Model("lp_free_and_ranged")
    x = m.add_continuous("x", lb=-INF)
    y = m.add_continuous("y")
    m.add_constraint(x + 2 * y == 4, name="eq")
    m.add_row([0, 1], [1.0, -1.0], lb=-2, ub=10, name="range")
    m.minimize(x + y)  # x = 4 - 2y, objective 4 - y, y <= 2 from the range: x = 0, y = 2
    return m


def pure_integer() -> Model:
    m = Model("pure_integer")
    x, y = m.add_integer("x", ub=10), m.add_integer("y", ub=10)
    m.add_constraint(6 * x + 4 * y <= 24, name="a")
    m.add_constraint(x + 2 * y <= 6, name="b")
    m.maximize(5 * x + 4 * y)  # LP optimum (3, 1.5) = 21; integer optimum (4, 0) = 20
    return m


def mixed_integer() -> Model:
    m = Model("mixed_integer")
    x = m.add_integer("x", ub=10)
    y = m.add_continuous("y", ub=3)
    m.add_constraint(x + y <= 4.5, name="cap")
    m.add_constraint(x <= 2.7, name="xcap")
    m.maximize(3 * x + 2 * y)  # x = 2, y = 2.5
    return m


def infeasible_parity() -> Model:
    m = Model("infeasible_parity")
    x, y = m.add_integer("x", ub=5), m.add_integer("y", ub=5)
    m.add_constraint(2 * x + 2 * y == 3, name="odd")  # the LP relaxation is feasible, no integer point is
    m.maximize(x + y)
    return m


def infeasible_lp() -> Model:
    m = Model("infeasible_lp")
    x, y = m.add_continuous("x", ub=2), m.add_continuous("y", ub=2)
    m.add_constraint(x + y >= 5, name="demand")
    m.minimize(x + y)
    return m


def unbounded_lp() -> Model:
    m = Model("unbounded_lp")
    x, y = m.add_continuous("x"), m.add_continuous("y")
    m.add_constraint(x - y <= 1, name="a")
    m.maximize(x + y)
    return m


def unbounded_integer() -> Model:
    m = Model("unbounded_integer")
    x, y = m.add_integer("x"), m.add_integer("y")
    m.add_constraint(x - y <= 1, name="a")
    m.add_constraint(x + 2 * y >= 3, name="b")
    m.maximize(x + y)
    return m


def infeasible_with_ray() -> Model:
    """Infeasible, yet its objective has an improving ray: the 'infeasible or unbounded' trap."""
    m = Model("infeasible_with_ray")
    x, y = m.add_integer("x"), m.add_integer("y")
    m.add_constraint(x - y >= 2, name="lo")
    m.add_constraint(x - y <= 1, name="hi")
    m.maximize(x + y)
    return m


ASSIGN_COST = [[9, 2, 7, 8], [6, 4, 3, 7], [5, 8, 1, 8], [7, 6, 9, 4]]


def equality_heavy() -> Model:
    """4 x 4 assignment (8 equalities) plus an equality on the total of two workers' loads."""
    m = Model("equality_heavy")
    x = [[m.add_binary(f"x_{i}_{j}") for j in range(4)] for i in range(4)]
    for i in range(4):
        m.add_constraint(quicksum(x[i]) == 1, name=f"worker_{i}")
    for j in range(4):
        m.add_constraint(quicksum(x[i][j] for i in range(4)) == 1, name=f"job_{j}")
    m.add_constraint(quicksum(j * x[0][j] for j in range(4)) + quicksum(j * x[1][j] for j in range(4)) == 3,
                     name="load01")
    m.minimize(quicksum(ASSIGN_COST[i][j] * x[i][j] for i in range(4) for j in range(4)))
    return m


KNAP_VALUES = [10, 13, 7, 8, 4, 6]
KNAP_WEIGHTS = [5, 6, 4, 5, 2, 3]


def knapsack() -> Model:
    m = Model("knapsack")
    x = [m.add_binary(f"item{i}") for i in range(6)]
    m.add_constraint(quicksum(w * v for w, v in zip(KNAP_WEIGHTS, x)) <= 14, name="capacity")
    m.maximize(quicksum(v * xi for v, xi in zip(KNAP_VALUES, x)))  # items 0, 1, 5: weight 14, value 29
    return m


MCK_VALUES = [[4, 7, 9], [3, 6, 10], [5, 6, 8]]
MCK_WEIGHTS = [[1, 3, 5], [2, 4, 7], [1, 2, 4]]


def multiple_choice_knapsack() -> Model:
    m = Model("multiple_choice_knapsack")
    x = [[m.add_binary(f"g{g}_{k}") for k in range(3)] for g in range(3)]
    for g in range(3):
        m.add_constraint(quicksum(x[g]) == 1, name=f"choose_{g}")
    m.add_constraint(quicksum(MCK_WEIGHTS[g][k] * x[g][k] for g in range(3) for k in range(3)) <= 10,
                     name="capacity")
    m.maximize(quicksum(MCK_VALUES[g][k] * x[g][k] for g in range(3) for k in range(3)))  # (2, 1, 0): 20
    return m


SCALED_VALUES = [1.5, 2.25, 1.2, 4.1]
SCALED_WEIGHTS = [0.5, 1.25, 0.75, 2.5]


def scaled_coefficients() -> Model:
    m = Model("scaled_coefficients")
    x = [m.add_integer(f"n{i}", ub=3) for i in range(4)]
    m.add_constraint(quicksum(w * xi for w, xi in zip(SCALED_WEIGHTS, x)) <= 3.1, name="capacity")
    m.maximize(quicksum(v * xi for v, xi in zip(SCALED_VALUES, x)))  # n = (3, 0, 2, 0): weight 3.0, value 6.9
    return m


def negative_bounds_with_constant() -> Model:
    m = Model("negative_bounds_with_constant")
    x, y = m.add_integer("x", lb=-5, ub=5), m.add_integer("y", lb=-5, ub=5)
    m.add_constraint(x + y >= -3, name="a")
    m.add_constraint(x - y <= 4, name="b")
    m.minimize(x + 2 * y + 10)  # y = -3 forces 0 <= x <= 1: x = 0, objective 4
    return m


def bounds_only() -> Model:
    m = Model("bounds_only")
    x, y = m.add_integer("x", ub=3), m.add_integer("y", lb=1, ub=4)
    m.maximize(2 * x - y)
    return m


PROBLEMS = [
    KnownAnswer("lp_basic", lp_basic, Status.OPTIMAL, 11.0),
    KnownAnswer("lp_free_and_ranged", lp_free_and_ranged, Status.OPTIMAL, 2.0),
    KnownAnswer("pure_integer", pure_integer, Status.OPTIMAL, 20.0),
    KnownAnswer("mixed_integer", mixed_integer, Status.OPTIMAL, 11.0),
    KnownAnswer("infeasible_parity", infeasible_parity, Status.INFEASIBLE),
    KnownAnswer("infeasible_lp", infeasible_lp, Status.INFEASIBLE),
    KnownAnswer("unbounded_lp", unbounded_lp, Status.UNBOUNDED),
    KnownAnswer("unbounded_integer", unbounded_integer, Status.UNBOUNDED),
    KnownAnswer("infeasible_with_ray", infeasible_with_ray, Status.INFEASIBLE),
    KnownAnswer("equality_heavy", equality_heavy, Status.OPTIMAL, 14.0),
    KnownAnswer("knapsack", knapsack, Status.OPTIMAL, 29.0),
    KnownAnswer("multiple_choice_knapsack", multiple_choice_knapsack, Status.OPTIMAL, 20.0),
    KnownAnswer("scaled_coefficients", scaled_coefficients, Status.OPTIMAL, 6.9,
                params={"cpsat": {"scale": 100}}),
    KnownAnswer("negative_bounds_with_constant", negative_bounds_with_constant, Status.OPTIMAL, 4.0),
    KnownAnswer("bounds_only", bounds_only, Status.OPTIMAL, 5.0),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
def test_known_answer(problem: KnownAnswer, backend: str) -> None:
    model = problem.build()
    arrays = model.arrays()
    params = SolveParams(**problem.params.get(backend, {}))
    try:
        check_capabilities(backend, arrays, params)
    except CapabilityError as exc:
        pytest.skip(f"declared capability: {exc}")
    result = solve(model, backend, params=params)
    assert result.backend == backend
    assert result.status is problem.status, f"{backend} on {problem.name}: {result.status} {result.message}"
    if problem.status is Status.OPTIMAL:
        assert result.objective == pytest.approx(problem.objective, abs=1e-6)
        assert_feasible(arrays, result)
        if arrays.is_mip or result.best_bound is not None:
            assert_bound_consistent(arrays, result)
    else:
        assert result.objective is None and result.values is None


def _enumerate(model: Model) -> tuple[Status, float | None]:
    """Brute force over the integer box (small bounded pure-integer models only)."""
    a = model.arrays()
    ranges = [range(int(lo), int(hi) + 1) for lo, hi in zip(a.lb, a.ub)]
    best = None
    for point in itertools.product(*ranges):
        x = np.array(point, dtype=float)
        act = a.A @ x
        if np.all(act >= a.row_lb - 1e-9) and np.all(act <= a.row_ub + 1e-9):
            value = float(a.c @ x + a.obj_constant)
            if best is None or (value > best if a.sense.value == "max" else value < best):
                best = value
    return (Status.OPTIMAL, best) if best is not None else (Status.INFEASIBLE, None)


@pytest.mark.parametrize(
    "problem",
    [p for p in PROBLEMS if p.build().arrays().is_mip and not p.build().arrays().has_continuous
     and np.isfinite(p.build().arrays().ub).all() and np.isfinite(p.build().arrays().lb).all()],
    ids=lambda p: p.name,
)
def test_known_answers_hold_by_enumeration(problem: KnownAnswer) -> None:
    status, objective = _enumerate(problem.build())
    assert status is problem.status
    if objective is not None:
        assert objective == pytest.approx(problem.objective, abs=1e-9)


def test_every_problem_class_of_the_issue_is_covered() -> None:
    names = {p.name for p in PROBLEMS}
    assert len(PROBLEMS) >= 10
    for needed in ("lp_basic", "pure_integer", "mixed_integer", "infeasible_parity", "unbounded_lp",
                   "equality_heavy", "knapsack", "multiple_choice_knapsack", "scaled_coefficients"):
        assert needed in names


def test_capability_skips_are_only_cpsat_on_continuous_models() -> None:
    """The skips above come from declared capabilities; this pins which ones there are."""
    skipped = set()
    for problem in PROBLEMS:
        arrays = problem.build().arrays()
        for backend in BACKENDS:
            try:
                check_capabilities(backend, arrays, SolveParams(**problem.params.get(backend, {})))
            except CapabilityError:
                skipped.add((problem.name, backend))
    assert {b for _, b in skipped} == {"cpsat"}
    assert {p for p, _ in skipped} == {"lp_basic", "lp_free_and_ranged", "mixed_integer", "infeasible_lp",
                                       "unbounded_lp"}


# ----------------------------------------------------------------------------------- CP-SAT scaling
def test_cpsat_refuses_fractional_data_without_scale_and_points_to_scale() -> None:
    with pytest.raises(CapabilityError, match=r"0\.5 on 'n0'.*scale=") as info:
        solve(scaled_coefficients(), "cpsat")
    assert "highs" in str(info.value)


def test_cpsat_scale_that_leaves_fractions_is_refused_with_a_working_factor() -> None:
    # 1.25 * 10 = 12.5 is not an integer; servopt names the value and suggests scale=100
    with pytest.raises(CapabilityError, match=r"1\.25.*12\.5.*scale=100"):
        solve(scaled_coefficients(), "cpsat", scale=10)


def test_cpsat_scaled_objective_and_bound_are_in_model_units() -> None:
    r = solve(scaled_coefficients(), "cpsat", scale=100)
    assert r.status is Status.OPTIMAL
    assert r.objective == pytest.approx(6.9) and r.best_bound == pytest.approx(6.9)
    r1000 = solve(scaled_coefficients(), "cpsat", scale=1000)
    assert r1000.objective == pytest.approx(6.9)


def test_cpsat_rounds_constraint_sides_inward_only_with_scale() -> None:
    m = Model("side")
    x = m.add_integer("x", ub=10)
    m.add_constraint(3 * x <= 7.5, name="cap")
    m.maximize(x)
    with pytest.raises(CapabilityError, match="upper side of constraint 'cap'"):
        solve(m, "cpsat")
    assert solve(m, "cpsat", scale=1).objective == 2.0
    assert solve(m, "highs").objective == 2.0


def test_cpsat_overflow_is_refused_naming_the_row() -> None:
    m = Model("overflow")
    xs = [m.add_integer(f"x{i}", ub=10**6) for i in range(8)]
    m.add_constraint(quicksum(1e12 * x for x in xs) <= 1e15, name="huge")
    m.maximize(xs[0])
    with pytest.raises(CapabilityError, match="overflow.*'huge'"):
        solve(m, "cpsat")
    assert solve(m, "highs").status is Status.OPTIMAL


def test_cpsat_coefficient_beyond_exact_integers_is_refused() -> None:
    m = Model("big")
    x = m.add_integer("x", ub=1)
    m.add_constraint(3.5e15 * x <= 1e16, name="big")
    m.maximize(x)
    with pytest.raises(CapabilityError, match="2\\^53"):
        solve(m, "cpsat", scale=10)


def test_cpsat_reports_stand_in_bounds_on_infeasible_answers() -> None:
    r = solve(infeasible_with_ray(), "cpsat")
    assert r.status is Status.INFEASIBLE and "stand-in" in r.message


def test_cpsat_on_continuous_model_names_the_variable_and_alternatives() -> None:
    with pytest.raises(CapabilityError, match=r"variable 'y' is continuous.*highs"):
        solve(mixed_integer(), "cpsat")


# ---------------------------------------------------------------------------- shared option handling
VALID_OPTIONS = {
    "highs": {"presolve": "off"},
    "cpsat": {"linearization_level": 2},
    "scip": {"presolving/maxrounds": 0},
    "gurobi": {"Presolve": 0},
    "cvxpy": {"presolve": "off"},
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_native_options_pass_through(backend: str) -> None:
    r = solve(knapsack(), backend, options=VALID_OPTIONS[backend], threads=1, seed=7)
    assert r.status is Status.OPTIMAL and r.objective == pytest.approx(29.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_option_names_raise_validation_error(backend: str) -> None:
    with pytest.raises(ValidationError, match="no_such_option|no/such_option"):
        name = "no/such_option" if backend == "scip" else "no_such_option"
        solve(knapsack(), backend, options={name: 1})


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_without_variables(backend: str) -> None:
    m = Model("empty")
    m.minimize(4.0)
    r = solve(m, backend)
    assert r.status is Status.OPTIMAL and r.objective == 4.0
    m.add_row([], [], lb=1, ub=2, name="impossible")
    assert solve(m, backend).status is Status.INFEASIBLE


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_variable_without_integer_value_is_infeasible(backend: str) -> None:
    m = Model("gap")
    x = m.add_var("x", kind="integer", lb=0.2, ub=0.8)
    m.maximize(x)
    params = SolveParams(scale=10) if backend == "cpsat" else SolveParams()
    assert solve(m, backend, params=params).status is Status.INFEASIBLE
