"""The floor-plus-roofline curve of latency in the work of a batch (:mod:`servopt.performance.work_latency`).

    L(w) = (F^p + max(0, a + s * w)^p)^(1/p),   -10 F <= a <= F, s >= 0, p in [1, 20]

a smooth maximum of the launch-overhead floor ``F`` and a roofline ``a + s * w``, fitted with a soft-L1 loss on
log latencies (:mod:`servopt.performance._lsq`). With fewer than ``MIN_FREE_POINTS`` distinct works ``p = 1`` and
``a = 0``. Beyond the largest fitted work ``w_max`` a curve whose elasticity there is below
:data:`IDENTIFIED_ELASTICITY` (every point on the floor) grows with a slope carried from another GPU, else with the
square root of the work (see :class:`Roofline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from servopt.performance._curves import MIN_FREE_POINTS, ROBUST_SCALE
from servopt.performance._lsq import Solution, best_of_starts, solve_padded

__all__ = ["ALPHA_MIN", "IDENTIFIED_ELASTICITY", "Roofline", "fit_roofline", "fit_rooflines"]

#: the smallest intercept of the roofline's line, as a multiple of the floor (``a >= ALPHA_MIN * F``); a box
#: bound for the solver: the fits of the shipped profiles stay within -1.2 F
ALPHA_MIN = -10.0

#: elasticity at the largest profiled work below which the fitted slope is not trusted for extrapolation
IDENTIFIED_ELASTICITY = 0.5


@dataclass(frozen=True)
class Roofline:
    """``L(w) = (F^p + (a + s w)^p)^(1/p)`` below ``w_max``; beyond it, at least ``extra(w)`` (see module)."""

    floor: float
    intercept: float
    slope: float
    sharpness: float
    w_max: float
    carried_slope: float | None = None  # slope from another GPU, used when the own one is not identified

    def fitted(self, w: np.ndarray) -> np.ndarray:
        w = np.maximum(np.asarray(w, dtype=float), 0.0)
        p = self.sharpness
        line = np.maximum(self.intercept + self.slope * w, 0.0)
        return (self.floor ** p + line ** p) ** (1.0 / p)

    def elasticity(self, w: float) -> float:
        """d log L / d log w of the fitted curve at ``w``."""
        if w <= 0:
            return 0.0
        p = self.sharpness
        line = self.intercept + self.slope * w
        share = line ** p / (self.floor ** p + line ** p)
        return float(share * self.slope * w / line) if line > 0 else 0.0

    @property
    def identified(self) -> bool:
        return self.elasticity(self.w_max) >= IDENTIFIED_ELASTICITY

    def __call__(self, w: np.ndarray | float) -> np.ndarray:
        w = np.asarray(w, dtype=float)
        out = self.fitted(w)
        if self.identified or self.w_max <= 0:
            return out
        above = w > self.w_max
        if above.any():
            top = float(self.fitted(np.array([self.w_max]))[0])
            if self.carried_slope is not None:
                extra = top + self.carried_slope * (w[above] - self.w_max)
                extra = np.minimum(extra, top * w[above] / self.w_max)
            else:
                extra = top * np.sqrt(w[above] / self.w_max)
            out = out.copy()
            out[above] = np.maximum(out[above], extra)
        return out


def fit_roofline(w: np.ndarray, y: np.ndarray, *, robust_scale: float = ROBUST_SCALE,
                 min_free_points: int = MIN_FREE_POINTS, start: Roofline | None = None) -> Roofline:
    """Fit the floor-plus-roofline curve to works ``w`` (>= 0) and positive latencies ``y`` (soft-L1 on logs).

    ``start``: a fit on nearly the same points (the inner folds of the in-grid choice); the solver starts once,
    from its parameters, instead of twice from generic ones.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([1, 2, 4, 8, 16, 32, 64, 128.0])
    >>> r = fit_roofline(w, np.maximum(10.0, 0.5 * w))
    >>> bool(abs(r(1.0) - 10) < 0.7 and abs(r(128.0) - 64) < 4)
    True
    """
    return fit_rooflines([w], [y], robust_scale=robust_scale, min_free_points=min_free_points, start=start)[0]


def fit_rooflines(ws: list[np.ndarray], ys: list[np.ndarray], *, robust_scale: float = ROBUST_SCALE,
                  min_free_points: int = MIN_FREE_POINTS,
                  start: Roofline | list[Roofline | None] | None = None) -> list[Roofline]:
    """:func:`fit_roofline` on each data set ``(ws[i], ys[i])`` (the inner folds of the in-grid choice), their
    least-squares problems solved together (:func:`servopt.performance._lsq.soft_l1_fit_many`); ``start``: one
    start for all, or one per data set."""
    out: list[Roofline | None] = [None] * len(ws)
    problems = []
    given = start if isinstance(start, list) else [start] * len(ws)
    for i, (w, y, start) in enumerate(zip(ws, ys, given)):
        w = np.asarray(w, dtype=float)
        ly = np.log(np.asarray(y, dtype=float))
        distinct = np.unique(w[w > 0])
        w_max = float(distinct[-1]) if distinct.size else 0.0
        if distinct.size < 2:
            out[i] = Roofline(float(np.exp(np.median(ly))), 0.0, 0.0, 1.0, w_max)
            continue
        free = distinct.size >= min_free_points
        scale = float(np.exp(ly.min()) / w_max)  # slope that reaches the smallest latency at the largest work
        ls_bounds = (np.log(scale) - 20.0, np.log(scale) + 10.0)
        if free:
            lower = [ly.min() - 10.0, ALPHA_MIN, ls_bounds[0], 1.0]
            upper = [ly.max() + 1.0, 1.0, ls_bounds[1], 20.0]
            starts = [[ly.min(), 0.1, np.log(scale), p0] for p0 in (2.0, 8.0)]
        else:
            lower, upper = [ly.min() - 10.0, ls_bounds[0]], [ly.max() + 1.0, ls_bounds[1]]
            starts = [[ly.min() - 0.1, np.log(scale)]]
        warm = start is not None and start.floor > 0 and start.slope > 0
        if warm:
            log_f0 = float(np.log(start.floor))
            starts = [[log_f0, start.intercept / start.floor, float(np.log(start.slope)), start.sharpness] if free
                      else [log_f0, float(np.log(start.slope))]]
        for x0 in starts:
            x0 = np.clip(x0, np.add(lower, 1e-9), np.subtract(upper, 1e-9))
            problems.append((i, w, ly, x0, np.array(lower), np.array(upper), free, warm, w_max))
    best = best_of_starts(problems, lambda group, free, warm: _solve_rooflines(group, free, warm, robust_scale))
    for q in problems:
        log_f, alpha, s, p = _parts(best[q[0]].x[None], q[6])
        f = float(np.exp(log_f[0, 0]))
        out[q[0]] = Roofline(f, float(alpha[0, 0] * f) if q[6] else 0.0, float(s[0, 0]),
                             float(p[0, 0]) if q[6] else 1.0, q[8])
    return out  # type: ignore[return-value]


def _parts(X: np.ndarray, free: bool) -> tuple[np.ndarray, Any, np.ndarray, Any]:
    """(log floor, intercept / floor, slope, sharpness) of parameter rows ``X`` as columns (m, 1)."""
    if free:
        return X[:, 0:1], X[:, 1:2], np.exp(X[:, 2:3]), X[:, 3:4]
    return X[:, 0:1], 0.0, np.exp(X[:, 1:2]), 1.0


def _roof_residuals(X: np.ndarray, W: np.ndarray, LY: np.ndarray, free: bool) -> np.ndarray:
    """Log residuals (m, n) of parameter rows ``X`` at works ``W`` and log latencies ``LY``."""
    log_f, alpha, s, p = _parts(X, free)
    ratio = alpha + s * W / np.exp(log_f)
    with np.errstate(divide="ignore", invalid="ignore"):
        return log_f + np.logaddexp(0.0, p * np.log(np.maximum(ratio, 1e-300))) / p - LY


def _roof_jacobian(X: np.ndarray, W: np.ndarray, free: bool) -> np.ndarray:
    """Derivatives (m, n, k) of :func:`_roof_residuals` in the parameters."""
    log_f, alpha, s, p = _parts(X, free)
    raw = alpha + s * W / np.exp(log_f)
    live = raw > 1e-12  # where the line is below zero (negative intercept) the floor alone is the curve
    ratio = np.where(live, raw, 1.0)
    q = p * np.log(ratio)
    sig = np.where(live, 0.5 * (1.0 + np.tanh(0.5 * q)), 0.0)
    rel = s * W / np.exp(log_f) / ratio  # d log(ratio) / d log s
    if not free:
        return np.stack([1.0 - sig * rel, sig * rel], axis=-1)
    d_p = np.where(live, (sig * q - np.logaddexp(0.0, q)) / p ** 2, 0.0)
    return np.stack([1.0 - sig * rel, sig / ratio, sig * rel, d_p], axis=-1)


def _solve_rooflines(problems: list[tuple], free: bool, warm: bool, robust_scale: float) -> list[Solution]:
    """Roofline problems ``(data set, w, log y, x0, lower, upper, free, warm, w_max)`` with the same ``free``
    and ``warm`` (:func:`servopt.performance._lsq.solve_padded`)."""
    return solve_padded(problems, lambda X, W, LY: _roof_residuals(X, W, LY, free),
                        lambda X, W: _roof_jacobian(X, W, free), warm, robust_scale)
