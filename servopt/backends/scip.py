"""SCIP through OR-Tools' ``model_builder_helper`` (the C++ core of ``ortools.linear_solver.python``).

Of the ways OR-Tools reaches SCIP (``pywraplp``, MathOpt, ``model_builder``), this one is the fastest to build:
``fill_model_from_sparse_data`` takes the CSR matrix and the bound vectors in one call, where ``pywraplp`` and
MathOpt need one Python call per variable and per coefficient. It avoids ``model_builder``'s pandas layer too.

OR-Tools maps SCIP's "infeasible or unbounded" to *infeasible*; servopt therefore checks an infeasible answer
with a zero objective whenever some variable is unbounded (see ``servopt.backends._common.settle_unbounded``).

SCIP runs single-threaded here: ``threads`` is accepted and ignored. Native options are SCIP parameter names,
e.g. ``{"presolving/maxrounds": 0}``; see https://www.scipopt.org/doc/html/PARAMETERS.php.

Examples
--------
>>> from servopt.model import Model
>>> from servopt.result import SolveParams
>>> m = Model("toy")
>>> x = m.add_var("x", kind="integer", ub=3)
>>> m.maximize(2 * x)
>>> ScipBackend().solve(m.arrays(), SolveParams()).objective
6.0
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from servopt.backends._common import (
    clean_values,
    empty_model_answer,
    finish_with_solution,
    has_infinite_bounds,
    no_solution_answer,
    settle_unbounded,
)
from servopt.backends.base import Backend, Capabilities, RawAnswer
from servopt.exceptions import SolverError, ValidationError
from servopt.model import ModelArrays, Sense
from servopt.result import SolveParams, Status

__all__ = ["ScipBackend"]

_OPTIONS_DOC = "https://www.scipopt.org/doc/html/PARAMETERS.php"


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str) and len(value) != 1:
        return f'"{value}"'
    return str(value)


class ScipBackend(Backend):
    """SCIP (Apache-2.0) as bundled with OR-Tools: LP and MILP."""

    name: ClassVar[str] = "scip"
    distribution: ClassVar[str] = "ortools"
    module: ClassVar[str] = "ortools"
    capabilities: ClassVar[Capabilities] = Capabilities(continuous=True, integer=True, fractional=True)

    def check_options(self, params: SolveParams) -> None:
        for name in params.options:
            if not isinstance(name, str) or "/" not in name or "=" in name or "\n" in name:
                raise ValidationError(
                    f"backend 'scip': option {name!r} is not a SCIP parameter name (they look like "
                    f"'limits/nodes'); see {_OPTIONS_DOC}"
                )

    def _build(self, arrays: ModelArrays, params: SolveParams) -> Any:
        import scipy.sparse as sp
        from ortools.linear_solver.python import model_builder_helper as mbh

        model = mbh.ModelBuilderHelper()
        model.set_name(arrays.name)
        if arrays.n_vars == 0:
            return model
        A = arrays.A if isinstance(arrays.A, sp.csr_matrix) else sp.csr_matrix(arrays.A)
        model.fill_model_from_sparse_data(
            np.asarray(arrays.lb, dtype=np.float64),
            np.asarray(arrays.ub, dtype=np.float64),
            np.asarray(arrays.c, dtype=np.float64),
            np.asarray(arrays.row_lb, dtype=np.float64),
            np.asarray(arrays.row_ub, dtype=np.float64),
            A.astype(np.float64),
        )
        for j in np.flatnonzero(arrays.integrality).tolist():
            model.set_var_integrality(j, True)
        model.set_maximize(arrays.sense is Sense.MAXIMIZE)
        model.set_objective_offset(float(arrays.obj_constant))
        return model

    def _run(self, native: Any, arrays: ModelArrays, params: SolveParams) -> RawAnswer:
        from ortools.linear_solver.python import model_builder_helper as mbh

        if arrays.n_vars == 0:
            return empty_model_answer(arrays)
        solver = mbh.ModelSolverHelper("scip")
        if not solver.solver_is_supported():
            raise SolverError("this OR-Tools build has no SCIP; reinstall ortools or choose backend 'highs'")
        if params.time_limit_s is not None:
            solver.set_time_limit_in_seconds(float(params.time_limit_s))
        settings = {
            "limits/gap": params.mip_gap,
            "randomization/randomseedshift": int(params.seed),
            **dict(params.options),
        }
        solver.set_solver_specific_parameters(
            "\n".join(f"{k} = {_format_value(v)}" for k, v in settings.items())
        )
        solver.enable_output(bool(params.verbose))
        solver.solve(native)
        status = solver.status()
        S = mbh.SolveStatus
        if status == S.INVALID_SOLVER_PARAMETERS:
            raise ValidationError(
                f"backend 'scip' rejected the options {dict(params.options)!r}: {solver.status_string()}; "
                f"see {_OPTIONS_DOC}"
            )
        limit = "the time limit" if params.time_limit_s is not None else "a SCIP limit"
        if status in (S.OPTIMAL, S.FEASIBLE) and solver.has_solution():
            return finish_with_solution(
                solver_optimal=status == S.OPTIMAL,
                objective=float(solver.objective_value()),
                bound=float(solver.best_objective_bound()) if arrays.is_mip else None,
                values=clean_values(solver.variable_values(), arrays),
                params=params,
                arrays=arrays,
                limit=limit,
            )
        if status == S.INFEASIBLE:
            if has_infinite_bounds(arrays) and np.any(arrays.c):
                return settle_unbounded(self, arrays, params, "infeasible (SCIP may mean infeasible or unbounded)")
            return RawAnswer(Status.INFEASIBLE)
        if status == S.UNBOUNDED:
            return settle_unbounded(self, arrays, params, "unbounded")
        if status in (S.NOT_SOLVED, S.FEASIBLE):
            return no_solution_answer(limit, "SCIP")
        detail = solver.status_string()
        return RawAnswer(Status.ERROR, message=f"SCIP ended with status {status.name}{': ' + detail if detail else ''}")
