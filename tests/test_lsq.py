"""The soft-L1 solver of ``servopt.performance._lsq`` against ``scipy.optimize.least_squares``, on random
instances of both curve families (seeded: the instances are the same on every run)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import least_squares

from servopt.performance import _lsq
from servopt.performance._curves import ROBUST_SCALE, _hinge_jacobian, _log_hinge, fit_curve, fit_curves
from servopt.performance._lsq import soft_l1_cost, soft_l1_fit
from servopt.performance.roofline import fit_rooflines

RTOL, ATOL = 1e-9, 1e-15  # the solver's cost may exceed scipy's by at most this much


def hinge_data(rng: np.random.Generator, truth: bool = False) -> tuple[np.ndarray, ...]:
    """A random soft hinge in batch: floor, knee (mostly inside the grid, else also below or beyond it),
    sharpness, 0-10 % noise, sometimes an outlier and repeated batch sizes."""
    grid = np.unique(np.concatenate([2.0 ** np.arange(rng.integers(4, 11)), rng.integers(1, 600, 3)]))
    b = np.sort(rng.choice(grid, size=rng.integers(5, min(14, grid.size) + 1), replace=False))
    # the knee mostly inside the grid (an identified optimum), sometimes anywhere (degenerate fits included)
    span = (b[1], b[-2]) if rng.random() < 0.8 else (0.5, 3000)
    if rng.random() < 0.3:
        b = np.concatenate([b, rng.choice(b, 2)])
    floor, knee, p = rng.uniform(0.5, 20), np.exp(rng.uniform(*np.log(span))), rng.uniform(0.5, 8)
    y = floor * (1 + (b / knee) ** p) ** (1 / p) * np.exp(rng.normal(0, rng.uniform(0, 0.1), b.size))
    if rng.random() < 0.3:
        y[rng.integers(b.size)] *= 1.5
    return (b, y, np.array([np.log(floor), np.log(knee), p])) if truth else (b, y)


def roof_data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random floor-plus-roofline in work over 1-4 input sizes with noise and some outliers."""
    sizes = rng.choice([64.0, 128.0, 224.0, 320.0, 448.0], size=rng.integers(1, 5), replace=False)
    b = 2.0 ** np.arange(rng.integers(5, 10))
    w = np.concatenate([b * s * s / 1e4 for s in sizes])
    # the floor meets the line mostly inside the works (an identified optimum), sometimes anywhere
    span = np.quantile(w, [0.2, 0.6]) if rng.random() < 0.8 else (w.min() / 10, w.max() * 10)
    floor = rng.uniform(0.5, 10)
    slope = floor / np.exp(rng.uniform(*np.log(span)))
    a, p = rng.uniform(0, 1) * floor, rng.uniform(1, 12)
    y = (floor ** p + (a + slope * w) ** p) ** (1 / p) * np.exp(rng.normal(0, rng.uniform(0, 0.08), w.size))
    if rng.random() < 0.3:
        y[rng.integers(w.size)] *= 0.6
    return w, y


def curve_cost(curve, b, y) -> float:
    return soft_l1_cost(np.log(curve(b)) - np.log(y), ROBUST_SCALE)


def roof_cost(roof, w, y) -> float:
    return soft_l1_cost(np.log(roof.fitted(w)) - np.log(y), ROBUST_SCALE)


def both(monkeypatch, fit):
    """``fit()`` with the old path (scipy) and with the solver."""
    monkeypatch.setenv("SERVOPT_LSQ", "scipy")
    old = fit()
    monkeypatch.delenv("SERVOPT_LSQ")
    return old, fit()


def count_solvers(monkeypatch) -> dict[str, int]:
    """Counts, per solver, of the problems :func:`soft_l1_fit_many` returns from now on (not on the old path)."""
    counts = {"lm": 0, "scipy": 0}
    many = _lsq.soft_l1_fit_many

    def counted(*args, **kwargs):
        out = many(*args, **kwargs)
        for sol in out if not _lsq.use_scipy() else []:
            counts[sol.solver] += 1
        return out

    monkeypatch.setattr("servopt.performance._lsq.soft_l1_fit_many", counted)  # solve_padded's, for both curves
    return counts


def folds(x: np.ndarray) -> list[np.ndarray]:
    """Rows kept when each distinct value of ``x`` but the smallest and the largest is left out in turn (the
    in-grid choice)."""
    return [x != v for v in np.unique(x)[1:-1]]


@pytest.mark.parametrize("seed", range(4))
def test_hinge_refits_never_worse_than_scipy(monkeypatch, seed):
    """Warm-started refits with one batch size left out, as the in-grid choice does them: the solver's cost is
    never above scipy's (beyond 1e-9 relative); cold fits are scipy's, as before."""
    rng = np.random.default_rng(seed)
    data = [hinge_data(rng) for _ in range(12)]
    counts = count_solvers(monkeypatch)
    old, new = both(monkeypatch, lambda: fit_curves([d[0] for d in data], [d[1] for d in data]))
    assert old == new and counts["lm"] == 0
    for (b, y), full in zip(data, new):
        keeps = folds(b)
        a, c = both(monkeypatch, lambda: fit_curves([b[k] for k in keeps], [y[k] for k in keeps], start=full))
        for k, before, after in zip(keeps, a, c):
            assert curve_cost(after, b[k], y[k]) <= curve_cost(before, b[k], y[k]) * (1 + RTOL) + ATOL
    assert counts["lm"] >= 0.7 * (counts["lm"] + counts["scipy"])  # the solver, not its fallback, was tested


@pytest.mark.parametrize("seed", range(4))
def test_roofline_refits_never_worse_than_scipy(monkeypatch, seed):
    rng = np.random.default_rng(100 + seed)
    data = [roof_data(rng) for _ in range(12)]
    counts = count_solvers(monkeypatch)
    old, new = both(monkeypatch, lambda: fit_rooflines([d[0] for d in data], [d[1] for d in data]))
    assert old == new and counts["lm"] == 0
    for (w, y), full in zip(data, new):
        keeps = [np.arange(w.size) % 7 != i for i in range(7)]
        a, c = both(monkeypatch, lambda: fit_rooflines([w[k] for k in keeps], [y[k] for k in keeps], start=full))
        for k, before, after in zip(keeps, a, c):
            assert roof_cost(after, w[k], y[k]) <= roof_cost(before, w[k], y[k]) * (1 + RTOL) + ATOL
    assert counts["lm"] >= 0.7 * (counts["lm"] + counts["scipy"])


def hinge_problem(b, y, free=True):
    ly = np.log(y)

    def fun(t):
        return _log_hinge(t[0], t[1], t[2] if free else 1.0, b) - ly

    def jac(t):
        return _hinge_jacobian(t[1], t[2] if free else 1.0, b)[:, :3 if free else 2]

    return fun, jac


@pytest.mark.parametrize("free", [True, False])
def test_same_optimum_as_a_tightly_converged_scipy(free):
    """From a start near the optimum: the cost is never above scipy's run to tolerances of 1e-15; where the knee
    lies inside the grid (the optimum is identified), the parameters and the fitted values agree with it; a
    solution moved by 1e-4 is detected as worse (the comparison can fail)."""
    rng = np.random.default_rng(7 if free else 8)
    checked = converged = 0
    for _ in range(60):
        b, y, true = hinge_data(rng, truth=True)
        log_b = np.log(np.unique(b))
        fun, jac = hinge_problem(b, y, free)
        lower = [np.log(y).min() - 10, log_b[0] - np.log(1e3)] + ([0.3] if free else [])
        upper = [np.log(y).max() + 1, log_b[-1] + np.log(1e6)] + ([20.0] if free else [])
        # started near the optimum, as the refits are (from the generating curve, moved a little)
        x0 = np.clip(true[:len(lower)] + rng.normal(0, 0.05, len(lower)), np.add(lower, 1e-9),
                     np.subtract(upper, 1e-9))
        ref = least_squares(fun, x0, jac=jac, bounds=(lower, upper), loss="soft_l1", f_scale=ROBUST_SCALE,
                            ftol=1e-15, xtol=1e-15, gtol=1e-15, max_nfev=10000)
        sol = soft_l1_fit(fun, jac, x0, lower, upper, ROBUST_SCALE)
        if sol.solver != "lm":  # handed to scipy with its default tolerances (the test below checks that path)
            continue
        converged += 1
        ref_cost = soft_l1_cost(fun(ref.x), ROBUST_SCALE)
        assert sol.cost <= ref_cost * (1 + RTOL) + ATOL
        H = jac(ref.x).T @ jac(ref.x)
        knee_inside = log_b[1] < ref.x[1] < log_b[-2]
        if knee_inside and np.linalg.cond(H) < 1e6 and \
                np.all((ref.x > np.add(lower, 1e-3)) & (ref.x < np.subtract(upper, 1e-3))):
            checked += 1
            assert sol.x == pytest.approx(ref.x, rel=1e-5, abs=1e-6)
            assert fun(sol.x) == pytest.approx(fun(ref.x), abs=1e-7)
            direction = rng.normal(size=sol.x.size)
            moved = sol.x + 1e-4 * (1 + np.abs(sol.x)) * direction / np.linalg.norm(direction)
            assert soft_l1_cost(fun(moved), ROBUST_SCALE) > ref_cost * (1 + RTOL) + ATOL
    assert converged >= 40 and checked >= 15


def test_an_optimum_on_a_bound_is_found():
    """The knee held below its optimum by its upper bound: the solution sits on the bound, as scipy's."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        b = 2.0 ** np.arange(9)
        y = 5.0 * (1 + (b / 16.0) ** 2) ** 0.5 * np.exp(rng.normal(0, 0.03, b.size))
        fun, jac = hinge_problem(b, y)
        lower, upper = [-5.0, -3.0, 0.3], [5.0, np.log(4.0), 20.0]
        x0 = [np.log(y).min(), 0.0, 1.0]
        ref = least_squares(fun, x0, jac=jac, bounds=(lower, upper), loss="soft_l1", f_scale=ROBUST_SCALE,
                            ftol=1e-15, xtol=1e-15, gtol=1e-15, max_nfev=10000)
        sol = soft_l1_fit(fun, jac, x0, lower, upper, ROBUST_SCALE)
        assert sol.solver == "lm"
        assert sol.x[1] == upper[1]
        assert sol.cost <= soft_l1_cost(fun(ref.x), ROBUST_SCALE) * (1 + RTOL) + ATOL
        assert sol.x == pytest.approx(ref.x, rel=1e-5, abs=1e-6)


def test_batched_fits_equal_one_by_one():
    rng = np.random.default_rng(11)
    data = [hinge_data(rng) for _ in range(12)]
    together = fit_curves([d[0] for d in data], [d[1] for d in data])
    for (b, y), c in zip(data, together):
        alone = fit_curve(b, y)
        assert (c.log_floor, c.log_knee, c.sharpness) == pytest.approx(
            (alone.log_floor, alone.log_knee, alone.sharpness), rel=1e-9, abs=1e-9)


def test_fallback_and_the_old_path_are_scipy(monkeypatch):
    b = 2.0 ** np.arange(8)
    fun, jac = hinge_problem(b, 3.0 * np.maximum(1.0, b / 8.0))
    args = ([0.0, 1.0, 1.0], [-5.0, -5.0, 0.3], [5.0, 10.0, 20.0], ROBUST_SCALE)
    assert soft_l1_fit(fun, jac, *args).solver == "lm"
    scipy = least_squares(fun, args[0], bounds=(args[1], args[2]), loss="soft_l1", f_scale=ROBUST_SCALE)
    monkeypatch.setattr(_lsq, "MAX_ITERATIONS", 1)  # cannot converge: handed to scipy from the same start
    capped = soft_l1_fit(fun, jac, *args)
    assert capped.solver == "scipy" and np.array_equal(capped.x, scipy.x)
    monkeypatch.undo()
    monkeypatch.setenv("SERVOPT_LSQ", "scipy")
    old = soft_l1_fit(fun, jac, *args)
    assert old.solver == "scipy" and np.array_equal(old.x, scipy.x)
