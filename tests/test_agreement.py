"""All backends agree on 200 seeded random small MILPs.

Instances: 2-8 variables (integer, binary, and in every fourth instance some continuous ones), 1-6 rows of every
kind (<=, >=, ==, ranged), integer data, finite bounds (some negative), either objective sense. Every backend
that declares it can take an instance solves it; all must report the same status, and when optimal the same
objective (within 1e-6) with a solution that passes an independent feasibility check. CP-SAT declares it takes
no continuous variables; for those instances the test asserts that declaration (a ``CapabilityError``) instead.
"""

from __future__ import annotations

import numpy as np
import pytest
from _solution_check import assert_feasible

from servopt import CapabilityError, Model, SolveParams, Status, solve
from servopt.backends import REGISTRY, check_capabilities

N_INSTANCES = 200
TOL = 1e-6


def random_milp(seed: int) -> Model:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    rows = int(rng.integers(1, 7))
    mixed = seed % 4 == 3
    m = Model(f"random_{seed}")
    for j in range(n):
        kind = rng.choice(["integer", "binary", "continuous"] if mixed else ["integer", "binary"])
        if mixed and j == 0:
            kind = "continuous"
        lb = int(rng.choice([0, 0, -2, -5]))
        ub = lb + int(rng.integers(1, 8))
        if kind == "binary":
            m.add_binary(f"x{j}")
        else:
            m.add_var(f"x{j}", kind=str(kind), lb=lb, ub=ub)
    for i in range(rows):
        nz = rng.random(n) < 0.7
        nz[rng.integers(n)] = True
        cols = np.flatnonzero(nz)
        coefs = rng.integers(-6, 10, cols.size)
        coefs[coefs == 0] = 1
        center = int(rng.integers(-5, 15))
        kind = rng.choice(["le", "ge", "eq", "range"], p=[0.45, 0.3, 0.1, 0.15])
        lb, ub = {"le": (-np.inf, center), "ge": (center - 8, np.inf), "eq": (center % 5, center % 5),
                  "range": (center - 4, center + 3)}[str(kind)]
        m.add_row(cols, coefs, lb=lb, ub=ub, name=f"r{i}")
    c = rng.integers(-9, 10, n)
    m.set_objective_arrays(np.arange(n), c, "max" if rng.random() < 0.5 else "min", constant=float(rng.integers(-3, 4)))
    return m


@pytest.mark.parametrize("seed", range(N_INSTANCES))
def test_backends_agree(seed: int) -> None:
    model = random_milp(seed)
    arrays = model.arrays()
    answers = {}
    for backend in REGISTRY:
        try:
            check_capabilities(backend, arrays, SolveParams())
        except CapabilityError:
            assert backend == "cpsat" and arrays.has_continuous  # the only declared limitation in play
            continue
        result = solve(model, backend)
        answers[backend] = result
        if result.status is Status.OPTIMAL:
            assert_feasible(arrays, result)
    assert len(answers) >= 4
    statuses = {b: r.status for b, r in answers.items()}
    assert len(set(statuses.values())) == 1, f"seed {seed}: statuses differ: {statuses}"
    if next(iter(statuses.values())) is Status.OPTIMAL:
        objectives = {b: r.objective for b, r in answers.items()}
        ref = objectives["highs"]
        for backend, value in objectives.items():
            assert value == pytest.approx(ref, abs=TOL, rel=TOL), f"seed {seed}: objectives differ: {objectives}"


def test_the_instances_exercise_every_outcome() -> None:
    """The generator must produce optimal and infeasible instances, pure and mixed ones (else the test is weak)."""
    statuses, mixed = [], 0
    for seed in range(N_INSTANCES):
        model = random_milp(seed)
        mixed += model.arrays().has_continuous
        statuses.append(solve(model, "highs").status)
    assert statuses.count(Status.OPTIMAL) >= 100
    assert statuses.count(Status.INFEASIBLE) >= 10
    assert 30 <= mixed <= 70
