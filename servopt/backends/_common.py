"""Helpers shared by the backend modules: honest statuses, the gap rule, option checks.

Nothing here imports a solver. Every backend maps its native status to servopt's vocabulary with the same rules:

* a solver's "optimal" with ``mip_gap > 0`` is ``feasible`` unless the objective and the bound really meet;
* a limit (time, iterations, nodes, ...) with an incumbent is ``feasible``; without one it is ``error`` with a
  message that names the limit;
* "unbounded" and "infeasible or unbounded" are settled by :func:`settle_unbounded`, which solves the same model
  with a zero objective (it cannot be unbounded): feasible means unbounded, infeasible means infeasible.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from servopt.backends.base import RawAnswer
from servopt.exceptions import ValidationError
from servopt.model import ModelArrays
from servopt.result import SolveParams, Status

if TYPE_CHECKING:
    from servopt.backends.base import Backend

__all__ = [
    "gap_closed",
    "relative_gap",
    "clean_values",
    "finish_with_solution",
    "no_solution_answer",
    "has_infinite_bounds",
    "feasibility_arrays",
    "settle_unbounded",
    "empty_model_answer",
    "unknown_options_error",
    "set_options",
]

#: objective and bound closer than this (relative, with an absolute floor of 1e-6) count as equal
GAP_TOLERANCE = 1e-6


def gap_closed(objective: float, bound: float | None) -> bool:
    """Whether ``bound`` proves ``objective`` optimal (within :data:`GAP_TOLERANCE`)."""
    if bound is None or not math.isfinite(bound):
        return False
    return abs(objective - bound) <= GAP_TOLERANCE * max(1.0, abs(objective))


def relative_gap(objective: float, bound: float | None) -> float | None:
    if bound is None or not math.isfinite(bound):
        return None
    return abs(objective - bound) / max(1e-10, abs(objective))


def clean_values(values: Any, arrays: ModelArrays) -> np.ndarray:
    """Variable values as a float array; integer variables rounded (solvers return 0.9999999 for 1)."""
    out = np.array(values, dtype=float).reshape(-1)
    if out.shape != (arrays.n_vars,):
        raise ValueError(f"solver returned {out.size} values for {arrays.n_vars} variables")
    if arrays.is_mip:
        out[arrays.integrality] = np.round(out[arrays.integrality])
    return out + 0.0  # -0.0 -> 0.0


def finish_with_solution(
    *,
    solver_optimal: bool,
    objective: float,
    bound: float | None,
    values: np.ndarray,
    params: SolveParams,
    arrays: ModelArrays,
    limit: str = "",
) -> RawAnswer:
    """The answer for a solve that ended with a solution.

    ``solver_optimal`` is the solver's own claim. With ``mip_gap == 0`` that claim is trusted (the solver proved
    optimality within its tolerances); with ``mip_gap > 0`` the status is ``optimal`` only if the bound meets
    the objective. A solve stopped by ``limit`` is ``feasible`` unless its bound proves the incumbent optimal.
    """
    if bound is not None and not math.isfinite(bound):
        bound = None
    if not arrays.is_mip and solver_optimal and bound is None:
        bound = objective  # an LP optimum is its own bound
    if solver_optimal and (params.mip_gap == 0.0 or not arrays.is_mip or gap_closed(objective, bound)):
        return RawAnswer(Status.OPTIMAL, objective, bound, values)
    if solver_optimal:
        gap = relative_gap(objective, bound)
        gap_text = f"{gap:.3g}" if gap is not None else "unknown"
        message = (
            f"stopped at the requested relative gap (mip_gap={params.mip_gap:g}; gap to the best bound "
            f"{gap_text}); the solution is not proven optimal"
        )
        return RawAnswer(Status.FEASIBLE, objective, bound, values, message)
    if gap_closed(objective, bound):
        return RawAnswer(
            Status.OPTIMAL, objective, bound, values,
            f"stopped by {limit or 'a limit'}, but the bound proves optimality",
        )
    gap = relative_gap(objective, bound)
    gap_text = f"; relative gap to the best bound {gap:.3g}" if gap is not None else ""
    return RawAnswer(
        Status.FEASIBLE, objective, bound, values,
        f"stopped by {limit or 'a limit'}: returning the best solution found, not proven optimal{gap_text}",
    )


def no_solution_answer(limit: str, backend: str) -> RawAnswer:
    """A limit was hit before any feasible solution was found."""
    return RawAnswer(
        Status.ERROR,
        message=f"{backend} was stopped by {limit} before it found any feasible solution; raise the limit "
        "(time_limit_s=...) or try another backend",
    )


def has_infinite_bounds(arrays: ModelArrays) -> bool:
    """Whether some variable can grow without limit in some direction (else the model cannot be unbounded)."""
    return bool(np.isinf(arrays.lb).any() or np.isinf(arrays.ub).any())


def feasibility_arrays(arrays: ModelArrays) -> ModelArrays:
    """The same constraints and bounds with a zero objective."""
    return dataclasses.replace(arrays, c=np.zeros_like(arrays.c), obj_constant=0.0)


def settle_unbounded(backend: Backend, arrays: ModelArrays, params: SolveParams, claim: str) -> RawAnswer:
    """Decide between infeasible and unbounded after a solver claimed ``claim``.

    Solves the model with a zero objective (which cannot be unbounded) on the same backend: if it has a
    feasible point, the original objective is unbounded (the solver found an improving ray, or could not tell);
    if it is infeasible, the model is infeasible.
    """
    if not np.any(arrays.c):
        # a zero objective cannot be unbounded: "infeasible or unbounded" means infeasible
        return RawAnswer(Status.INFEASIBLE, message=f"solver reported '{claim}' for a model without objective")
    feas = feasibility_arrays(arrays)
    raw = backend._run(backend._build(feas, params), feas, params)
    if raw.status.has_solution:
        return RawAnswer(
            Status.UNBOUNDED,
            message=f"solver reported '{claim}'; the model has a feasible point (found with a zero objective), "
            "so the objective is unbounded",
        )
    if raw.status is Status.INFEASIBLE:
        return RawAnswer(
            Status.INFEASIBLE,
            message=f"solver reported '{claim}'; with a zero objective the model is infeasible",
        )
    return RawAnswer(
        Status.ERROR,
        message=f"solver reported '{claim}' and the feasibility check ended {raw.status.value}: {raw.message}",
    )


def empty_model_answer(arrays: ModelArrays) -> RawAnswer:
    """The answer for a model without variables: its rows are constants, the objective is its constant."""
    feasible = bool(np.all(arrays.row_lb <= 0.0) and np.all(arrays.row_ub >= 0.0))
    if not feasible:
        bad = int(np.flatnonzero((arrays.row_lb > 0.0) | (arrays.row_ub < 0.0))[0])
        return RawAnswer(
            Status.INFEASIBLE,
            message=f"constraint {arrays.row_names[bad]!r} has no variables and excludes 0",
        )
    return RawAnswer(Status.OPTIMAL, arrays.obj_constant, arrays.obj_constant, np.zeros(0))


def unknown_options_error(backend: str, unknown: Iterable[str], where: str) -> ValidationError:
    names = ", ".join(repr(n) for n in sorted(unknown))
    return ValidationError(
        f"backend {backend!r} does not know the option(s) {names}; pass native parameter names ({where})"
    )


def set_options(
    backend: str, options: dict[str, Any], setter: Callable[[str, Any], None], where: str
) -> None:
    """Apply ``options`` with ``setter``; a bad value becomes a ValidationError naming it."""
    for name, value in options.items():
        try:
            setter(name, value)
        except ValidationError:
            raise
        except Exception as exc:  # native libraries raise TypeError, ValueError or their own errors
            raise ValidationError(
                f"backend {backend!r}: option {name}={value!r} was rejected ({exc}); see {where}"
            ) from None
