"""One-dimensional curves in batch size (or cores): the floored latency curve, the straight-line baseline and
the averaged capacity curve.

The latency curve is a *soft hinge* between a floor and a line through the origin::

    L(b) = F * (1 + (b / k) ** p) ** (1 / p)

``F`` is the small-batch floor (fixed launch and framework overhead), ``k`` the knee where the device saturates,
``p`` how sharp the knee is. For ``b << k`` the latency is ``F``; for ``b >> k`` it is ``F * b / k``, a device
running at its peak throughput ``k / F``. The curve is increasing in ``b`` and its log-log slope lies in (0, 1):
latency never falls when the batch grows, and throughput ``b / L(b)`` never falls either.

It is fitted on log latency with a robust (soft-L1) loss of scale 5 %, so one outlying point (NVIDIA's tables have
a few: a mean latency above its p95) does not bend the curve for the others. With fewer than five distinct batch
sizes ``p`` is fixed at 1, which turns the curve into a straight line with non-negative intercept and slope
(three parameters would fit four points exactly). A single batch size gives ``L(b) = L1 * max(1, b / b1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from servopt.exceptions import ValidationError
from servopt.performance._lsq import Solution, best_of_starts, solve_padded

__all__ = ["CAPACITY_CURVES", "Curve", "calm_line", "fit_capacity_curve", "fit_curve", "fit_curves", "fit_line", "Line",
           "MIN_FREE_POINTS", "Quadratic", "rising_line", "ROBUST_SCALE"]

#: distinct batch sizes needed before the knee sharpness ``p`` is fitted
MIN_FREE_POINTS = 5
#: scale of the soft-L1 loss on log latency (about 5 % relative error)
ROBUST_SCALE = 0.05
_P_BOUNDS = (0.3, 20.0)


@dataclass(frozen=True)
class Curve:
    """A fitted latency curve; call it with batch sizes to get latencies.

    ``kind`` is ``"hinge"`` (the soft hinge), ``"proportional"`` (one point: ``L1 * max(1, b / b1)``) or
    ``"constant"``.
    """

    kind: str
    log_floor: float
    log_knee: float = 0.0
    sharpness: float = 1.0

    @property
    def floor(self) -> float:
        """The small-batch floor ``F`` (same unit as the fitted values)."""
        return float(np.exp(self.log_floor))

    @property
    def knee(self) -> float:
        """The batch size ``k`` where the curve turns from the floor to the line."""
        return float(np.exp(self.log_knee))

    def __call__(self, b: np.ndarray | float) -> np.ndarray:
        b = np.asarray(b, dtype=float)
        if self.kind == "constant":
            return np.full(b.shape, np.exp(self.log_floor))
        if self.kind == "proportional":
            return np.exp(self.log_floor) * np.maximum(1.0, b / np.exp(self.log_knee))
        return np.exp(_log_hinge(self.log_floor, self.log_knee, self.sharpness, b))


def _log_hinge(log_floor: Any, log_knee: Any, p: Any, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        z = p * (np.log(np.maximum(b, 0.0)) - log_knee)
    return log_floor + np.logaddexp(0.0, z) / p


def _hinge_jacobian(log_knee: Any, p: Any, b: np.ndarray) -> np.ndarray:
    """Derivatives of ``_log_hinge`` in (log floor, log knee, p), stacked on a last axis."""
    with np.errstate(divide="ignore"):
        u = np.log(np.maximum(b, 0.0)) - log_knee
    z = p * u
    sig = np.where(np.isfinite(z), 0.5 * (1.0 + np.tanh(0.5 * np.where(np.isfinite(z), z, 0.0))), 0.0)
    d_p = np.where(np.isfinite(z), (sig * np.where(np.isfinite(z), z, 0.0) - np.logaddexp(0.0, z)) / p ** 2, 0.0)
    return np.stack([np.ones_like(u), -sig, d_p], axis=-1)


def fit_curve(b: np.ndarray, y: np.ndarray, *, robust_scale: float = ROBUST_SCALE,
              min_free_points: int = MIN_FREE_POINTS, start: Curve | None = None) -> Curve:
    """Fit the soft-hinge latency curve to batch sizes ``b`` and positive values ``y``.

    Parameters
    ----------
    b : array of float
        Batch sizes (>= 0; zeros are allowed and sit on the floor).
    y : array of float
        Positive values (latency, ms).
    robust_scale : float
        Scale of the soft-L1 loss on log values.
    min_free_points : int
        Distinct positive batch sizes needed to fit the knee sharpness; below it ``p = 1``.
    start : Curve, optional
        A soft hinge fitted on nearly the same points (the inner folds of
        :mod:`servopt.performance._ingrid`): the solver starts once, from its parameters, instead of from
        one or two generic starts.

    Examples
    --------
    >>> import numpy as np
    >>> b = np.array([1, 2, 4, 8, 16, 32, 64, 128.0])
    >>> c = fit_curve(b, 10 * np.maximum(1, b / 16))
    >>> bool(abs(c(1.0) - 10) < 0.5 and abs(c(128.0) - 80) < 4)
    True
    """
    return fit_curves([b], [y], robust_scale=robust_scale, min_free_points=min_free_points, start=start)[0]


def fit_curves(bs: list[np.ndarray], ys: list[np.ndarray], *, robust_scale: float = ROBUST_SCALE,
               min_free_points: int = MIN_FREE_POINTS,
               start: Curve | list[Curve | None] | None = None) -> list[Curve]:
    """:func:`fit_curve` on each data set ``(bs[i], ys[i])`` (the inner folds of the in-grid choice), their
    least-squares problems solved together (:func:`servopt.performance._lsq.soft_l1_fit_many`); ``start``: one
    start for all, or one per data set."""
    out: list[Curve | None] = [None] * len(bs)
    problems = []
    given = start if isinstance(start, list) else [start] * len(bs)
    for i, (b, y, start) in enumerate(zip(bs, ys, given)):
        b = np.asarray(b, dtype=float)
        ly = np.log(np.asarray(y, dtype=float))
        distinct = np.unique(b[b > 0])
        if distinct.size == 0:
            out[i] = Curve("constant", float(np.median(ly)))
            continue
        if distinct.size == 1:
            at = b == distinct[0]
            out[i] = Curve("proportional", float(np.median(ly[at])), float(np.log(distinct[0])))
            continue
        free = distinct.size >= min_free_points
        log_b = np.log(distinct)
        k_bounds = (log_b[0] - np.log(1e3), log_b[-1] + np.log(1e6))
        f_bounds = (ly.min() - 10.0, ly.max() + 1.0)
        k0 = float(np.median(log_b))
        warm = start is not None and start.kind == "hinge"
        for p0 in ((start.sharpness,) if warm else (1.0, 4.0) if free else (1.0,)):
            if free:
                lower = [f_bounds[0], k_bounds[0], _P_BOUNDS[0]]
                upper = [f_bounds[1], k_bounds[1], _P_BOUNDS[1]]
                x0 = [start.log_floor, start.log_knee, p0] if warm else [ly.min(), k0, p0]
            else:
                lower, upper = [f_bounds[0], k_bounds[0]], [f_bounds[1], k_bounds[1]]
                x0 = [start.log_floor, start.log_knee] if warm else [ly.min(), k0]
            x0 = np.clip(x0, np.add(lower, 1e-9), np.subtract(upper, 1e-9))
            problems.append((i, b, ly, x0, np.array(lower), np.array(upper), free, warm))
    best = best_of_starts(problems, lambda group, free, warm: _solve_hinges(group, free, warm, robust_scale))
    for q in problems:
        t = best[q[0]].x
        out[q[0]] = Curve("hinge", float(t[0]), float(t[1]), float(t[2]) if q[6] else 1.0)
    return out  # type: ignore[return-value]


def _solve_hinges(problems: list[tuple], free: bool, warm: bool, robust_scale: float) -> list[Solution]:
    """Soft-hinge problems ``(data set, b, log y, x0, lower, upper, free, warm)`` with the same ``free`` and
    ``warm`` (:func:`servopt.performance._lsq.solve_padded`)."""

    def residuals(X: np.ndarray, B: np.ndarray, LY: np.ndarray) -> np.ndarray:
        return _log_hinge(X[:, 0:1], X[:, 1:2], X[:, 2:3] if free else 1.0, B) - LY

    def jacobians(X: np.ndarray, B: np.ndarray) -> np.ndarray:
        J = _hinge_jacobian(X[:, 1:2], X[:, 2:3] if free else 1.0, B)
        return J if free else J[:, :, :2]

    return solve_padded(problems, residuals, jacobians, warm, robust_scale)


@dataclass(frozen=True)
class Line:
    """``y = intercept + slope * x``: the straight-line baseline (and InfAdapter's capacity line)."""

    intercept: float
    slope: float

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return self.intercept + self.slope * np.asarray(x, dtype=float)


def fit_line(x: np.ndarray, y: np.ndarray, *, through_origin: bool = False) -> Line:
    """Least-squares line; one distinct ``x`` gives a constant (or a line through the origin if asked)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if through_origin:
        denom = float(np.dot(x, x))
        return Line(0.0, float(np.dot(x, y) / denom) if denom > 0 else 0.0)
    if np.unique(x).size < 2:
        return Line(float(np.mean(y)), 0.0)
    slope, intercept = np.polyfit(x, y, 1)
    return Line(float(intercept), float(slope))


@dataclass(frozen=True)
class Quadratic:
    """``y = intercept + slope * x + curvature * x**2``, held at its vertex where it would turn back.

    A concave curve stays at its peak beyond the vertex and a convex one at its minimum before it, so a
    capacity curve whose line rises never falls when cores are added.
    """

    intercept: float
    slope: float
    curvature: float

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.curvature != 0:
            vertex = -self.slope / (2 * self.curvature)
            x = np.minimum(x, vertex) if self.curvature < 0 else np.maximum(x, vertex)
        return self.intercept + (self.slope + self.curvature * x) * x


#: the capacity-vs-cores curves :func:`fit_capacity_curve` fits
CAPACITY_CURVES = ("average", "line")


def fit_capacity_curve(x: np.ndarray, y: np.ndarray, curve: str = "average") -> Quadratic:
    """Capacity as a function of cores.

    ``"line"`` is InfAdapter's least-squares line. ``"average"`` averages three least-squares fits, the line, the
    line through the origin and the quadratic, so the result is a quadratic whose intercept is shrunk towards 0
    and whose curvature is a third of the quadratic fit's. Each of the three is a defensible model of a
    measured capacity curve and none is reliably best on a 19-point profile; their mean has a lower held-out
    error than any one of them on InfAdapter's profiles (``benchmarks/bench_capacity.py``). With fewer distinct
    core counts the members that need more points drop out (two counts: line and origin line; one: the origin
    line, i.e. capacity proportional to cores).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if curve not in CAPACITY_CURVES:
        raise ValidationError(f"curve={curve!r}: expected one of {', '.join(CAPACITY_CURVES)}")
    distinct = np.unique(x).size
    if distinct < 2:
        line = fit_line(x, y, through_origin=bool(x.size and x[0] > 0))
        return Quadratic(line.intercept, line.slope, 0.0)
    line = fit_line(x, y)
    if curve == "line":
        return Quadratic(line.intercept, line.slope, 0.0)
    members = [(line.intercept, line.slope, 0.0), (0.0, fit_line(x, y, through_origin=True).slope, 0.0)]
    if distinct >= 3:
        c2, c1, c0 = np.polyfit(x, y, 2)
        members.append((float(c0), float(c1), float(c2)))
    a, b, c = np.mean(members, axis=0)
    return Quadratic(float(a), float(b), float(c))


def rising_line(x: np.ndarray, y: np.ndarray) -> Line:
    """Least-squares line of ``y`` on ``x`` (memory on the batch, or on batch x work); the mean where it would
    fall, and the least-squares line through the origin where its intercept, the static memory, would be below 0
    (fresh set 21's ViT-like: -3.5 MB, so 112 px at batch 1 predicted -1.7 MB)."""
    line = fit_line(x, y)
    if line.slope < 0:
        return Line(float(np.mean(y)), 0.0)
    return line if line.intercept >= 0 else fit_line(x, y, through_origin=True)


def calm_line(x: np.ndarray, y: np.ndarray, rows: np.ndarray, calm: np.ndarray) -> Line:
    """Least-squares line of ``y`` on ``x`` over ``rows``, on the calm ones when two distinct x remain; a line
    that would fall is replaced by the mean (memory does not fall when the batch grows)."""
    if np.unique(x[rows & calm]).size >= 2:
        rows = rows & calm
    return rising_line(x[rows], y[rows])
