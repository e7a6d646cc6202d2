"""Backend helpers shared by the formulation tests: one parameter per registered backend, a skip where its solver
is not installed, and the ``scale=`` CP-SAT needs for fractional data."""

from __future__ import annotations

from typing import Any

import pytest

import servopt
from servopt.exceptions import CapabilityError
from servopt.formulations.ties import integral_scale
from servopt.result import SolveParams


def backend_params() -> list:
    """Every registered backend as a pytest parameter (Gurobi marked ``gurobi``, cvxpy ``slow``)."""
    from servopt.backends import backend_names

    marks = {"gurobi": [pytest.mark.gurobi], "cvxpy": [pytest.mark.slow]}
    return [pytest.param(name, marks=marks.get(name, []), id=name) for name in backend_names()]


def require_backend(name: str) -> None:
    """Skip, saying why, when ``name``'s module or solver package is missing from this build."""
    from servopt.backends import get_backend

    try:
        cls = get_backend(name)
    except ImportError as exc:  # the backend module itself is missing from this checkout
        pytest.skip(f"backend {name} is not part of this build ({exc})")
    if not cls.installed():
        pytest.skip(f"backend {name}: solver package {cls.distribution} not installed")


def solve_gpu(problem: Any, backend: str) -> Any:
    """Solve on ``backend``; CP-SAT gets ``scale=100`` when the model has fractional costs (multiples of 0.25)."""
    from servopt.backends import check_capabilities

    model, _ = problem.build()
    try:
        check_capabilities(backend, model.arrays(), SolveParams())
        params = SolveParams()
    except CapabilityError:
        if backend != "cpsat":
            raise
        params = SolveParams(scale=100.0)
    return servopt.solve(problem, backend, params=params)


def solve_decimal(problem: Any, backend: str) -> Any:
    """Solve on ``backend``; CP-SAT gets the power-of-ten scale that makes the (decimal) data integral."""
    if backend == "cpsat":
        scale = integral_scale(problem.build()[0])
        assert scale is not None, "random instances use decimal data"
        return servopt.solve(problem, backend, scale=scale)
    return servopt.solve(problem, backend)
