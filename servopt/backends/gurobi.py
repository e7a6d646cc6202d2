"""Gurobi through ``gurobipy``'s matrix API (``addMVar`` / ``addMConstr``).

Each solve opens its own quiet environment (``OutputFlag=0`` set before the environment starts, so the licence
banner is not printed) and disposes of it afterwards; the first one in a process pays the licence check (about
70 ms), later ones take well under a millisecond.

The pip wheel's size-limited licence allows 2,000 variables and 2,000 linear constraints. A larger model makes
Gurobi fail with error 10010; servopt turns that into :class:`servopt.exceptions.LicenseLimitError` naming the
limit, the model's size and the backends to use instead.

Ranged rows (``lb < a x < ub``, both finite) become two Gurobi rows. Native options are Gurobi parameter names,
e.g. ``{"Presolve": 2}``; see https://docs.gurobi.com/projects/optimizer/en/current/reference/parameters.html.

Examples
--------
>>> from servopt.model import Model
>>> from servopt.result import SolveParams
>>> m = Model("toy")
>>> x = m.add_var("x", kind="integer", ub=3)
>>> m.maximize(2 * x)
>>> GurobiBackend().solve(m.arrays(), SolveParams()).objective
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
from servopt.exceptions import BackendUnavailableError, LicenseLimitError
from servopt.model import ModelArrays, Sense, VarKind
from servopt.result import SolveParams, Status

__all__ = ["GurobiBackend", "license_limit_message"]

_OPTIONS_DOC = "https://docs.gurobi.com/projects/optimizer/en/current/reference/parameters.html"
_SIZE_LIMITED = 10010  # GRB_ERROR_SIZE_LIMIT_EXCEEDED

#: Gurobi optimisation status code -> (servopt meaning, wording of the limit)
_LIMITS = {
    7: "the iteration limit",
    8: "the node limit",
    9: "the time limit",
    10: "the solution limit",
    11: "an interrupt",
    15: "the objective limit",
    16: "the work limit",
    17: "the memory limit",
}


def license_limit_message(n_vars: int, n_rows: int) -> str:
    """The message of the :class:`LicenseLimitError` for a model of this size."""
    return (
        "Gurobi's size-limited pip licence allows at most 2,000 variables and 2,000 linear constraints "
        f"(200 variables with quadratic terms); this model has {n_vars:,} variables and {n_rows:,} constraints; "
        "use backend 'highs' or 'cpsat' or install a full licence"
    )


@dataclass
class _Native:
    env: Any
    model: Any
    x: Any


class GurobiBackend(Backend):
    """Gurobi (commercial; the pip wheel carries a size-limited licence)."""

    name: ClassVar[str] = "gurobi"
    distribution: ClassVar[str] = "gurobipy"
    module: ClassVar[str] = "gurobipy"
    capabilities: ClassVar[Capabilities] = Capabilities(continuous=True, integer=True, fractional=True)

    @classmethod
    def extra(cls) -> str:
        return "gurobi"

    def check_options(self, params: SolveParams) -> None:
        if not params.options:
            return
        from gurobipy import GRB

        known = {n.lower() for n in dir(GRB.Param) if not n.startswith("_")}
        unknown = [n for n in params.options if str(n).lower() not in known]
        if unknown:
            raise unknown_options_error(self.name, unknown, _OPTIONS_DOC)

    def _build(self, arrays: ModelArrays, params: SolveParams) -> _Native:
        import gurobipy as gp
        from gurobipy import GRB

        try:
            env = gp.Env(empty=True)
            env.setParam("OutputFlag", 1 if params.verbose else 0)
            env.start()
        except gp.GurobiError as exc:
            raise BackendUnavailableError(
                f"Gurobi could not start ({exc}); check the licence or choose backend 'highs'"
            ) from None
        model = gp.Model(arrays.name, env=env)
        n = arrays.n_vars
        vtype = np.full(n, GRB.CONTINUOUS)
        vtype[arrays.integrality] = GRB.INTEGER
        binary = np.fromiter((k is VarKind.BINARY for k in arrays.kinds), dtype=bool, count=n)
        vtype[binary] = GRB.BINARY
        x = model.addMVar(n, lb=arrays.lb, ub=arrays.ub, obj=arrays.c, vtype=vtype)
        lo, hi = arrays.row_lb, arrays.row_ub
        eq = lo == hi
        upper = np.isfinite(hi) & ~eq
        lower = np.isfinite(lo) & ~eq
        A = arrays.A
        for mask, sense, rhs in ((eq, GRB.EQUAL, hi), (upper, GRB.LESS_EQUAL, hi), (lower, GRB.GREATER_EQUAL, lo)):
            rows = np.flatnonzero(mask)
            if rows.size:
                model.addMConstr(A[rows], x, sense, rhs[rows])
        model.ModelSense = GRB.MAXIMIZE if arrays.sense is Sense.MAXIMIZE else GRB.MINIMIZE
        model.ObjCon = float(arrays.obj_constant)
        return _Native(env, model, x)

    def _run(self, native: _Native, arrays: ModelArrays, params: SolveParams) -> RawAnswer:
        import gurobipy as gp

        try:
            if arrays.n_vars == 0:
                return empty_model_answer(arrays)
            return self._optimize(native, arrays, params)
        except gp.GurobiError as exc:
            if exc.errno == _SIZE_LIMITED:
                raise LicenseLimitError(license_limit_message(arrays.n_vars, arrays.n_rows)) from None
            return RawAnswer(Status.ERROR, message=f"Gurobi error {exc.errno}: {exc}")
        finally:
            native.model.dispose()
            native.env.dispose()

    def _optimize(self, native: _Native, arrays: ModelArrays, params: SolveParams) -> RawAnswer:
        from gurobipy import GRB

        m = native.model
        if params.time_limit_s is not None:
            m.Params.TimeLimit = float(params.time_limit_s)
        m.Params.MIPGap = float(params.mip_gap)
        m.Params.Seed = int(params.seed)
        # reduced costs decided to 1e-9 (Gurobi's finest): with the default 1e-6 it returned pipelines up to
        # 2.7e-7 of the objective below the optimum as optimal, even with the objective scaled (base.objective_factor)
        m.Params.OptimalityTol = 1e-9
        if params.threads is not None:
            m.Params.Threads = int(params.threads)
        set_options(self.name, dict(params.options), m.setParam, _OPTIONS_DOC)
        m.optimize()
        status = m.Status
        if status in (GRB.OPTIMAL, GRB.SUBOPTIMAL) and m.SolCount > 0:
            return finish_with_solution(
                solver_optimal=status == GRB.OPTIMAL,
                objective=float(m.ObjVal),
                bound=float(m.ObjBound) if m.IsMIP else None,
                values=clean_values(native.x.X, arrays),
                params=params,
                arrays=arrays,
                limit="numerical trouble (SUBOPTIMAL)",
            )
        if status == GRB.INFEASIBLE:
            return RawAnswer(Status.INFEASIBLE)
        if status in (GRB.UNBOUNDED, GRB.INF_OR_UNBD):
            # Gurobi's UNBOUNDED only proves an improving ray, not feasibility
            claim = "unbounded" if status == GRB.UNBOUNDED else "infeasible or unbounded"
            return settle_unbounded(self, arrays, params, claim)
        if status in _LIMITS:
            if m.SolCount == 0:
                return no_solution_answer(_LIMITS[status], "Gurobi")
            return finish_with_solution(
                solver_optimal=False,
                objective=float(m.ObjVal),
                bound=float(m.ObjBound) if m.IsMIP else None,
                values=clean_values(native.x.X, arrays),
                params=params,
                arrays=arrays,
                limit=_LIMITS[status],
            )
        return RawAnswer(Status.ERROR, message=f"Gurobi ended with status code {status}")
