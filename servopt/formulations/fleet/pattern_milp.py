"""The pattern MILP of a fleet (:mod:`servopt.formulations.fleet.formulation`) over a given pattern set, and the
objective weight of a GPU; shared by the final solve and column generation's LP (:mod:`.colgen`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from servopt.formulations.fleet.patterns import Pattern
from servopt.model import Model

__all__ = ["gpu_weight", "milp"]


def gpu_weight(problem: Any, gpu: Any) -> float:
    """The objective weight of one used GPU of type ``gpu``."""
    if problem.objective == "cost":
        return gpu.price_per_hour
    if problem.objective == "gpus":
        return 1.0
    return problem.weights["cost"] * gpu.price_per_hour + problem.weights["gpus"]


def milp(problem: Any, patterns: dict[tuple[str, str | None], list[Pattern]]) -> tuple[Model, dict, dict]:
    """The pattern MILP over ``patterns``, its pattern variables per bin key and layout variables per type."""
    model = Model(f"fleet:{problem.name}")
    n = len(problem.models)
    required = [problem.required_rps(m) for m in problem.models]
    cover: list[tuple[list[int], list[float]]] = [([], []) for _ in range(n)]
    obj_cols: list[int] = []
    obj_coefs: list[float] = []
    x_vars: dict[tuple[str, str | None], list[int]] = {}
    z_vars: dict[str, list[int]] = {}
    for g in problem.gpu_types:
        if g.count == 0:
            continue
        w = gpu_weight(problem, g)
        type_cols: list[int] = []
        for key in [(g.name, None)] + [(g.name, p.profile) for p in g.mig]:
            cols = []
            for j, pat in enumerate(patterns.get(key, [])):
                ub = g.count if key[1] is None else g.count * 7
                v = model.add_var(f"x[{key[0]}/{key[1] or 'gpu'}#{j}]", kind="integer", ub=ub).index
                cols.append(v)
                for (i, _, _), cap in zip(pat.items, pat.capacity):
                    cover[i][0].append(v)
                    cover[i][1].append(min(cap, required[i]))  # beyond the requirement is worth nothing
            x_vars[key] = cols
        for v in x_vars[(g.name, None)]:
            type_cols.append(v)
            obj_cols.append(v)
            obj_coefs.append(w)
        zs = [model.add_var(f"z[{g.name}:{'+'.join(lay)}]", kind="integer", ub=g.count).index for lay in g.layouts]
        z_vars[g.name] = zs
        for v in zs:
            type_cols.append(v)
            obj_cols.append(v)
            obj_coefs.append(w)
        if type_cols:
            model.add_row(type_cols, np.ones(len(type_cols)), ub=float(g.count), name=f"count[{g.name}]")
        for p in g.mig:
            ys = x_vars[(g.name, p.profile)]
            slots = [(z, lay.count(p.profile)) for z, lay in zip(zs, g.layouts) if p.profile in lay]
            if ys:
                model.add_row(ys + [z for z, _ in slots], [1.0] * len(ys) + [-float(c) for _, c in slots], ub=0.0,
                              name=f"slices[{g.name}/{p.profile}]")
    for i, m in enumerate(problem.models):
        cols, coefs = cover[i]
        model.add_row(cols, coefs, lb=required[i], name=f"capacity[{m.name}]")
    model.set_objective_arrays(np.asarray(obj_cols, dtype=np.int64), np.asarray(obj_coefs, dtype=float), "min")
    return model, x_vars, z_vars
