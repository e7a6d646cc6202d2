"""Backend registry: names to classes, imported lazily.

``available()`` and ``describe()`` probe installation with ``importlib.util.find_spec`` and read versions from
package metadata, so they import no solver and take no licence. Each backend module imports its solver only
inside ``_build`` / ``_run``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from servopt.exceptions import CapabilityError, ValidationError

if TYPE_CHECKING:
    from servopt.backends.base import Backend
    from servopt.model import ModelArrays
    from servopt.result import SolveParams

__all__ = ["REGISTRY", "get_backend", "available", "describe", "check_capabilities", "backend_names"]

#: name -> "module:Class"
REGISTRY: dict[str, str] = {
    "cpsat": "servopt.backends.cpsat:CpSatBackend",
    "highs": "servopt.backends.highs:HighsBackend",
    "scip": "servopt.backends.scip:ScipBackend",
    "gurobi": "servopt.backends.gurobi:GurobiBackend",
    "cvxpy": "servopt.backends.cvxpy:CvxpyBackend",
}


def backend_names() -> list[str]:
    return list(REGISTRY)


def get_backend(name: str) -> type[Backend]:
    """The backend class registered as ``name``."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise ValidationError(
            f"unknown backend {name!r}; choose one of {', '.join(REGISTRY)} (or 'auto')"
        ) from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def available() -> list[str]:
    """Names of the backends whose solver package is installed."""
    return [name for name in REGISTRY if get_backend(name).installed()]


def describe() -> list[dict[str, object]]:
    """One row per backend: name, installed, version, capabilities (imports no solver)."""
    rows = []
    for name in REGISTRY:
        cls = get_backend(name)
        installed = cls.installed()
        rows.append(
            {
                "name": name,
                "installed": installed,
                "version": cls.version() if installed else None,
                "capabilities": cls.capabilities.describe(),
                "package": cls.distribution,
            }
        )
    return rows


def _violation(arrays: ModelArrays, caps, scaled: bool) -> str | None:
    import numpy as np

    if not caps.continuous and arrays.has_continuous:
        j = int(np.flatnonzero(~arrays.integrality)[0])
        return f"variable {arrays.var_names[j]!r} is continuous"
    if not caps.integer and arrays.is_mip:
        j = int(np.flatnonzero(arrays.integrality)[0])
        return f"variable {arrays.var_names[j]!r} is {arrays.kinds[j].value}"
    if caps.max_vars is not None and arrays.n_vars > caps.max_vars:
        return f"the model has {arrays.n_vars} variables (limit {caps.max_vars})"
    if caps.max_constraints is not None and arrays.n_rows > caps.max_constraints:
        return f"the model has {arrays.n_rows} constraints (limit {caps.max_constraints})"
    if not caps.fractional and not scaled:
        def first_fraction(values, what):
            finite = np.isfinite(values)
            bad = np.flatnonzero(finite & (values != np.round(values)))
            return (int(bad[0]), what) if bad.size else None

        A = arrays.A.tocoo()
        hit = first_fraction(A.data, "coefficient")
        if hit:
            k = hit[0]
            return (
                f"constraint {arrays.row_names[A.row[k]]!r} has the fractional coefficient {float(A.data[k])!r} on "
                f"{arrays.var_names[A.col[k]]!r}"
            )
        for vec, label in ((arrays.c, "objective coefficient of"), (arrays.lb, "lower bound of"),
                           (arrays.ub, "upper bound of")):
            hit = first_fraction(vec, label)
            if hit:
                return f"the {label} {arrays.var_names[hit[0]]!r} is fractional ({float(vec[hit[0]])!r})"
        for vec, label in ((arrays.row_lb, "lower side"), (arrays.row_ub, "upper side")):
            hit = first_fraction(vec, label)
            if hit:
                return f"the {label} of constraint {arrays.row_names[hit[0]]!r} is fractional ({float(vec[hit[0]])!r})"
    return None


def check_capabilities(name: str, arrays: ModelArrays, params: SolveParams) -> None:
    """Raise :class:`CapabilityError` if backend ``name`` cannot take ``arrays``.

    The message names the offending variable or constraint and lists the backends that can take the model.
    """
    caps = get_backend(name).capabilities
    problem = _violation(arrays, caps, params.scale is not None)
    if problem is None:
        return
    able = [n for n in REGISTRY if n != name and _violation(arrays, get_backend(n).capabilities, False) is None]
    hint = f"; backends that can take it: {', '.join(able)}" if able else ""
    if not caps.fractional and "fractional" in problem:
        hint += f"; or pass scale={_scale_hint(arrays)} to solve on CP-SAT with scaled integer coefficients"
    raise CapabilityError(f"backend {name!r} cannot solve model {arrays.name!r}: {problem}{hint}")


def _scale_hint(arrays: ModelArrays) -> str:
    """The smallest power of ten that makes every coefficient of ``arrays`` an integer (``100`` for prices in
    cents), as the number to pass; ``<factor>`` when none up to 10^9 does."""
    import numpy as np

    from servopt.backends.cpsat import _suggest_scale
    from servopt.exact import plain

    values = np.concatenate([arrays.A.tocsr().data, arrays.c])
    factor = _suggest_scale(values[np.isfinite(values)], 1.0)
    return "<factor>" if factor is None else plain(factor)
