"""OR-Tools CP-SAT: integer variables and integer data only, with explicit, checked scaling.

CP-SAT works over 64-bit integers. servopt never rounds silently:

* **Continuous variables** are refused by the central capability check (``CapabilityError``).
* **Fractional data** (a coefficient, a constraint side, an objective coefficient, a bound) is refused unless
  ``SolveParams.scale`` is given. With ``scale=s`` every constraint row, its sides and the objective are
  multiplied by ``s``. Numbers count as the decimals they print as (``servopt.exact.dec``: ``0.1 x 10`` is
  exactly 1); each scaled coefficient must then be an integer up to float noise (``1e-9``, or ``1e-12``
  relative for large values, but at most ``1e-3`` *absolute*), never a tolerance that grows with the value
  (else ``CapabilityError`` naming the value and a factor that would work). Constraint sides are rounded
  *inward* exactly (``ceil`` of a lower side, ``floor`` of an upper side; a side within that noise of an
  integer is that integer), which is exact because the scaled row has integer coefficients over integer
  variables: an integer side such as 30,702,488,327 images is used as it is. Bounds of integer variables are
  rounded inward too (exact). The objective value and bound are mapped back to the model's units (divided by ``s``).
* **Overflow**: CP-SAT rejects a linear expression whose largest possible absolute value can exceed
  ``2^62``. servopt checks every row and the objective against ``2^61`` (a factor 2 of margin) before building,
  and raises ``CapabilityError`` naming the row otherwise.
* **Infinite bounds**: CP-SAT needs finite domains, so an infinite variable bound becomes a stand-in ``±B``
  (``B = 2^40 ≈ 1.1e12``, lowered until no row can overflow; below ``2^20`` the model is refused). If the
  solution sits on a stand-in bound, the model is solved again with ``±2B``: if the objective improves, the
  result is reported ``unbounded``. An ``infeasible`` answer with stand-ins says so in its message.
* **Statuses**: CP-SAT's FEASIBLE (a limit was hit) is reported ``feasible``, never ``optimal``.

Native options are ``SatParameters`` field names, e.g. ``{"linearization_level": 2}``; see
https://github.com/google/or-tools/blob/stable/ortools/sat/sat_parameters.proto.

Examples
--------
>>> from servopt.model import Model
>>> from servopt.result import SolveParams
>>> m = Model("toy")
>>> x = m.add_var("x", kind="integer", ub=3)
>>> _ = m.add_constraint(0.5 * x <= 1.0)
>>> m.maximize(x)
>>> CpSatBackend().solve(m.arrays(), SolveParams(scale=2)).objective
2.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from servopt.backends._common import (
    clean_values,
    empty_model_answer,
    finish_with_solution,
    no_solution_answer,
    set_options,
    unknown_options_error,
)
from servopt.backends.base import Backend, Capabilities, RawAnswer
from servopt.exact import dec, plain
from servopt.exceptions import CapabilityError
from servopt.model import ModelArrays, Sense
from servopt.result import SolveParams, Status

__all__ = ["CpSatBackend", "STAND_IN_BOUND", "OVERFLOW_LIMIT", "scaled_integers"]

_OPTIONS_DOC = "https://github.com/google/or-tools/blob/stable/ortools/sat/sat_parameters.proto"

#: default stand-in for an infinite variable bound
STAND_IN_BOUND = 2**40
#: smallest stand-in servopt accepts before refusing the model
MIN_STAND_IN = 2**20
#: the largest absolute value a row or the objective may reach (CP-SAT's own limit is 2^62)
OVERFLOW_LIMIT = float(2**61)
#: largest coefficient that float64 represents exactly as an integer
_EXACT_INT = float(2**53)
_ROUNDING_TOL = 1e-9
_TOL_FRACTION = Fraction(1, 10**9)
_TOL_REL = Fraction(1, 10**12)
_TOL_MAX = Fraction(1, 10**3)
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


@dataclass
class _Native:
    model: Any  # cp_model.CpModel
    scale: float
    stand_in: int | None
    infinite: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    infeasible_var: str | None = None


def scaled_integers(values: np.ndarray, scale: float, what: Callable[[int], str]) -> np.ndarray:
    """``values * scale`` as exact integers (float64 array), or ``CapabilityError`` naming the first bad value.

    Each value counts as the decimal it prints as (``servopt.exact.dec``), so ``0.1`` with ``scale=10`` is exactly
    1. A product is accepted when it is within float noise of an integer (``_snap_tol``: at most ``1e-3``
    absolute, a thousandth of the integer grid), never a tolerance that grows with the value without limit:
    ``30000000000.5`` is refused, not rounded.
    ``what(k)`` names entry ``k`` (a constraint coefficient, an objective coefficient).
    """
    scaled = values * scale
    rounded = np.rint(scaled)
    exact = _exact_products(values, scale, rounded)
    bad = np.flatnonzero(~exact)
    if bad.size:
        k = int(bad[0])
        hint = _suggest_scale(values, scale)
        how = f"pass scale={plain(hint)}" if hint else "round the data to fewer significant digits"
        value = float(values[k])
        have = (f"with scale={plain(scale)} it becomes {plain(float(dec(value) * dec(scale)))}" if scale != 1.0
                else "it is fractional")
        raise CapabilityError(
            f"CP-SAT needs integer data: {what(k)} is {plain(value)} and {have}, not an integer; "
            f"{how}, or use backend 'highs' (no scaling needed)"
        )
    big = np.flatnonzero(np.abs(rounded) > _EXACT_INT)
    if big.size:
        k = int(big[0])
        raise CapabilityError(
            f"CP-SAT: {what(k)} scaled to {rounded[k]:.6g} exceeds 2^53, beyond exact integer arithmetic; "
            "use a smaller scale or backend 'highs'"
        )
    return rounded


def _exact_products(values: np.ndarray, scale: float, rounded: np.ndarray) -> np.ndarray:
    """Which ``dec(value) * dec(scale)`` lie within ``_ROUNDING_TOL`` (absolute) of ``rounded`` (its float rint).

    Integer values times an integer scale below 2^53 are exact in floats (the fast path); the rest are settled
    with fractions, so the answer never depends on a tolerance proportional to the value.
    """
    scaled = values * scale
    err = np.abs(scaled - rounded)
    # exact in floats: an integer times an integer scale, below 2^53
    ok = (err == 0) & (values == np.rint(values)) & (np.abs(scaled) <= _EXACT_INT) & float(scale).is_integer()
    # below 2^20 float noise (of the value and of the product) is under 2.5e-10: half the tolerance is safe
    ok |= (err <= _ROUNDING_TOL / 2) & (np.abs(scaled) <= 2.0**20)
    todo = np.flatnonzero(~ok)
    if todo.size:
        s = dec(scale)
        for k in todo.tolist():
            exact = dec(float(values[k])) * s
            nearest = round(exact)
            if abs(exact - nearest) <= _snap_tol(nearest) and float(nearest) == rounded[k]:
                ok[k] = True
    return ok


def _snap_tol(n: int) -> Fraction:
    """How far from the integer ``n`` a scaled number may be and still count as ``n``: float noise only.

    ``1e-9``, or ``1e-12 x |n|`` for large numbers (a float sum such as ``-363.52000000000015`` carries noise
    relative to its size), and never more than ``1e-3``: a thousandth of the integer grid of a row, whatever the
    size of its numbers (a tolerance that grew with a side loosened 30,702,488,327 images by 30).
    """
    return min(_TOL_MAX, max(_TOL_FRACTION, _TOL_REL * abs(n)))


def _suggest_scale(values: np.ndarray, scale: float) -> float | None:
    """The smallest ``scale * 10^k`` (k = 1..9) that makes every value integral, if any."""
    for k in range(1, 10):
        factor = scale * 10.0**k
        if np.all(_exact_products(values, factor, np.rint(values * factor))):
            return factor
    return None


def _row_sides(lb: np.ndarray, ub: np.ndarray, scale: float) -> tuple[list[int], list[int]]:
    """Scaled constraint sides rounded inward, exactly; infinite sides become int64 limits.

    A side counts as the decimal it prints as, times the scale (``servopt.exact.dec``); ``ceil`` of a lower side
    and ``floor`` of an upper side of that exact number are exact for a row with integer coefficients over
    integer variables. An integer side stays exactly itself (``30702488327`` is not loosened to ``30702488297``,
    as a tolerance of ``1e-9 x |side|`` did). Only a side within float noise of an integer after scaling
    (``_snap_tol``: at most ``1e-3`` absolute) is taken as that integer, to absorb noise such as ``0.1 + 0.2``;
    that is at most a thousandth of the integer grid of the row, whatever the size of the side.
    """
    cap = 2**62  # a side beyond +-2^62 cannot be reached by a row whose activity is below 2^61: clip it, exactly
    return ([_side(v, scale, lower=True, cap=cap) for v in lb.tolist()],
            [_side(v, scale, lower=False, cap=cap) for v in ub.tolist()])


def _side(v: float, scale: float, *, lower: bool, cap: int) -> int:
    if v == -math.inf:
        return _INT64_MIN
    if v == math.inf:
        return _INT64_MAX
    product = v * scale
    if v.is_integer() and float(scale).is_integer() and abs(product) <= _EXACT_INT:
        n = int(product)  # integer times integer below 2^53: exact in floats
    else:
        exact = dec(v) * dec(scale)
        nearest = round(exact)
        if abs(exact - nearest) <= _snap_tol(nearest):
            n = nearest
        else:
            n = math.ceil(exact) if lower else math.floor(exact)
    return max(-cap, min(cap, n))


class CpSatBackend(Backend):
    """OR-Tools CP-SAT (Apache-2.0): pure integer models with integer (or explicitly scaled) data."""

    name: ClassVar[str] = "cpsat"
    distribution: ClassVar[str] = "ortools"
    module: ClassVar[str] = "ortools"
    capabilities: ClassVar[Capabilities] = Capabilities(continuous=False, integer=True, fractional=False)

    def check_options(self, params: SolveParams) -> None:
        if not params.options:
            return
        from ortools.sat.python import cp_model_helper

        unknown = [n for n in params.options if not hasattr(cp_model_helper.SatParameters, n)]
        if unknown:
            raise unknown_options_error(self.name, unknown, _OPTIONS_DOC)

    # ------------------------------------------------------------------ building
    def _build(self, arrays: ModelArrays, params: SolveParams, stand_in: int | None = None) -> _Native:
        from ortools.sat.python import cp_model

        if arrays.has_continuous:
            j = int(np.flatnonzero(~arrays.integrality)[0])
            raise CapabilityError(
                f"backend 'cpsat' cannot solve model {arrays.name!r}: variable {arrays.var_names[j]!r} is "
                "continuous; use backend 'highs'"
            )
        scale = float(params.scale) if params.scale is not None else 1.0
        A = arrays.A
        row_of = np.repeat(np.arange(arrays.n_rows), np.diff(A.indptr))
        coefs = scaled_integers(
            A.data, scale,
            lambda k: f"the coefficient of {arrays.var_names[A.indices[k]]!r} in constraint "
            f"{arrays.row_names[row_of[k]]!r}",
        )
        obj = scaled_integers(arrays.c, scale, lambda k: f"the objective coefficient of {arrays.var_names[k]!r}")
        if params.scale is None:
            self._check_integral_sides(arrays)
        # integer variables: inward rounding of the bounds is exact
        lb = np.ceil(arrays.lb - 1e-9)
        ub = np.floor(arrays.ub + 1e-9)
        infinite = np.isinf(lb) | np.isinf(ub)
        native = _Native(cp_model.CpModel(), scale, None, infinite)
        empty = np.flatnonzero(lb > ub)
        if empty.size:
            native.infeasible_var = arrays.var_names[int(empty[0])]
            return native
        if infinite.any():
            native.stand_in = stand_in or self._stand_in(arrays, coefs, obj, lb, ub, infinite)
            lb = np.where(np.isinf(lb), -float(native.stand_in), lb)
            ub = np.where(np.isinf(ub), float(native.stand_in), ub)
        self._check_overflow(arrays, coefs, obj, lb, ub, scale)
        self._fill(native.model, arrays, coefs, obj, lb, ub, scale)
        return native

    @staticmethod
    def _check_integral_sides(arrays: ModelArrays) -> None:
        for side, label in ((arrays.row_lb, "lower side"), (arrays.row_ub, "upper side")):
            finite = np.where(np.isfinite(side), side, 0.0)
            bad = np.flatnonzero(np.abs(finite - np.rint(finite)) > 1e-9)
            if bad.size:
                i = int(bad[0])
                raise CapabilityError(
                    f"CP-SAT needs integer data: the {label} of constraint {arrays.row_names[i]!r} is "
                    f"{plain(side[i])}; pass scale=1 to round it inward (exact for integer rows) or use "
                    "backend 'highs'"
                )

    @staticmethod
    def _stand_in(
        arrays: ModelArrays, coefs: np.ndarray, obj: np.ndarray, lb: np.ndarray, ub: np.ndarray,
        infinite: np.ndarray,
    ) -> int:
        """The stand-in bound B: at most 2^40, small enough that ``2B`` cannot overflow any row."""
        finite_mag = np.where(infinite, np.maximum(np.abs(np.nan_to_num(lb, posinf=0, neginf=0)),
                                                   np.abs(np.nan_to_num(ub, posinf=0, neginf=0))),
                              np.maximum(np.abs(lb), np.abs(ub)))
        import scipy.sparse as sp

        absA = sp.csr_matrix((np.abs(coefs), arrays.A.indices, arrays.A.indptr), shape=arrays.A.shape)
        fixed = np.append(absA @ finite_mag, np.abs(obj) @ finite_mag)
        grow = np.append(absA @ infinite.astype(float), np.abs(obj) @ infinite.astype(float))
        limit = float(STAND_IN_BOUND)
        active = grow > 0
        if active.any():
            room = (OVERFLOW_LIMIT - fixed[active]) / (2.0 * grow[active])
            limit = min(limit, float(room.min()))
        if limit < MIN_STAND_IN:
            j = int(np.flatnonzero(infinite)[0])
            raise CapabilityError(
                f"CP-SAT needs finite variable bounds: variable {arrays.var_names[j]!r} has bounds "
                f"[{arrays.lb[j]}, {arrays.ub[j]}] and no stand-in of at least 2^20 fits CP-SAT's int64 range "
                "with these coefficients; give finite bounds or use backend 'highs'"
            )
        return int(2 ** math.floor(math.log2(limit)))

    @staticmethod
    def _check_overflow(
        arrays: ModelArrays, coefs: np.ndarray, obj: np.ndarray, lb: np.ndarray, ub: np.ndarray, scale: float = 1.0
    ) -> None:
        import scipy.sparse as sp

        for side in (arrays.row_lb, arrays.row_ub):
            finite = np.isfinite(side)
            big = np.flatnonzero(finite & (np.abs(np.where(finite, side, 0.0)) * scale > OVERFLOW_LIMIT))
            if big.size:
                i = int(big[0])
                raise CapabilityError(
                    f"CP-SAT would overflow int64 on constraint {arrays.row_names[i]!r}: its bound "
                    f"{side[i]:.6g} exceeds 2^61; use backend 'highs' or 'scip'"
                )
        mag = np.maximum(np.abs(lb), np.abs(ub))
        absA = sp.csr_matrix((np.abs(coefs), arrays.A.indices, arrays.A.indptr), shape=arrays.A.shape)
        reach = absA @ mag
        over = np.flatnonzero(reach > OVERFLOW_LIMIT)
        if over.size:
            i = int(over[0])
            raise CapabilityError(
                f"CP-SAT would overflow int64 on constraint {arrays.row_names[i]!r}: sum |coefficient| x "
                f"|bound| reaches {reach[i]:.3g} > 2^61; use a smaller scale, tighter variable bounds, or "
                "backend 'highs'"
            )
        if float(np.abs(obj) @ mag) > OVERFLOW_LIMIT:
            raise CapabilityError(
                "CP-SAT would overflow int64 on the objective: sum |coefficient| x |bound| exceeds 2^61; use a "
                "smaller scale, tighter variable bounds, or backend 'highs'"
            )

    @staticmethod
    def _fill(
        model: Any, arrays: ModelArrays, coefs: np.ndarray, obj: np.ndarray, lb: np.ndarray, ub: np.ndarray,
        scale: float,
    ) -> None:
        """Write the variables, rows and objective straight into the model proto (fastest path)."""
        proto = model.proto
        proto.name = arrays.name
        variables = proto.variables
        for lo, hi in zip(lb.astype(np.int64).tolist(), ub.astype(np.int64).tolist()):
            variables.add().domain.extend((lo, hi))
        A = arrays.A
        indptr = A.indptr.tolist()
        cols = A.indices.tolist()
        vals = coefs.astype(np.int64).tolist()
        lo_side, hi_side = _row_sides(arrays.row_lb, arrays.row_ub, scale)
        constraints = proto.constraints
        for i in range(arrays.n_rows):
            a, b = indptr[i], indptr[i + 1]
            linear = constraints.add().linear
            linear.vars.extend(cols[a:b])
            linear.coeffs.extend(vals[a:b])
            linear.domain.extend((lo_side[i], hi_side[i]))
        nz = np.flatnonzero(obj)
        if nz.size:
            objective = proto.objective
            objective.vars.extend(nz.tolist())
            if arrays.sense is Sense.MAXIMIZE:
                objective.coeffs.extend((-obj[nz]).astype(np.int64).tolist())
                objective.scaling_factor = -1.0
            else:
                objective.coeffs.extend(obj[nz].astype(np.int64).tolist())

    # ------------------------------------------------------------------- solving
    def _run(self, native: _Native, arrays: ModelArrays, params: SolveParams) -> RawAnswer:
        if arrays.n_vars == 0:
            return empty_model_answer(arrays)
        if native.infeasible_var is not None:
            return RawAnswer(
                Status.INFEASIBLE,
                message=f"integer variable {native.infeasible_var!r} has no integer value within its bounds",
            )
        answer, objective = self._solve_once(native, arrays, params)
        if native.stand_in is None or not answer.status.has_solution:
            if answer.status is Status.INFEASIBLE and native.stand_in is not None:
                return RawAnswer(
                    Status.INFEASIBLE,
                    message=f"infeasible with the stand-in bounds +-{native.stand_in} that CP-SAT uses for "
                    "infinite variable bounds",
                )
            return answer
        values = answer.values
        assert values is not None
        at_stand_in = native.infinite & (np.abs(values) >= native.stand_in)
        if not at_stand_in.any():
            return answer
        wider = self._build(arrays, params, stand_in=2 * native.stand_in)
        again, objective2 = self._solve_once(wider, arrays, params)
        maximize = arrays.sense is Sense.MAXIMIZE
        if again.status.has_solution and objective is not None and objective2 is not None and (
            objective2 > objective + 1e-9 if maximize else objective2 < objective - 1e-9
        ):
            j = int(np.flatnonzero(at_stand_in)[0])
            return RawAnswer(
                Status.UNBOUNDED,
                message=f"variable {arrays.var_names[j]!r} sits on the stand-in bound +-{native.stand_in} used for "
                "its infinite bound, and the objective improves when the stand-in doubles: unbounded",
            )
        return answer

    def _solve_once(self, native: _Native, arrays: ModelArrays, params: SolveParams) -> tuple[RawAnswer, float | None]:
        from ortools.sat.python import cp_model

        solver = cp_model.CpSolver()
        p = solver.parameters
        if params.time_limit_s is not None:
            p.max_time_in_seconds = float(params.time_limit_s)
        if params.threads is not None:
            p.num_workers = int(params.threads)
        p.random_seed = int(params.seed)
        if params.mip_gap > 0:
            p.relative_gap_limit = float(params.mip_gap)
        p.log_search_progress = bool(params.verbose)
        set_options(self.name, dict(params.options), lambda n, v: setattr(p, n, v), _OPTIONS_DOC)
        status = solver.solve(native.model)
        name = solver.status_name(status)
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            values = clean_values(solver.response_proto.solution, arrays)
            # recompute in the model's own (unscaled) units: exact, since the values are integers
            objective = float(arrays.c @ values + arrays.obj_constant)
            has_objective = bool(np.any(arrays.c))
            bound = (
                float(solver.best_objective_bound) / native.scale + arrays.obj_constant
                if has_objective else objective
            )
            limit = _limit_name(params)
            answer = finish_with_solution(
                solver_optimal=status == cp_model.OPTIMAL,
                objective=objective,
                bound=bound,
                values=values,
                params=params,
                arrays=arrays,
                limit=limit,
            )
            return answer, objective
        if status == cp_model.INFEASIBLE:
            return RawAnswer(Status.INFEASIBLE), None
        if status == cp_model.UNKNOWN:
            return no_solution_answer(_limit_name(params), "CP-SAT"), None
        detail = native.model.validate() if status == cp_model.MODEL_INVALID else ""
        return RawAnswer(Status.ERROR, message=f"CP-SAT ended with status {name}. {detail}".strip()), None


def _limit_name(params: SolveParams) -> str:
    """How to name what stopped CP-SAT before a proof, from the limits that were set."""
    names = []
    if params.time_limit_s is not None:
        names.append("the time limit")
    if "max_deterministic_time" in params.options:
        names.append("the deterministic time limit (max_deterministic_time)")
    if "max_number_of_conflicts" in params.options:
        names.append("the conflict limit (max_number_of_conflicts)")
    return " or ".join(names) if names else "a CP-SAT limit"
