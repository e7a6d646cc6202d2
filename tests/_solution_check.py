"""An independent checker for solver answers: bounds, integrality, rows and the objective, from the arrays."""

from __future__ import annotations

import numpy as np

from servopt import ModelArrays, Result

FEAS_TOL = 1e-6


def assert_feasible(arrays: ModelArrays, result: Result, tol: float = FEAS_TOL) -> None:
    """Fail unless ``result.values`` satisfy every bound, integrality and row of ``arrays`` and give its objective."""
    x = result.values
    assert x is not None, f"{result.backend}: {result.status} without values"
    assert x.shape == (arrays.n_vars,)
    scale = np.maximum(1.0, np.abs(x))
    assert np.all(x >= arrays.lb - tol * scale), f"{result.backend}: lower bound violated"
    assert np.all(x <= arrays.ub + tol * scale), f"{result.backend}: upper bound violated"
    ints = x[arrays.integrality]
    assert np.all(np.abs(ints - np.round(ints)) <= tol), f"{result.backend}: integrality violated"
    activity = arrays.A @ x
    slack = tol * np.maximum(1.0, np.abs(activity))
    bad_lo = np.flatnonzero(activity < arrays.row_lb - slack)
    bad_hi = np.flatnonzero(activity > arrays.row_ub + slack)
    assert not bad_lo.size and not bad_hi.size, (
        f"{result.backend}: rows violated: {[arrays.row_names[i] for i in np.concatenate([bad_lo, bad_hi])]}"
    )
    objective = float(arrays.c @ x + arrays.obj_constant)
    assert result.objective is not None
    assert abs(objective - result.objective) <= 1e-6 * max(1.0, abs(objective)), (
        f"{result.backend}: reported objective {result.objective} but the values give {objective}"
    )


def assert_bound_consistent(arrays: ModelArrays, result: Result) -> None:
    """The best bound is on the right side of the objective (and equal to it when optimal)."""
    assert result.objective is not None and result.best_bound is not None, result
    tol = 1e-6 * max(1.0, abs(result.objective))
    if arrays.sense.value == "max":
        assert result.best_bound >= result.objective - tol, result
    else:
        assert result.best_bound <= result.objective + tol, result
    if result.status.value == "optimal":
        assert abs(result.best_bound - result.objective) <= max(tol, 1e-6), result
