"""Pareto fronts and suffix LP bounds for the ``prefer_stable`` dynamic programme of :mod:`.dp`.

:func:`pareto_mask` keeps the non-dominated points of up to four criteria; :class:`SuffixBound` gives the LP
relaxation of every suffix of stages as a function of the latency left (Dyer-Zemel) and a greedy incumbent.
"""

from __future__ import annotations

import bisect

import numpy as np

__all__ = ["pareto_mask", "SuffixBound"]


# ------------------------------------------------------------------------------------------------ Pareto fronts
def pareto_mask(w: np.ndarray, x: np.ndarray, y: np.ndarray | None = None,
                c: np.ndarray | None = None) -> np.ndarray:
    """Which points are not dominated: lower ``w``, higher ``x`` (and ``y``), fewer ``c`` (integers) are better.

    A point is dropped when another is at least as good in every criterion; of identical points one is kept.

    Parameters
    ----------
    w, x : ndarray
        Criteria of every point (minimise ``w``, maximise ``x``).
    y : ndarray, optional
        A second criterion to maximise.
    c : ndarray of int, optional
        A criterion to minimise with few distinct values (changes).

    Returns
    -------
    ndarray of bool

    Examples
    --------
    >>> pareto_mask(np.array([1.0, 2.0, 2.0, 3.0]), np.array([5.0, 4.0, 6.0, 6.0])).tolist()
    [True, False, True, False]
    """
    size = w.size
    keep = np.zeros(size, dtype=bool)
    if not size:
        return keep
    cc = np.zeros(size, dtype=np.int64) if c is None else np.asarray(c, dtype=np.int64)
    if y is None:
        # by w, then x descending, then c: every dominator comes first
        order = np.lexsort((-x, w)) if c is None else np.lexsort((cc, -x, w))
        xs, cs = x[order], cc[order]
        if c is None:
            best_before = np.empty(size)
            best_before[0] = -np.inf
            np.maximum.accumulate(xs[:-1], out=best_before[1:])
            dominated = best_before >= xs
        else:
            dominated = np.zeros(size, dtype=bool)
            for level in range(int(cs.min()), int(cs.max()) + 1):
                # a point of level L is dominated by an earlier one with c <= L and an x at least as high
                here = cs == level
                if not here.any():
                    continue
                earlier = np.where(cs <= level, xs, -np.inf)
                best_before = np.r_[-np.inf, np.maximum.accumulate(earlier)[:-1]]
                dominated[here] |= best_before[here] >= xs[here]
        keep[order[~dominated]] = True
        return keep
    if c is None:
        return _pareto_xy(np.lexsort((-y, -x, w)), x, y, keep)
    order = np.lexsort((cc, -y, -x, w))
    # sweep in that order; per level of c, a staircase of kept (x, y): x ascending, y descending
    stairs: dict[int, tuple[list[float], list[float]]] = {}
    levels: list[int] = []
    for i in order.tolist():
        xi, yi, ci = float(x[i]), float(y[i]), int(cc[i])
        dominated = False
        for level in levels:
            if level > ci:
                break
            xs_, ys_ = stairs[level]
            j = bisect.bisect_left(xs_, xi)
            if j < len(xs_) and ys_[j] >= yi:  # the kept point with the smallest x >= xi has the largest y
                dominated = True
                break
        if dominated:
            continue
        keep[i] = True
        if ci not in stairs:
            stairs[ci] = ([], [])
            bisect.insort(levels, ci)
        xs_, ys_ = stairs[ci]
        j = bisect.bisect_left(xs_, xi)
        # drop kept points of this level that the new one dominates (x <= xi and y <= yi, just before j)
        start = j
        while start > 0 and ys_[start - 1] <= yi:
            start -= 1
        end = j
        while end < len(xs_) and xs_[end] == xi and ys_[end] <= yi:
            end += 1
        xs_[start:end] = [xi]
        ys_[start:end] = [yi]
    return keep


def _pareto_xy(order: np.ndarray, x: np.ndarray, y: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The three-criteria sweep without ``c``: one staircase, and a first vectorised pass.

    ``order`` sorts by w, then x and y descending, so every dominator of a point comes before it. The first pass
    drops, at array speed, each point that the best earlier point in x (ties: in y) or in y (ties: in x)
    dominates; that is only ever a true dominance, so the exact sweep over the rest keeps the same front (a
    dropped point's dominator is itself dominated by, or is, a point the sweep keeps: dominance is transitive).
    """
    xs, ys = x[order], y[order]
    size = order.size
    dropped = np.zeros(size, dtype=bool)
    if size > 64:
        t = np.arange(size)
        for first, second in ((xs, ys), (ys, xs)):
            # the earlier point with the largest ``first`` (and, among those, the largest ``second``)
            rank = np.lexsort((second, first))
            score = np.empty(size, dtype=np.int64)
            score[rank] = t
            best = np.maximum.accumulate(score)
            at = rank[best[:-1]]
            dropped[1:] |= (xs[at] >= xs[1:]) & (ys[at] >= ys[1:])
    rest = np.flatnonzero(~dropped)
    order, xs, ys = order[rest], xs[rest], ys[rest]
    # the staircase of the kept points: x ascending, y descending; a point is dominated by a kept one iff the kept
    # point with the smallest x >= its x has a y >= its y
    stair_x: list[float] = []
    stair_y: list[float] = []
    left = bisect.bisect_left
    pos = 0
    while pos < order.size:
        # a block at a time: first against the staircase as it stands (at array speed), then point by point
        end = min(order.size, pos + max(512, 2 * len(stair_x)))
        bx, by = xs[pos:end], ys[pos:end]
        alive = np.arange(pos, end)
        if stair_x:
            sx, sy = np.asarray(stair_x), np.asarray(stair_y)
            j = np.searchsorted(sx, bx, side="left")
            hit = j < sx.size
            hit[hit] = sy[j[hit]] >= by[hit]
            alive = alive[~hit]
        pos = end
        for i, xi, yi in zip(order[alive].tolist(), xs[alive].tolist(), ys[alive].tolist()):
            j = left(stair_x, xi)
            if j < len(stair_x) and stair_y[j] >= yi:
                continue
            keep[i] = True
            start = j
            while start > 0 and stair_y[start - 1] <= yi:
                start -= 1
            stop = j
            while stop < len(stair_x) and stair_x[stop] == xi and stair_y[stop] <= yi:
                stop += 1
            stair_x[start:stop] = [xi]
            stair_y[start:stop] = [yi]
    return keep


# ----------------------------------------------------------------------------------------------------- bounds
class SuffixBound:
    """LP-relaxation bounds of every suffix of stages as a function of the latency left (Dyer-Zemel).

    A stage's LP choices lie on the upper convex hull of its (w, v) points; the suffix's LP optimum at latency r
    starts from every stage's fastest hull point and adds hull segments in decreasing slope while r lasts.
    """

    def __init__(self, weights: list[np.ndarray], values: list[np.ndarray], min_suffix: np.ndarray) -> None:
        self.min_suffix = min_suffix
        self.n = n = len(weights)
        base_v = np.zeros(n + 1)
        seg_stage, seg_dw, seg_dv, seg_end = [], [], [], []
        self.hulls = []
        for k, (w, v) in enumerate(zip(weights, values)):
            hull = _upper_hull(w, v)
            self.hulls.append(hull)
            base_v[k] = float(v[hull[0]])
            for a, b in zip(hull[:-1], hull[1:]):
                seg_stage.append(k)
                seg_dw.append(float(w[b] - w[a]))
                seg_dv.append(float(v[b] - v[a]))
                seg_end.append(b)
        self.base_v = np.cumsum(base_v[::-1])[::-1]  # Σ over stages k.. of the fastest hull point's value
        dw, dv = np.asarray(seg_dw), np.asarray(seg_dv)
        slope = dv / dw if dw.size else np.zeros(0)
        order = np.argsort(-slope, kind="stable")
        self.seg_stage = np.asarray(seg_stage, dtype=np.int64)[order]
        self.seg_dw, self.seg_dv = dw[order], dv[order]
        self.seg_end = np.asarray(seg_end, dtype=np.int64)[order]
        self._curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def value(self, k: int, left: np.ndarray) -> np.ndarray:
        """Upper bound on Σ v over stages k.. using at most ``left`` ms (-inf where even the fastest misses)."""
        if k >= self.n:
            return np.where(left >= 0, 0.0, -np.inf)
        if k not in self._curves:
            mine = self.seg_stage >= k
            self._curves[k] = (np.concatenate(([0.0], np.cumsum(self.seg_dw[mine]))),
                               np.concatenate(([0.0], np.cumsum(self.seg_dv[mine]))))
        xp, fp = self._curves[k]
        extra = left - self.min_suffix[k]
        out = self.base_v[k] + np.interp(extra, xp, fp)
        return np.where(extra >= 0, out, -np.inf)

    def greedy(self, limit: float) -> list[int]:
        """A feasible choice (positions into each stage's arrays): hull steps by slope while they fit."""
        picks = [int(h[0]) for h in self.hulls]
        used = float(self.min_suffix[0])
        blocked: set[int] = set()
        for k, dw, end in zip(self.seg_stage.tolist(), self.seg_dw.tolist(), self.seg_end.tolist()):
            if k in blocked:
                continue
            if used + dw <= limit:
                used += dw
                picks[k] = end
            else:
                blocked.add(k)  # a stage's hull steps are taken in order: this stage stops here
        return picks


def _upper_hull(w: np.ndarray, v: np.ndarray) -> list[int]:
    """Indices of the upper-left convex hull of the points (w, v): from the fastest-best point, slopes decreasing.

    Only points that are better in v than every faster point matter (the (w, v) Pareto front); of those, the
    ones on the concave envelope.
    """
    order = np.lexsort((-v, w))
    front: list[int] = []
    best = -np.inf
    for i in order.tolist():
        if v[i] > best:
            front.append(i)
            best = float(v[i])
    hull: list[int] = []
    for i in front:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b when it lies on or below the segment a -> i
            if (v[b] - v[a]) * (w[i] - w[a]) <= (v[i] - v[a]) * (w[b] - w[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return hull
