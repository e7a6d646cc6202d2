"""The slot form of the fleet MILP (a cross-check of the aggregated pattern form, not the default).

One set of variables per *physical* GPU j of each type: binaries ``w[j,p]`` (GPU j runs whole-GPU pattern p) and
``v[j,L]`` (GPU j is partitioned into MIG layout L), ``Σ_p w[j,p] + Σ_L v[j,L] <= 1``, and integers ``y[j,q]``
(slices of GPU j running slice pattern q) with ``Σ_{q of π} y[j,q] <= Σ_L n(L,π) v[j,L]``; GPUs of a type are used
in index order (``used_j >= used_{j+1}``, symmetry breaking). Capacity rows and objective as in
:mod:`servopt.formulations.fleet.formulation`; same optimum, far larger model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from servopt.formulations.fleet.formulation import bins, gpu_weight
from servopt.model import Model

__all__ = ["build_slots"]


def build_slots(problem: Any) -> Model:
    """The slot-form MILP (objective = the pattern form's optimum)."""
    patterns, _ = bins(problem)
    model = Model(f"fleet-slots:{problem.name}")
    cover: list[tuple[list[int], list[float]]] = [([], []) for _ in problem.models]
    obj_cols: list[int] = []
    obj_coefs: list[float] = []
    for g in problem.gpu_types:
        w = gpu_weight(problem, g)
        previous: list[int] | None = None
        for j in range(g.count):
            used = []
            for k, pat in enumerate(patterns[(g.name, None)]):
                v = model.add_binary(f"w[{g.name}#{j},{k}]").index
                used.append(v)
                for (i, _, _), cap in zip(pat.items, pat.capacity):
                    cover[i][0].append(v)
                    cover[i][1].append(cap)
            layouts = [model.add_binary(f"v[{g.name}#{j},{'+'.join(lay)}]").index for lay in g.layouts]
            used += layouts
            if not used:
                continue
            model.add_row(used, np.ones(len(used)), ub=1.0, name=f"one[{g.name}#{j}]")
            obj_cols += used
            obj_coefs += [w] * len(used)
            for p in g.mig:
                ys = []
                for k, pat in enumerate(patterns[(g.name, p.profile)]):
                    v = model.add_var(f"y[{g.name}#{j},{p.profile},{k}]", kind="integer", ub=7).index
                    ys.append(v)
                    for (i, _, _), cap in zip(pat.items, pat.capacity):
                        cover[i][0].append(v)
                        cover[i][1].append(cap)
                slots = [(z, lay.count(p.profile)) for z, lay in zip(layouts, g.layouts) if p.profile in lay]
                if ys:
                    model.add_row(ys + [z for z, _ in slots], [1.0] * len(ys) + [-float(c) for _, c in slots],
                                  ub=0.0, name=f"slices[{g.name}#{j},{p.profile}]")
            if previous is not None:
                model.add_row(previous + used, [1.0] * len(previous) + [-1.0] * len(used), lb=0.0,
                              name=f"order[{g.name}#{j}]")
            previous = used
    for i, m in enumerate(problem.models):
        model.add_row(cover[i][0], cover[i][1], lb=problem.required_rps(m), name=f"capacity[{m.name}]")
    model.set_objective_arrays(np.asarray(obj_cols, dtype=np.int64), np.asarray(obj_coefs, dtype=float), "min")
    return model
