"""An exact special-purpose algorithm for ``variant_selection`` (SPEC §4.3): dynamic programming over cores and load.

For given cores per variant, serving the load greedily by accuracy is optimal, and with whole-number data (λ and
every capacity integral, InfAdapter's RPS tables) an optimal split has whole-number loads. The problem is then a
two-dimensional knapsack over variants: each variant m picks cores k (0 or an allowed count) and a load
x in [0, th_m(k)], using k of the B cores and x of the λ requests, worth α a_m x / λ.

``dp`` fills tables over (cores used c = 0..B, load served s = 0..λ) one variant at a time:

    F_m[c][s] = max( F_{m-1}[c][s],  max_k max_{0 <= x <= th_m(k)} F_{m-1}[c-k][s-x] + α a_m x / λ )

The inner maximum over x is a sliding-window maximum, built by doubling once per variant (log λ passes over
the table) and read once per core count, so a variant costs O((log λ + options) × B × λ).

The loading-cost term −γ LC / max load time (LC = the largest load time among variants whose cores change to a
new non-zero value) is exact too: variants are taken in increasing load time, so a change at variant m sets LC to
m's load time whatever came before. A second table G holds the best value net of that penalty:
G_m = max(G_{m-1} + an unchanged choice of m (0 cores, or its current cores),
F_{m-1} + a changed choice of m − γ t_m / max load time). The optimum is max_c G_n[c][λ] − β c / B.

Decimal data are scaled by 10, 100 or 1000 when that makes them integral and the tables stay small
(:func:`grid_scale`); otherwise, and with ``prefer_stable``, the MILP path is the one to use (the problem's
``default_backend`` then stays ``auto``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from servopt.exceptions import SolverError, ValidationError
from servopt.result import SolveParams, Status

__all__ = ["ALGORITHMS", "grid_scale", "solve_dp", "MAX_CELLS", "MAX_TABLES"]

ALGORITHMS = ("dp",)

#: most cells of one (cores × load) table
MAX_CELLS = 400_000
#: most cells of all tables kept for the traceback (variants × cells)
MAX_TABLES = 12_000_000


def grid_scale(problem: Any) -> tuple[int | None, str]:
    """The factor (1, 10, 100 or 1000) that makes λ and every capacity whole, or None and the reason.

    The tables have (B + 1) × (λ·factor + 1) cells; beyond :data:`MAX_CELLS` (or :data:`MAX_TABLES` over all
    variants) the MILP is the better tool.
    """
    caps = np.concatenate([np.asarray(list(v.capacity.values()), dtype=float) for v in problem.variants])
    lam = problem.workload_rps
    for factor in (1, 10, 100, 1000):
        values = np.r_[lam, np.minimum(caps, lam)] * factor
        if np.all(np.abs(values - np.rint(values)) <= 1e-9 * np.maximum(1.0, np.abs(values))):
            cells = (problem.core_budget + 1) * (int(round(lam * factor)) + 1)
            if cells > MAX_CELLS or cells * len(problem.variants) > MAX_TABLES:
                return None, (f"the tables would hold {cells:,} cells per variant ({problem.core_budget + 1} core "
                              f"counts × {int(round(lam * factor)) + 1} load levels), above the limit; use a MILP "
                              "backend")
            return factor, ""
    return None, "workload_rps and the capacities are not whole numbers (nor with 3 decimals); use a MILP backend"


def solve_dp(problem: Any, params: SolveParams | None = None) -> tuple[Status, Any, str]:
    """Solve a :class:`~servopt.formulations.variant_selection.problem.VariantSelection` exactly by dynamic programming.

    Parameters
    ----------
    problem : VariantSelection
    params : SolveParams, optional
        Only ``time_limit_s`` applies (checked between variants; on expiry: an error status, no plan).

    Returns
    -------
    (Status, VariantSelectionPlan or None, message)

    Raises
    ------
    ValidationError
        ``prefer_stable`` (use a MILP backend), or data the tables cannot take (:func:`grid_scale`).

    Examples
    --------
    >>> from servopt.formulations.variant_selection.problem import Variant, VariantSelection
    >>> p = VariantSelection(50, 8, [Variant("small", 0.70, {2: 40, 4: 90}), Variant("big", 0.78, {2: 10, 4: 25})])
    >>> status, plan, _ = solve_dp(p)
    >>> status.value, plan.deployment, round(plan.objective, 4)
    ('optimal', {'small': 2, 'big': 4}, 0.7025)
    """
    params = params or SolveParams()
    if problem.prefer_stable:
        raise ValidationError("variant_selection: the dp algorithm does not break ties by fewest changes "
                              "(prefer_stable); use a MILP backend (e.g. --backend highs)")
    factor, why = grid_scale(problem)
    if factor is None:
        raise ValidationError(f"variant_selection: dp cannot take this problem: {why}")
    deadline = None if params.time_limit_s is None else time.perf_counter() + params.time_limit_s
    s = problem._structure()
    budget = problem.core_budget
    lam_units = int(round(problem.workload_rps * factor))
    load_max = s["load_max"]
    order = sorted(range(len(problem.variants)), key=lambda m: (problem.variants[m].load_time_s, m))
    shift = np.arange(lam_units + 1, dtype=float)

    F = np.full((budget + 1, lam_units + 1), -np.inf)
    F[0, 0] = 0.0
    G = F.copy()
    history: list[tuple[int, np.ndarray, np.ndarray, list[tuple[int, int, bool]], float, float]] = []
    for m in order:
        if deadline is not None and time.perf_counter() > deadline:
            return Status.ERROR, None, f"dp: time limit {params.time_limit_s:g} s reached before a plan was found"
        v = problem.variants[m]
        options = _options(v, s["allowed"][m], s["capacity"][m], factor, lam_units)
        mu = problem.alpha * v.accuracy / lam_units
        penalty = problem.gamma * v.load_time_s / load_max if load_max > 0 else 0.0
        new_f, new_g = F.copy(), G.copy()  # 0 cores: unchanged, nothing served
        windows = _Windows(F, mu, shift)
        for k, top, changed in options:
            cand = windows.rows(k, top)
            np.maximum(new_f[k:], cand, out=new_f[k:])
            cand_g = cand - penalty if changed else _Windows(G, mu, shift).rows(k, top)
            np.maximum(new_g[k:], cand_g, out=new_g[k:])
        history.append((m, F, G, options, mu, penalty))
        F, G = new_f, new_g

    final = G[:, lam_units] - problem.beta * np.arange(budget + 1) / budget
    if not np.isfinite(final).any():
        return Status.INFEASIBLE, None, ""
    c = int(np.argmax(final))
    counts = [0] * len(problem.variants)
    table, pos = "G", lam_units
    for m, f_prev, g_prev, options, mu, penalty in reversed(history):
        k, x, table = _trace(table, c, pos, f_prev, g_prev, options, mu, penalty)
        counts[m] = k
        c, pos = c - k, pos - x
    plan = problem.evaluate(counts)
    if plan is None:
        raise SolverError(f"variant_selection dp: the cores {counts} cannot serve the workload; please report this")
    return Status.OPTIMAL, plan, ""


def _options(variant: Any, allowed: np.ndarray, capacity: np.ndarray, factor: int,
             lam_units: int) -> list[tuple[int, int, bool]]:
    """(cores, most load units, changed) per non-dominated core count of a variant.

    A changed count is dropped when fewer cores serve at least as much (the current count, which adds no loading
    cost, also drops changed counts it dominates).
    """
    items = sorted(((int(k), min(lam_units, int(round(float(th) * factor))), int(k) != variant.current_cores)
                    for k, th in zip(allowed.tolist(), capacity.tolist())), key=lambda t: (t[0], t[2]))
    kept: list[tuple[int, int, bool]] = []
    for k, top, changed in items:
        if changed and any(t >= top for _, t, _ in kept):
            continue
        if not changed and any(t >= top and ch is False for _, t, ch in kept):
            continue
        kept.append((k, top, changed))
    return kept


class _Windows:
    """max_{0<=x<=top} table[c-k][s-x] + mu x for any (k, top), from one set of doubling levels per table.

    ``levels[j][c][s]`` is the maximum of ``table[c][s'] - mu s'`` over the 2^j cells s' ending at s; a window of
    n cells is the maximum of two overlapping power-of-two windows.
    """

    def __init__(self, table: np.ndarray, mu: float, shift: np.ndarray) -> None:
        self.mu_shift = mu * shift
        self.levels = [table - self.mu_shift]
        self.width = table.shape[1]
        self._prefix: np.ndarray | None = None

    def _level(self, j: int) -> np.ndarray:
        while len(self.levels) <= j:
            cur, span = self.levels[-1], 1 << (len(self.levels) - 1)
            nxt = cur.copy()
            np.maximum(nxt[:, span:], cur[:, :-span], out=nxt[:, span:])
            self.levels.append(nxt)
        return self.levels[j]

    def rows(self, k: int, top: int) -> np.ndarray:
        """Rows c = k..B of the window maximum for ``k`` cores and loads 0..top."""
        n = top + 1
        last = self.levels[0].shape[0] - k
        if n >= self.width:
            if self._prefix is None:
                self._prefix = np.maximum.accumulate(self.levels[0], axis=1)
            return self._prefix[:last] + self.mu_shift
        j = n.bit_length() - 1
        level = self._level(j)[:last]
        rest = n - (1 << j)
        if rest == 0:
            return level + self.mu_shift
        out = level.copy()
        np.maximum(out[:, rest:], level[:, :-rest], out=out[:, rest:])
        out += self.mu_shift
        return out


def _trace(table: str, c: int, pos: int, f_prev: np.ndarray, g_prev: np.ndarray,
           options: list[tuple[int, int, bool]], mu: float, penalty: float) -> tuple[int, int, str]:
    """The choice (cores, load units, table before) that produced cell (c, pos) of ``table``."""
    best = (-math.inf, 0, 0, table)
    source = g_prev if table == "G" else f_prev
    if math.isfinite(source[c, pos]):
        best = (float(source[c, pos]), 0, 0, table)
    for k, top, changed in options:
        if k > c:
            continue
        if table == "G":
            prev, name, minus = (f_prev, "F", penalty) if changed else (g_prev, "G", 0.0)
        else:
            prev, name, minus = f_prev, "F", 0.0
        xs = np.arange(min(top, pos) + 1)
        values = prev[c - k, pos - xs] + mu * xs - minus
        j = int(np.argmax(values))
        if values[j] > best[0]:
            best = (float(values[j]), k, int(xs[j]), name)
    if not math.isfinite(best[0]):
        raise SolverError("variant_selection dp: the traceback lost its path; please report this problem")
    return best[1], best[2], best[3]
