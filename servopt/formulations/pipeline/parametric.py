"""``product`` pipelines exactly, as a search over parametric sums (each one a multiple-choice knapsack).

The objective of a choice is f = α Π_s a_s + Σ_s v_s. Over the choices whose accuracies are all positive write
A = Σ_s log a_s and V = Σ_s v_s, so f = F(A, V) = α e^A + V with F convex and increasing in both arguments.

**Which choices can be optimal.** Let S be the (finite) set of points (A, V) of the feasible choices and x* a
maximiser of F over S. The sublevel set L = {y : F(y) <= F(x*)} is convex, contains S and has x* on its boundary,
so a line supports L at x*: some g != 0 with g·y <= g·x* on L. F is increasing, so L contains every point below or
left of one of its points, which forces g >= 0. Hence x* maximises g·y over S, i.e. θ A + V for θ = g_A / g_V >= 0,
or A (θ = +∞, g_V = 0). The maximisers of such a linear function form a face (a vertex or an edge) of the convex
hull of S; F is convex along an edge, so one of the edge's end points is at least as good as x*. **An optimal choice
is therefore among the supported vertices of the upper-right hull of S**, and each of those maximises θ A + V for
some θ in [0, +∞]: a multiple-choice knapsack with option values θ log a_o + v_o
(:class:`~servopt.formulations.pipeline.mckp.Knapsack`).

**Dichotomic search (Aneja-Nair).** Solve the two extremes: p maximising V (θ = 0) and q maximising A (θ = +∞).
For adjacent found vertices p (more V) and q (more A) with parameters θ_p < θ_q, the parameter θ of the chord pq
(θ A_p + V_p = θ A_q + V_q) either finds a point r strictly above the chord, a new vertex (recurse on p-r and r-q
with θ_r = θ), or proves pq a hull edge (no vertex between). Every supported vertex between p and q lies in the
triangle bounded by the chord and the supporting lines θ_p A + V = θ_p A_p + V_p and θ_q A + V = θ_q A_q + V_q.
F is convex, so its maximum over the triangle is at a corner: when F at the corner where the two supporting lines
meet is no better than the best choice found so far (the incumbent), no vertex between p and q can beat it and the
segment is dropped. The knapsack of a segment only has to beat the chord, which it is told (``floor``), so the
last, proving, solves end after the bound fixing.

**Zero accuracies.** A choice with some a_s = 0 is worth Σ v only, at most the θ = 0 optimum over *all* options,
which is solved first; the search then runs on the positive-accuracy options. If some stage has none, every
product is 0 and the θ = 0 choice is optimal.

**Floating point.** Logs and sums are rounded: each candidate is scored by its true objective α Π a + Σ v, the best
of them is returned, chord tests use a relative tolerance of 1e-10, and a segment is dropped when its corner is
not above the incumbent by more than the tie tolerance (:func:`~servopt.formulations.ties.tie_tolerance`): a plan
it could still hold would tie the incumbent.
"""

from __future__ import annotations

import heapq
import math
import time

import numpy as np

from servopt.formulations.pipeline.mckp import Knapsack
from servopt.formulations.ties import tie_tolerance

__all__ = ["solve_product", "product_bounds"]

#: relative tolerance of the chord test (a point must beat the chord by more than this to count as a new vertex)
_CHORD_RTOL = 1e-10


def solve_product(weights: list[np.ndarray], values: list[np.ndarray], accuracies: list[np.ndarray],
                  alpha: float, limit: float, deadline: float | None = None,
                  thetas: list[float] | None = None) -> tuple[str, list[int] | None, float]:
    """Maximise α Π a + Σ v subject to Σ w <= ``limit``, one option per stage (exact; module docstring).

    Parameters
    ----------
    weights, values, accuracies : list of ndarray
        Per stage, every option's weight, additive value and accuracy (>= 0).
    alpha : float
        The weight of the product (> 0).
    limit : float
    deadline : float, optional
        A ``time.perf_counter()`` value; past it the best choice found is returned with status ``timeout``.
    thetas : list, optional
        When given, the finite parameters θ of the knapsacks solved are appended (for :func:`product_bounds`).

    Returns
    -------
    (status, picks, objective)
        ``optimal`` or ``timeout`` with one position per stage, or ``infeasible`` with None.

    Examples
    --------
    >>> w = [np.array([1.0, 2.0]), np.array([1.0, 2.0])]
    >>> v = [np.array([0.0, -1.0]), np.array([0.0, -1.0])]
    >>> a = [np.array([0.5, 1.0]), np.array([0.5, 1.0])]
    >>> solve_product(w, v, a, alpha=10.0, limit=3.0)
    ('optimal', [0, 1], 4.0)
    """
    n = len(weights)
    full = Knapsack(weights, limit)
    first = full.solve(values, deadline=deadline)
    if first.status == "infeasible":
        return "infeasible", None, -math.inf

    def score(picks: list[int]) -> float:
        return alpha * float(np.prod([a[p] for a, p in zip(accuracies, picks)])) + float(
            sum(v[p] for v, p in zip(values, picks)))

    best_picks, best = first.picks, score(first.picks)
    if first.status == "timeout":
        return "timeout", best_picks, best
    # the search over positive accuracies, in local positions mapped back through `keep`
    keep = [np.flatnonzero(a > 0) for a in accuracies]
    if any(not k.size for k in keep):
        return "optimal", best_picks, best
    positive = all(k.size == a.size for k, a in zip(keep, accuracies))
    knapsack = full if positive else Knapsack([w[k] for w, k in zip(weights, keep)], limit)
    vs = [v[k] for v, k in zip(values, keep)]
    gs = [np.log(a[k]) for a, k in zip(accuracies, keep)]

    def point(picks: list[int]) -> tuple[float, float, list[int]]:
        glob = [int(k[p]) for k, p in zip(keep, picks)]
        return float(sum(g[p] for g, p in zip(gs, picks))), float(sum(v[p] for v, p in zip(vs, picks))), glob

    def consider(glob: list[int]) -> None:
        nonlocal best, best_picks
        value = score(glob)
        if value > best:
            best, best_picks = value, glob

    g_flat, v_flat = np.concatenate(gs), np.concatenate(vs)
    top_a = knapsack.solve(g_flat, deadline=deadline)
    if top_a.status == "infeasible":  # only choices with a zero accuracy fit
        return "optimal", best_picks, best
    if top_a.status == "timeout":
        consider(point(top_a.picks)[2])
        return "timeout", best_picks, best
    if all(accuracies[s][first.picks[s]] > 0 for s in range(n)):  # the θ = 0 optimum is in the search's set
        p_pt = point([int(np.searchsorted(keep[s], first.picks[s])) for s in range(n)])
    else:
        top_v = knapsack.solve(vs, deadline=deadline)
        if top_v.status == "timeout":
            return "timeout", best_picks, best
        p_pt = point(top_v.picks)
    q_pt = point(top_a.picks)
    if thetas is not None:
        thetas.append(0.0)
    consider(p_pt[2])
    consider(q_pt[2])

    def corner(p: tuple, q: tuple, tp: float, tq: float) -> float:
        """F at the meeting point of the supporting lines at p (slope −tp) and q (slope −tq), in p-q's box."""
        (ap, vp, _), (aq, vq, _) = p, q
        if math.isinf(tq):
            a = aq
            v = vp - tp * (aq - ap)
        elif tq - tp <= 1e-12 * max(1.0, tq):
            a, v = aq, vp  # the box corner: an upper bound
        else:
            a = (vq - vp + tq * aq - tp * ap) / (tq - tp)
            v = vp - tp * (a - ap)
        a = min(max(a, ap), aq)
        v = min(max(v, vq), vp)
        return alpha * math.exp(a) + v

    heap: list[tuple[float, int, tuple, tuple, float, float]] = []
    tick = 0
    heapq.heappush(heap, (-corner(p_pt, q_pt, 0.0, math.inf), tick, p_pt, q_pt, 0.0, math.inf))
    while heap:
        neg, _, p, q, tp, tq = heapq.heappop(heap)
        if -neg <= best + tie_tolerance(best):
            break  # the largest corner left cannot beat the incumbent: neither can any other
        if deadline is not None and time.perf_counter() > deadline:
            return "timeout", best_picks, best
        (ap, vp, _), (aq, vq, _) = p, q
        if aq - ap <= 1e-12 * max(1.0, abs(ap)) or vp - vq <= 0:
            continue  # q is at least as good as p in both: nothing lies strictly between
        theta = (vp - vq) / (aq - ap)
        if thetas is not None:
            thetas.append(theta)
        chord = theta * ap + vp
        values_t = theta * g_flat + v_flat
        found = knapsack.solve(values_t, floor=chord, deadline=deadline)
        if found.status == "timeout":
            return "timeout", best_picks, best
        if found.status != "optimal" or found.value <= chord + _CHORD_RTOL * max(1.0, abs(chord)):
            continue  # p-q is a hull edge
        r = point(found.picks)
        if theta * r[0] + r[1] <= chord + _CHORD_RTOL * max(1.0, abs(chord)):
            continue  # above the chord only by the knapsack's rounding
        consider(r[2])
        for a_end, b_end, ta, tb in ((p, r, tp, theta), (r, q, theta, tq)):
            c = corner(a_end, b_end, ta, tb)
            if c > best + tie_tolerance(best):
                tick += 1
                heapq.heappush(heap, (-c, tick, a_end, b_end, ta, tb))
    return "optimal", best_picks, best


def product_bounds(weights: list[np.ndarray], values: list[np.ndarray], accuracies: list[np.ndarray],
                   alpha: float, limit: float, thetas: list[float], most: int = 8) -> np.ndarray:
    """Per option (stages' options concatenated), an upper bound on α Π a + Σ v over the choices that use it.

    Every accuracy must be positive. For each θ of ``thetas`` (at most ``most`` of them, spread over their sorted
    list) and θ = +∞, the knapsack bound fixing gives U_θ(o) >= θ A + V and A <= A_max(o) for every choice using
    option o: the choice's (A, V) lies in the polygon below those lines, and F = α e^A + V, increasing and convex
    along each edge, is at most its largest value at the polygon's upper-right vertices (pairwise intersections of
    the lines, and the lines at A = A_max(o)). -inf where no choice using o fits.
    """
    knapsack = Knapsack(weights, limit)
    g, v = np.concatenate([np.log(a) for a in accuracies]), np.concatenate(values)
    ts = np.unique(np.r_[0.0, np.asarray(thetas, dtype=float)])  # θ = 0 bounds V where the polygon runs left
    if ts.size > most:
        ts = ts[np.unique(np.linspace(0, ts.size - 1, most).round().astype(np.int64))]
    upper = np.array([knapsack.option_bounds(t * g + v) for t in ts])  # (lines, options)
    a_max = knapsack.option_bounds(g)
    fits = np.isfinite(a_max) & np.isfinite(upper).all(axis=0)
    out = np.full(g.size, -np.inf)
    if not fits.any():
        return out
    upper, a_max = upper[:, fits], a_max[fits]
    candidates = [a_max]
    for i in range(ts.size):
        for j in range(i + 1, ts.size):
            candidates.append(np.minimum(a_max, (upper[i] - upper[j]) / (ts[i] - ts[j])))
    best = np.full(a_max.size, -np.inf)
    for a in candidates:
        line = (upper - ts[:, None] * a).min(axis=0)  # the highest V the polygon allows at A = a
        best = np.maximum(best, alpha * np.exp(a) + line)
    out[fits] = best
    return out
