"""A small solver for the tiny bounded soft-L1 least-squares problems of the latency curves.

The curves of :mod:`servopt.performance._curves` and :mod:`servopt.performance.work_latency` are fitted by
minimising, over 2 to 4 parameters ``x`` within a box ``lower <= x <= upper``, the robust cost

    C(x) = f^2 * sum_i (sqrt(1 + (r_i(x) / f)^2) - 1)

of residuals ``r(x)`` (a few dozen log latencies), the cost of ``scipy.optimize.least_squares(...,
loss="soft_l1", f_scale=f)``. The in-grid choice (:mod:`servopt.performance._ingrid`) refits the soft hinge and
the family roofline of each configuration once per left-out batch size, thousands of warm-started refits per
``servopt fit``; scipy's general trust-region solver spends about 2 ms on each, mostly in its own bookkeeping.
This module solves them together, to the optimum, in a fraction of that time. (The first fits, from generic
starts, stay with scipy: another path from a generic start may end in another local minimum.)

**Method.** Many problems at once (every inner fold of every configuration of a model), as arrays: padded to the
same number of residuals (a padded residual is 0 and adds nothing), each with its own box and damping. A projected
Levenberg-Marquardt iteration on the Gauss-Newton model of ``C`` (the one scipy uses for robust losses): with
``s_i = sqrt(1 + (r_i / f)^2)`` and the Jacobian ``J`` of ``r``, the gradient is ``g = J^T (r / s)`` and the
curvature ``H = J^T diag(s^-3) J``. Parameters at a bound whose gradient points out of the box are held there
(the active set); the others take the step ``(H + lam * diag(H)) d = -g``, projected on the box, accepted if it
lowers ``C`` (then ``lam`` shrinks tenfold) and else retried with ``lam`` ten times larger. Each problem stops on
its own test; the others go on.

**Convergence test.** At each iterate of a problem the undamped step ``d0 = -H^-1 g`` on the free parameters is
computed; the fit has converged when the decrease it predicts, ``-g . d0``, is at most ``1e-14 * C + 1e-30`` and
every component of ``d0`` is at most ``1e-8 * (1 + |x_i|)``: the cost cannot go down by more than about ``1e-14``
relative, and the parameters are settled to about eight digits. Where no step lowers the cost any more (``lam``
above ``1e12``), the fit has converged if the predicted decrease passed its test (the step test is then below
rounding), and not otherwise.

**Handed to scipy** (``scipy.optimize.least_squares`` from the same start with the caller's options, the result
before this module): a problem that has not converged within :data:`MAX_ITERATIONS` trial steps, that stops
without converging, or whose optimum is not identified (a singular curvature, or a free parameter the cost does
not depend on at the iterate, e.g. the sharpness of a knee far from every point): there every point of a valley
is optimal, and the one scipy stops at is kept. On the shipped profiles about 1 % of the H200 refits go to scipy,
more on the degenerate CPU profiles.

**The old path.** With the environment variable ``SERVOPT_LSQ=scipy`` (read at each call by
:func:`use_scipy`), every fit goes to ``scipy.optimize.least_squares`` exactly as before this module existed
(``benchmarks/fit_speed_check.py`` compares the two paths on every shipped profile; ``tests/test_lsq.py``
compares the solver with scipy on random instances).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares

__all__ = ["MAX_ITERATIONS", "Solution", "best_of_starts", "soft_l1_cost", "soft_l1_fit", "soft_l1_fit_many",
           "solve_padded", "use_scipy"]

#: iterations (trial steps) before a problem is handed to scipy
MAX_ITERATIONS = 100
_COST_RTOL = 1e-14
_COST_ATOL = 1e-30
_STEP_RTOL = 1e-8
_FLAT = 1e-16  # a curvature below this fraction of the largest: a parameter the cost does not depend on
_LAM_START = 1e-3
_LAM_MIN = 1e-15
_LAM_MAX = 1e12

Residuals = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Solution:
    """A fit: the parameters ``x``, the soft-L1 cost at ``x``, and which solver produced it
    (``"lm"`` or ``"scipy"``)."""

    x: np.ndarray
    cost: float
    solver: str


def use_scipy() -> bool:
    """True when the environment variable ``SERVOPT_LSQ`` is ``scipy``: every fit goes to scipy, as before."""
    return os.environ.get("SERVOPT_LSQ", "").strip().lower() == "scipy"


def soft_l1_cost(r: np.ndarray, f_scale: float) -> float:
    """``f^2 * sum(sqrt(1 + (r / f)^2) - 1)``: scipy's ``cost`` for ``loss="soft_l1"`` (written
    ``sum(r^2 / (sqrt(1 + (r / f)^2) + 1))``, exact for small residuals too)."""
    r = np.asarray(r, dtype=float)
    return float(np.sum(r * r / (np.sqrt(1.0 + (r / f_scale) ** 2) + 1.0)))


def scipy_fit(fun: Callable[[np.ndarray], np.ndarray], x0: Any, lower: Any, upper: Any, f_scale: float,
              options: dict[str, Any] | None = None) -> Solution:
    """``scipy.optimize.least_squares(fun, x0, bounds=(lower, upper), loss="soft_l1", f_scale=f_scale,
    **options)``."""
    fit = least_squares(fun, x0, bounds=(lower, upper), loss="soft_l1", f_scale=f_scale, **(options or {}))
    return Solution(fit.x, float(fit.cost), "scipy")


def soft_l1_fit(fun: Callable[[np.ndarray], np.ndarray], jac: Callable[[np.ndarray], np.ndarray],
                x0: Any, lower: Any, upper: Any, f_scale: float, *,
                scipy_options: dict[str, Any] | None = None) -> Solution:
    """Minimise the soft-L1 cost of ``fun`` within ``[lower, upper]`` from ``x0`` (one problem of
    :func:`soft_l1_fit_many`).

    Parameters
    ----------
    fun, jac : callable
        Residuals (n,) and their Jacobian (n, k) at parameters (k,).
    x0, lower, upper : array-like of float
        Start and box bounds (``x0`` is clipped into the box).
    f_scale : float
        Scale of the soft-L1 loss.
    scipy_options : dict, optional
        Keyword arguments of ``scipy.optimize.least_squares`` for the fallback (and for the old path), e.g.
        ``jac`` and tolerances.

    Returns
    -------
    Solution

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(6.0)
    >>> y = 2.0 + 0.5 * t
    >>> sol = soft_l1_fit(lambda x: x[0] + x[1] * t - y, lambda x: np.column_stack([np.ones(6), t]),
    ...                   [0.0, 0.0], [-10, 0.0], [10, 10], 0.05)
    >>> [round(float(v), 6) for v in sol.x], sol.solver
    ([2.0, 0.5], 'lm')
    """
    return soft_l1_fit_many(lambda x, idx: fun(x[0])[None], lambda x, idx: jac(x[0])[None],
                            np.atleast_2d(np.asarray(x0, dtype=float)), np.atleast_2d(np.asarray(lower, dtype=float)),
                            np.atleast_2d(np.asarray(upper, dtype=float)), f_scale,
                            lambda i: scipy_fit(fun, x0, lower, upper, f_scale, scipy_options))[0]


def soft_l1_fit_many(fun: Residuals, jac: Residuals, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                     f_scale: float, fallback: Callable[[int], Solution]) -> list[Solution]:
    """Minimise ``m`` soft-L1 problems at once (see the module docstring).

    Parameters
    ----------
    fun, jac : callable
        ``fun(x, idx)``: residuals (len(idx), n) of problems ``idx`` at their parameters ``x`` (len(idx), k), 0 at
        padded positions; ``jac(x, idx)``: their Jacobians (len(idx), n, k), 0 at padded rows.
    x0, lower, upper : ndarray of shape (m, k)
        Starts and box bounds (the starts are clipped into the boxes).
    f_scale : float
        Scale of the soft-L1 loss.
    fallback : callable
        ``fallback(i)``: problem ``i`` solved by scipy from its start (for problems that do not converge, and for
        every problem when :func:`use_scipy`).

    Returns
    -------
    list of Solution
    """
    m = len(x0)
    if use_scipy():
        return [fallback(i) for i in range(m)]
    x = np.clip(x0, lower, upper)
    everyone = np.arange(m)
    r = fun(x, everyone)
    s = np.sqrt(1.0 + (r / f_scale) ** 2)
    cost = np.sum(r * r / (s + 1.0), axis=1)
    lam = np.full(m, _LAM_START)
    state = np.zeros(m, dtype=int)  # 0 running, 1 converged, -1 handed to scipy
    stale = np.ones(m, dtype=bool)  # x moved: Jacobian, gradient and curvature to recompute
    settled = np.zeros(m, dtype=bool)  # the predicted decrease passed the test
    k = x.shape[1]
    g = np.zeros((m, k))
    H = np.zeros((m, k, k))
    eye = np.eye(k)
    for _ in range(MAX_ITERATIONS):
        run = np.flatnonzero(state == 0)
        if run.size == 0:
            break
        state[run[~np.isfinite(cost[run])]] = -1
        new = run[stale[run]]
        if new.size:
            J = jac(x[new], new)
            g[new] = np.einsum("pnk,pn->pk", J, r[new] / s[new])
            H[new] = np.einsum("pnk,pn,pnl->pkl", J, s[new] ** -3.0, J)
            stale[new] = False
        run = np.flatnonzero(state == 0)
        if run.size == 0:
            break
        xr, gr, lo, up = x[run], g[run], lower[run], upper[run]
        held = ((xr <= lo) & (gr > 0)) | ((xr >= up) & (gr < 0))
        curv = np.einsum("pkk->pk", H[run])
        flat = np.any(~held & (curv <= _FLAT * curv.max(axis=1, keepdims=True)), axis=1)
        # held parameters: their row and column of the curvature become the identity and their gradient 0
        Hr = np.where(held[:, :, None] | held[:, None, :], 0.0, H[run]) + eye * held[:, :, None]
        gr = np.where(held, 0.0, gr)
        step0 = _solve(Hr, -gr)
        size = np.abs(step0) / (1.0 + np.abs(xr))
        # a parameter the cost does not depend on (a numerically zero column of the Jacobian: a saturated knee)
        # or a singular curvature: the optimum is not identified, scipy's answer is kept
        bad = flat | ~np.all(np.isfinite(size), axis=1)
        small_decrease = ~bad & (-np.einsum("pk,pk->p", gr, step0) <= _COST_RTOL * cost[run] + _COST_ATOL)
        settled[run] = small_decrease
        done = small_decrease & np.all(size <= _STEP_RTOL, axis=1)
        state[run[bad]] = -1
        state[run[done]] = 1
        go = ~bad & ~done
        run, Hr, gr, xr = run[go], Hr[go], gr[go], xr[go]
        if run.size == 0:
            continue
        diag = np.einsum("pkk->pk", Hr)
        step = _solve(Hr + lam[run, None, None] * (eye * diag[:, :, None]), -gr)
        trial = np.clip(xr + step, lower[run], upper[run])
        ok = np.all(np.isfinite(trial), axis=1)
        trial[~ok] = xr[~ok]
        r_new = fun(trial, run)
        s_new = np.sqrt(1.0 + (r_new / f_scale) ** 2)
        cost_new = np.sum(r_new * r_new / (s_new + 1.0), axis=1)
        better = ok & (cost_new < cost[run])
        moved = run[better]
        x[moved], r[moved], s[moved], cost[moved] = trial[better], r_new[better], s_new[better], cost_new[better]
        stale[moved] = True
        lam[moved] = np.maximum(lam[moved] * 0.1, _LAM_MIN)
        worse = run[~better]
        lam[worse] *= 10.0
        # no step lowers the cost: converged within rounding if the predicted decrease passed the test
        stuck = worse[lam[worse] > _LAM_MAX]
        state[stuck] = np.where(settled[stuck], 1, -1)
    return [Solution(x[i].copy(), float(cost[i]), "lm") if state[i] == 1 else fallback(i) for i in range(m)]


def _solve(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``A x = b`` for a stack of small systems; NaN rows where a system is singular."""
    try:
        return np.linalg.solve(A, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.full(b.shape, np.nan)
        for i in range(len(A)):
            try:
                out[i] = np.linalg.solve(A[i], b[i])
            except np.linalg.LinAlgError:
                pass
        return out


def best_of_starts(problems: list[tuple], solve: Callable[[list[tuple], bool, bool], list[Solution]]
                   ) -> dict[int, Solution]:
    """The lowest-cost fit of each data set over its starts.

    ``problems``: tuples ``(data set, x, log y, x0, lower, upper, free, warm, ...)``, one per start; those with
    the same ``free`` (all parameters fitted) and ``warm`` (a refit from a nearby fit) are solved together by
    ``solve(group, free, warm)``.
    """
    best: dict[int, Solution] = {}
    for free, warm in ((True, True), (True, False), (False, True), (False, False)):
        mine = [q for q in problems if q[6] == free and q[7] == warm]
        for q, fit in zip(mine, solve(mine, free, warm)):
            if q[0] not in best or fit.cost < best[q[0]].cost:
                best[q[0]] = fit
    return best


def solve_padded(problems: list[tuple], residuals: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
                 jacobians: Callable[[np.ndarray, np.ndarray], np.ndarray], warm: bool,
                 f_scale: float) -> list[Solution]:
    """Problems ``(data set, x, log y, x0, lower, upper, ...)`` of one curve, given by its batched residuals
    ``residuals(X, x, log y)`` (m, n) and Jacobians ``jacobians(X, x)`` (m, n, k) for parameter rows ``X``.

    Warm starts (the refits of the in-grid choice) are solved together by :func:`soft_l1_fit_many` on data padded
    to the longest set (padded residuals masked to 0), with scipy from the same start, the analytic Jacobian and
    tolerances of 1e-6 as its fallback; cold ones by scipy with a numerical Jacobian, as before the solver (a
    generic start may lead another solver to another local minimum).
    """
    if not problems:
        return []

    def fallback(j: int) -> Solution:
        _, x, ly, x0, lower, upper = problems[j][:6]

        def residual(t: np.ndarray) -> np.ndarray:
            return residuals(t[None], x[None], ly[None])[0]

        def jacobian(t: np.ndarray) -> np.ndarray:
            return jacobians(t[None], x[None])[0]

        fast = {"jac": jacobian, "ftol": 1e-6, "xtol": 1e-6, "gtol": 1e-6} if warm else {}
        return scipy_fit(residual, x0, lower, upper, f_scale, fast)

    if not warm:
        return [fallback(j) for j in range(len(problems))]
    n = max(len(q[1]) for q in problems)
    data = np.ones((len(problems), n))
    ly = np.zeros((len(problems), n))
    mask = np.zeros((len(problems), n))
    for j, q in enumerate(problems):
        data[j, :len(q[1])], ly[j, :len(q[1])], mask[j, :len(q[1])] = q[1], q[2], 1.0

    def fun(X: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return residuals(X, data[idx], ly[idx]) * mask[idx]

    def jac(X: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return jacobians(X, data[idx]) * mask[idx][:, :, None]

    return soft_l1_fit_many(fun, jac, np.array([q[3] for q in problems]), np.array([q[4] for q in problems]),
                            np.array([q[5] for q in problems]), f_scale, fallback)
