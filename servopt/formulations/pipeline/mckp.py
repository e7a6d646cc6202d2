"""An exact multiple-choice knapsack solver with continuous weights: LP bounds, bound fixing, a Pareto DP.

Choose one option o per stage (weight w_o >= 0, value v_o) to maximise Σ v_o subject to Σ w_o <= limit.
:func:`solve_mckp` is exact (the returned choice is optimal up to floating-point rounding of the sums):

1. **Fronts and hulls.** Within a stage an option is dropped when another is no heavier and no worse (one of equal
   options is kept). The LP relaxation of a stage is its upper convex hull (Dyer-Zemel); its hull steps, merged over
   the stages by decreasing slope, give the LP optimum UB(limit) and a greedy incumbent (steps taken while they fit).
   A 1-swap local search improves the incumbent.
2. **Bound fixing.** Option o of stage s can be part of a choice worth at least the floor F only if
   v_o + UB_{-s}(limit − w_o) >= F, where UB_{-s} is the LP bound of all the other stages (every choice that uses o
   is worth at most that). UB_{-s} for every s comes from one merged slope list with stage s's steps masked out.
   F is the incumbent's value (or a caller's floor, when higher) less a relative tolerance, so an optimal choice
   keeps all its options.
3. **Pareto DP over the survivors**, stages ordered by their number of survivors: a partial choice is a state
   (W = Σ w, V = Σ v); states that cannot meet the limit, or whose V plus the LP bound of the remaining survivors
   at the latency left is below F, are dropped; of the rest only those not dominated in (W, V) are kept. Each step
   removes only states no completion of which reaches F or that another state's completions match. The DP first
   runs with floors F' between F and the LP bound (gap / 16, then gap / 4 below the bound): the best choice worth F'
   or more is then the optimum whenever one exists (a better choice would be worth F' too), and far fewer states
   pass the test. Only when none exists does the next, lower floor run.

The result is an optimal choice, or ``below`` when no choice reaches the caller's floor (the parametric product
search uses that to stop early), or ``infeasible``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

__all__ = ["Knapsack", "MckpResult", "solve_mckp", "PRUNE_RTOL"]

#: relative slack on every bound test: a choice is dropped only when its bound is below the floor by more than this
PRUNE_RTOL = 1e-7


@dataclass(frozen=True)
class MckpResult:
    """The outcome of :func:`solve_mckp`.

    ``status`` is ``optimal`` (``picks`` is an optimal choice, ``value`` its Σ v), ``below`` (no choice is worth
    the floor), ``infeasible`` (no choice fits) or ``timeout`` (``picks`` is the incumbent, not proven optimal).
    ``picks`` holds one position per stage into that stage's arrays.
    """

    status: str
    picks: list[int] | None
    value: float


@dataclass
class _Flat:
    """Options of all stages in one array, sorted by stage then weight (``pos``: position in the stage's arrays)."""

    stage: np.ndarray
    pos: np.ndarray
    w: np.ndarray
    v: np.ndarray


class Knapsack:
    """The weights and capacity of a knapsack, prepared once for solves with different values (:meth:`solve`).

    Options that cannot fit even with every other stage at its lightest option are dropped here, and the rest are
    sorted by stage and weight once.
    """

    def __init__(self, weights: list[np.ndarray], limit: float) -> None:
        self.n = n = len(weights)
        self.limit = float(limit)
        sizes = np.array([w.size for w in weights])
        mins = np.array([float(w.min()) for w in weights])
        self.feasible = bool(mins.sum() <= limit)
        stage = np.repeat(np.arange(n), sizes)
        pos = np.arange(stage.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        w = np.concatenate(weights)
        fits = w <= limit - (mins.sum() - mins[stage])
        fits[np.cumsum(sizes) - sizes + np.array([int(np.argmin(x)) for x in weights])] = True  # one per stage
        order = np.flatnonzero(fits)[np.lexsort((w[fits], stage[fits]))]
        self.gidx = order  # index into the concatenated values
        self.stage, self.pos, self.w = stage[order], pos[order], w[order]
        counts = np.bincount(self.stage, minlength=n)
        self.col = np.arange(order.size) - np.repeat(np.cumsum(counts) - counts, counts)
        self.width = int(counts.max())
        same = np.zeros(order.size, dtype=bool)
        same[1:] = (self.stage[1:] == self.stage[:-1]) & (self.w[1:] == self.w[:-1])
        self.ties = bool(same.any())
        self.inner = self.col > 0
        self.size = int(sizes.sum())

    def front(self, values: list[np.ndarray] | np.ndarray) -> _Flat:
        """Each stage's (w, v) Pareto front for these values (w ascending, v strictly rising)."""
        v = (values if isinstance(values, np.ndarray) else np.concatenate(values))[self.gidx]
        stage, pos, w = self.stage, self.pos, self.w
        if self.ties:  # equal weights: the best value first
            order = np.lexsort((-v, w, stage))
            stage, pos, w, v = stage[order], pos[order], w[order], v[order]
        grid = np.full((self.n, self.width), -np.inf)
        grid[stage, self.col] = v
        best = np.maximum.accumulate(grid, axis=1)
        before = np.full(v.size, -np.inf)
        before[self.inner] = best[stage[self.inner], self.col[self.inner] - 1]
        keep = v > before
        return _Flat(stage[keep], pos[keep], w[keep], v[keep])

    def option_bounds(self, values: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """Per option (stages' options concatenated), an upper bound on Σ v over the choices that use it and fit
        (-inf when none fits): v_o + UB_{-s}(limit − w_o), the bound fixing of step 2."""
        out = np.full(self.size, -np.inf)
        if not self.feasible:
            return out
        v = values if isinstance(values, np.ndarray) else np.concatenate(values)
        lp = _lp(self.front(v), self.n)
        out[self.gidx] = _option_bounds(_Flat(self.stage, self.pos, self.w, v[self.gidx]), lp, self.limit)
        return out

    def solve(self, values: list[np.ndarray] | np.ndarray, floor: float = -np.inf,
              deadline: float | None = None) -> MckpResult:
        """Maximise Σ v subject to Σ w <= limit for these values (see :func:`solve_mckp`).

        ``values`` is one array per stage, or all stages' values concatenated in stage order.
        """
        if not self.feasible:
            return MckpResult("infeasible", None, -np.inf)
        return _solve(self.front(values), self.n, self.limit, floor, deadline)


def _hull(f: _Flat) -> np.ndarray:
    """Indices into ``f`` of every stage's upper convex hull (f is a front: w and v strictly rising per stage)."""
    n = f.stage.size
    alive = np.ones(n, dtype=bool)
    idx = np.arange(n)
    while True:
        prev = np.empty(n, dtype=np.int64)
        prev[0] = -1
        np.maximum.accumulate(np.where(alive, idx, -1)[:-1], out=prev[1:])
        nxt = np.empty(n, dtype=np.int64)
        nxt[-1] = n
        nxt[:-1] = np.minimum.accumulate(np.where(alive, idx, n)[:0:-1])[::-1]
        inner = alive & (prev >= 0) & (nxt < n)
        at = np.flatnonzero(inner)
        p, q = prev[at], nxt[at]
        at_ok = (f.stage[p] == f.stage[at]) & (f.stage[q] == f.stage[at])
        at, p, q = at[at_ok], p[at_ok], q[at_ok]
        # drop a point on or below the chord of its alive neighbours (it is no hull vertex)
        below = (f.v[at] - f.v[p]) * (f.w[q] - f.w[p]) <= (f.v[q] - f.v[p]) * (f.w[at] - f.w[p])
        if not below.any():
            return np.flatnonzero(alive)
        alive[at[below]] = False


@dataclass
class _Lp:
    """The stages' hull steps merged by decreasing slope: base (fastest hull point) per stage, steps in order."""

    base_w: np.ndarray  # per stage
    base_v: np.ndarray
    base_at: np.ndarray  # index into the flat front of each stage's fastest point
    seg_stage: np.ndarray
    seg_dw: np.ndarray
    seg_dv: np.ndarray
    seg_end: np.ndarray  # index into the flat front of the step's end point


def _lp(f: _Flat, n_stages: int) -> _Lp:
    hull = _hull(f)
    hs = f.stage[hull]
    first = np.ones(hs.size, dtype=bool)
    first[1:] = hs[1:] != hs[:-1]
    base_at = hull[first]
    step = ~first
    ends = hull[step]
    starts = hull[np.flatnonzero(step) - 1]
    dw, dv = f.w[ends] - f.w[starts], f.v[ends] - f.v[starts]
    order = np.argsort(-(dv / dw), kind="stable")
    base_w = np.zeros(n_stages)
    base_v = np.zeros(n_stages)
    base_w[f.stage[base_at]] = f.w[base_at]
    base_v[f.stage[base_at]] = f.v[base_at]
    return _Lp(base_w, base_v, base_at, hs[step][order], dw[order], dv[order], ends[order])


def _greedy(f: _Flat, lp: _Lp, limit: float) -> np.ndarray:
    """A feasible choice (flat front index per stage): hull steps by slope while they fit."""
    picks = lp.base_at.copy()
    used = float(lp.base_w.sum())
    cum = used + np.cumsum(lp.seg_dw)
    fit = int(np.searchsorted(cum, limit, side="right"))  # the first `fit` steps all fit
    # within one stage the steps come in hull order, so the last fitted step of a stage is its pick
    picks[lp.seg_stage[:fit]] = lp.seg_end[:fit]
    if fit < lp.seg_dw.size:
        used = float(cum[fit - 1]) if fit else used
        blocked = {int(lp.seg_stage[fit])}
        for k, dw, end in zip(lp.seg_stage[fit + 1:].tolist(), lp.seg_dw[fit + 1:].tolist(),
                              lp.seg_end[fit + 1:].tolist()):
            if k in blocked:
                continue
            if used + dw <= limit:
                used += dw
                picks[k] = end
            else:
                blocked.add(k)
    return picks


def _improve(f: _Flat, picks: np.ndarray, limit: float) -> np.ndarray:
    """1-swap local search: replace one stage's pick by the option that gains most and still fits, while any does."""
    picks = picks.copy()
    for _ in range(4 * picks.size):
        used = float(f.w[picks].sum())
        slack = limit - used
        gain = f.v - f.v[picks][f.stage]
        ok = (f.w - f.w[picks][f.stage] <= slack) & (gain > 1e-12 * max(1.0, abs(float(f.v[picks].sum()))))
        if not ok.any():
            break
        at = int(np.flatnonzero(ok)[np.argmax(gain[ok])])
        picks[f.stage[at]] = at
    return picks


def _curves(lp: _Lp, rows: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (w, v) of the merged steps with, in row r, only the steps where ``rows[r, step]`` holds."""
    xw = np.zeros((n_rows, lp.seg_dw.size + 1))
    xv = np.zeros((n_rows, lp.seg_dw.size + 1))
    np.cumsum(np.where(rows, lp.seg_dw, 0.0), axis=1, out=xw[:, 1:])
    np.cumsum(np.where(rows, lp.seg_dv, 0.0), axis=1, out=xv[:, 1:])
    return xw, xv


def _option_bounds(f: _Flat, lp: _Lp, limit: float) -> np.ndarray:
    """Bound fixing (step 2): per front option, an upper bound on every choice that uses it (-inf: cannot fit)."""
    n = lp.base_w.size
    xw, xv = _curves(lp, lp.seg_stage[None, :] != np.arange(n)[:, None], n)
    others_w = lp.base_w.sum() - lp.base_w
    others_v = lp.base_v.sum() - lp.base_v
    cap = limit - f.w - others_w[f.stage]
    ub = np.full(f.stage.size, -np.inf)
    bounds = np.searchsorted(f.stage, np.arange(n + 1))
    for s in range(n):
        lo, hi = bounds[s], bounds[s + 1]
        ub[lo:hi] = f.v[lo:hi] + others_v[s] + np.interp(cap[lo:hi], xw[s], xv[s])
    return np.where(cap >= 0, ub, -np.inf)


def solve_mckp(weights: list[np.ndarray], values: list[np.ndarray], limit: float, floor: float = -np.inf,
               deadline: float | None = None) -> MckpResult:
    """Maximise Σ v subject to Σ w <= ``limit``, one option per stage (exact; see the module docstring).

    Parameters
    ----------
    weights, values : list of ndarray
        Per stage, the options' weights (>= 0) and values; every stage has at least one option.
    limit : float
        The capacity.
    floor : float, optional
        Only choices worth at least ``floor`` (less the relative tolerance :data:`PRUNE_RTOL`) are of interest:
        when none is, the status is ``below``.
    deadline : float, optional
        A ``time.perf_counter()`` value; past it the incumbent is returned with status ``timeout``.

    Returns
    -------
    MckpResult

    Examples
    --------
    >>> r = solve_mckp([np.array([1.0, 3.0]), np.array([1.0, 2.0, 4.0])],
    ...                [np.array([1.0, 5.0]), np.array([0.0, 2.0, 6.0])], limit=5.0)
    >>> r.status, r.picks, r.value
    ('optimal', [0, 2], 7.0)
    """
    return Knapsack(weights, limit).solve(values, floor, deadline)


def _solve(f: _Flat, n: int, limit: float, floor: float, deadline: float | None) -> MckpResult:
    lp = _lp(f, n)
    if float(lp.base_w.sum()) > limit:
        return MckpResult("infeasible", None, -np.inf)
    inc = _improve(f, _greedy(f, lp, limit), limit)
    inc_value = float(f.v[inc].sum())
    target = max(inc_value, floor)
    tol = PRUNE_RTOL * max(1.0, abs(target))
    below = MckpResult("below", None, -np.inf)
    reached = inc_value >= floor - tol
    if reached and float(lp.base_w.sum() + lp.seg_dw.sum()) <= limit:
        return _result("optimal", f, inc, inc_value)  # every stage's best option fits together
    # floors rising towards the LP bound first: the DP with floor F finds the optimum whenever it is worth F, and
    # keeps far fewer states than with the incumbent's floor (the optimum is usually close to the LP bound)
    low = target - tol
    gap = _lp_value(lp, limit) - low
    floors = [low + gap * (1 - 0.25**e) for e in (2, 1)] if gap > 4 * tol else []
    bounds = _option_bounds(f, lp, limit)
    for floor_k in floors + [low]:
        keep = bounds >= floor_k
        counts = np.bincount(f.stage[keep], minlength=n)
        if not counts.all():  # no choice reaches floor_k
            continue
        g = _Flat(f.stage[keep], f.pos[keep], f.w[keep], f.v[keep])
        picks = _dp(g, n, counts, limit, floor_k, deadline)
        if picks is None:  # the deadline passed
            return _result("timeout", f, inc, inc_value)
        if not isinstance(picks, str) and float(g.v[picks].sum()) >= inc_value:
            return _result("optimal", g, picks, float(g.v[picks].sum()))
    return _result("optimal", f, inc, inc_value) if reached else below


def _lp_value(lp: _Lp, limit: float) -> float:
    """The LP relaxation's optimum at capacity ``limit`` (an upper bound on every choice)."""
    xw = np.concatenate(([0.0], np.cumsum(lp.seg_dw)))
    xv = np.concatenate(([0.0], np.cumsum(lp.seg_dv)))
    return float(lp.base_v.sum() + np.interp(limit - lp.base_w.sum(), xw, xv))


def _result(status: str, f: _Flat, picks: np.ndarray, value: float) -> MckpResult:
    out = np.empty(picks.size, dtype=np.int64)
    out[f.stage[picks]] = f.pos[picks]
    return MckpResult(status, out.tolist(), value)


def _dp(g: _Flat, n: int, counts: np.ndarray, limit: float, floor: float,
        deadline: float | None) -> np.ndarray | str | None:
    """Step 3 over the surviving options ``g``: flat indices of the best choice, "none" when no state reaches the
    floor, None past the deadline. Stages with one survivor are fixed; the others go by number of survivors."""
    fixed = counts[g.stage] == 1
    picks = np.empty(n, dtype=np.int64)
    picks[g.stage[fixed]] = np.flatnonzero(fixed)
    free = np.flatnonzero(~fixed)
    if not free.size:  # one survivor per stage: the choice, if it fits and reaches the floor
        return picks if g.w[picks].sum() <= limit and g.v[picks].sum() >= floor else "none"
    w0, v0 = float(g.w[fixed].sum()), float(g.v[fixed].sum())
    moving = np.flatnonzero(counts > 1)
    m = moving.size
    order = moving[np.argsort(counts[moving], kind="stable")]
    rank = np.full(n, -1, dtype=np.int64)
    rank[order] = np.arange(m)
    # the LP bound of every suffix (in DP order) over the survivors; f.pos: index into g
    st = rank[g.stage[free]]
    resort = np.lexsort((g.w[free], st))
    f = _Flat(st[resort], free[resort], g.w[free][resort], g.v[free][resort])
    lp = _lp(f, m)  # survivors of a front are a front
    xw, xv = _curves(lp, lp.seg_stage[None, :] >= np.arange(m + 1)[:, None], m + 1)
    suffix_w = np.zeros(m + 1)
    suffix_v = np.zeros(m + 1)
    suffix_w[:m] = np.cumsum(lp.base_w[::-1])[::-1]
    suffix_v[:m] = np.cumsum(lp.base_v[::-1])[::-1]
    bounds = np.searchsorted(f.stage, np.arange(m + 1))

    W = np.array([w0])
    V = np.array([v0])
    trail: list[tuple[np.ndarray, np.ndarray]] = []
    for k in range(m):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        opt = f.pos[bounds[k]:bounds[k + 1]]  # indices into g
        width = opt.size
        w = (W[:, None] + g.w[opt]).ravel()
        v = (V[:, None] + g.v[opt]).ravel()
        extra = limit - w - suffix_w[k + 1]
        ok = extra >= 0
        at = np.flatnonzero(ok)
        ok[at] = v[at] + suffix_v[k + 1] + np.interp(extra[at], xw[k + 1], xv[k + 1]) >= floor
        flat = np.flatnonzero(ok)
        if not flat.size:
            return "none"
        w, v = w[flat], v[flat]
        srt = np.lexsort((-v, w))
        vs = v[srt]
        best = np.empty(vs.size)
        best[0] = -np.inf
        np.maximum.accumulate(vs[:-1], out=best[1:])
        keep = srt[vs > best]
        W, V = w[keep], v[keep]
        flat = flat[keep]
        trail.append((flat // width, opt[flat % width]))
    state = int(np.argmax(V))
    for parent, option in reversed(trail):
        picks[g.stage[option[state]]] = option[state]
        state = int(parent[state])
    return picks
