"""A one-variable smoke test that proves a backend really solves (licence included).

It goes through the backend registry and the central capability check, not :func:`servopt.solve`, so the
backends layer imports nothing above it.
"""

from __future__ import annotations

from servopt.exceptions import ServoptError


def smoke_test(name: str) -> str:
    """Solve ``max x, x <= 3 integer`` with backend ``name``; returns 'yes' or the reason it failed."""
    from servopt.backends import check_capabilities, get_backend
    from servopt.model import Model
    from servopt.result import SolveParams

    m = Model("smoke")
    x = m.add_var("x", kind="integer", lb=0, ub=3)
    m.maximize(x)
    params = SolveParams()
    try:
        arrays = m.arrays()
        check_capabilities(name, arrays, params)
        result = get_backend(name)().solve(arrays, params)
    except ServoptError as exc:
        return f"no: {exc}"
    except Exception as exc:  # a broken native install must not crash the listing
        return f"no: {type(exc).__name__}: {exc}"
    if result.status.value == "optimal" and abs((result.objective or 0) - 3) < 1e-6:
        return "yes"
    return f"no: got {result.status.value} {result.objective}"
