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

from servopt.exact import plain
from servopt.exceptions import CapabilityError, ServoptError, SolverError, ValidationError
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
    ``solve_with(name, params) -> (Status, Plan | None, message)``. Optional exact checks: ``verify(plan)``
    lists the constraints a plan breaks, ``exact_fallbacks()`` names the exact re-solves for a plan that breaks
    one (or a backend error), ``feasible_plan() -> (Plan, how) | None`` is a plan found without a solver, by
    which an infeasible claim is refused, and ``exact_optimum() -> (value, how) | None`` is the optimal objective
    computed exactly without a solver (an integer or a Fraction), against which an ``optimal`` claim is checked
    (the plan's ``exact_objective``, else its ``objective``, must equal it). ``reported(plan, result) -> Result``
    restates a solver's result (its bound and status) for the problem, with or without a plan.
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
    clock = clock or _Clock()
    clock.preload(("servopt.backends",))  # the registry: a first-time import, outside the timed part
    from servopt.backends import REGISTRY, check_capabilities, get_backend

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
    try:
        result = cls().solve(arrays, params)
    except SolverError as exc:  # the solver itself failed (not a decoder or an exact algorithm of servopt's)
        raise _BackendFailure(name, str(exc)) from exc
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
    _preload_family(problem)  # first-time imports of the kind's solve modules: no part of solve_seconds
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
        status, plan, result, used, message = _run_reported(problem, backend, params, clock)
        status, plan, result, used, message = _checked(problem, params, status, plan, result, used, message,
                                                       clock)
        status, plan, result, used, message = _certified(problem, params, status, plan, result, used, message,
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

#: problem families whose modules are imported (``_preload_family``)
_PRELOADED: set[str] = set()


def _preload_family(problem: Any) -> None:
    """Import every module of ``problem``'s family package (``servopt.formulations.<family>``) once, before the
    clock starts, with ``numpy.ma`` (``np.unique`` imports it on its first call): what a solve imported lazily
    inside ``solve_seconds`` (``pipeline.dp`` and its knapsack modules, ``variant_selection.dp``, ``gpu.milp`` and
    ``gpu.verify``) took 9-50 ms of a cold ``servopt solve`` against 0.3-0.5 ms warm. A family's modules import
    only numpy and servopt; one that fails to import is left to fail where it is used."""
    import importlib
    import pkgutil

    package = type(problem).__module__.rpartition(".")[0]
    if package in _PRELOADED or not package.startswith("servopt.formulations."):
        return
    _PRELOADED.add(package)
    names = ["numpy.ma"]
    try:
        names += [f"{package}.{info.name}" for info in pkgutil.iter_modules(importlib.import_module(package).__path__)]
    except (ImportError, AttributeError):
        pass
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            continue


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
    reported = getattr(problem, "reported", None)
    if reported is not None:
        # optional: what the solver's bound and status mean for the problem (a fleet's MILP over the columns
        # generated so far bounds only those columns, and its "infeasible" is no proof)
        result = reported(plan, result)
    return result.status, plan, result, used, result.message


#: native options that tighten a backend's feasibility tolerances (the last repair of a plan that fails the
#: exact check, after the problem's exact fallbacks); CP-SAT decides integer rows exactly and needs none
TIGHT_TOLERANCES: dict[str, dict[str, Any]] = {
    "highs": {"mip_feasibility_tolerance": 1e-9, "primal_feasibility_tolerance": 1e-9},
    "cvxpy": {"mip_feasibility_tolerance": 1e-9, "primal_feasibility_tolerance": 1e-9},
    "scip": {"numerics/feastol": 1e-9},
    "gurobi": {"FeasibilityTol": 1e-9, "IntFeasTol": 1e-9},
}

_Attempt = tuple[str, SolveParams, str]


class _BackendFailure(SolverError):
    """A ``SolverError`` raised by a backend's solver (not by servopt's decoders or exact algorithms, whose
    errors are bugs to report, never hidden behind a fallback plan); ``backend`` names the one that ran."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(message)
        self.backend = backend


def _run_reported(problem: Any, backend: str, params: SolveParams, clock: _Clock) -> _Outcome:
    """:func:`_run_problem`, with a solver's crash (``SolverError`` from the backend) as status ``error`` where an
    exact fallback can take over (HiGHS refuses matrix entries above 1e15 in ``passModel``: a ``min_gpus`` with
    latencies of 1e-9 ms has such image counts); without fallbacks the error is raised as before."""
    try:
        return _run_problem(problem, backend, params, clock)
    except _BackendFailure as exc:
        if getattr(problem, "verify", None) is None or not _exact_attempts(problem, params, exc.backend):
            raise  # nothing else could answer: the error stands as before
        return Status.ERROR, None, None, exc.backend, str(exc)


def _exact_attempts(problem: Any, params: SolveParams, used: str, *, skip_same: bool = True) -> list[_Attempt]:
    """The problem's exact fallbacks (``problem.exact_fallbacks()``) as re-solves, each with a label; with
    ``skip_same``, not the solve that just ran (``used`` with ``params``)."""
    fallbacks = getattr(problem, "exact_fallbacks", None)
    attempts = []
    for name, overrides in (fallbacks() if fallbacks is not None else []):
        opts = {**overrides, "options": {}} if name != used else overrides
        again = dataclasses.replace(params, **opts)
        if skip_same and (name, again) == (used, params):
            continue
        label = name + (f" (scale {plain(overrides['scale'])})" if overrides.get("scale") else "")
        attempts.append((name, again, f"exactly with {label}"))
    return attempts


def _checked(problem: Any, params: SolveParams, status: Status, plan: Any, result: Result | None, used: str,
             message: str, clock: _Clock | None = None) -> _Outcome:
    """Check ``plan`` exactly (``problem.verify``); repair or refuse a plan that breaks a constraint.

    A solver's feasibility tolerance can let a plan miss a row by a hair (SCIP: 395 images short of 1.2e9). Such a
    plan is never returned: it is re-solved with the problem's exact fallbacks (``problem.exact_fallbacks()``:
    CP-SAT on exactly scaled integer data, or the problem's exact algorithm), then, where none gives a plan, on
    the same backend with tightened tolerances; the first plan that passes is returned, with a message saying
    what was done. The exact fallbacks come first because the backend's own "optimal" is no proof once it has
    returned an infeasible plan (SCIP, tightened, called 7 GPUs optimal where 3 suffice). When none passes the
    status is ``error`` and there is no plan. An answer without a plan goes to :func:`_second_opinion`.
    """
    clock = clock or _Clock()
    verify = getattr(problem, "verify", None)
    if verify is None:
        return status, plan, result, used, message
    if plan is None:
        return _second_opinion(problem, params, status, result, used, message, clock)
    broken = verify(plan)
    if not broken:
        return status, plan, result, used, message
    notes = [f"{used}'s plan failed the exact feasibility check ({broken[0]}"
             + (f"; {len(broken) - 1} more" if len(broken) > 1 else "") + ")"]
    attempts = _exact_attempts(problem, params, used, skip_same=False)
    if used in TIGHT_TOLERANCES:
        tight = dataclasses.replace(params, options={**TIGHT_TOLERANCES[used], **dict(params.options)})
        attempts.append((used, tight, f"{used} with feasibility tolerances of 1e-9"))
    return _first_passing(problem, attempts, notes, clock, used, result, known_feasible=False)


def _second_opinion(problem: Any, params: SolveParams, status: Status, result: Result | None, used: str,
                    message: str, clock: _Clock) -> _Outcome:
    """Re-solve exactly when a backend ended without a plan: with an error, or with an infeasible claim that an
    exact argument contradicts.

    ``problem.feasible_plan()`` (optional) gives a plan found without a solver and how; when it passes
    ``problem.verify`` the problem is feasible, so "infeasible" (Gurobi on a per_gpu ``min_gpus`` of 1.68e13
    images that 3 GPUs process) is not returned: the problem's exact fallbacks re-solve it, and if none gives a
    plan the status is ``error``. Any other answer without a plan is returned as it is, and nothing more is
    solved unless the backend said infeasible or error. An error raised by the time limit is returned as it is
    (a re-solve would overrun the limit asked for).
    """
    unchanged = status, None, result, used, message
    if status is Status.INFEASIBLE:
        feasible_plan = getattr(problem, "feasible_plan", None)
        witness = feasible_plan() if feasible_plan is not None else None
        if witness is None or problem.verify(witness[0]):
            return unchanged
        notes = [f"{used} reported infeasible, but {witness[1]} (a plan that passes the exact feasibility check)"]
    elif status is Status.ERROR:
        limit = params.time_limit_s
        if limit is not None and result is not None and result.solve_seconds >= limit:
            return unchanged
        notes = [f"{used} ended with an error" + (f" ({message})" if message else "")]
    else:
        return unchanged
    attempts = _exact_attempts(problem, params, used)
    if not attempts:
        if status is Status.ERROR:
            return unchanged
        notes.append("no exact fallback is left to re-solve it; " + _way_out({used}))
        return Status.ERROR, None, result, used, "; ".join(notes)
    return _first_passing(problem, attempts, notes, clock, used, result, known_feasible=status is Status.INFEASIBLE)


def _first_passing(problem: Any, attempts: list[_Attempt], notes: list[str], clock: _Clock, used: str,
                   result: Result | None, known_feasible: bool, optimum: Any = None) -> _Outcome:
    """Run ``attempts`` in order and return the first plan that passes ``problem.verify`` and, given the exact
    ``optimum``, has that objective; when none does, status ``error`` (with ``used``'s ``result``) and what to try.

    CP-SAT's "infeasible" is final (it decides integer rows exactly) unless the problem is ``known_feasible``;
    every step is added to ``notes``.
    """
    for name, again, how in attempts:
        try:
            st, pl, res, u, msg = _run_problem(problem, name, again, clock)
        except ServoptError as exc:
            notes.append(f"re-solving {how} was not possible ({exc})")
            continue
        if pl is None:
            notes.append(f"re-solved {how}: {st.value}" + (f" ({msg})" if msg else ""))
            if st is Status.INFEASIBLE and name == "cpsat" and not known_feasible:
                return st, None, res, u, "; ".join(notes)
            continue
        still = problem.verify(pl)
        if still:
            notes.append(f"re-solved {how}: still broken ({still[0]})")
            continue
        if optimum is not None and _exact_objective(pl) != optimum:
            notes.append(f"re-solved {how}: objective {_number(_exact_objective(pl))}, not the exact optimum")
            continue
        done = "the plan passes the exact check" if optimum is None else f"the exact optimum, {_number(optimum)}"
        notes.append(f"re-solved {how}: {done}")
        return (Status.OPTIMAL if optimum is not None else st), pl, res, u, "; ".join(notes + ([msg] if msg else []))
    failed = "no exactly feasible plan was found" if optimum is None else "no exact re-solve reached the exact optimum"
    notes.append(f"{failed}; " + _way_out({used, *(name for name, _, _ in attempts)}))
    return Status.ERROR, None, result, used, "; ".join(notes)


def _exact_objective(plan: Any) -> Any:
    """The plan's objective without rounding (``plan.exact_objective`` where the plan has it)."""
    from fractions import Fraction

    value = getattr(plan, "exact_objective", None)
    return Fraction(plan.objective) if value is None else value


def _certified(problem: Any, params: SolveParams, status: Status, plan: Any, result: Result | None, used: str,
               message: str, clock: _Clock) -> _Outcome:
    """Check an ``optimal`` claim against the problem's exact optimum (``problem.exact_optimum()``), exactly.

    A float backend can return a feasible plan that is worse than optimal and call it optimal (SCIP: 10 GPUs where
    8 suffice, its presolve proving a wrong bound). Where the optimum is computable without a solver (``min_gpus``
    minimising GPUs, ``max_throughput`` without a budget: O(types) integer arithmetic), a plan whose objective
    differs from it is re-solved with the exact fallbacks; the first plan that passes ``problem.verify`` with the
    exact optimum's objective is returned as optimal, with a note. When none does the status is ``error``.
    """
    if status is not Status.OPTIMAL or plan is None:
        return status, plan, result, used, message
    exact_optimum = getattr(problem, "exact_optimum", None)
    known = exact_optimum() if exact_optimum is not None else None
    if known is None:
        return status, plan, result, used, message
    value, how = known
    got = _exact_objective(plan)
    if got == value:
        return status, plan, result, used, message
    notes = ([message] if message else []) + [
        f"{used} called a plan with objective {_number(got)} optimal, but the exact optimum is {how}"]
    return _first_passing(problem, _exact_attempts(problem, params, used), notes, clock, used, result,
                          known_feasible=True, optimum=value)


def _number(value: Any) -> str:
    """An objective for a message: integers with thousands separators, other values as floats."""
    from fractions import Fraction

    if isinstance(value, Fraction) and value.denominator == 1:
        value = value.numerator
    return f"{value:,}" if isinstance(value, int) else f"{float(value):g}"


def _way_out(tried: set[str]) -> str:
    """What to try next: the installed backends not ``tried`` (the message once named backends just tried)."""
    from servopt.backends import available

    left = [name for name in available() if name not in tried]
    if not left:
        return "every installed backend was tried; please report this with the problem file"
    return "try backend " + " or ".join(repr(name) for name in left)
