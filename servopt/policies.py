"""Baseline policies for ``variant_selection`` and ``pipeline`` (SPEC §4.5): same plans, other deciders.

================  =====================  ===================================================================
policy            problems               what it does
================  =====================  ===================================================================
``bruteforce``    both                   enumerates every decision (exact, status ``optimal``; small instances)
``greedy``        both                   downgrades the variant that loses the least normalised accuracy per
                                         unit of resource x demand until the plan fits (Buijnsters, TU Delft
                                         2023, as read by servopt; not optimal)
``fa2``           pipeline               IPA's FA2: variants fixed, batch and replicas optimal (exact MILP)
``rim``           pipeline               IPA's RIM: replicas fixed, variant and batch optimal (exact MILP)
``ms+``           variant_selection      InfAdapter's MS+: one variant, switched and resized (exact over
                                         single-variant plans)
``fleet_ffd``     fleet                  first-fit-decreasing bin packing (servopt.formulations.fleet.baselines)
``fleet_one_per   fleet                  dedicated GPUs per model, the type cheapest per capacity for it
_gpu``
``fleet_cheapest  fleet                  dedicated GPUs per model, cheapest GPU type first
_type``
================  =====================  ===================================================================

Every policy returns a :class:`servopt.solve.Solution` whose plan is the formulation's own plan type with the
formulation's true objective, so policies and the exact MILP compare directly. Only ``bruteforce`` reports
``optimal``; the others report ``feasible`` (a plan, not proven optimal for the problem), with the reason in
``Solution.message``. ``servopt solve --policy NAME``
runs one.

Options (``options=`` mapping): ``bruteforce``: ``max_combinations`` (default 2,000,000); ``fa2``:
``variants`` (stage -> variant, or ``"lowest"`` / ``"highest"`` / ``"current"``; default the current deployment
when every stage has one, else ``"lowest"``, IPA's FA2-low); ``rim``: ``replicas`` (an integer or stage ->
integer; default the current replicas when known, else 3, IPA's ``initial_replica``); ``fa2`` and ``rim``:
``backend`` (default ``auto``).
"""

from __future__ import annotations

import math
import time
from fractions import Fraction
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from servopt.exact import dec, near
from servopt.exceptions import ValidationError
from servopt.formulations.fleet.problem import FleetProblem
from servopt.formulations.pipeline.problem import Pipeline
from servopt.formulations.variant_selection.problem import VariantSelection
from servopt.formulations.ties import RATE_RTOL, tie_tolerance
from servopt.result import SolveParams, Status
from servopt.solve import Solution

__all__ = ["POLICIES", "run_policy"]

PolicyResult = tuple[Status, Any, str]


def run_policy(problem: Any, name: str, params: SolveParams | None = None, *,
               options: Mapping[str, Any] | None = None) -> Solution:
    """Run baseline policy ``name`` on ``problem``.

    Parameters
    ----------
    problem : VariantSelection or Pipeline
    name : str
        A key of :data:`POLICIES`.
    params : SolveParams, optional
        Solver parameters for the policies that solve a MILP (``fa2``, ``rim``).
    options : Mapping, optional
        Policy options (module docstring); unknown names raise.

    Examples
    --------
    >>> from servopt.formulations.variant_selection.problem import Variant, VariantSelection
    >>> p = VariantSelection(30, 4, [Variant("a", 0.7, {2: 40}), Variant("b", 0.8, {2: 20, 4: 45})])
    >>> run_policy(p, "ms+").plan.deployment
    {'b': 4}
    """
    if name not in POLICIES:
        raise ValidationError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
    types, func, allowed = POLICIES[name]
    kind = getattr(problem, "kind", None)
    if not isinstance(problem, types):
        raise ValidationError(f"policy {name!r} applies to {' and '.join(t.kind for t in types)} problems, "
                              f"not {kind or type(problem).__name__!r}")
    if params is not None and not isinstance(params, SolveParams):
        hint = (f"; policy options go in options=, e.g. run_policy(problem, {name!r}, options={dict(params)!r})"
                if isinstance(params, Mapping) else "")
        raise ValidationError(f"run_policy: params must be a SolveParams or None, got {type(params).__name__}{hint}")
    if options is not None and not isinstance(options, Mapping):
        raise ValidationError(f"run_policy: options must be a mapping of policy options, got "
                              f"{type(options).__name__}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValidationError(f"policy {name!r}: unknown option(s) {', '.join(unknown)}; allowed: "
                              f"{', '.join(allowed) or 'none'}")
    t0 = time.perf_counter()
    status, plan, message = func(problem, params or SolveParams(), options)
    if status is Status.INFEASIBLE and not message:
        message = problem.explain_infeasible()
    return Solution(problem=kind, status=status, objective=None if plan is None else float(plan.objective),
                    backend=f"policy:{name}", solve_seconds=time.perf_counter() - t0, plan=plan, message=message)


# --------------------------------------------------------------------------------------------- brute force
def _bruteforce(problem: Any, params: SolveParams, options: Mapping[str, Any]) -> PolicyResult:
    limit = int(options.get("max_combinations", 2_000_000))
    if isinstance(problem, VariantSelection):
        return _bruteforce_variants(problem, limit)
    return _bruteforce_pipeline(problem, limit)


def _bruteforce_variants(problem: Any, limit: int) -> PolicyResult:
    """Every core vector within the budget (depth-first, pruned by the budget), scored with numpy."""
    allowed = [[0] + v.allowed_cores(problem.core_budget) for v in problem.variants]
    budget = problem.core_budget
    vectors: list[tuple[int, ...]] = []

    def walk(i: int, used: int, prefix: tuple[int, ...]) -> None:
        if i == len(allowed):
            vectors.append(prefix)
            if len(vectors) > limit:
                raise ValidationError(f"bruteforce: more than {limit} core vectors; use the MILP or raise "
                                      "max_combinations")
            return
        for k in allowed[i]:
            if used + k <= budget:
                walk(i + 1, used + k, prefix + (k,))

    walk(0, 0, ())
    counts = np.asarray(vectors, dtype=np.int64)
    caps = np.zeros(counts.shape, dtype=float)
    for j, v in enumerate(problem.variants):
        for k, rps in v.capacity.items():
            caps[counts[:, j] == k, j] = rps
    lam = problem.workload_rps
    ok = caps.sum(axis=1) >= lam * (1 - RATE_RTOL)
    if not ok.any():
        return Status.INFEASIBLE, None, ""
    counts, caps = counts[ok], caps[ok]
    order = np.argsort([-v.accuracy for v in problem.variants], kind="stable")
    before = np.cumsum(caps[:, order], axis=1) - caps[:, order]
    served = np.clip(lam - before, 0.0, caps[:, order])
    acc = np.array([v.accuracy for v in problem.variants])[order]
    avg = served @ acc / lam
    current = np.array([v.current_cores for v in problem.variants])
    loads = np.array([v.load_time_s for v in problem.variants])
    changed = (counts > 0) & (counts != current)
    lc = np.where(changed, loads, 0.0).max(axis=1)
    load_max = loads.max()
    score = problem.alpha * avg - problem.beta * counts.sum(axis=1) / problem.core_budget
    if load_max > 0:
        score = score - problem.gamma * lc / load_max
    return _best_exact(score, (counts != current).sum(axis=1), problem.prefer_stable,
                       lambda best: problem.evaluate(counts[best].tolist()))


def _bruteforce_pipeline(problem: Any, limit: int) -> PolicyResult:
    """Every (variant, batch) per stage with replicas n* = ceil(λ/h) (optimal for fixed choices), vectorised."""
    opts = problem.options()
    stages = []
    for sl in opts.stage_slices:
        idx = np.arange(sl.start, sl.stop)[opts.feasible[sl]]
        if not idx.size:
            return Status.INFEASIBLE, None, ""
        stages.append(idx)
    size = math.prod(len(s) for s in stages)
    if size > limit:
        raise ValidationError(f"bruteforce: {size} combinations exceed max_combinations={limit}; use the MILP")
    lat = opts.latency_ms + opts.queue_ms
    change = np.zeros(opts.stage.size)
    for si, stage in enumerate(problem.stages):
        dep = None if problem.current is None else problem.current.get(stage.name)
        if dep is not None:
            sl = opts.stage_slices[si]
            names = np.array([stage.variants[int(i)].name for i in opts.variant[sl]])
            change[sl] = (names != dep.variant).astype(float) + (opts.batch_size[sl] != dep.batch_size)
    total_lat = np.zeros(1)
    value = np.zeros(1)
    acc = np.ones(1)
    changes = np.zeros(1)
    for idx in stages:  # outer sums in C order: the flat index unravels over len(stages) axes
        total_lat = (total_lat[:, None] + lat[idx][None, :]).ravel()
        value = (value[:, None] + opts.value[idx][None, :]).ravel()
        acc = (acc[:, None] * opts.accuracy[idx][None, :]).ravel()
        changes = (changes[:, None] + change[idx][None, :]).ravel()
    if problem.accuracy == "product":
        value = value + problem.alpha * acc
    feasible = total_lat <= problem.sla_ms + RATE_RTOL * max(1.0, problem.sla_ms)
    if not feasible.any():
        return Status.INFEASIBLE, None, ""
    score = np.where(feasible, value, -np.inf)

    def plan_at(best: int) -> Any:
        picks = np.unravel_index(best, [len(s) for s in stages])
        choice = []
        for si, (stage, idx) in enumerate(zip(problem.stages, stages)):
            o = int(idx[int(picks[si])])
            choice.append((stage.variants[int(opts.variant[o])].name, int(opts.batch_size[o])))
        return problem.evaluate(choice)

    return _best_exact(score, changes, problem.prefer_stable and problem.current is not None, plan_at)


def _best_exact(score: np.ndarray, changes: np.ndarray, stable: bool,
                plan_at: Callable[[int], Any]) -> PolicyResult:
    """The best candidate that passes the exact check (``plan_at`` returns None for one that fails it).

    The float filter before it keeps every candidate within RATE_RTOL of a bound; those the exact rule
    (:mod:`servopt.exact`) rejects are dropped here, one at a time, so "optimal" always comes with a plan.
    """
    score = np.array(score, dtype=float)
    while np.isfinite(score).any():
        best = _pick(score, changes, stable)
        plan = plan_at(best)
        if plan is not None:
            return Status.OPTIMAL, plan, ""
        score[best] = -np.inf
    return Status.INFEASIBLE, None, ""


def _pick(score: np.ndarray, changes: np.ndarray, stable: bool) -> int:
    best = int(np.argmax(score))
    if not stable:
        return best
    top = float(score[best])
    ties = np.flatnonzero(score >= top - tie_tolerance(top))
    return int(ties[np.argmin(changes[ties])])


# ------------------------------------------------------------------------------------------------- greedy
def _greedy(problem: Any, params: SolveParams, options: Mapping[str, Any]) -> PolicyResult:
    if isinstance(problem, VariantSelection):
        return _greedy_variants(problem)
    return _greedy_pipeline(problem)


def _greedy_variants(problem: Any) -> PolicyResult:
    """Serve everything on the most accurate variant; while the cores exceed the budget (or a variant cannot
    carry its load), move load down one variant where it loses the least normalised accuracy x demand per core
    saved; then keep making such moves while they raise the objective. A move takes the load a variant sheds
    by dropping to its next smaller core count."""
    vs = list(problem.variants)
    order = sorted(range(len(vs)), key=lambda i: -vs[i].accuracy)
    allowed = [v.allowed_cores(problem.core_budget) for v in vs]
    spread = (vs[order[0]].accuracy - vs[order[-1]].accuracy) or 1.0

    def need(i: int, load: float) -> float:
        if load <= 0:
            return 0
        fits = [k for k in allowed[i] if vs[i].capacity[k] >= load * (1 - RATE_RTOL)]
        return min(fits) if fits else math.inf

    def best_move(load: list[float]) -> tuple[int, int, float] | None:
        cores = [need(i, x) for i, x in enumerate(load)]
        moves = []
        for pos, i in enumerate(order[:-1]):
            if load[i] <= 0:
                continue
            j = order[pos + 1]
            smaller = [k for k in allowed[i] if k < cores[i]]
            keep = min(load[i], vs[i].capacity[max(smaller)]) if smaller else 0.0
            if not math.isinf(cores[i]) and keep >= load[i]:
                continue
            shed = load[i] - keep
            saved = cores[i] + cores[j] - need(i, keep) - need(j, load[j] + shed)
            loss = shed * (vs[i].accuracy - vs[j].accuracy) / spread
            if math.isinf(cores[i]):
                rank = (0, loss)  # cannot carry its load at all: must shed
            elif saved > 0 and not math.isnan(saved):
                rank = (1, loss / saved)
            else:
                rank = (2, loss)
            moves.append((rank, i, j, shed))
        return min(moves)[1:] if moves else None

    def moved(load: list[float], move: tuple[int, int, float]) -> list[float]:
        i, j, shed = move
        out = list(load)
        out[i] -= shed
        out[j] += shed
        return out

    def cores_of(load: list[float]) -> list[float]:
        return [need(i, x) for i, x in enumerate(load)]

    load = [0.0] * len(vs)
    load[order[0]] = problem.workload_rps
    while sum(cores_of(load)) > problem.core_budget:
        move = best_move(load)
        if move is None:
            return Status.INFEASIBLE, None, ""
        load = moved(load, move)
    plan = problem.evaluate([int(c) for c in cores_of(load)])
    while plan is not None:  # downgrade further while it pays
        move = best_move(load)
        if move is None:
            break
        trial = moved(load, move)
        cores = cores_of(trial)
        better = problem.evaluate([int(c) for c in cores]) if sum(cores) <= problem.core_budget else None
        if better is None or better.objective <= plan.objective:
            break
        load, plan = trial, better
    if plan is None:
        return Status.INFEASIBLE, None, ""
    return Status.FEASIBLE, plan, "greedy policy: feasible, not proven optimal"


def _greedy_pipeline(problem: Any) -> PolicyResult:
    """Start from every stage's most accurate variant at its fastest batch; while the SLA is broken (or a stage
    cannot keep up within the replica cap), downgrade the stage that loses the least normalised accuracy per
    core saved (cores = resource x demand: c·ceil(λ/h)); then keep downgrading, the same way, while it raises
    the objective. After each step every stage takes the batch size of its variant that scores best while the
    SLA holds (largest stages first)."""
    opts = problem.options()
    lat = opts.latency_ms + opts.queue_ms
    ladders, fastest = [], []
    for si, stage in enumerate(problem.stages):
        ladders.append(sorted(range(len(stage.variants)), key=lambda v: -stage.variants[v].accuracy))
        sl = opts.stage_slices[si]
        per_variant = {}
        for v in range(len(stage.variants)):
            idx = np.arange(sl.start, sl.stop)[(opts.variant[sl] == v) & opts.feasible[sl]]
            if idx.size:
                per_variant[v] = int(idx[np.lexsort((opts.batch_size[idx], opts.cores[idx], lat[idx]))[0]])
        fastest.append(per_variant)

    sla = dec(problem.sla_ms)

    def within(chosen: list[int]) -> bool:
        """Whether the options meet the SLA, by the exact rule of the check (floats where they are certain)."""
        total = float(sum(lat[o] for o in chosen))
        if not near(total, problem.sla_ms):
            return total <= problem.sla_ms
        return sum((dec(float(opts.latency_ms[o])) + Fraction(1000 * (int(opts.batch_size[o]) - 1))
                    / dec(problem.workload_rps) for o in chosen), Fraction(0)) <= sla

    def assemble(level: list[int]) -> list[int | None]:
        return [fastest[si].get(ladders[si][level[si]]) for si in range(len(level))]

    def polish(chosen: list[int]) -> list[int]:
        chosen = list(chosen)
        for si in sorted(range(len(chosen)), key=lambda s: -opts.cores[chosen[s]]):
            sl = opts.stage_slices[si]
            same = np.arange(sl.start, sl.stop)[(opts.variant[sl] == opts.variant[chosen[si]]) & opts.feasible[sl]]
            fits = [o for o in same.tolist() if within(chosen[:si] + [o] + chosen[si + 1:])]
            chosen[si] = max(fits, key=lambda o: (opts.value[o], -lat[o]))
        return chosen

    def plan_of(chosen: list[int]) -> Any:
        return problem.evaluate([(problem.stages[si].variants[int(opts.variant[o])].name, int(opts.batch_size[o]))
                                 for si, o in enumerate(chosen)])

    def loss(si: int, level: list[int]) -> float:
        accs = [problem.stages[si].variants[v].accuracy for v in ladders[si]]
        return (accs[level[si]] - accs[level[si] + 1]) / ((accs[0] - accs[-1]) or 1.0)

    level = [0] * len(problem.stages)
    while True:  # downgrade until the plan fits
        chosen = assemble(level)
        if None not in chosen and within(chosen):
            break
        moves = []
        for si, o in enumerate(chosen):
            if level[si] + 1 >= len(ladders[si]):
                continue
            nxt = assemble(level[:si] + [level[si] + 1] + level[si + 1:])[si]
            if o is None:
                moves.append(((0, loss(si, level)), si))
            elif nxt is not None and lat[nxt] < lat[o]:
                saved = opts.cores[o] - opts.cores[nxt]
                moves.append(((1, loss(si, level) / saved) if saved > 0 else (2, loss(si, level)), si))
        if not moves:
            return Status.INFEASIBLE, None, ""
        level[min(moves)[1]] += 1
    current = polish(chosen)
    plan = plan_of(current)
    if plan is None:  # not expected: the options meet the SLA exactly and every stage keeps up
        return Status.INFEASIBLE, None, ""
    while True:  # downgrade further while it pays
        moves = []
        for si in range(len(level)):
            if level[si] + 1 >= len(ladders[si]):
                continue
            trial_level = level[:si] + [level[si] + 1] + level[si + 1:]
            trial = assemble(trial_level)
            if None in trial or not within(trial):
                continue
            trial = polish(trial)
            better = plan_of(trial)
            if better is None or better.objective <= plan.objective + tie_tolerance(plan.objective):
                continue
            saved = opts.cores[current[si]] - opts.cores[trial[si]]
            moves.append(((1, loss(si, level) / saved) if saved > 0 else (2, loss(si, level)), si, trial_level,
                          trial, better))
        if not moves:
            break
        _, _, level, current, plan = min(moves, key=lambda m: m[:2])
    return Status.FEASIBLE, plan, "greedy policy: feasible, not proven optimal"


# -------------------------------------------------------------------------------------- single-variant
def _ms_plus(problem: Any, params: SolveParams, options: Mapping[str, Any]) -> PolicyResult:
    """InfAdapter's MS+: one variant serves everything; the best (variant, cores) by the §4.3 objective."""
    best = None
    n = len(problem.variants)
    for i, v in enumerate(problem.variants):
        for k in v.allowed_cores(problem.core_budget):
            if v.capacity[k] < problem.workload_rps * (1 - RATE_RTOL):
                continue
            plan = problem.evaluate([k if j == i else 0 for j in range(n)])
            if plan is not None and (best is None or plan.objective > best.objective + tie_tolerance(best.objective)
                                     or (problem.prefer_stable and plan.objective >= best.objective
                                         - tie_tolerance(best.objective) and plan.changes < best.changes)):
                best = plan
    if best is None:
        return Status.INFEASIBLE, None, (f"no single variant serves {problem.workload_rps:g} RPS within the "
                                         f"{problem.core_budget}-core budget")
    return Status.FEASIBLE, best, "ms+ policy: the best single-variant plan (not proven optimal overall)"


def _fa2(problem: Any, params: SolveParams, options: Mapping[str, Any]) -> PolicyResult:
    """IPA's FA2: variants fixed; batch sizes and replicas chosen exactly by the MILP."""
    spec = options.get("variants")
    current = problem.current or {}
    if spec is None:
        spec = "current" if all(s.name in current for s in problem.stages) else "lowest"
    if isinstance(spec, str):
        if spec == "current":
            missing = [s.name for s in problem.stages if s.name not in current]
            if missing:
                raise ValidationError(f"fa2: variants='current' but stage(s) {', '.join(missing)} have no current "
                                      "deployment")
            fixed = {s: d.variant for s, d in current.items()}
        elif spec in ("lowest", "highest"):
            pick: Callable = min if spec == "lowest" else max
            fixed = {s.name: pick(s.variants, key=lambda v: v.accuracy).name for s in problem.stages}
        else:
            raise ValidationError(f"fa2: variants={spec!r}; give a mapping stage -> variant, or lowest, highest, "
                                  "current")
    else:
        fixed = dict(spec)
    return _solve_restricted(problem.restricted(variants=fixed), params, options, f"variants fixed to {fixed}")


def _rim(problem: Any, params: SolveParams, options: Mapping[str, Any]) -> PolicyResult:
    """IPA's RIM: replicas fixed per stage; variant and batch size chosen exactly by the MILP."""
    spec = options.get("replicas")
    if spec is None:
        current = problem.current or {}
        known = {s: d.replicas for s, d in current.items() if d.replicas is not None}
        spec = known if len(known) == len(problem.stages) else 3
        over = {s: n for s, n in known.items() if n > problem.max_replicas} if spec is known else {}
        if over:  # the default came from the running deployment, not from the user
            listed = ", ".join(f"{s!r} runs {n}" for s, n in over.items())
            raise ValidationError(
                f"rim: the fixed replicas default to the current deployment's (current: in the problem), but "
                f"{listed} replicas, above max_replicas {problem.max_replicas}; raise max_replicas to at least "
                f"{max(over.values())}, set those current replicas within 1..{problem.max_replicas}, or give the "
                f"replicas yourself (run_policy(problem, 'rim', options={{'replicas': N}}), N in "
                f"1..{problem.max_replicas} or stage -> N)"
            )
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = min(spec, problem.max_replicas)
    return _solve_restricted(problem.restricted(replicas=spec), params, options, f"replicas fixed to {spec}")


def _solve_restricted(problem: Any, params: SolveParams, options: Mapping[str, Any], what: str) -> PolicyResult:
    from servopt.solve import solve

    solution = solve(problem, options.get("backend", "auto"), params=params)
    if solution.status is Status.INFEASIBLE:
        return solution.status, None, f"{solution.message} ({what})"
    # optimal for the restricted problem only: for the problem itself the plan is feasible, not proven optimal
    status = Status.FEASIBLE if solution.status.has_solution else solution.status
    return status, solution.plan, f"{what}; solved by {solution.backend} ({solution.status.value} when restricted)"


def _fleet(name: str) -> Callable[..., PolicyResult]:
    def run(problem: Any, params: SolveParams, options: Mapping[str, Any]) -> PolicyResult:
        from servopt.formulations.fleet.baselines import FLEET_POLICIES

        return FLEET_POLICIES[name](problem)

    return run


#: name -> (problem types, function(problem, params, options) -> (status, plan, message), option names)
POLICIES: dict[str, tuple[tuple[type, ...], Callable[..., PolicyResult], tuple[str, ...]]] = {
    "bruteforce": ((VariantSelection, Pipeline), _bruteforce, ("max_combinations",)),
    "greedy": ((VariantSelection, Pipeline), _greedy, ()),
    "fa2": ((Pipeline,), _fa2, ("variants", "backend")),
    "rim": ((Pipeline,), _rim, ("replicas", "backend")),
    "ms+": ((VariantSelection,), _ms_plus, ()),
    "fleet_ffd": ((FleetProblem,), _fleet("fleet_ffd"), ()),
    "fleet_one_per_gpu": ((FleetProblem,), _fleet("fleet_one_per_gpu"), ()),
    "fleet_cheapest_type": ((FleetProblem,), _fleet("fleet_cheapest_type"), ()),
}
