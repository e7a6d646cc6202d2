"""``servopt.solve``: one entry point for neutral models and for serving problems.

* ``solve(model)`` solves a :class:`servopt.model.Model` and returns a :class:`servopt.result.Result`.
* ``solve(problem)`` builds a formulation's model, solves it, decodes the plan and returns a :class:`Solution`
  whose ``to_dict()`` is the JSON contract of ``servopt solve --json``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from servopt.exceptions import CapabilityError, ServoptError, ValidationError
from servopt.model import Model, ModelArrays
from servopt.result import Result, SolveParams, Status

__all__ = ["solve", "Solution", "Problem", "Plan", "choose_backend", "model_class"]


@runtime_checkable
class Plan(Protocol):
    """A decoded decision. ``objective`` is the formulation's own objective value for this plan."""

    objective: float

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class Problem(Protocol):
    """A validated serving problem (``servopt.MinGPUs``, ``servopt.Pipeline``, ...).

    ``build()`` returns the neutral model and a ``decode(result) -> Plan`` function. An optional
    ``refine(plan, result, solve_model) -> (plan, result)`` runs after an optimal solve (a lexicographic second
    solve with the same backend and parameters, e.g. ``prefer_stable``). A problem may also offer
    exact special-purpose algorithms by name (``algorithms``; e.g. dynamic programming) through
    ``solve_with(name, params) -> (Status, Plan | None, message)``.
    """

    kind: ClassVar[str]

    def build(self) -> tuple[Model, Callable[[Result], Plan]]: ...

    def explain_infeasible(self) -> str: ...


@dataclass(frozen=True)
class Solution:
    """The answer to a serving problem.

    ``solve_seconds`` is the time from the validated problem to the checked, decoded plan: building the model
    (or the exact algorithm's option arrays), solving, decoding, the exact check and any repair. It means the same
    in the API and in ``servopt solve --json``: first-time imports of the solver and of the libraries it needs
    (a cold interpreter) are excluded, so a CLI run reports what a warm API call takes. ``build_seconds`` is the
    part of ``solve_seconds`` spent building the MILP (formulation, arrays, the backend's native model); an exact
    algorithm (``dp``, ``greedy``) builds its own arrays inside its solve and reports 0.
    """

    problem: str
    status: Status
    objective: float | None
    backend: str
    solve_seconds: float
    plan: Plan | None
    message: str = ""
    result: Result | None = None
    build_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object printed by ``servopt solve --json`` (which adds ``parse_seconds`` before the times)."""
        return {
            "problem": self.problem,
            "status": self.status.value,
            "objective": self.objective,
            "backend": self.backend,
            "build_seconds": self.build_seconds,
            "solve_seconds": self.solve_seconds,
            "plan": self.plan.to_dict() if self.plan is not None else None,
        }


def model_class(arrays: ModelArrays) -> str:
    """The class ``auto`` chooses by: ``lp``, ``mixed``, ``integer`` or ``integer-general``.

    ``integer`` means every variable is integer, every bound is finite and every number is an integer, i.e. the
    model CP-SAT takes exactly as it is (no scaling, no stand-in bounds); other pure-integer models are
    ``integer-general``.
    """
    import numpy as np

    if not arrays.is_mip:
        return "lp"
    if arrays.has_continuous:
        return "mixed"
    finite = bool(np.isfinite(arrays.lb).all() and np.isfinite(arrays.ub).all())
    integral = all(
        bool(np.all(v == np.round(v)))
        for v in (arrays.A.data, arrays.c, arrays.lb, arrays.ub,
                  arrays.row_lb[np.isfinite(arrays.row_lb)], arrays.row_ub[np.isfinite(arrays.row_ub)])
    )
    return "integer" if finite and integral else "integer-general"


def choose_backend(arrays: ModelArrays) -> str:
    """The backend ``auto`` picks for a model (evidence: docs/solvers.md, benchmarks/bench_backends.py).

    The first installed backend of ``_AUTO_ORDER[model_class(arrays)]`` that can take the model wins.
    """
    from servopt.backends import available, check_capabilities

    installed = available()
    for name in _AUTO_ORDER[model_class(arrays)]:
        if name not in installed:
            continue
        try:
            check_capabilities(name, arrays, SolveParams())
        except (ValidationError, CapabilityError):
            continue
        return name
    raise ValidationError(
        f"no installed backend can solve model {arrays.name!r} (installed: {', '.join(installed) or 'none'}); "
        "install ortools (pip install ortools)"
    )


#: preference order of ``backend="auto"`` per model class, fastest first on benchmarks/bench_backends.py
#: (numbers in docs/solvers.md): HiGHS on LPs and mixed models, CP-SAT on pure-integer models with integer data,
#: SCIP on pure-integer models with fractional data. cvxpy (HiGHS behind a modelling layer) is never faster than
#: HiGHS itself; Gurobi comes last because taking its licence is never implicit.
_AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "lp": ("highs", "scip", "cvxpy", "gurobi"),
    "mixed": ("highs", "scip", "cvxpy", "gurobi"),
    "integer": ("cpsat", "scip", "highs", "cvxpy", "gurobi"),
    "integer-general": ("scip", "highs", "cvxpy", "gurobi"),
}


def _params(params: SolveParams | None, overrides: Mapping[str, Any]) -> SolveParams:
    if params is not None:
        if overrides:
            raise ValidationError(
                f"give either params= or keyword options ({', '.join(overrides)}), not both"
            )
        return params
    return SolveParams(**overrides)


def solve(
    target: Model | Problem,
    backend: str = "auto",
    *,
    params: SolveParams | None = None,
    **options: Any,
) -> Any:
    """Solve a neutral model or a serving problem.

    Parameters
    ----------
    target : Model or Problem
        What to solve.
    backend : str
        ``auto`` or a registered backend name (``servopt backends`` lists them); problems may also accept the
        names of their own exact algorithms (``Problem.algorithms``).
    params : SolveParams, optional
        All options at once; alternatively pass ``time_limit_s=``, ``mip_gap=``, ``threads=``, ``seed=``,
        ``scale=``, ``options=``, ``verbose=`` as keywords.

    Returns
    -------
    Result for a model, Solution for a problem.

    Examples
    --------
    >>> from servopt.model import Model
    >>> m = Model()
    >>> x = m.add_var("x", kind="integer", ub=3)
    >>> m.maximize(2 * x)
    >>> solve(m, "highs").objective
    6.0
    """
    unknown = set(options) - set(SolveParams.__dataclass_fields__)
    if unknown:
        raise ValidationError(
            f"unknown solve option(s) {', '.join(sorted(unknown))}; allowed: "
            f"{', '.join(SolveParams.__dataclass_fields__)}"
        )
    p = _params(params, options)
    if isinstance(target, Model):
        return _solve_model(target, backend, p)
    if hasattr(target, "build") and hasattr(target, "kind"):
        return _solve_problem(target, backend, p)
    raise ValidationError(f"solve() takes a servopt Model or a problem, got {type(target).__name__}")


def _solve_model(model: Model, backend: str, params: SolveParams, clock: _Clock | None = None) -> Result:
    from servopt.backends import REGISTRY, check_capabilities, get_backend

    clock = clock or _Clock()
    # Model.arrays builds a sparse matrix; choose_backend asks every backend class whether it is installed
    clock.preload(("scipy.sparse", *(target.split(":")[0] for target in REGISTRY.values())))
    t0 = time.perf_counter()
    arrays = model.arrays()
    name = choose_backend(arrays) if backend == "auto" else backend
    t_pre = time.perf_counter()
    clock.preload((get_backend(name).__module__, *_NATIVE.get(name, ())))
    t0 += time.perf_counter() - t_pre  # imports are no part of the build
    cls = get_backend(name)
    check_capabilities(name, arrays, params)
    result = cls().solve(arrays, params)
    # building the arrays belongs to the build time
    return Result(
        status=result.status,
        objective=result.objective,
        best_bound=result.best_bound,
        values=result.values,
        backend=result.backend,
        build_seconds=result.build_seconds + (time.perf_counter() - t0 - result.build_seconds - result.solve_seconds),
        solve_seconds=result.solve_seconds,
        message=result.message,
    )


#: the native packages each backend imports when it builds or runs (imported ahead, outside the timed part)
_NATIVE: dict[str, tuple[str, ...]] = {
    "cpsat": ("ortools.sat.python.cp_model",),
    "highs": ("highspy",),
    "scip": ("ortools.linear_solver.python.model_builder_helper",),
    "gurobi": ("gurobipy",),
    "cvxpy": ("cvxpy",),
}


class _Clock:
    """Seconds a solve spent on first-time imports (subtracted from ``solve_seconds``) and on building."""

    def __init__(self) -> None:
        self.imports = 0.0
        self.build = 0.0

    def preload(self, modules: tuple[str, ...]) -> None:
        """Import ``modules`` now (those already imported cost nothing); missing ones are left to fail later."""
        import importlib
        import sys

        t0 = time.perf_counter()
        for name in modules:
            if name in sys.modules:
                continue
            try:
                importlib.import_module(name)
            except ImportError:
                continue
        self.imports += time.perf_counter() - t0


def _solve_problem(problem: Any, backend: str, params: SolveParams) -> Solution:
    t0 = time.perf_counter()
    bounded = getattr(problem, "with_time_limit", None)
    if params.time_limit_s is not None and bounded is not None:
        problem = bounded(params.time_limit_s)  # the time limit also bounds work done before the solver (fleet)
    clock = _Clock()
    if backend == "auto":
        backend = getattr(problem, "default_backend", None) or "auto"
    precheck = getattr(problem, "precheck", None)
    reason = precheck() if precheck is not None else None
    if reason is not None:  # infeasible before any model is solved (e.g. a load beyond what the budget serves)
        if backend != "auto" and backend not in tuple(getattr(problem, "algorithms", ())):
            # a backend asked for by name must still exist and be able to take the model
            from servopt.backends import check_capabilities, get_backend

            get_backend(backend)
            check_capabilities(backend, problem.build()[0].arrays(), params)
        status, plan, result, used, message = Status.INFEASIBLE, None, None, backend, reason
    else:
        status, plan, result, used, message = _run_problem(problem, backend, params, clock)
        status, plan, result, used, message = _checked(problem, params, status, plan, result, used, message,
                                                       clock)
    if status is Status.INFEASIBLE:
        message = problem.explain_infeasible()
    elapsed = time.perf_counter() - t0 - clock.imports
    return Solution(
        problem=problem.kind,
        status=status,
        objective=float(plan.objective) if plan is not None else None,
        backend=used,
        solve_seconds=max(elapsed, 0.0),
        plan=plan,
        message=message,
        result=result,
        build_seconds=min(clock.build, max(elapsed, 0.0)),
    )


_Outcome = tuple[Status, Any, "Result | None", str, str]


def _run_problem(problem: Any, backend: str, params: SolveParams, clock: _Clock | None = None) -> _Outcome:
    """One solve of ``problem``: its own exact algorithm by name, or its MILP on a backend."""
    clock = clock or _Clock()
    if backend in tuple(getattr(problem, "algorithms", ())):
        status, plan, message = problem.solve_with(backend, params)
        return status, plan, None, backend, message
    t0 = time.perf_counter()
    model, decode = problem.build()
    clock.build += time.perf_counter() - t0
    result = _solve_model(model, backend, params, clock)
    clock.build += result.build_seconds
    used = result.backend
    plan = decode(result) if result.status.has_solution else None
    refine = getattr(problem, "refine", None)
    if refine is not None and plan is not None and result.status is Status.OPTIMAL:
        # optional second, lexicographic solve (e.g. prefer_stable: fewest changes among optimal plans)
        plan, result = refine(plan, result, lambda second: _solve_model(second, used, params, clock))
    return result.status, plan, result, used, result.message


#: native options that tighten a backend's feasibility tolerances (the first repair of a plan that fails the
#: exact check); CP-SAT decides integer rows exactly and needs none
TIGHT_TOLERANCES: dict[str, dict[str, Any]] = {
    "highs": {"mip_feasibility_tolerance": 1e-9, "primal_feasibility_tolerance": 1e-9},
    "cvxpy": {"mip_feasibility_tolerance": 1e-9, "primal_feasibility_tolerance": 1e-9},
    "scip": {"numerics/feastol": 1e-9},
    "gurobi": {"FeasibilityTol": 1e-9, "IntFeasTol": 1e-9},
}


def _checked(problem: Any, params: SolveParams, status: Status, plan: Any, result: Result | None, used: str,
             message: str, clock: _Clock | None = None) -> _Outcome:
    """Check ``plan`` exactly (``problem.verify``); repair or refuse a plan that breaks a constraint.

    A solver's feasibility tolerance can let a plan miss a row by a hair (SCIP: 395 images short of 1.2e9). Such a
    plan is never returned: it is re-solved with tightened tolerances on the same backend, then with the
    problem's exact fallbacks (``problem.exact_fallbacks()``: CP-SAT on exactly scaled integer data, or the
    problem's exact algorithm); the first plan that passes is returned, with a message saying what was done.
    When none passes the status is ``error`` and there is no plan.
    """
    verify = getattr(problem, "verify", None)
    if verify is None or plan is None:
        return status, plan, result, used, message
    broken = verify(plan)
    if not broken:
        return status, plan, result, used, message
    notes = [f"{used}'s plan failed the exact feasibility check ({broken[0]}"
             + (f"; {len(broken) - 1} more" if len(broken) > 1 else "") + ")"]
    attempts: list[tuple[str, SolveParams, str]] = []
    if used in TIGHT_TOLERANCES:
        tight = dataclasses.replace(params, options={**TIGHT_TOLERANCES[used], **dict(params.options)})
        attempts.append((used, tight, f"{used} with feasibility tolerances of 1e-9"))
    fallbacks = getattr(problem, "exact_fallbacks", None)
    for name, overrides in (fallbacks() if fallbacks is not None else []):
        opts = {**overrides, "options": {}} if name != used else overrides
        label = name + (f" (scale {overrides['scale']:g})" if overrides.get("scale") else "")
        attempts.append((name, dataclasses.replace(params, **opts), f"exactly with {label}"))
    for name, again, how in attempts:
        try:
            st, pl, res, u, msg = _run_problem(problem, name, again, clock)
        except ServoptError as exc:
            notes.append(f"re-solving {how} was not possible ({exc})")
            continue
        if pl is None:
            notes.append(f"re-solved {how}: {st.value}" + (f" ({msg})" if msg else ""))
            if st is Status.INFEASIBLE and name == "cpsat":
                return st, None, res, u, "; ".join(notes)
            continue
        still = verify(pl)
        if not still:
            notes.append(f"re-solved {how}: the plan passes the exact check")
            return st, pl, res, u, "; ".join(notes + ([msg] if msg else []))
        notes.append(f"re-solved {how}: still broken ({still[0]})")
    notes.append("no exactly feasible plan was found; try backend 'cpsat' or 'highs'")
    return Status.ERROR, None, result, used, "; ".join(notes)
