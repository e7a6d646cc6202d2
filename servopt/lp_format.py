"""CPLEX LP-format writer for :class:`servopt.model.ModelArrays` (debugging aid, readable by HiGHS/SCIP/Gurobi).

Used by :meth:`servopt.model.Model.to_lp`; it reads only the arrays, so it imports nothing from ``model``.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the writer reads the arrays; it does not need the model module at run time
    from servopt.model import ModelArrays

_BAD = re.compile(r"[^A-Za-z0-9_.]")


def _names(raw: tuple[str, ...], prefix: str) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(raw):
        clean = _BAD.sub("_", name) or f"{prefix}{i}"
        if clean[0].isdigit() or clean[0] in ".eE":
            clean = f"{prefix}_{clean}"
        if clean in seen:
            clean = f"{clean}_{i}"
        seen.add(clean)
        out.append(clean)
    return out


def _terms(cols: np.ndarray, vals: np.ndarray, names: list[str]) -> str:
    if len(cols) == 0:
        return "0 " + names[0] if names else "0"
    parts = []
    for k, v in zip(cols.tolist(), vals.tolist()):
        parts.append(f"{'-' if v < 0 else '+'} {abs(v):.17g} {names[k]}")
    text = " ".join(parts)
    return text[2:] if text.startswith("+ ") else text


def write_lp(a: ModelArrays) -> str:
    """Return the LP-format text of ``a``."""
    vn = _names(a.var_names, "x")
    rn = _names(a.row_names, "c")
    lines = [f"\\ servopt model {a.name}", "Maximize" if a.sense == "max" else "Minimize"]
    nz = np.flatnonzero(a.c)
    obj = _terms(nz, a.c[nz], vn)
    if a.obj_constant:
        obj += f" + {a.obj_constant:.17g} __const"  # constant carried by a fixed variable
    lines.append(f" obj: {obj}")
    lines.append("Subject To")
    A = a.A.tocsr()
    for i in range(a.n_rows):
        lo, hi = A.indptr[i], A.indptr[i + 1]
        lhs = _terms(A.indices[lo:hi], A.data[lo:hi], vn)
        rl, ru = a.row_lb[i], a.row_ub[i]
        if rl == ru:
            lines.append(f" {rn[i]}: {lhs} = {ru:.17g}")
        elif math.isinf(rl):
            lines.append(f" {rn[i]}: {lhs} <= {ru:.17g}")
        elif math.isinf(ru):
            lines.append(f" {rn[i]}: {lhs} >= {rl:.17g}")
        else:  # a ranged row: the LP format has no portable single-row range, so write two rows
            lines.append(f" {rn[i]}_lo: {lhs} >= {rl:.17g}")
            lines.append(f" {rn[i]}_hi: {lhs} <= {ru:.17g}")
    lines.append("Bounds")
    for j in range(a.n_vars):
        lo, hi = a.lb[j], a.ub[j]
        lo_s = "-inf" if math.isinf(lo) else f"{lo:.17g}"
        hi_s = "+inf" if math.isinf(hi) else f"{hi:.17g}"
        lines.append(f" {lo_s} <= {vn[j]} <= {hi_s}")
    if a.obj_constant:
        lines.append(" __const = 1")
    ints = [vn[j] for j in np.flatnonzero(a.integrality)]
    if ints:
        lines.append("General")
        lines.extend(f" {n}" for n in ints)
    lines.append("End")
    return "\n".join(lines) + "\n"
