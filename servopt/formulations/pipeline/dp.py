"""The exact special-purpose algorithm for ``pipeline`` (SPEC §4.4): knapsack bounds, a parametric search, Pareto DP.

With the optimal replicas n* = ceil(λ / h) of every (stage, variant, batch) option (see
:mod:`servopt.formulations.pipeline.problem`), the pipeline is a multiple-choice knapsack: choose one option o per
stage, with weight w_o = l_o + q_o (latency plus queueing delay, ms) and value v_o, so that Σ w_o <= SLA.

``servopt.solve(problem, "dp")`` (the default backend of ``pipeline``) finds the optimum by objective:

* ``sum`` / ``average``: the objective Σ v is the knapsack's: :func:`~servopt.formulations.pipeline.mckp.solve_mckp`
  (LP bounds, bound fixing of every option against the incumbent, a Pareto DP over the few options left).
* ``product``: α Π a + Σ v is convex and increasing in (Σ log a, Σ v), so an optimal plan is a supported vertex of
  the plans' (Σ log a, Σ v) hull; :func:`~servopt.formulations.pipeline.parametric.solve_product` finds the
  vertices that can matter by a dichotomic search over knapsacks with values θ log a + v, pruning with the
  triangle between adjacent vertices (the proof is in that module's docstring).
* ``prefer_stable`` with a current deployment: the fewest variant/batch changes among the plans that tie the
  optimum (the MILP path's lexicographic second solve, done in one pass). The optimum z* comes from the two
  paths above; options whose bound (the knapsack's bound fixing, or for ``product`` the polygon bound of
  :func:`~servopt.formulations.pipeline.parametric.product_bounds`) is below z* are dropped, and the Pareto DP
  below runs over the rest, floored at z*, with the number of changes C as one more criterion:

  1. **Dominance pruning of options.** In each stage, drop an option when another is no slower, no worse in
     value, (``product``) no less accurate in the sense below, and changes no more.
  2. **Bounds.** For every suffix of stages, the LP relaxation of the remaining knapsack as a function of the
     latency left, r -> UB_k(r): the stages' upper convex hulls of (w, v), merged by slope (Dyer-Zemel).
  3. **Forward DP over stages on Pareto fronts.** A state is a partial choice (W = Σ w, V = Σ v, ...). Merging a
     stage adds its options to every state; states that cannot meet the SLA (W + fastest suffix > SLA) or cannot
     reach the floor (V + UB_{k+1}(SLA − W) < z*, less a tolerance) are dropped, and of the rest only the
     non-dominated ones are kept: lower W, higher V and fewer C are better. With ``product`` a partial state with
     accuracy product A is completed by a suffix whose product R lies in [R_lo, R_hi]; the difference between two
     states' completed objectives is linear in R, so states are compared on (W, α A R_lo + V, α A R_hi + V).

  The plan is, among the final states within the tie tolerance of the optimum, one with the fewest changes.

Every step removes only choices with no better completion than a kept one, so the plan is optimal (status
``optimal``). ``time_limit_s`` is honoured between knapsack solves and DP stages: when it runs out the best plan
found is returned with status ``feasible``. The MILP path (any solver backend) stays available for cross-checks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from servopt.exceptions import SolverError
from servopt.formulations.ties import tie_tolerance
from servopt.formulations.pipeline.mckp import Knapsack, solve_mckp
from servopt.formulations.pipeline.parametric import product_bounds, solve_product
from servopt.formulations.pipeline.pareto import SuffixBound, pareto_mask
from servopt.formulations.pipeline.types import PipelinePlan, latency_limit
from servopt.result import SolveParams, Status

__all__ = ["ALGORITHMS", "solve_dp", "pareto_mask"]

#: the exact algorithms this module offers, by the names ``servopt.solve(problem, backend=...)`` accepts
ALGORITHMS = ("dp",)

#: relative slack on bound pruning: a state is dropped only when its bound is below the incumbent by more than
#: this (keeps every state whose objective ties the optimum within :func:`tie_tolerance`)
_PRUNE_RTOL = 1e-7


@dataclass
class _Stage:
    """The surviving options of one stage, as arrays aligned with ``index`` (indices into the option arrays)."""

    index: np.ndarray
    w: np.ndarray  # latency + queueing delay, ms
    v: np.ndarray  # objective contribution without the product accuracy term
    a: np.ndarray  # accuracy used by the product term (zeros otherwise)
    c: np.ndarray  # changes from the current deployment (0, 1 or 2)


def solve_dp(problem: Any, params: SolveParams | None = None) -> tuple[Status, PipelinePlan | None, str]:
    """Solve a :class:`~servopt.formulations.pipeline.problem.Pipeline` exactly by Pareto dynamic programming.

    Parameters
    ----------
    problem : Pipeline
        A validated problem (restricted problems of the FA2/RIM baselines included).
    params : SolveParams, optional
        Only ``time_limit_s`` applies.

    Returns
    -------
    (Status, PipelinePlan or None, message)
        ``optimal`` with the plan, ``infeasible`` (no option set meets λ and the SLA), or ``feasible`` with the
        incumbent when the time limit ran out.

    Examples
    --------
    >>> from servopt.formulations.pipeline.problem import BatchProfile, Pipeline, Stage, StageVariant
    >>> v = lambda n, a, c, *lat: StageVariant(n, a, c, [BatchProfile(b, l) for b, l in zip((1, 8), lat)])
    >>> p = Pipeline(workload_rps=20, sla_ms=1500, stages=[
    ...     Stage("detect", [v("small", 0.45, 1, 50, 300), v("big", 0.69, 4, 120, 700)]),
    ...     Stage("classify", [v("r18", 0.70, 1, 30, 150), v("r50", 0.76, 2, 60, 280)])])
    >>> status, plan, _ = solve_dp(p)
    >>> status.value, [(s.variant, s.batch_size, s.replicas) for s in plan.stages], round(plan.objective, 6)
    ('optimal', [('small', 1, 1), ('r50', 8, 1)], -1.000009)
    """
    params = params or SolveParams()
    deadline = None if params.time_limit_s is None else time.perf_counter() + params.time_limit_s
    # the knapsack compares float latencies with the SLA (plus RATE_RTOL); a choice it accepts may still be above
    # the SLA exactly (an SLA printed from a plan's own latency, 1300/3 ms as 433.3333333333333). Such a choice is
    # never returned: the search runs again with the limit strictly below that choice's float latency, so it and
    # every choice no faster in floats are out; only plans within float rounding (1e-15 relative) of a choice
    # exactly above the SLA could be lost with it, and each returned plan passes the exact check.
    limit = latency_limit(problem.sla_ms)
    for _ in range(_MAX_BORDER_RETRIES):
        try:
            return _solve_dp(problem, params, deadline, limit)
        except _AboveSla as above:
            limit = float(np.nextafter(min(limit, above.latency_ms), -np.inf))
    raise SolverError(f"dp: {_MAX_BORDER_RETRIES} choices in a row were within the SLA {problem.sla_ms:g} ms in "
                      "floating point but above it exactly; give the SLA with fewer decimals")


#: how often :func:`solve_dp` lowers its latency limit below a choice that is above the SLA exactly
_MAX_BORDER_RETRIES = 100


class _AboveSla(Exception):
    """A chosen plan's exact latency is above the SLA (internal: :func:`solve_dp` lowers its limit and retries)."""

    def __init__(self, latency_ms: float) -> None:
        super().__init__(latency_ms)
        self.latency_ms = latency_ms


def _solve_dp(problem: Any, params: SolveParams, deadline: float | None,
              limit: float) -> tuple[Status, PipelinePlan | None, str]:
    opts = problem.options()
    product = problem.accuracy == "product"
    stable = bool(problem.prefer_stable and problem.current)
    weight = opts.latency_ms + opts.queue_ms
    changes = _changes(problem, opts) if stable else np.zeros(opts.stage.size, dtype=np.int64)
    accuracy = opts.accuracy if product else np.zeros(opts.stage.size)

    stages: list[_Stage] = []
    for sl in opts.stage_slices:
        idx = np.arange(sl.start, sl.stop)[opts.feasible[sl]]
        if not idx.size:
            return Status.INFEASIBLE, None, ""
        stages.append(_Stage(idx, weight[idx], opts.value[idx], accuracy[idx], changes[idx]))
    n = len(stages)
    # the fastest completion of every suffix: stages[k:] need at least min_suffix[k] ms
    min_suffix = np.zeros(n + 1)
    for k in range(n - 1, -1, -1):
        min_suffix[k] = min_suffix[k + 1] + float(stages[k].w.min())
    if min_suffix[0] > limit:
        return Status.INFEASIBLE, None, ""
    alpha = problem.alpha if product else 0.0
    thetas: list[float] = []
    status, known, known_value = _fast(stages, limit, product and alpha > 0, alpha, deadline, thetas)
    if status == "infeasible":
        return Status.INFEASIBLE, None, ""
    if status == "timeout":
        return _finish(problem, opts, known, Status.FEASIBLE,
                       f"time limit {params.time_limit_s:g} s reached: the plan is the best one found, not proven "
                       "optimal")
    if not stable:
        return _finish(problem, opts, known, Status.OPTIMAL, "")
    # prefer_stable: the fewest changes among the plans that tie the optimum known_value: the DP below, floored
    # at that value, over the options that can be part of such a plan
    stages = _tie_options(stages, limit, product and alpha > 0, alpha, thetas, known_value)
    # stages with fewest options first (the bounds are tightest near the end, where the wide stages then are);
    # `order[j]` is the problem stage of DP stage j
    order = np.argsort([s.w.size for s in stages], kind="stable")
    stages = [stages[i] for i in order]

    def in_problem_order(options: list[int]) -> list[int]:
        out = [0] * n
        for j, o in zip(order.tolist(), options):
            out[j] = o
        return out

    for k in range(n - 1, -1, -1):
        min_suffix[k] = min_suffix[k + 1] + float(stages[k].w.min())

    # products of the least / most accurate options of all stages but one (dominance inside a stage), and of
    # every suffix (dominance between partial states)
    lo = np.array([float(s.a.min()) for s in stages]) if product else np.ones(n)
    hi = np.array([float(s.a.max()) for s in stages]) if product else np.ones(n)
    for k, s in enumerate(stages):
        if product:
            others_lo = float(np.prod(np.delete(lo, k)))
            others_hi = float(np.prod(np.delete(hi, k)))
            keep = pareto_mask(s.w, s.v + alpha * s.a * others_lo, s.v + alpha * s.a * others_hi,
                               s.c if stable else None)
        else:
            keep = pareto_mask(s.w, s.v, None, s.c if stable else None)
        stages[k] = _Stage(s.index[keep], s.w[keep], s.v[keep], s.a[keep], s.c[keep])
    suffix_lo = np.r_[np.cumprod(lo[::-1])[::-1][1:], 1.0] if product else np.ones(n)
    suffix_hi = np.r_[np.cumprod(hi[::-1])[::-1][1:], 1.0] if product else np.ones(n)

    bound = SuffixBound([s.w for s in stages], [s.v for s in stages], min_suffix)
    incumbent = bound.greedy(limit)
    best_value = _objective(problem, stages, incumbent, product)
    if product and alpha > 0:
        incumbent, best_value = _product_incumbent(problem, stages, min_suffix, limit, incumbent, best_value)
    incumbent = in_problem_order([int(s.index[p]) for s, p in zip(stages, incumbent)])  # option indices
    if known_value >= best_value - tie_tolerance(best_value):
        incumbent, best_value = known, max(known_value, best_value)
    # only plans with at most the incumbent's changes matter: a state whose changes plus the fewest changes of
    # its suffix exceed them is dropped
    c_best = int(changes[incumbent].sum())
    c_suffix = np.zeros(n + 1, dtype=np.int64)
    for k in range(n - 1, -1, -1):
        c_suffix[k] = c_suffix[k + 1] + int(stages[k].c.min())
    floor = best_value - _PRUNE_RTOL * max(1.0, abs(best_value))
    # a plan that beats the incumbent has α Π a >= floor − (LP bound on Σ v), i.e. a product of at least p_min:
    # completions with a smaller suffix product R need not be compared (tightens the product dominance)
    p_min = (floor - float(bound.value(0, np.array([limit]))[0])) / alpha if product and alpha > 0 else 0.0
    chord = _ChordBound(stages, min_suffix, alpha) if product and p_min > 0 else None
    # the most accurate completion that fits in the latency left: R <= exp(LP bound of Σ log a) (tight SLAs)
    log_bound = (SuffixBound([s.w for s in stages], [np.log(np.maximum(s.a, 1e-300)) for s in stages], min_suffix)
                 if product and alpha > 0 else None)

    # forward pass: states (W, V, A, C) with back-pointers (parent state, option) per stage
    W = np.zeros(1)
    V = np.zeros(1)
    A = np.ones(1)
    C = np.zeros(1, dtype=np.int64)
    trail: list[tuple[np.ndarray, np.ndarray]] = []
    for k, s in enumerate(stages):
        if deadline is not None and time.perf_counter() > deadline:
            return _finish(problem, opts, incumbent, Status.FEASIBLE,
                           f"time limit {params.time_limit_s:g} s reached in stage {k + 1} of {n}: the plan is "
                           "the greedy incumbent, not proven optimal")
        width = s.w.size
        w = (W[:, None] + s.w).ravel()
        v = (V[:, None] + s.v).ravel()
        left = limit - w
        ok = (left >= min_suffix[k + 1]) & ((C[:, None] + s.c).ravel() + c_suffix[k + 1] <= c_best)
        if product:
            a = (A[:, None] * s.a).ravel()
            r_max = suffix_hi[k]
            if log_bound is not None:
                at = np.flatnonzero(ok)
                r_max = np.full(ok.size, suffix_hi[k])
                r_max[at] = np.minimum(suffix_hi[k], _exp_up(log_bound.value(k + 1, left[at])))
            ok &= v + alpha * a * r_max + bound.value(k + 1, left) >= floor
            if chord is not None and k + 1 < n:
                at = np.flatnonzero(ok)
                ok[at] = chord.bound(k + 1, a[at], v[at], left[at], max(suffix_lo[k], 1e-300), suffix_hi[k],
                                     p_min) >= floor
        else:
            ok &= v + bound.value(k + 1, left) >= floor
        flat = np.flatnonzero(ok)
        w, v = w[flat], v[flat]
        a = a[flat] if product else None
        c = (C[:, None] + s.c).ravel()[flat] if stable else None
        if product:
            keep = _product_front(w, v, a, c, alpha, suffix_lo[k], suffix_hi[k], p_min, limit,
                                  None if log_bound is None else (lambda left: log_bound.value(k + 1, left)))
            A = a[keep]
        else:
            keep = np.flatnonzero(pareto_mask(w, v, None, c))
        W, V = w[keep], v[keep]
        if stable:
            C = c[keep]
        flat = flat[keep]
        trail.append((flat // width, flat % width))  # (parent state, option)
        if not W.size:  # nothing beats the incumbent (which is then optimal)
            return _finish(problem, opts, incumbent, Status.OPTIMAL, "")

    total = V + alpha * A if product else V
    top = float(total.max())
    if top < best_value:  # float noise: the incumbent is optimal
        return _finish(problem, opts, incumbent, Status.OPTIMAL, "")
    candidates = np.flatnonzero(total >= top - tie_tolerance(top)) if stable else np.array([int(np.argmax(total))])
    state = int(candidates[np.argmin(C[candidates])]) if stable else int(candidates[0])
    picks = []
    for parent, option in reversed(trail):
        picks.append(int(option[state]))
        state = int(parent[state])
    return _finish(problem, opts, in_problem_order([int(s.index[p]) for s, p in zip(stages, picks[::-1])]),
                   Status.OPTIMAL, "")


def _product_front(w: np.ndarray, v: np.ndarray, a: np.ndarray, c: np.ndarray | None, alpha: float,
                   suffix_lo: float, suffix_hi: float, p_min: float, limit: float, log_value: Any) -> np.ndarray:
    """Indices of the states kept by the ``product`` dominance, in latency bands.

    A state j (latency W_j) is completed by a suffix whose product R lies in [r_lo, r_hi(W_j)]: r_lo from the
    suffix's least accurate options and, when only products above p_min / A can beat the incumbent, from p_min;
    r_hi(W) = exp(LP bound of Σ log a within the latency left), which falls as W grows. A state i with W_i <= W_j
    can complete every way j can, so i dominates j when it is at least as good at both ends of j's range (the
    difference is linear in R). The states are cut into bands of W; those of a band are compared, with the kept
    states of the faster bands, at the band's own upper end r_hi(its smallest W): tighter than one global range,
    and each comparison uses ends that contain the compared state's range.
    """
    size = w.size
    if not size:
        return np.zeros(0, dtype=np.int64)
    r_lo = suffix_lo
    if p_min > 0 and a.max() > 0:
        r_lo = max(r_lo, p_min / float(a.max()))

    def upper(w_min: float) -> float:
        if log_value is None:
            return suffix_hi
        return min(suffix_hi, float(_exp_up(log_value(np.array([limit - w_min])))[0]))

    bands = 4 if size > 4096 and log_value is not None else 1
    order = np.argsort(w, kind="stable")
    edges = np.linspace(0, size, bands + 1).astype(np.int64)
    kept = np.zeros(0, dtype=np.int64)
    for lo_at, hi_at in zip(edges[:-1], edges[1:]):
        band = order[lo_at:hi_at]
        if not band.size:
            continue
        r_hi = upper(float(w[band[0]]))
        lo_end = min(r_lo, r_hi)
        pool = np.concatenate((kept, band))
        mask = pareto_mask(w[pool], v[pool] + alpha * a[pool] * lo_end, v[pool] + alpha * a[pool] * r_hi,
                           None if c is None else c[pool])
        kept = np.concatenate((kept, band[mask[kept.size:]]))
    return np.sort(kept)


def _exp_up(log_r: np.ndarray) -> np.ndarray:
    """exp, rounded up by a relative 1e-9 (a bound on a product must not fall below it by float error)."""
    return np.exp(log_r) * (1.0 + 1e-9)


def _product_incumbent(problem: Any, stages: list[_Stage], min_suffix: np.ndarray, limit: float,
                       picks: list[int], value: float) -> tuple[list[int], float]:
    """A better incumbent for ``product``: greedy fills of the surrogate v + μ log a, μ = α × a plan's product."""
    logs = [np.log(np.maximum(s.a, 1e-300)) for s in stages]
    mu = problem.alpha * float(np.prod([s.a.max() for s in stages]))
    for _ in range(4):
        surrogate = SuffixBound([s.w for s in stages], [s.v + mu * g for s, g in zip(stages, logs)], min_suffix)
        candidate = surrogate.greedy(limit)
        score = _objective(problem, stages, candidate, True)
        if score > value:
            picks, value = candidate, score
        nxt = problem.alpha * float(np.prod([s.a[p] for s, p in zip(stages, candidate)]))
        if abs(nxt - mu) <= 1e-9 * max(1.0, mu):
            break
        mu = nxt
    return picks, value


class _ChordBound:
    """A bound for ``product`` that couples accuracy with latency and cost (tighter than maximising each apart).

    A state (A, V) at latency left r is completed by a suffix with product R = e^L; only completions with
    A R >= p_min can beat the incumbent, so L lies in [L0, L1] = [log max(R_lo, p_min / A), log R_hi], where
    e^L is below its chord e^L0 + κ (L − L0). Hence the completed objective is at most
    V + α A (e^L0 − κ L0) + U(μ, r), μ = α A κ, U(μ, r) the LP bound of the suffix with option values
    v + μ log a. U is convex in μ, so on a grid μ_0 < μ_1 < ... its linear interpolation is an upper bound.
    """

    GRID = 9

    def __init__(self, stages: list[_Stage], min_suffix: np.ndarray, alpha: float) -> None:
        self.alpha = alpha
        top = alpha * float(np.prod([s.a.max() for s in stages]))  # μ = α A κ <= α Π_all max a
        self.mus = np.linspace(0.0, max(top, 1e-12), self.GRID)
        logs = [np.log(np.maximum(s.a, 1e-300)) for s in stages]
        weights = [s.w for s in stages]
        self.bounds = [SuffixBound(weights, [s.v + mu * g for s, g in zip(stages, logs)], min_suffix)
                       for mu in self.mus]

    def bound(self, k: int, a: np.ndarray, v: np.ndarray, left: np.ndarray, r_lo: float, r_hi: float,
              p_min: float) -> np.ndarray:
        """Upper bounds on the completed objectives of states (a, v) with ``left`` ms for stages k.."""
        out = np.full(a.size, np.inf)  # states with A = 0 keep the plain bound
        pos = a > 0
        if not pos.any():
            return out
        ap = a[pos]
        low = np.log(np.maximum(r_lo, p_min / ap))
        high = np.log(r_hi)
        span = high - low
        steep = span > 1e-12
        kappa = np.where(steep, (r_hi - np.exp(low)) / np.where(steep, span, 1.0), r_hi)
        mu = self.alpha * ap * kappa
        j = np.clip(np.searchsorted(self.mus, mu, side="right") - 1, 0, self.GRID - 2)
        lo_mu, hi_mu = self.mus[j], self.mus[j + 1]
        t = np.clip((mu - lo_mu) / (hi_mu - lo_mu), 0.0, 1.0)
        u = np.empty(ap.size)
        for g in np.unique(j):
            at = j == g
            u_lo = self.bounds[g].value(k, left[pos][at])
            u_hi = self.bounds[g + 1].value(k, left[pos][at])
            u[at] = (1 - t[at]) * u_lo + t[at] * u_hi
        value = v[pos] + self.alpha * ap * (np.exp(low) - kappa * low) + u
        out[pos] = np.where(span < -1e-12, -np.inf, value)  # no suffix reaches p_min / A: nothing to complete
        return out


def _changes(problem: Any, opts: Any) -> np.ndarray:
    """Variant and batch-size changes of every option from the current deployment (0, 1 or 2)."""
    out = np.zeros(opts.stage.size, dtype=np.int64)
    for si, stage in enumerate(problem.stages):
        dep = problem.current.get(stage.name)
        if dep is None:
            continue
        sl = opts.stage_slices[si]
        vi = [v.name for v in stage.variants].index(dep.variant)
        out[sl] = (opts.variant[sl] != vi).astype(np.int64) + (opts.batch_size[sl] != dep.batch_size)
    return out


def _objective(problem: Any, stages: list[_Stage], picks: list[int], product: bool) -> float:
    value = sum(float(s.v[p]) for s, p in zip(stages, picks))
    if product:
        value += problem.alpha * float(np.prod([s.a[p] for s, p in zip(stages, picks)]))
    return value


def _tie_options(stages: list[_Stage], limit: float, product: bool, alpha: float, thetas: list[float],
                 optimum: float) -> list[_Stage]:
    """The stages cut to the options whose bound (:meth:`.mckp.Knapsack.option_bounds`, or for ``product``
    :func:`.parametric.product_bounds`) reaches the optimum less the tie and pruning tolerances: every plan that
    ties the optimum keeps all its options. Unchanged for ``product`` with a zero accuracy."""
    weights, values = [s.w for s in stages], [s.v for s in stages]
    if product:
        if any((s.a <= 0).any() for s in stages):
            return stages
        bound = product_bounds(weights, values, [s.a for s in stages], alpha, limit, thetas)
    else:
        bound = Knapsack(weights, limit).option_bounds(values)
    floor = optimum - tie_tolerance(optimum) - _PRUNE_RTOL * max(1.0, abs(optimum))
    out, start = [], 0
    for s in stages:
        keep = bound[start:start + s.w.size] >= floor
        start += s.w.size
        out.append(_Stage(s.index[keep], s.w[keep], s.v[keep], s.a[keep], s.c[keep]))
    return out


def _fast(stages: list[_Stage], limit: float, product: bool, alpha: float, deadline: float | None,
          thetas: list[float] | None = None) -> tuple[str, list[int] | None, float]:
    """The optimum without ``prefer_stable``: a knapsack (:mod:`.mckp`) or, for ``product``, the parametric search
    (:mod:`.parametric`, which appends its parameters to ``thetas``). Returns (status, option indices, objective)."""
    weights, values = [s.w for s in stages], [s.v for s in stages]
    if product:
        status, picks, value = solve_product(weights, values, [s.a for s in stages], alpha, limit, deadline,
                                             thetas)
    else:
        result = solve_mckp(weights, values, limit, deadline=deadline)
        status, picks, value = result.status, result.picks, result.value
    if picks is None:
        return status, None, -np.inf
    return status, [int(s.index[p]) for s, p in zip(stages, picks)], value


def _finish(problem: Any, opts: Any, options: list[int], status: Status,
            message: str) -> tuple[Status, PipelinePlan, str]:
    """Evaluate the chosen options (indices into ``opts``) into a plan (its objective recomputed from the plan)."""
    pairs = []
    for stage, o in zip(problem.stages, options):
        pairs.append((stage.variants[int(opts.variant[o])].name, int(opts.batch_size[o])))
    plan = problem.evaluate(pairs)
    if plan is None and problem.evaluate(pairs, exact=False) is not None:  # within the SLA in floats only
        weight = opts.latency_ms + opts.queue_ms
        raise _AboveSla(max(float(sum(float(weight[o]) for o in options)),
                            float(np.sum(weight[np.asarray(options, dtype=np.int64)]))))
    if plan is None:
        raise SolverError(f"dp: the choices {pairs} break the pipeline's constraints; please report this problem")
    return status, plan, message
