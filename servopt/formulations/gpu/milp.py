"""The two exact linearisations behind ``min_gpus`` and ``max_throughput`` (docs/formulations.md).

Both start from the options of :func:`servopt.formulations.gpu.types.gpu_options`: every (GPU type g, batch b)
that fits the deadline, with k_max(g, b) batches.

``aggregated`` (default)
    One integer n_{g,b} in [0, C_g] per option: how many GPUs of type g run batch b for k_max batches.
    Rows: ``sum_b n_{g,b} <= C_g`` per type. Images ``sum k_max b n_{g,b}``. Identical GPUs are one variable,
    so the model has no symmetry and its size does not grow with the pool.

``per_gpu`` (the seed's per-GPU form, linearised)
    For GPU i and option b: a binary x_{i,b} (GPU i runs batch b) and an integer t_{i,b} (its batches, the
    seed's t_i). ``sum_b x_{i,b} <= 1``, ``x_{i,b} <= t_{i,b} <= k_max x_{i,b}`` (the busy-time row
    ``W x + L (t - x) <= T x`` divided by L and rounded down, exact for integer t), images ``sum b t_{i,b}``;
    GPUs of one type are used in index order (``u_i >= u_{i+1}``) to cut symmetric copies. A pool of more than
    ``PER_GPU_LIMIT`` (100,000) GPUs has variables only for the GPUs an optimal plan can use
    (``problem.per_gpu_blocks()``), and is refused when that is still more.

Every coefficient is an integer except costs, so CP-SAT takes both models unless costs are fractional.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from servopt.formulations.gpu.plan import GPUPlan, plan_from_counts
from servopt.formulations.gpu.types import GPUOption
from servopt.model import Model, Sense
from servopt.result import Result

__all__ = ["build_gpu_model"]

Decode = Callable[[Result], GPUPlan]


def build_gpu_model(
    problem: Any,
    *,
    objective: str,
    demand: int | None = None,
    budget: float | None = None,
    require_one: bool = False,
) -> tuple[Model, Decode]:
    """Build ``problem``'s MILP in its ``formulation`` and the function that decodes a result into a plan.

    Parameters
    ----------
    problem : MinGPUs or MaxThroughput
        Validated problem (``gpus``, ``deadline_s``, ``latency_slo_ms``, ``formulation``, ``kind``).
    objective : {"gpus", "cost", "images"}
        Minimise GPUs or cost per hour, or maximise images.
    demand : int, optional
        N: images that must be processed (``min_gpus``).
    budget : float, optional
        Most cost per hour (``max_throughput``).
    require_one : bool
        At least one GPU is used (so that "nothing fits" is an infeasible result, not an empty plan).
    """
    options = problem.options()
    builder = _aggregated if problem.formulation == "aggregated" else _per_gpu
    model = Model(f"{problem.kind}_{problem.formulation}")
    if not options:
        # nothing fits: a model every backend reports infeasible; explain_infeasible() says why
        z = model.add_integer("no_feasible_option", ub=0)
        model.add_row([z.index], [1.0], lb=1.0, name="some_gpu_must_fit")
        model.minimize(z)
        return model, lambda result: plan_from_counts(problem, (), objective, problem.formulation)
    return builder(model, problem, options, objective, demand, budget, require_one)


def _finish(model: Model, cols: np.ndarray, images: np.ndarray, used: np.ndarray, cost: np.ndarray,
            objective: str, demand: int | None, budget: float | None, require_one: bool) -> None:
    """Rows and objective shared by both formulations, over per-column image, GPU and cost coefficients."""
    if demand is not None:
        nz = images != 0
        model.add_row(cols[nz], images[nz], lb=float(demand), name="images")
    if budget is not None:
        nz = cost != 0
        model.add_row(cols[nz], cost[nz], ub=float(budget), name="budget_per_hour")
    if require_one:
        nz = used != 0
        model.add_row(cols[nz], used[nz], lb=1.0, name="at_least_one_gpu")
    coefs = {"gpus": used, "cost": cost, "images": images}[objective]
    nz = coefs != 0
    model.set_objective_arrays(cols[nz], coefs[nz], Sense.MAXIMIZE if objective == "images" else Sense.MINIMIZE)


def _costs(problem: Any, options: Sequence[GPUOption]) -> np.ndarray:
    return np.array([problem.gpus[o.type_index].cost_per_hour or 0.0 for o in options], dtype=float)


def _aggregated(model: Model, problem: Any, options: list[GPUOption], objective: str, demand: int | None,
                budget: float | None, require_one: bool) -> tuple[Model, Decode]:
    gpus = problem.gpus
    n = [model.add_integer(f"n[{o.hardware},b{o.batch_size}]", ub=gpus[o.type_index].max_count) for o in options]
    cols = np.array([v.index for v in n], dtype=np.int64)
    for g, gpu in enumerate(gpus):
        mine = [j for j, o in enumerate(options) if o.type_index == g]
        if len(mine) > 1:  # one option alone is bounded by its variable's upper bound
            model.add_row(cols[mine], np.ones(len(mine)), ub=float(gpu.max_count), name=f"pool[{gpu.hardware}]")
    images = np.array([o.images for o in options], dtype=float)
    _finish(model, cols, images, np.ones(len(options)), _costs(problem, options), objective, demand, budget,
            require_one)

    def decode(result: Result) -> GPUPlan:
        values = np.rint(np.asarray(result.values)[cols]).astype(np.int64)
        return plan_from_counts(problem, ((o, int(v), o.batches) for o, v in zip(options, values)), objective,
                                "aggregated")

    return model, decode


def _per_gpu(model: Model, problem: Any, options: list[GPUOption], objective: str, demand: int | None,
             budget: float | None, require_one: bool) -> tuple[Model, Decode]:
    x_cols: list[int] = []
    t_cols: list[int] = []
    opt_of: list[GPUOption] = []  # per (GPU, option) pair, aligned with x_cols / t_cols
    blocks: list[tuple[int, int]] = []  # (start, stop) into x_cols per GPU
    counts = problem.per_gpu_blocks()  # max_count, or for a pool above PER_GPU_LIMIT the GPUs an optimum can use
    for g, gpu in enumerate(problem.gpus):
        mine = [o for o in options if o.type_index == g]
        if not mine:
            continue
        previous: list[int] | None = None
        for i in range(counts[g]):
            start = len(x_cols)
            for o in mine:
                label = f"{gpu.hardware}#{i},b{o.batch_size}"
                x = model.add_binary(f"x[{label}]").index
                t = model.add_integer(f"t[{label}]", ub=o.batches).index
                model.add_row([t, x], [1.0, -float(o.batches)], ub=0.0, name=f"busy[{label}]")
                model.add_row([t, x], [1.0, -1.0], lb=0.0, name=f"first_batch[{label}]")
                x_cols.append(x)
                t_cols.append(t)
                opt_of.append(o)
            xs = x_cols[start:]
            if len(xs) > 1:
                model.add_row(xs, np.ones(len(xs)), ub=1.0, name=f"one_batch_size[{gpu.hardware}#{i}]")
            if previous is not None:  # symmetry: GPU i is used only if GPU i-1 is
                model.add_row(previous + xs, [1.0] * len(previous) + [-1.0] * len(xs), lb=0.0,
                              name=f"order[{gpu.hardware}#{i}]")
            previous = xs
            blocks.append((start, len(x_cols)))
    xc = np.array(x_cols, dtype=np.int64)
    tc = np.array(t_cols, dtype=np.int64)
    sizes = np.array([o.batch_size for o in opt_of], dtype=float)
    ones = np.ones(len(opt_of))
    zeros = np.zeros(len(opt_of))
    cost = _costs(problem, opt_of)
    cols = np.concatenate([xc, tc])
    _finish(model, cols, np.concatenate([zeros, sizes]), np.concatenate([ones, zeros]),
            np.concatenate([cost, zeros]), objective, demand, budget, require_one)

    def decode(result: Result) -> GPUPlan:
        values = np.asarray(result.values)
        xv = values[xc] > 0.5
        tv = np.rint(values[tc]).astype(np.int64)
        chosen = []
        for start, stop in blocks:
            on = np.flatnonzero(xv[start:stop])
            if on.size:
                j = start + int(on[0])
                chosen.append((opt_of[j], 1, int(tv[j])))
        return plan_from_counts(problem, chosen, objective, "per_gpu")

    return model, decode
