"""An exact special-purpose algorithm for ``variant_selection`` (SPEC §4.3): dynamic programming over cores and load.

**Canonical plans.** For fixed cores the optimal split of λ is greedy by accuracy
(:func:`~servopt.formulations.variant_selection.verify.exact_split`). A chosen variant the split leaves without
load can be dropped (its cores cost β k / B >= 0; the loading cost LC, a maximum over chosen changed variants,
cannot grow), so some optimal plan loads every chosen variant to its capacity th but one, the *marginal* variant,
which takes the rest x = λ − L in (0, th] (L: the full variants' load, L < λ).

**Claim.** The optimum equals the maximum, over every set F of *full* variants and one more *marginal* variant p
(cores within the budget, Σ_F th_j = L < λ <= L + th_p), of the split value

    α / λ · (Σ_F a_j th_j + a_p (λ − L)) − β c / B − γ LC / LM        (c: cores, LM: the largest load time).

*Proof.* Every candidate is a feasible split of λ for its cores (loads within capacity, summing to λ), so its
value is at most the greedy split's, the plan's true objective, which is at most the optimum. The canonical
optimal plan is a candidate (F: its full variants, p: its marginal one) with exactly its objective. ∎

No accuracy order is needed, so the variants can be taken in increasing load time, which makes the loading cost
exact with two tables (below). Capacities below λ are whole numbers after scaling by f ∈ {1, 10, 100, 1000}
(:func:`grid_scale`; λ itself and larger capacities may be any real number: only their comparisons with grid
points are needed, decided exactly on their decimals). With loads in grid units:

* ``open[c][L]``: best value of full variants only, on c cores with load L = 0 .. G − 1 (G = ⌈λ f⌉, so L < λ);
* ``marg[c][t]``: best value with the marginal variant already placed, needing t more grid units of full load.

A variant m on k cores adds to the tables (0/1: each variant once, k from its allowed counts):

    full:      open'[c+k][L+th] <- open[c][L] + α a_m th / λ − β k / B     (L + th <= G − 1)
               marg'[c+k][t−th] <- marg[c][t] + α a_m th / λ − β k / B     (t >= th)
    marginal:  marg'[c+k][t]    <- max over u of open[c][u] + α a_m (λ − (u+t)/f) / λ − β k / B,
               over u + t in [lo, G − 1], lo = max(0, ⌈λ f − th⌉)  (then 0 < x = λ − (u+t)/f <= th)

and the optimum is max_c marg[c][0]. The marginal step is a sliding-window maximum of
``open[c][u] − α a_m u / (λ f)``, read from one sparse table per variant (log2 G levels in one array, each
window the maximum of two overlapping power-of-two windows, or a running maximum where it reaches u = 0): no
whole-table copies per window.

**Loading cost.** Variants are taken in increasing load time, so a change at variant m (new non-zero cores) sets
LC to m's load time whatever came before. Each table has two versions: F (value without the loading cost) and G
(value net of it). A changed choice of m goes F -> G with −γ t_m / LM; an unchanged one (its current cores) G -> G;
every choice also F -> F. The answer is max_c G_marg[c][0].

**Certificate.** :class:`Certificate` holds the optimum the tables proved (max_c G_marg[c][0]);
:func:`check_certificate` re-scores the plan exactly (:meth:`VariantSelection.evaluate`) and requires it to reach
that value: a plan scoring the tables' maximum is optimal by the claim. The tables' core rows stop at
:attr:`~VariantSelection.usable_cores` (no plan uses more cores, so a larger budget cannot bind): cost per variant
O(options × min(B, usable cores) × G).
``prefer_stable`` (ties by fewest changes) is left to the MILP (the problem's ``default_backend`` is then
``auto``), as are tables beyond :data:`MAX_CELLS`; :mod:`~servopt.formulations.variant_selection.frontier` takes
capacities on no grid at all.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from servopt.exact import dec, decimals
from servopt.exceptions import SolverError, ValidationError
from servopt.result import SolveParams, Status

__all__ = ["ALGORITHMS", "Certificate", "check_certificate", "grid_scale", "solve_dp", "MAX_CELLS", "MAX_TABLES"]

ALGORITHMS = ("dp",)

#: most cells of one (cores × load) table
MAX_CELLS = 400_000
#: most cells of all tables kept for the traceback (4 tables per variant)
MAX_TABLES = 16_000_000


@dataclass(frozen=True)
class Certificate:
    """The optimum the dynamic programme's tables proved (no plan scores more)."""

    optimum: float

    def describe(self) -> str:
        return f"optimal by the dynamic programme: the tables' maximum is {self.optimum:.12g}"


def check_certificate(problem: Any, plan: Any, certificate: Any) -> str | None:
    """Check that ``plan`` reaches the certified optimum, re-scored exactly from the problem (None: it does)."""
    again = problem.evaluate(plan.deployment)
    if again is None:
        return "the plan's cores cannot serve the workload"
    if abs(again.objective - certificate.optimum) > 1e-9 * max(1.0, abs(certificate.optimum)):
        return f"the plan scores {again.objective!r}, the certified optimum is {certificate.optimum!r}"
    return None


def grid_scale(problem: Any) -> tuple[int | None, str]:
    """The factor (1, 10, 100 or 1000) that makes every capacity below λ whole, or None and the reason.

    λ itself need not be on the grid. The tables have (B + 1) × ⌈λ·factor⌉ cells; beyond :data:`MAX_CELLS` (or
    :data:`MAX_TABLES` over all variants) the MILP is the better tool.
    """
    caps, places = _capacity_places(problem)
    lam = problem.workload_rps
    needed = int(places[caps < lam].max(initial=0))
    for factor in (1, 10, 100, 1000):
        if factor >= 10 ** needed:
            rows = problem.usable_cores + 1
            cells = rows * _grid_points(lam, factor)
            if cells > MAX_CELLS or 4 * cells * len(problem.variants) > MAX_TABLES:
                return None, (f"the tables would hold {cells:,} cells per variant ({rows} core "
                              f"counts × {_grid_points(lam, factor)} load levels), above the limit; use a MILP "
                              "backend")
            return factor, ""
    return None, "the capacities are not whole numbers (nor with 3 decimals); use a MILP backend or 'frontier'"


def _capacity_places(problem: Any) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct capacity and its decimal places (4 meaning "more than 3"), kept with the problem's structure."""
    shared = problem._structure()
    if "capacity_places" not in shared:
        caps = np.unique(np.concatenate([np.asarray(c, dtype=float) for c in shared["capacity"]]))
        places = np.array([min(4, _places(float(x))) for x in caps.tolist()], dtype=np.int64)
        shared["capacity_places"] = (caps, places)
    return shared["capacity_places"]


def _places(x: float) -> int:
    """Decimal places of the decimal ``x`` prints as (``12.5`` -> 1, ``3.0`` -> 0), from its repr."""
    text = repr(x)
    if "e" in text or "E" in text or "n" in text:
        return decimals(x) if math.isfinite(x) else 99
    head, _, tail = text.partition(".")
    tail = tail.rstrip("0")
    return len(tail)


def _grid_points(lam: float, factor: int) -> int:
    """G = ⌈λ f⌉: the grid loads 0 .. G − 1 are exactly those below λ."""
    return max(1, math.ceil(dec(lam) * factor))


class _Windows:
    """Window maxima of one table's rows ``h[c][u]`` (a sparse table: one array of log2 G levels, no copies).

    ``levels[j][c][e] = max(h[c][e - 2^j + 1 .. e])`` (clipped at 0); a window of n cells is the maximum of two
    overlapping power-of-two windows, a window that reaches 0 is a running maximum.
    """

    def __init__(self, h: np.ndarray, top: np.ndarray) -> None:
        grid = h.shape[1]
        depth = max(1, grid.bit_length())
        self.levels = np.empty((depth,) + h.shape)
        self.levels[0] = h
        for j in range(1, depth):
            span = 1 << (j - 1)
            prev, cur = self.levels[j - 1], self.levels[j]
            cur[:, :span] = prev[:, :span]
            np.maximum(prev[:, span:], prev[:, :-span], out=cur[:, span:])
        # the running maximum read backwards (column t: u <= G - 1 - t), plus the marginal's value for target t
        self.tail = np.maximum.accumulate(h, axis=1)[:, ::-1] + top
        self.grid = grid

    def marginal(self, rows: int, lo: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``max(h[c][u])`` over ``max(0, lo - t) <= u <= G - 1 - t`` for rows c < ``rows``: (t <= lo, t > lo).

        For t <= lo every window has G − lo cells (one level, two reversed slices); beyond, it reaches u = 0 and
        is a running maximum, returned with ``top[t]`` added (None when lo = G − 1).
        """
        grid = self.grid
        width = grid - lo
        j = min(width.bit_length() - 1, self.levels.shape[0] - 1)
        span = 1 << j
        level = self.levels[j, :rows]
        # t = 0 .. lo: windows [lo - t, G - 1 - t] = the 2^j cells ending at G - 1 - t and those ending at
        # lo - t + 2^j - 1
        head = np.maximum(level[:, grid - 1 - lo:][:, ::-1], level[:, span - 1:lo + span][:, ::-1])
        tail = self.tail[:rows, lo + 1:] if lo + 1 <= grid - 1 else None
        return head, tail


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
        The message holds the certificate.

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
    >>> status, plan, _ = solve_dp(p.update(workload_rps=50.5))   # λ need not be a whole number
    >>> plan.deployment
    {'small': 2, 'big': 4}
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
    rows = problem.usable_cores  # no plan uses more cores: the tables' rows stop there, whatever the budget
    lam = float(problem.workload_rps)
    lam_units = dec(lam) * factor
    grid = _grid_points(lam, factor)
    load_max = s["load_max"]
    unit = problem.alpha / lam
    order = sorted(range(len(problem.variants)), key=lambda m: (problem.variants[m].load_time_s, m))
    positions = np.arange(grid, dtype=float)

    tables = np.full((4, rows + 1, grid), -np.inf)  # open F, open G, marg F, marg G
    tables[0, 0, 0] = tables[1, 0, 0] = 0.0
    history: list[tuple[int, np.ndarray, list[tuple[int, int | None, int, bool]]]] = []
    for m in order:
        if deadline is not None and time.perf_counter() > deadline:
            return Status.ERROR, None, f"dp: time limit {params.time_limit_s:g} s reached before a plan was found"
        v = problem.variants[m]
        options = _options(v, s["allowed"][m], s["capacity"][m], factor, lam_units, grid)
        penalty = problem.gamma * v.load_time_s / load_max if load_max > 0 else 0.0
        mu = unit * v.accuracy / factor
        top = unit * v.accuracy * lam - mu * positions  # α a (λ − t/f) / λ: the marginal's value for target t
        windows: dict[int, _Windows] = {}
        # best[0/1]: open/marg values through a choice of this variant, from F tables (the changed choices' G
        # values are these minus the penalty: a change makes this variant's load time the loading cost)
        changed_best = np.full((2, rows + 1, grid), -np.inf)
        new = tables.copy()  # 0 cores: every table unchanged
        for k, th, lo, changed in options:
            sources = (0,) if changed else (0, 1)  # an unchanged choice keeps F -> F and G -> G
            for source in sources:
                into = changed_best if changed else new[source::2]  # (open, marg) of the target
                _choose(tables[source::2], into, windows, source, k, th, lo, rows, grid, factor,
                        unit * v.accuracy, problem.beta / budget, mu, top, positions)
        np.maximum(new[0::2], changed_best, out=new[0::2])
        changed_best -= penalty
        np.maximum(new[1::2], changed_best, out=new[1::2])
        history.append((m, tables, options))
        tables = new

    final = tables[3, :, 0]
    if not np.isfinite(final).any():
        return Status.INFEASIBLE, None, ""
    c = int(np.argmax(final))
    optimum = float(final[c])
    counts = [0] * len(problem.variants)
    table, pos = 3, 0
    for m, before, options in reversed(history):
        v = problem.variants[m]
        penalty = problem.gamma * v.load_time_s / load_max if load_max > 0 else 0.0
        k, table, c, pos = _trace(before, table, c, pos, options, unit, v.accuracy, lam, factor, grid, penalty,
                                  problem.beta / budget)
        counts[m] = k
    plan = problem.evaluate(counts)
    if plan is None:
        raise SolverError(f"variant_selection dp: the cores {counts} cannot serve the workload; please report this")
    certificate = Certificate(optimum)
    broken = check_certificate(problem, plan, certificate)
    if broken:
        raise SolverError(f"variant_selection dp: the certificate does not hold ({broken}); please report this")
    return Status.OPTIMAL, plan, certificate.describe()


def _choose(source: np.ndarray, into: np.ndarray, windows: dict[int, Any], key: int, k: int, th: int | None,
            lo: int, max_cores: int, grid: int, factor: int, unit_acc: float, beta_per_core: float, mu: float,
            top: np.ndarray, positions: np.ndarray) -> None:
    """Raise ``into`` (open, marg) to the values of this variant on ``k`` cores over ``source`` (open, marg).

    Full: open loads grow by th, the load the marginal variant waits for shrinks by th. Marginal: the sliding
    window of the module docstring, from the open table.
    """
    rows = max_cores + 1 - k
    cost = beta_per_core * k
    if th is not None:
        gain = unit_acc * th / factor - cost
        np.maximum(into[0, k:, th:], source[0, :rows, :grid - th] + gain, out=into[0, k:, th:])
        np.maximum(into[1, k:, :grid - th], source[1, :rows, th:] + gain, out=into[1, k:, :grid - th])
    if key not in windows:
        windows[key] = _Windows(source[0] - mu * positions, top)
    head, tail = windows[key].marginal(rows, lo)
    head += top[:lo + 1] - cost
    np.maximum(into[1, k:, :lo + 1], head, out=into[1, k:, :lo + 1])
    if tail is not None:
        np.maximum(into[1, k:, lo + 1:], tail - cost, out=into[1, k:, lo + 1:])


def _options(variant: Any, allowed: np.ndarray, capacity: np.ndarray, factor: int, lam_units: Fraction,
             grid: int) -> list[tuple[int, int | None, int, bool]]:
    """(cores, capacity in grid units or None when >= λ, first marginal target lo, changed) per core count.

    A changed count is dropped when fewer cores serve at least as much (the current count, which adds no loading
    cost, also drops changed counts it dominates); counts with no capacity are dropped.
    """
    items = []
    lam = float(lam_units / factor)
    for k, th in zip(allowed.tolist(), capacity.tolist()):
        if th <= 0:
            continue
        if th < lam:  # floats order as their decimals do; capacities below λ are on the grid (grid_scale)
            full: int | None = int(round(th * factor))
            lo = max(0, grid - full)
        else:
            full, lo = None, 0
        if lo > grid - 1:
            continue
        items.append((int(k), full, lo, int(k) != variant.current_cores, th))
    items.sort(key=lambda t: (t[0], t[3]))
    kept: list[tuple[int, int | None, int, bool]] = []
    caps: list[tuple[float, bool]] = []
    for k, full, lo, changed, units in items:
        if any(u >= units and (changed or not ch) for u, ch in caps):
            continue
        kept.append((k, full, lo, changed))
        caps.append((units, changed))
    return kept


def _trace(before: np.ndarray, table: int, c: int, pos: int, options: list[tuple[int, int | None, int, bool]],
           unit: float, accuracy: float, lam: float, factor: int, grid: int, penalty: float,
           beta_per_core: float) -> tuple[int, int, int, int]:
    """The choice (cores, table, c, pos before) that produced cell (c, pos) of ``table`` (0-3: open F/G, marg F/G)."""
    best = (float(before[table, c, pos]), 0, table, c, pos)  # 0 cores: the same cell before
    g_table = table in (1, 3)
    marg = table >= 2
    for k, th, lo, changed in options:
        if k > c:
            continue
        source = (1 if g_table and not changed else 0) + (2 if marg else 0)
        minus = penalty if g_table and changed else 0.0
        gain = (unit * accuracy * (th / factor if th is not None else 0.0) - beta_per_core * k - minus)
        if th is not None:
            prev = pos - th if not marg else pos + th
            if 0 <= prev < grid:
                value = float(before[source, c - k, prev]) + gain
                if value > best[0]:
                    best = (value, k, source, c - k, prev)
        if marg:  # the marginal variant placed here, from an open table
            open_source = source - 2
            us = np.arange(max(0, lo - pos), grid - pos)
            if us.size:
                values = before[open_source, c - k, us] + unit * accuracy * (lam - (us + pos) / factor) \
                    - beta_per_core * k - minus
                j = int(np.argmax(values))
                if values[j] > best[0]:
                    best = (float(values[j]), k, open_source, c - k, int(us[j]))
    if not math.isfinite(best[0]):
        raise SolverError("variant_selection dp: the traceback lost its path; please report this problem")
    return best[1], best[2], best[3], best[4]
