"""cvxpy with HiGHS as its MILP solver.

cvxpy (1.6 and later) ships a HiGHS interface that accepts integer variables (``HIGHS.MIP_CAPABLE``), so the
model keeps its meaning: one vector variable with integer indices and bounds, and up to three matrix constraints
(equalities, upper sides, lower sides). The objective constant is added back by servopt.

cvxpy canonicalises the problem before HiGHS sees it, so this backend is slower than ``highs``; it exists for
users whose stack is built on cvxpy and as an independent route to the same answers.

Two cvxpy facts servopt compensates for:

* the first ``highspy.Highs()`` of a process prints HiGHS's banner (cvxpy creates one per solve); servopt creates
  that first instance itself with the standard output silenced, so solves stay quiet unless ``verbose=True``;
* cvxpy maps HiGHS's "infeasible or unbounded" to ``infeasible_or_unbounded``; servopt settles it with a zero
  objective like every backend.

Native options are HiGHS option names (cvxpy passes them to HiGHS), e.g. ``{"presolve": "off"}``.

Examples
--------
>>> from servopt.model import Model
>>> from servopt.result import SolveParams
>>> m = Model("toy")
>>> x = m.add_var("x", kind="integer", ub=3)
>>> m.maximize(2 * x)
>>> CvxpyBackend().solve(m.arrays(), SolveParams()).objective
6.0
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from servopt.backends._common import (
    clean_values,
    empty_model_answer,
    finish_with_solution,
    no_solution_answer,
    settle_unbounded,
    unknown_options_error,
)
from servopt.backends.base import Backend, Capabilities, RawAnswer
from servopt.exceptions import ValidationError
from servopt.model import ModelArrays, Sense
from servopt.result import SolveParams, Status

__all__ = ["CvxpyBackend"]

_OPTIONS_DOC = "https://ergo-code.github.io/HiGHS/stable/options/definitions/"
_BANNER_DONE = False


def _silence_highs_banner() -> None:
    """Create the process's first ``highspy.Highs`` with file descriptor 1 pointed at /dev/null."""
    global _BANNER_DONE
    if _BANNER_DONE:
        return
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _BANNER_DONE = True


@dataclass
class _Native:
    problem: Any
    x: Any


class CvxpyBackend(Backend):
    """cvxpy (Apache-2.0) calling HiGHS: LP and MILP."""

    name: ClassVar[str] = "cvxpy"
    distribution: ClassVar[str] = "cvxpy"
    module: ClassVar[str] = "cvxpy"
    capabilities: ClassVar[Capabilities] = Capabilities(continuous=True, integer=True, fractional=True)

    @classmethod
    def extra(cls) -> str:
        return "cvxpy"

    def check_options(self, params: SolveParams) -> None:
        if not params.options:
            return
        from servopt.backends.highs import _new_highs, _option_status

        h = _new_highs()
        h.setOptionValue("output_flag", False)
        unknown = [n for n in params.options if not _option_status(h, n)]
        if unknown:
            raise unknown_options_error(self.name, unknown, _OPTIONS_DOC + " (cvxpy passes them to HiGHS)")

    def _build(self, arrays: ModelArrays, params: SolveParams) -> _Native | None:
        import cvxpy as cp

        n = arrays.n_vars
        if n == 0:
            return None
        ints = np.flatnonzero(arrays.integrality)
        # cvxpy takes integer positions as a numpy-style multi-index: one index array per dimension
        integer: Any = (ints.tolist(),) if ints.size else False
        x = cp.Variable(n, name="x", integer=integer, bounds=[arrays.lb.copy(), arrays.ub.copy()])
        A = arrays.A
        lo, hi = arrays.row_lb, arrays.row_ub
        eq = lo == hi
        upper = np.isfinite(hi) & ~eq
        lower = np.isfinite(lo) & ~eq
        constraints = []
        for mask, kind in ((eq, "eq"), (upper, "le"), (lower, "ge")):
            rows = np.flatnonzero(mask)
            if not rows.size:
                continue
            sub = A[rows]
            if kind == "eq":
                constraints.append(sub @ x == hi[rows])
            elif kind == "le":
                constraints.append(sub @ x <= hi[rows])
            else:
                constraints.append(sub @ x >= lo[rows])
        expr = arrays.c @ x
        objective = cp.Maximize(expr) if arrays.sense is Sense.MAXIMIZE else cp.Minimize(expr)
        return _Native(cp.Problem(objective, constraints), x)

    def _run(self, native: _Native | None, arrays: ModelArrays, params: SolveParams) -> RawAnswer:
        import cvxpy as cp
        from cvxpy import settings as s

        if native is None:
            return empty_model_answer(arrays)
        options: dict[str, Any] = {"mip_rel_gap": float(params.mip_gap), "random_seed": int(params.seed)}
        if params.time_limit_s is not None:
            options["time_limit"] = float(params.time_limit_s)
        if params.threads is not None:
            import highspy

            highspy.Highs.resetGlobalScheduler(True)  # HiGHS's thread pool is global
            options["threads"] = int(params.threads)
        options.update(params.options)
        if not params.verbose:
            _silence_highs_banner()
        try:
            with warnings.catch_warnings():
                # cvxpy warns on "infeasible or unbounded"; servopt settles that case itself
                warnings.simplefilter("ignore", UserWarning)
                native.problem.solve(solver=cp.HIGHS, verbose=bool(params.verbose), **options)
        except ValueError as exc:
            if "option" in str(exc):
                raise ValidationError(f"backend 'cvxpy': {exc}; see {_OPTIONS_DOC}") from None
            return RawAnswer(Status.ERROR, message=f"cvxpy: {exc}")
        except cp.error.SolverError as exc:
            return RawAnswer(Status.ERROR, message=f"cvxpy/HiGHS failed: {exc}")
        status = native.problem.status
        info = native.problem.solver_stats.extra_stats  # HiGHS's HighsInfo
        maximize = arrays.sense is Sense.MAXIMIZE
        sign = -1.0 if maximize else 1.0  # cvxpy hands HiGHS min(-c x) for a maximisation

        def bound() -> float | None:
            if not arrays.is_mip or info is None:
                return None
            return sign * float(info.mip_dual_bound) + arrays.obj_constant

        has_solution = info is not None and int(info.primal_solution_status) == 2
        if status in (s.OPTIMAL, s.OPTIMAL_INACCURATE) and native.x.value is not None:
            values = clean_values(native.x.value, arrays)
            return finish_with_solution(
                solver_optimal=status == s.OPTIMAL,
                objective=float(native.problem.value) + arrays.obj_constant,
                bound=bound(),
                values=values,
                params=params,
                arrays=arrays,
                limit="an inaccurate solve (OPTIMAL_INACCURATE)",
            )
        if status == s.USER_LIMIT:
            limit = "the time limit" if params.time_limit_s is not None else "a HiGHS limit"
            if not has_solution or native.x.value is None:
                return no_solution_answer(limit, "cvxpy/HiGHS")
            return finish_with_solution(
                solver_optimal=False,
                objective=float(native.problem.value) + arrays.obj_constant,
                bound=bound(),
                values=clean_values(native.x.value, arrays),
                params=params,
                arrays=arrays,
                limit=limit,
            )
        if status in (s.INFEASIBLE, s.INFEASIBLE_INACCURATE):
            return RawAnswer(Status.INFEASIBLE)
        if status in (s.UNBOUNDED, s.UNBOUNDED_INACCURATE, getattr(s, "INFEASIBLE_OR_UNBOUNDED", "-")):
            return settle_unbounded(self, arrays, params, str(status))
        return RawAnswer(Status.ERROR, message=f"cvxpy ended with status {status!r}")
