"""What ``variant_selection`` and ``pipeline`` share: tolerances, the "prefer stable" second solve, tables.

Schedulers re-plan every few seconds from the running deployment. Among the plans with the optimal objective they
want the one that changes the fewest things (IPA keeps a Gurobi solution pool and picks the candidate with the
fewest variant or batch changes). servopt does this *lexicographically and exactly*:

1. solve the formulation; evaluate the true objective ``z1`` of the decoded plan;
2. solve the same constraints plus ``objective >= z1 - eps`` while minimising the number of changes;
3. keep the second plan only if its true objective (recomputed from the plan, not read from the solver) is not
   below ``z1`` by more than :data:`TIE_TOL`; otherwise keep the first plan.

Step 3 means a solver's feasibility tolerance can never trade objective for stability.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["common_file_keys", "TIE_TOL", "RATE_RTOL", "tie_tolerance", "refine_stable", "integral_scale", "format_table"]

#: two objective values closer than this (relative to max(1, |z|)) are the same optimum
TIE_TOL = 1e-9

#: relative tolerance on throughput inequalities ``capacity >= load`` (shared by models, baselines and checkers)
RATE_RTOL = 1e-9


def tie_tolerance(z: float) -> float:
    """The absolute tolerance under which two objective values near ``z`` count as equal."""
    return TIE_TOL * max(1.0, abs(z))


def refine_stable(
    plan: Any,
    result: Any,
    build_second: Callable[[float], tuple[Any, Callable[[Any], Any]]],
    solve_model: Callable[[Any], Any],
) -> tuple[Any, Any]:
    """Among optimal plans, the one with the fewest changes (steps 2 and 3 of the module docstring).

    Parameters
    ----------
    plan : Plan
        The optimal plan of the first solve; ``plan.objective`` is its true objective and ``plan.changes`` its
        number of changes from the current deployment.
    result : servopt.Result
        The first solve's result (returned unchanged when the first plan is kept).
    build_second : callable
        ``build_second(z1) -> (model, decode)``: the model constrained to objective >= z1 - eps, minimising changes.
    solve_model : callable
        Solves a model with the backend and parameters of the first solve.

    Returns
    -------
    (plan, result)
    """
    if plan.changes == 0:
        return plan, result
    model, decode = build_second(plan.objective)
    second = solve_model(model)
    if second.status.value != "optimal":  # a limit stopped the second solve: fewest changes is not proven
        return plan, result
    candidate = decode(second)
    if candidate is None:
        return plan, result
    if candidate.objective >= plan.objective - tie_tolerance(plan.objective) and candidate.changes < plan.changes:
        return candidate, second
    return plan, result


def integral_scale(model: Any, max_power: int = 9) -> float | None:
    """The smallest power of ten (1, 10, ..., 10^max_power) that makes a model's coefficients integral.

    CP-SAT takes fractional data only through an explicit ``scale=`` (see :mod:`servopt.backends.cpsat`); this
    finds one for decimal data, e.g. ``servopt.solve(problem, "cpsat", scale=integral_scale(problem.build()[0]))``.
    None when no such factor exists (say, a coefficient 1/3).
    """
    import numpy as np

    a = model.arrays()
    values = np.concatenate([a.A.data, a.c])  # with scale=, CP-SAT rounds constraint sides inward (exact)
    for k in range(max_power + 1):
        scaled = values * 10.0**k
        if np.all(np.abs(scaled - np.rint(scaled)) <= 1e-9 * np.maximum(1.0, np.abs(scaled))):
            return 10.0**k
    return None


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned plain-text columns (numbers formatted by the caller)."""
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.6g}"
    return str(value)


def common_file_keys(f: Any, source: Any) -> dict[str, Any]:
    """The keys every ``variant_selection`` and ``pipeline`` problem file shares: name, prefer_stable, triton."""
    f.str("problem")
    return {
        "name": f.str("name", source.stem if source.name not in ("", "<problem>") else "problem"),
        "prefer_stable": f.bool("prefer_stable", False),
        "triton": f.mapping("triton", None),
    }
