"""A one-variable smoke test that proves a backend really solves (licence included)."""

from __future__ import annotations

from servopt.exceptions import ServoptError


def smoke_test(name: str) -> str:
    """Solve ``max x, x <= 3 integer`` with backend ``name``; returns 'yes' or the reason it failed."""
    from servopt.model import Model
    from servopt.solve import solve

    m = Model("smoke")
    x = m.add_var("x", kind="integer", lb=0, ub=3)
    m.maximize(x)
    try:
        result = solve(m, name)
    except ServoptError as exc:
        return f"no: {exc}"
    except Exception as exc:  # a broken native install must not crash the listing
        return f"no: {type(exc).__name__}: {exc}"
    if result.status.value == "optimal" and abs((result.objective or 0) - 3) < 1e-6:
        return "yes"
    return f"no: got {result.status.value} {result.objective}"
