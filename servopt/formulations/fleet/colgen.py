"""The pattern set of the fleet MILP: full enumeration when it is small, else column generation with a lower bound.

1. **Full enumeration** (:func:`~servopt.formulations.fleet.patterns.enumerate_patterns`, bounds implied by the
   problem): when it stays within ``problem.enumeration_budget`` contents in all (and a quarter of
   ``problem.search_time_s``) and no user cap cut a content,
   the set is *complete* (it holds an optimal plan) and the MILP's optimum is the problem's. Its LP relaxation
   is a lower bound.
2. **Column generation** otherwise: the LP relaxation of the pattern MILP over a growing column set, started from
   every one-model content; each round prices every bin with the LP's duals (``π_i`` per capacity row, ``μ_t``
   per GPU count row, ``σ_{t,π}`` per slice row): a whole-GPU content has reduced cost
   ``w_t + μ_t - Σ_i π_i min(c_i, r_i)``, a slice content ``σ_{t,π} - Σ_i π_i min(c_i, r_i)``; the pricing
   search (:meth:`~servopt.formulations.fleet.space.BinSpace.search`, branch and bound) adds the best contents
   with negative reduced cost. When a round finds none the LP value is the LP bound over *all* patterns: a valid
   **lower bound**. (A phase 1 minimises the uncovered share first when the start columns cannot cover every
   model; when even the full LP cannot, no plan exists.)
3. **Closing the gap**: with an incumbent of cost ``UB`` (the MILP over the generated columns), every plan
   of cost ``<= UB`` uses only columns of reduced cost ``<= UB - LB`` (cost(x) >= LB + Σ_j rc_j x_j for any
   plan x, all rc_j >= 0 at the LP optimum). Those columns are listed by the same search; when they fit
   ``problem.pricing_budget`` the set is complete again and the MILP's optimum is proven. Otherwise the plan
   is reported ``feasible`` with its lower bound and gap.

Caps set by the user (``max_instances``, ``max_models``) restrict every search; a plan that a cap may have cut is
never called optimal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servopt.formulations.fleet.pattern_milp import gpu_weight, milp
from servopt.formulations.fleet.patterns import Pattern, pareto
from servopt.formulations.fleet.space import BinSpace, SearchBudget

__all__ = ["Generated", "generate", "lp_bound", "bin_keys"]

#: relative tolerance of "the gap is closed" (and of the phase-1 uncovered share)
GAP_TOL = 1e-6
#: reduced costs above -RC_TOL * (largest GPU weight) count as non-negative (the bound pays for it, below)
RC_TOL = 1e-9


def _rc_scale(problem: Any, phase1: bool = False) -> float:
    return max([1.0] + ([] if phase1 else [gpu_weight(problem, g) for g in problem.gpu_types]))


def _max_columns(problem: Any) -> float:
    """The most columns any plan uses in all: whole GPUs, and at most 7 slices of each profile per GPU."""
    return float(sum(g.count * (1 + 7 * len(g.mig)) for g in problem.gpu_types))


@dataclass
class Generated:
    """The pattern set and what it proves."""

    patterns: dict[tuple[str, str | None], list[Pattern]]
    method: str                      # "enumeration" or "column generation"
    complete: bool                   # the set holds an optimal plan (up to dominance)
    truncated: bool = False          # a user cap cut a feasible content
    lower_bound: float | None = None  # a valid lower bound on the optimum (LP bound), None when unproven
    infeasible: bool = False         # the LP relaxation over all patterns is infeasible: no plan exists
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def bin_keys(problem: Any) -> list[tuple[Any, str | None, float]]:
    """(GPU type, MIG profile or None, memory) of every bin kind of the fleet (types with count > 0)."""
    out = []
    for g in problem.gpu_types:
        if g.count == 0:
            continue
        out.append((g, None, g.memory_mb))
        out.extend((g, p.profile, p.memory_mb) for p in g.mig)
    return out


def _spaces(problem: Any) -> dict[tuple[str, str | None], BinSpace]:
    return {(g.name, prof): BinSpace(problem, g.name, prof, mem, max_instances=problem.max_instances,
                                     max_models=problem.max_models) for g, prof, mem in bin_keys(problem)}


def generate(problem: Any) -> Generated:
    """The pattern set of ``problem`` (module docstring)."""
    t0 = time.perf_counter()
    spaces = _spaces(problem)
    patterns: dict[tuple[str, str | None], list[Pattern]] = {}
    truncated = False
    left = problem.enumeration_budget
    give_up = t0 + problem.search_time_s / 4  # the rest of the time is column generation's
    try:
        for key, space in spaces.items():
            found, cut = space.search(node_budget=left, deadline=give_up)
            left -= space.last_nodes
            patterns[key] = pareto(found, space.required)
            truncated |= cut
    except SearchBudget:
        gen = _column_generation(problem, spaces, t0)
    else:
        value, _, _ = lp_bound(problem, patterns)
        gen = Generated(patterns, "enumeration", complete=not truncated, truncated=truncated,
                        lower_bound=None if truncated or value is None else value, infeasible=value is None
                        and not truncated)
    gen.seconds = time.perf_counter() - t0
    return gen


# -- the LP ------------------------------------------------------------------------------------------------------------


def lp_bound(problem: Any, patterns: dict[tuple[str, str | None], list[Pattern]], phase1: bool = False
             ) -> tuple[float | None, dict[str, Any], np.ndarray | None]:
    """The LP relaxation of the pattern MILP over ``patterns``: (value or None when infeasible, duals, x).

    Capacities are clipped at each model's requirement (the same coefficients the MILP uses). ``duals`` has
    ``pi`` (per model, >= 0), ``mu`` (per GPU type, >= 0) and ``sigma`` (per (type, profile), >= 0). With
    ``phase1`` the columns cost nothing and a slack per model covers the uncovered share at cost 1 per
    requirement (the value is the sum of the uncovered shares).
    """
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    n = len(problem.models)
    required = [problem.required_rps(m) for m in problem.models]
    rows, cols, vals, cost = [], [], [], []
    row_of: dict[Any, int] = {}

    def row(key: Any) -> int:
        if key not in row_of:
            row_of[key] = len(row_of)
        return row_of[key]

    for i in range(n):
        row(("cover", i))
    for g in problem.gpu_types:
        if g.count == 0:
            continue
        w = 0.0 if phase1 else gpu_weight(problem, g)
        for prof in [None] + [p.profile for p in g.mig]:
            for pat in patterns.get((g.name, prof), []):
                j = len(cost)
                cost.append(w if prof is None else 0.0)
                for (i, _, _), c in zip(pat.items, pat.capacity):
                    rows.append(row(("cover", i))), cols.append(j), vals.append(-min(c, required[i]))
                rows.append(row(("count", g.name) if prof is None else ("slices", g.name, prof)))
                cols.append(j), vals.append(1.0)
        for lay in g.layouts:
            j = len(cost)
            cost.append(w)
            rows.append(row(("count", g.name))), cols.append(j), vals.append(1.0)
            for prof in set(lay):
                rows.append(row(("slices", g.name, prof))), cols.append(j), vals.append(-float(lay.count(prof)))
    if phase1:
        for i in range(n):
            j = len(cost)
            cost.append(1.0)  # the uncovered share of the model's requirement
            rows.append(row(("cover", i))), cols.append(j), vals.append(-required[i])
    rhs = np.zeros(len(row_of))
    for key, r in row_of.items():
        if key[0] == "cover":
            rhs[r] = -required[key[1]]
        elif key[0] == "count":
            rhs[r] = float(problem.gpu_type(key[1]).count)
    if not cost:
        return None, {}, None
    a = csr_matrix((vals, (rows, cols)), shape=(len(row_of), len(cost)))
    res = linprog(np.asarray(cost), A_ub=a, b_ub=rhs, bounds=(0, None), method="highs")
    if res.status != 0:  # infeasible, or HiGHS could not decide: no value, no duals (callers prove nothing)
        return None, {}, None
    marg = -np.asarray(res.ineqlin.marginals)
    duals = {"pi": {}, "mu": {}, "sigma": {}}
    for key, r in row_of.items():
        y = max(0.0, float(marg[r]))
        if key[0] == "cover":
            duals["pi"][key[1]] = y
        elif key[0] == "count":
            duals["mu"][key[1]] = y
        else:
            duals["sigma"][(key[1], key[2])] = y
    return float(res.fun), duals, np.asarray(res.x)


# -- column generation -------------------------------------------------------------------------------------------------


def _start_columns(spaces: dict[tuple[str, str | None], BinSpace]) -> dict[tuple[str, str | None], list[Pattern]]:
    out = {}
    for key, space in spaces.items():
        pats = []
        for i, opts in space.options.items():
            for b, _, _, kmax in opts:
                for k in range(1, min(kmax, space.max_instances) + 1):
                    pat = space.pattern(((i, b, k),))
                    if pat is None:
                        break
                    pats.append(pat)
        out[key] = pareto(pats, space.required)
    return out


def _threshold(problem: Any, key: tuple[str, str | None], duals: dict[str, Any], phase1: bool) -> float:
    """The value a content of bin ``key`` must exceed to have a negative reduced cost."""
    gname, prof = key
    if prof is None:
        w = 0.0 if phase1 else gpu_weight(problem, problem.gpu_type(gname))
        return w + duals["mu"].get(gname, 0.0)
    return duals["sigma"].get((gname, prof), 0.0)


#: contents a quick (heuristic) pricing search visits per bin before the exact one is needed
QUICK_NODES = 2000


def _price(problem: Any, spaces: dict, columns: dict, duals: dict, phase1: bool, budget: int,
           deadline: float) -> int:
    """Add the best contents of negative reduced cost per bin; the number added (0: the LP is optimal).

    A quick search per bin first (at most :data:`QUICK_NODES` contents); only when none finds a column does the
    exact search (within ``budget`` contents and the deadline, else :class:`SearchBudget`) prove there is none.
    """
    scale = _rc_scale(problem, phase1)
    for exact in (False, True):
        added = 0
        for key, space in spaces.items():
            limit = _threshold(problem, key, duals, phase1) + RC_TOL * scale
            found, _ = space.search(weights=duals["pi"], threshold=limit, keep=4,
                                    node_budget=budget if exact else QUICK_NODES, deadline=deadline,
                                    stop_quietly=not exact)
            known = {p.items for p in columns[key]}
            for pat in found:
                if pat.items not in known:
                    columns[key].append(pat)
                    added += 1
        if added:
            return added
    return 0


def _column_generation(problem: Any, spaces: dict, t0: float) -> Generated:
    from servopt import solve

    capped = problem.max_instances is not None or problem.max_models is not None
    columns = _start_columns(spaces)
    deadline = t0 + problem.search_time_s
    budget = problem.pricing_budget
    notes: list[str] = []
    value, duals, _ = lp_bound(problem, columns)
    converged = False
    try:
        if value is None:  # phase 1: cover as much as the columns can
            while True:
                v1, duals, _ = lp_bound(problem, columns, phase1=True)
                if v1 is None:
                    return Generated(columns, "column generation", complete=False,
                                     notes=["column generation: the LP solver did not solve the phase-1 LP"])
                if v1 <= GAP_TOL:
                    break
                if time.perf_counter() > deadline:
                    return Generated(columns, "column generation", complete=False,
                                     notes=["column generation stopped at its time limit before it found columns "
                                            "covering every model"])
                if _price(problem, spaces, columns, duals, True, budget, deadline) == 0:
                    if capped:
                        return Generated(columns, "column generation", complete=False, truncated=True,
                                         notes=["column generation: the capped contents cannot cover every model"])
                    return Generated(columns, "column generation", complete=False, infeasible=True,
                                     notes=["column generation: even the LP relaxation over every pattern cannot "
                                            "cover every model: no plan exists"])
            value, duals, _ = lp_bound(problem, columns)
        while value is not None:
            if time.perf_counter() > deadline:
                break
            if _price(problem, spaces, columns, duals, False, budget, deadline) == 0:
                converged = True
                break
            value, duals, _ = lp_bound(problem, columns)
    except SearchBudget as exc:
        notes.append(f"column generation: a pricing search hit its budget ({exc}); no lower bound")
    rounds_note = f"{sum(len(c) for c in columns.values())} columns"
    if not converged or value is None:
        if not notes:
            notes.append(f"column generation stopped at its time limit ({problem.search_time_s:g} s) before the LP "
                         "bound was proven; no lower bound")
        return Generated(columns, "column generation", complete=False, notes=notes)
    # every column has reduced cost >= -eps: any plan x costs >= value - eps * Σ x_j (Lagrangian bound)
    lb = value - RC_TOL * _rc_scale(problem) * _max_columns(problem) - 1e-9 * max(1.0, abs(value))
    if capped:
        return Generated(columns, "column generation", complete=False, truncated=True, lower_bound=None,
                         notes=[f"column generation over capped contents ({rounds_note}); the caps may cut "
                                "contents, so no lower bound on the uncapped problem"])
    # an incumbent over the generated columns, then every column that can still improve on it

    model, _, _ = milp(problem, columns)
    left = max(1.0, min(deadline - time.perf_counter(), problem.search_time_s / 4))
    res = solve(model, time_limit_s=left)
    if res.status.has_solution:
        ub = res.objective
        delta = ub - value
        if delta <= GAP_TOL * max(1.0, abs(ub)):
            return Generated(columns, "column generation", complete=True, lower_bound=lb,
                             notes=[f"column generation ({rounds_note}): the LP bound closes the gap"])
        try:
            extra = {}
            margin = GAP_TOL * max(1.0, abs(ub))
            listing = min(deadline, time.perf_counter() + problem.search_time_s / 4)
            for key, space in spaces.items():
                limit = _threshold(problem, key, duals, False) - delta - margin
                found, _ = space.search(weights=duals["pi"], threshold=limit, keep=None,
                                        node_budget=budget, zero_weights=True, deadline=listing)
                extra[key] = found
        except SearchBudget as exc:
            notes.append(f"column generation ({rounds_note}): LP bound {value:.6g}; the columns of reduced cost <= "
                         f"{delta:.6g} (the gap to the incumbent {ub:.6g}) could not all be listed ({exc})")
            return Generated(columns, "column generation", complete=False, lower_bound=lb, notes=notes)
        for key, found in extra.items():
            known = {p.items for p in columns[key]}
            columns[key] = pareto(columns[key] + [p for p in found if p.items not in known],
                                  spaces[key].required)
        return Generated(columns, "column generation", complete=True, lower_bound=lb,
                         notes=[f"column generation: LP bound {value:.6g}; every column of reduced cost <= "
                                f"{delta:.6g} (the gap to the incumbent {ub:.6g}) added"])
    return Generated(columns, "column generation", complete=False, lower_bound=lb,
                     notes=notes + ["column generation: no incumbent over the generated columns"])
