"""An exact algorithm for ``variant_selection`` with any workload and capacities (whole, decimal or real).

The grid dynamic programme of :mod:`servopt.formulations.variant_selection.dp` needs λ and the capacities on a
small integer grid. This one needs nothing of the kind: it is a dynamic programme over the variants in decreasing
accuracy whose states are the *open* partial plans, kept only when no other state dominates them, with a
bound that closes off states that cannot beat the best plan found.

**Canonical plans.** For fixed cores the optimal split of λ is greedy by accuracy (:func:`exact_split`). A chosen
variant that the greedy split leaves without load can be dropped: its cores cost β k / B > 0 or nothing, and the
loading cost LC (a maximum over chosen, changed variants) cannot grow. So some optimal plan, read in decreasing
accuracy (ties: problem order, as in the split), loads every chosen variant to its full capacity but the last,
which takes the rest, 0 < x <= capacity. Its objective is

    α / λ · (Σ_{full} a_j th_j + a_last (λ − L)) − β c / B − γ LC / max load time,    L = Σ_{full} th_j < λ.

**States.** Before variant m (accuracies a_1 >= a_2 >= ...), an open state is a set of chosen, fully loaded
variants among 1..m−1 with load L < λ, cores c, value V = α/λ Σ a_j th_j − β c / B and loading time LC (the
largest load time among its changed variants). Choosing variant m on k cores either keeps the state open
(L + th < λ) or *closes* it (L + th >= λ: m is the last variant, the plan is complete and scored).

**Dominance.** Let ā = a_m (no later variant is more accurate) and W = V − α/λ ā L. State 1 dominates state 2
when c_1 <= c_2, L_1 >= L_2 and W_1 − γ/LM · max(0, LC_1 − LC_2) >= W_2 (LM: the largest load time).

*Proof.* Take any completion F (later variants with cores) of state 2. Then F completes state 1 as well: cores
c_1 + c_F <= c_2 + c_F <= B, load L_1 + th_F >= L_2 + th_F >= λ. F fills λ − L from the start of the same
sequence of rates r_F(s) (decreasing, each <= ā), so state 2's fill exceeds state 1's by the integral of r_F
over an interval of length L_1 − L_2, at most ā (L_1 − L_2); the cores of F cost the same; and
max(LC_1, LC_F) <= max(LC_2, LC_F) + max(0, LC_1 − LC_2). Adding up, state 1's completed objective is at least
state 2's (plans where some variant of F ends up without load are still plans, scored by their true value). ∎

We use it in two special cases: W_1 − γ LC_1 / LM >= W_2 (which implies the condition; one sweep in decreasing
L with a running maximum per core count, maximised over core counts), and, against the state just before in that
sweep, LC_1 <= LC_2 with W_1 >= W_2 (so of equal states one copy is kept).

**Bound.** A later variant j on k cores serving x <= th_j(k) adds α/λ a_j x and costs β k / B >= β x / (B ρ_jk)
with ρ_jk = th_j(k) / k, so each unit of the remaining load λ − L adds at most g = max_{later j, k} (α/λ a_j −
β / (B ρ_jk)), and loading time only adds cost: a state completes to at most V + g (λ − L) − γ LC / LM. A state
whose bound is below the best complete plan so far is dropped; neither rule drops every optimal plan, so the best
complete plan at the end is optimal. ∎

Loads are compared in floating point with a relative margin of 1e-12: a step within the margin of λ counts as both
open and closing, and the plan returned is re-scored exactly (:meth:`VariantSelection.evaluate`) and checked
(:mod:`~servopt.formulations.variant_selection.verify`), as every plan is. The *certificate* returned with the plan
(:class:`Certificate`) is the optimum the search proved (the best closed value) and the counts it explored; the
checker (:func:`check_certificate`) re-scores the plan exactly and requires it to equal that value and to be in
canonical form. Worst-case the frontiers can grow exponentially; beyond :data:`MAX_STATES` the search stops and
says so (use the grid ``dp`` or a MILP backend). benchmarks/results/variants.csv has the measured times.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from servopt.exceptions import SolverError, ValidationError
from servopt.result import SolveParams, Status

__all__ = ["Certificate", "MAX_STATES", "check_certificate", "solve_frontier"]

#: most open states kept at once (a guard against the exponential worst case)
MAX_STATES = 2_000_000
#: relative margin of the floating-point load comparisons
_RTOL = 1e-12


@dataclass(frozen=True)
class Certificate:
    """What the frontier search proved: no plan scores above ``optimum``; it explored ``states`` open states."""

    optimum: float
    states: int
    closed: int

    def describe(self) -> str:
        return (f"optimal by the dominance search: {self.states:,} open states, {self.closed:,} complete plans "
                f"scored, best {self.optimum:.12g}")


def _sorted_order(problem: Any) -> list[int]:
    """Variants by decreasing accuracy, ties in problem order (the order of the greedy split)."""
    return sorted(range(len(problem.variants)), key=lambda m: (-problem.variants[m].accuracy, m))


def solve_frontier(problem: Any, params: SolveParams | None = None) -> tuple[Status, Any, str]:
    """Solve a :class:`~servopt.formulations.variant_selection.problem.VariantSelection` exactly (module docstring).

    Parameters
    ----------
    problem : VariantSelection
    params : SolveParams, optional
        Only ``time_limit_s`` applies (checked between variants; on expiry: an error status, no plan).

    Returns
    -------
    (Status, VariantSelectionPlan or None, message)
        The message holds the certificate.

    Examples
    --------
    >>> from servopt.formulations.variant_selection.problem import Variant, VariantSelection
    >>> p = VariantSelection(50.5, 8, [Variant("small", 0.70, {2: 40.2, 4: 90}), Variant("big", 0.78, {2: 10.7, 4: 25})])
    >>> status, plan, _ = solve_frontier(p)
    >>> status.value, plan.deployment
    ('optimal', {'small': 2, 'big': 4})
    """
    params = params or SolveParams()
    if problem.prefer_stable:
        raise ValidationError("variant_selection: the frontier algorithm does not break ties by fewest changes "
                              "(prefer_stable); use a MILP backend (e.g. --backend highs)")
    deadline = None if params.time_limit_s is None else time.perf_counter() + params.time_limit_s
    s = problem._structure()
    lam = float(problem.workload_rps)
    budget = problem.core_budget
    load_max = s["load_max"]
    unit = problem.alpha / lam
    pen = problem.gamma / load_max if load_max > 0 else 0.0
    beta = problem.beta / budget
    order = _sorted_order(problem)
    near = lam * (1.0 - _RTOL)
    # gain[pos]: the most a unit of load served by variants order[pos:] adds, net of the cores it needs (bound)
    gain = np.full(len(order) + 1, -np.inf)
    for pos in range(len(order) - 1, -1, -1):
        m = order[pos]
        th, ks = s["capacity"][m], s["allowed"][m]
        per_core = th[th > 0] / ks[th > 0]
        here = unit * problem.variants[m].accuracy - beta / per_core.max() if per_core.size else -np.inf
        gain[pos] = max(gain[pos + 1], here)

    # open states: cores, load, value, loading time, node (into the choice tree, -1: nothing chosen)
    c = np.zeros(1, dtype=np.int64)
    load = np.zeros(1)
    value = np.zeros(1)
    lc = np.zeros(1)
    node = np.full(1, -1, dtype=np.int64)
    tree_var: list[np.ndarray] = []
    tree_k: list[np.ndarray] = []
    tree_parent: list[np.ndarray] = []
    n_nodes = 0
    best, best_node, best_last = -math.inf, -2, (0, 0)
    explored, closed = 1, 0

    for pos, m in enumerate(order):
        if deadline is not None and time.perf_counter() > deadline:
            return Status.ERROR, None, f"frontier: time limit {params.time_limit_s:g} s reached before a plan was found"
        v = problem.variants[m]
        a = v.accuracy
        new_c, new_load, new_value, new_lc, new_node = [c], [load], [value], [lc], [node]
        for k, th in zip(s["allowed"][m].tolist(), s["capacity"][m].tolist()):
            if th <= 0:
                continue
            fits = c + k <= budget
            if not fits.any():
                continue
            changed = k != v.current_cores
            lc_k = np.maximum(lc[fits], v.load_time_s) if changed else lc[fits]
            l_k = load[fits] + th
            # closing: m is the last variant and takes the rest of λ
            closing = l_k >= near
            if closing.any():
                scores = (value[fits][closing] + unit * a * (lam - load[fits][closing]) - beta * k
                          - pen * lc_k[closing])
                closed += int(closing.sum())
                j = int(np.argmax(scores))
                if scores[j] > best:
                    best = float(scores[j])
                    best_node = int(node[fits][closing][j])
                    best_last = (m, k)
            still = l_k < lam
            if still.any():
                new_c.append(c[fits][still] + k)
                new_load.append(l_k[still])
                new_value.append(value[fits][still] + unit * a * th - beta * k)
                new_lc.append(lc_k[still])
                parents = node[fits][still]
                ids = np.arange(n_nodes, n_nodes + parents.size)
                tree_var.append(np.full(parents.size, m, dtype=np.int64))
                tree_k.append(np.full(parents.size, k, dtype=np.int64))
                tree_parent.append(parents)
                n_nodes += parents.size
                new_node.append(ids)
        c, load, value, lc, node = (np.concatenate(x) for x in (new_c, new_load, new_value, new_lc, new_node))
        a_next = problem.variants[order[pos + 1]].accuracy if pos + 1 < len(order) else 0.0
        keep = _undominated(c, load, value, lc, unit * a_next, float(gain[pos + 1]), pen, best, lam)
        c, load, value, lc, node = c[keep], load[keep], value[keep], lc[keep], node[keep]
        explored += int(keep.size)
        if c.size > MAX_STATES:
            raise ValidationError(f"variant_selection: the frontier search holds {c.size:,} states (limit "
                                  f"{MAX_STATES:,}); use the grid dp or a MILP backend (e.g. --backend highs)")
        if c.size == 0:
            break

    if best_node == -2:
        return Status.INFEASIBLE, None, ""
    counts = [0] * len(problem.variants)
    counts[best_last[0]] = best_last[1]
    if tree_var:
        var_all, k_all, parent_all = (np.concatenate(x) for x in (tree_var, tree_k, tree_parent))
        n = best_node
        while n >= 0:
            counts[int(var_all[n])] = int(k_all[n])
            n = int(parent_all[n])
    plan = problem.evaluate(counts)
    if plan is None:
        raise SolverError(f"variant_selection frontier: the cores {counts} cannot serve the workload; please report "
                          "this problem")
    certificate = Certificate(optimum=best, states=explored, closed=closed)
    broken = check_certificate(problem, plan, certificate)
    if broken:
        raise SolverError(f"variant_selection frontier: the certificate does not hold ({broken}); please report "
                          "this problem")
    return Status.OPTIMAL, plan, certificate.describe()


def _undominated(c: np.ndarray, load: np.ndarray, value: np.ndarray, lc: np.ndarray, rate: float, gain: float,
                 pen: float, best: float, lam: float) -> np.ndarray:
    """Indices of the states that survive the dominance rule and the bound (module docstring)."""
    if c.size == 0 or not math.isfinite(gain):
        return np.zeros(0, dtype=np.int64)
    w = value - rate * load
    bound = value + gain * (lam - load) - pen * lc
    alive = np.flatnonzero(bound >= best - 1e-12 * max(1.0, abs(best)))
    if alive.size <= 1:
        return alive
    # in decreasing load (ties: larger w, fewer cores, smaller loading time first): a state is dominated when an
    # earlier state with no more cores has a pessimistic w (net of its loading time) reaching this one's w
    idx = alive[np.lexsort((lc[alive], c[alive], -w[alive], -load[alive]))]
    pessimistic = w[idx] - pen * lc[idx]
    cs = c[idx]
    values = np.unique(cs)
    row = np.searchsorted(values, cs)
    if values.size * idx.size <= 4_000_000:
        grid = np.full((values.size, idx.size + 1), -np.inf)
        grid[row, np.arange(1, idx.size + 1)] = pessimistic
        np.maximum.accumulate(grid, axis=1, out=grid)  # best so far per core count
        np.maximum.accumulate(grid, axis=0, out=grid)  # ... over every core count up to this one
        dominated = grid[row, np.arange(idx.size)] >= w[idx]
    else:  # large: per core count only
        order = np.argsort(cs, kind="stable")
        starts = np.r_[True, cs[order][1:] != cs[order][:-1]]
        run = _segmented_running_max(pessimistic[order], starts)
        prior = np.r_[-np.inf, run[:-1]]
        prior[starts] = -np.inf
        dominated = np.zeros(idx.size, dtype=bool)
        dominated[order] = prior >= w[idx][order]
    # the general rule against the state just before (load >= by the sort): no more cores, no larger loading time
    # and no smaller w (this also keeps one of equal states)
    dominated[1:] |= ((cs[:-1] <= cs[1:]) & (lc[idx][:-1] <= lc[idx][1:]) & (w[idx][:-1] >= w[idx][1:]))
    return np.sort(idx[~dominated])


def _segmented_running_max(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The running maximum of ``x`` restarted wherever ``starts`` is True."""
    seg = np.cumsum(starts) - 1
    offset = (np.max(np.abs(x[np.isfinite(x)])) if np.isfinite(x).any() else 0.0) * 4 + 1.0
    shifted = x + seg * offset  # later segments sit above earlier ones, so one running max serves all
    return np.maximum.accumulate(shifted) - seg * offset


def check_certificate(problem: Any, plan: Any, certificate: Certificate) -> str | None:
    """Check ``plan`` against the frontier search's ``certificate`` (None: it holds).

    The plan is re-scored from the problem's numbers (:meth:`VariantSelection.evaluate`, exact split) and must
    score the certified optimum (to 1e-9) and be canonical: in decreasing accuracy, every chosen variant but the
    last is loaded to its capacity and the last has load > 0.
    """
    again = problem.evaluate(plan.deployment)
    if again is None:
        return "the plan's cores cannot serve the workload"
    if abs(again.objective - certificate.optimum) > 1e-9 * max(1.0, abs(certificate.optimum)):
        return f"the plan scores {again.objective!r}, the certificate {certificate.optimum!r}"
    allocations = {a.name: a for a in again.variants}
    chosen = [problem.variants[m].name for m in _sorted_order(problem) if problem.variants[m].name in allocations]
    for name in chosen[:-1]:
        if allocations[name].rps != allocations[name].capacity_rps:
            return f"{name} is not fully loaded although a less accurate variant is chosen"
    if chosen and not allocations[chosen[-1]].rps > 0:
        return f"{chosen[-1]} is chosen without load"
    return None
