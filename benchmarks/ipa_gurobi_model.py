"""A direct transcription of IPA's own Gurobi model (``optimizer/optimizer.py::gurobi_optmizer``), for benchmarks.

This is IPA's measured-profile path as the research report describes it (IPA paper §4 and its repository's optimizer), built
with gurobipy on a :class:`servopt.Pipeline` so that both solve the same instance:

* ``i[s,m]`` binary (variant), ``b[s,B]`` binary one-hot over the batch sizes of the stage, ``aux[s,m,B]`` binary
  linked by ``addGenConstrAnd(aux, [i, b])``, ``n[s]`` integer in 1..max_replicas;
* (C1) ``Σ_m i[s,m] = 1``, (C2) ``Σ_B b[s,B] = 1``, (C3) the AND links;
* (C4) ``aux[s,m,B] = 1 ⇒ n[s] h[s,m,B] >= λ`` (``addGenConstrIndicator``);
* (C5) one quadratic latency constraint ``Σ_s Σ_m Σ_B l[s,m,B] i[s,m] b[s,B] + queue <= SLA``;
* objective ``α Acc − β Σ_s Σ_m c[s,m] n[s] i[s,m] − δ Σ_s Σ_B B b[s,B]`` (bilinear resource term), with
  ``Acc = Σ a i`` (``sum``), ``/ S`` (``average``), or for ``product`` a chain of bilinear equalities
  ``p_s = p_{s-1} Σ_m a[s,m] i[s,m]`` (IPA itself handles at most 3 stages: a bilinear objective for 2, an
  enumeration of triples for 3);
* parameters as IPA sets them: ``NonConvex=2``, ``PoolSearchMode=2``, ``PoolSolutions=1``, ``PoolGap=0``, no
  time limit and no MIP gap.

Two deliberate differences from IPA's code, so that the answer is comparable with servopt's: the queueing delay is
the per-stage ``(B − 1) / λ`` on the chosen batch (IPA applies it to the 0/1 indicator, which loosens the SLA), and
a (variant, batch) pair the profile lacks is not offered (IPA gives it a dummy latency of 1000 and throughput
1e-5, which is the same when the SLA or λ rules it out).

Gurobi's pip licence is size-limited (2,000 variables and 2,000 linear constraints); :func:`solve_ipa` reports
``license`` when a model exceeds it.

Usage::

    python benchmarks/ipa_gurobi_model.py examples/pipeline_video.yaml
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["IPAResult", "MCKResult", "build_ipa_model", "solve_ipa", "solve_mck", "model_size"]


@dataclass(frozen=True)
class IPAResult:
    """One solve of IPA's model: status (``optimal``, ``infeasible``, ``license``, ``error``, ...), times, answer."""

    status: str
    build_s: float
    solve_s: float
    objective: float | None
    choice: tuple[tuple[str, int], ...] | None
    size: dict[str, int]
    message: str = ""


def model_size(problem: Any) -> dict[str, int]:
    """Variables and constraints of IPA's model for ``problem`` (before Gurobi's presolve)."""
    stages = problem.stages
    n_i = sum(len(s.variants) for s in stages)
    n_b = sum(len(_batch_sizes(s)) for s in stages)
    n_aux = sum(len(v.batches) for s in stages for v in s.variants)
    product_vars = len(stages) if problem.accuracy == "product" else 0
    return {
        "variables": n_i + n_b + n_aux + len(stages) + product_vars,
        "linear_constraints": 2 * len(stages),
        "general_constraints": 2 * n_aux,
        "quadratic_constraints": 1 + (max(0, len(stages) - 1) if problem.accuracy == "product" else 0),
        "bilinear_terms": n_aux + n_i,
    }


def _batch_sizes(stage: Any) -> list[int]:
    return sorted({p.batch_size for v in stage.variants for p in v.batches})


def build_ipa_model(problem: Any, env: Any) -> tuple[Any, Any]:
    """IPA's Gurobi model for ``problem`` in environment ``env``; returns (model, decode).

    ``decode()`` reads the chosen (variant, batch) per stage after ``optimize()``.
    """
    import gurobipy as gp
    from gurobipy import GRB

    from servopt.formulations.pipeline.problem import rank_normalize

    lam = problem.workload_rps
    m = gp.Model("ipa", env=env)
    m.Params.NonConvex = 2
    m.Params.PoolSearchMode = 2
    m.Params.PoolSolutions = 1
    m.Params.PoolGap = 0.0
    i_vars, b_vars, aux_vars, n_vars = {}, {}, {}, {}
    latency_terms = gp.QuadExpr()
    queue = gp.LinExpr()
    resource = gp.QuadExpr()
    batch_obj = gp.LinExpr()
    acc_terms = []
    for si, stage in enumerate(problem.stages):
        raw = [v.accuracy for v in stage.variants]
        acc = rank_normalize(raw) if problem.normalize == "rank" else raw
        sizes = _batch_sizes(stage)
        for mi, v in enumerate(stage.variants):
            i_vars[si, mi] = m.addVar(vtype=GRB.BINARY, name=f"i[{si},{mi}]")
        for b in sizes:
            b_vars[si, b] = m.addVar(vtype=GRB.BINARY, name=f"b[{si},{b}]")
        n_vars[si] = m.addVar(vtype=GRB.INTEGER, lb=1, ub=problem.max_replicas, name=f"n[{si}]")
        m.addConstr(gp.quicksum(i_vars[si, mi] for mi in range(len(stage.variants))) == 1, name=f"one_model[{si}]")
        m.addConstr(gp.quicksum(b_vars[si, b] for b in sizes) == 1, name=f"single_batch[{si}]")
        offered = {}
        for mi, v in enumerate(stage.variants):
            for p in v.batches:
                aux = m.addVar(vtype=GRB.BINARY, name=f"aux[{si},{mi},{p.batch_size}]")
                aux_vars[si, mi, p.batch_size] = aux
                offered[mi, p.batch_size] = True
                m.addGenConstrAnd(aux, [i_vars[si, mi], b_vars[si, p.batch_size]],
                                  name=f"and[{si},{mi},{p.batch_size}]")
                m.addGenConstrIndicator(aux, True, p.throughput_rps * n_vars[si] >= lam,
                                        name=f"throughput[{si},{mi},{p.batch_size}]")
                latency_terms.add(i_vars[si, mi] * b_vars[si, p.batch_size], p.latency_ms)
        for mi in range(len(stage.variants)):  # a pair the profile lacks is not offered
            for b in sizes:
                if (mi, b) not in offered:
                    m.addConstr(i_vars[si, mi] + b_vars[si, b] <= 1, name=f"unprofiled[{si},{mi},{b}]")
        for b in sizes:
            queue.add(b_vars[si, b], 1000.0 * (b - 1) / lam)
            batch_obj.add(b_vars[si, b], float(b))
        for mi, v in enumerate(stage.variants):
            resource.add(n_vars[si] * i_vars[si, mi], v.cores)
        acc_terms.append(gp.quicksum(a * i_vars[si, mi] for mi, a in enumerate(acc)))
    from servopt.formulations.pipeline.problem import latency_limit

    m.addQConstr(latency_terms + queue <= latency_limit(problem.sla_ms), name="latency")
    if problem.accuracy == "product":
        prev = acc_terms[0]
        for si in range(1, len(acc_terms)):
            p = m.addVar(lb=0.0, ub=1.0 if max(v.accuracy for v in problem.stages[si].variants) <= 1 else GRB.INFINITY,
                         name=f"p[{si}]")
            m.addQConstr(p == prev * acc_terms[si], name=f"product[{si}]")
            prev = p
        accuracy = prev
    else:
        accuracy = gp.quicksum(acc_terms)
        if problem.accuracy == "average":
            accuracy = accuracy / len(acc_terms)
    m.setObjective(problem.alpha * accuracy - problem.beta * resource - problem.delta * batch_obj, GRB.MAXIMIZE)
    m.update()

    def decode() -> tuple[tuple[str, int], ...]:
        out = []
        for si, stage in enumerate(problem.stages):
            mi = max(range(len(stage.variants)), key=lambda j: i_vars[si, j].X)
            b = max(_batch_sizes(stage), key=lambda size: b_vars[si, size].X)
            out.append((stage.variants[mi].name, int(b)))
        return tuple(out)

    return m, decode


def solve_ipa(problem: Any, env: Any | None = None, time_limit_s: float | None = None) -> IPAResult:
    """Build and solve IPA's model; building and solving timed apart.

    ``objective`` is servopt's evaluation of the decoded choice (the true §4.4 objective), so it compares with
    servopt's plans directly. Status ``license`` when the model exceeds the pip licence.
    """
    import gurobipy as gp
    from gurobipy import GRB

    own_env = env is None
    if own_env:
        env = gp.Env(empty=True)
        env.setParam("OutputFlag", 0)
        env.start()
    size = model_size(problem)
    try:
        t0 = time.perf_counter()
        model, decode = build_ipa_model(problem, env)
        if time_limit_s is not None:
            model.Params.TimeLimit = time_limit_s
        t1 = time.perf_counter()
        try:
            model.optimize()
        except gp.GurobiError as exc:
            if exc.errno == 10010:
                return IPAResult("license", t1 - t0, 0.0, None, None, size, str(exc))
            raise
        t2 = time.perf_counter()
        status = {GRB.OPTIMAL: "optimal", GRB.INFEASIBLE: "infeasible", GRB.TIME_LIMIT: "time_limit",
                  GRB.INF_OR_UNBD: "infeasible"}.get(model.Status, f"gurobi_status_{model.Status}")
        if model.SolCount == 0:
            return IPAResult(status, t1 - t0, t2 - t1, None, None, size)
        choice = decode()
        plan = problem.evaluate(list(choice))
        objective = None if plan is None else plan.objective
        note = "" if plan is not None else "the decoded choice breaks servopt's constraints"
        model.dispose()
        return IPAResult(status, t1 - t0, t2 - t1, objective, choice, size, note)
    finally:
        if own_env:
            env.dispose()


@dataclass(frozen=True)
class MCKResult:
    """One solve of the plain multiple-choice knapsack: status, build and solve seconds, Gurobi's own runtime."""

    status: str
    build_s: float
    solve_s: float
    runtime_s: float
    objective: float | None
    choice: tuple[tuple[str, int], ...] | None
    cpu_s: float = 0.0


def solve_mck(problem: Any, env: Any, threads: int | None = None) -> MCKResult:
    """The pipeline as a plain multiple-choice knapsack in gurobipy's matrix API, built and solved.

    One binary per feasible (stage, variant, batch) option (replicas fixed to the fewest that sustain λ, as in
    servopt's option arrays), one option per stage, one latency row ``Σ (latency + queue) x <= SLA``, objective
    servopt's option values; MIPGap 0, otherwise Gurobi's defaults (``threads`` sets Threads). ``solve_s`` is
    the wall time of ``optimize()``, ``cpu_s`` the process CPU time it took (all its threads), ``runtime_s``
    Gurobi's own ``Runtime``; ``objective`` is servopt's evaluation of the decoded choice.
    """
    import gurobipy as gp
    import numpy as np
    import scipy.sparse as sp
    from gurobipy import GRB

    from servopt.formulations.pipeline.problem import latency_limit

    o = problem.options()
    idx = np.flatnonzero(o.feasible)
    n_stages = len(problem.stages)
    rows = sp.csr_matrix((np.ones(idx.size), (o.stage[idx], np.arange(idx.size))), shape=(n_stages, idx.size))
    t0 = time.perf_counter()
    m = gp.Model("mck", env=env)
    m.Params.MIPGap = 0.0
    if threads is not None:
        m.Params.Threads = threads
    x = m.addMVar(idx.size, vtype=GRB.BINARY)
    m.addMConstr(rows, x, "=", np.ones(n_stages))
    m.addConstr((o.latency_ms + o.queue_ms)[idx] @ x <= latency_limit(problem.sla_ms))
    m.setObjective(o.value[idx] @ x, GRB.MAXIMIZE)
    m.update()
    t1 = time.perf_counter()
    c1 = time.process_time()
    try:
        m.optimize()
    except gp.GurobiError as exc:
        if exc.errno == 10010:
            return MCKResult("license", t1 - t0, 0.0, 0.0, None, None)
        raise
    t2 = time.perf_counter()
    cpu = time.process_time() - c1
    status = {GRB.OPTIMAL: "optimal", GRB.INFEASIBLE: "infeasible"}.get(m.Status, f"gurobi_status_{m.Status}")
    objective, choice = None, None
    if m.SolCount:
        chosen = sorted(idx[np.asarray(x.X) > 0.5].tolist(), key=lambda c: o.stage[c])
        choice = tuple((problem.stages[int(o.stage[c])].variants[int(o.variant[c])].name, int(o.batch_size[c]))
                       for c in chosen)
        plan = problem.evaluate(list(choice))
        objective = plan.objective if plan is not None else None
    runtime = float(m.Runtime)
    m.dispose()
    return MCKResult(status, t1 - t0, t2 - t1, runtime, objective, choice, cpu)


def main(argv: list[str] | None = None) -> int:
    from servopt.formulations.registry import load_problem

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python benchmarks/ipa_gurobi_model.py PIPELINE.yaml", file=sys.stderr)
        return 2
    problem = load_problem(args[0])
    result = solve_ipa(problem)
    print(f"IPA's model: {result.size}")
    print(f"status {result.status}, build {result.build_s:.4f} s, solve {result.solve_s:.4f} s, "
          f"objective {result.objective}, choice {result.choice} {result.message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
