"""HiGHS through ``highspy``: the whole model is passed in one call from the CSR arrays.

``_build`` hands the sparse matrix, bounds, costs and integrality to ``Highs.passModel`` as numpy arrays (no
per-variable Python calls), which is what keeps servopt's overhead over hand-written highspy code small.

The low-level ``highspy._core._Highs`` class is used when present: unlike ``highspy.Highs`` it does not print
HiGHS's banner when it is created, so a solve is silent unless ``verbose=True``.

Native options (``SolveParams.options``) are HiGHS option names, e.g. ``{"presolve": "off"}``; see
https://ergo-code.github.io/HiGHS/stable/options/definitions/.

Examples
--------
>>> from servopt.model import Model
>>> from servopt.result import SolveParams
>>> m = Model("toy")
>>> x = m.add_var("x", kind="integer", ub=3)
>>> m.maximize(2 * x)
>>> HighsBackend().solve(m.arrays(), SolveParams()).objective
6.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from servopt.backends._common import (
    clean_values,
    empty_model_answer,
    finish_with_solution,
    no_solution_answer,
    set_options,
    settle_unbounded,
    unknown_options_error,
)
from servopt.backends.base import Backend, Capabilities, RawAnswer
from servopt.model import ModelArrays, Sense
from servopt.result import SolveParams, Status

__all__ = ["HighsBackend"]

_OPTIONS_DOC = "https://ergo-code.github.io/HiGHS/stable/options/definitions/"

#: HiGHS model statuses that mean "a limit stopped the solve" -> human wording
_LIMITS = {
    "kTimeLimit": "the time limit",
    "kIterationLimit": "the iteration limit",
    "kSolutionLimit": "a MIP work limit (mip_max_nodes, mip_max_leaves or mip_max_improving_sols)",
    "kInterrupt": "an interrupt",
    "kHighsInterrupt": "an interrupt",
    "kObjectiveBound": "the objective bound",
    "kObjectiveTarget": "the objective target",
    "kMemoryLimit": "the memory limit",
}

_SOLUTION_FEASIBLE = 2  # HiGHS kSolutionStatusFeasible


def _new_highs() -> Any:
    """A fresh HiGHS instance that prints nothing on creation."""
    try:
        from highspy._core import _Highs
    except ImportError:  # pragma: no cover - older or newer highspy layouts
        from highspy import Highs as _Highs
    return _Highs()


@dataclass
class _Native:
    highs: Any


class HighsBackend(Backend):
    """HiGHS (MIT licence): LP and MILP, continuous and integer variables."""

    name: ClassVar[str] = "highs"
    distribution: ClassVar[str] = "highspy"
    module: ClassVar[str] = "highspy"
    capabilities: ClassVar[Capabilities] = Capabilities(continuous=True, integer=True, fractional=True)

    def check_options(self, params: SolveParams) -> None:
        if not params.options:
            return
        h = _new_highs()
        h.setOptionValue("output_flag", False)
        unknown = [name for name in params.options if _option_status(h, name) is False]
        if unknown:
            raise unknown_options_error(self.name, unknown, _OPTIONS_DOC)

    def _build(self, arrays: ModelArrays, params: SolveParams) -> _Native:
        from highspy._core import HighsStatus

        h = _new_highs()
        h.setOptionValue("output_flag", bool(params.verbose))
        if arrays.n_vars == 0:
            return _Native(h)
        A = arrays.A
        sense = -1 if arrays.sense is Sense.MAXIMIZE else 1
        common = (
            arrays.n_vars,
            arrays.n_rows,
            int(A.nnz),
            2,  # MatrixFormat.kRowwise
            sense,
            float(arrays.obj_constant),
            np.ascontiguousarray(arrays.c, dtype=np.float64),
            np.ascontiguousarray(arrays.lb, dtype=np.float64),
            np.ascontiguousarray(arrays.ub, dtype=np.float64),
            np.ascontiguousarray(arrays.row_lb, dtype=np.float64),
            np.ascontiguousarray(arrays.row_ub, dtype=np.float64),
            np.ascontiguousarray(A.indptr, dtype=np.int32),
            np.ascontiguousarray(A.indices, dtype=np.int32),
            np.ascontiguousarray(A.data, dtype=np.float64),
        )
        # integrality 0 = continuous, 1 = integer; an all-zero vector is solved as an LP
        status = h.passModel(*common, arrays.integrality.astype(np.int32))
        if status == HighsStatus.kError:
            from servopt.exceptions import SolverError

            raise SolverError(f"HiGHS rejected model {arrays.name!r} in passModel (status {status.name})")
        return _Native(h)

    def _run(self, native: _Native, arrays: ModelArrays, params: SolveParams) -> RawAnswer:
        if arrays.n_vars == 0:
            return empty_model_answer(arrays)
        h = native.highs
        self._apply_params(h, params)
        h.run()
        status = h.getModelStatus().name
        info = h.getInfo()
        has_solution = int(info.primal_solution_status) == _SOLUTION_FEASIBLE
        if status == "kOptimal":
            return finish_with_solution(
                solver_optimal=True,
                objective=float(info.objective_function_value),
                bound=float(info.mip_dual_bound) if arrays.is_mip else None,
                values=clean_values(h.getSolution().col_value, arrays),
                params=params,
                arrays=arrays,
            )
        if status == "kInfeasible":
            return RawAnswer(Status.INFEASIBLE)
        if status in ("kUnbounded", "kUnboundedOrInfeasible"):
            claim = "unbounded" if status == "kUnbounded" else "infeasible or unbounded"
            return settle_unbounded(self, arrays, params, claim)
        if status in _LIMITS:
            if not has_solution:
                return no_solution_answer(_LIMITS[status], "HiGHS")
            return finish_with_solution(
                solver_optimal=False,
                objective=float(info.objective_function_value),
                bound=float(info.mip_dual_bound) if arrays.is_mip else None,
                values=clean_values(h.getSolution().col_value, arrays),
                params=params,
                arrays=arrays,
                limit=_LIMITS[status],
            )
        return RawAnswer(Status.ERROR, message=f"HiGHS ended with model status {status}")

    def _apply_params(self, h: Any, params: SolveParams) -> None:
        if params.threads is not None:
            # HiGHS keeps one global thread pool; it must be reset to change its size
            type(h).resetGlobalScheduler(True)
            h.setOptionValue("threads", int(params.threads))
        if params.time_limit_s is not None:
            h.setOptionValue("time_limit", float(params.time_limit_s))
        h.setOptionValue("mip_rel_gap", float(params.mip_gap))
        h.setOptionValue("random_seed", int(params.seed))

        def setter(name: str, value: Any) -> None:
            from highspy._core import HighsStatus

            if h.setOptionValue(name, value) == HighsStatus.kError:
                raise ValueError("HiGHS refused the value")

        set_options(self.name, dict(params.options), setter, _OPTIONS_DOC)


def _option_status(h: Any, name: str) -> bool:
    """Whether HiGHS knows an option called ``name``."""
    from highspy._core import HighsStatus

    status, _ = h.getOptionType(name)
    return status != HighsStatus.kError
