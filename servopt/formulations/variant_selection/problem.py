"""``variant_selection``: InfAdapter's accuracy-cost trade-off as an exact MILP (SPEC §4.3).

Given a workload λ (RPS), a core budget B and model variants m (accuracy a_m, load time, capacity th_m(n) = RPS
served within the latency SLO on n cores), choose cores n_m ∈ {0} ∪ [n_min, n_max] and served loads λ_m >= 0:

    maximise   α Σ_m (λ_m / λ) a_m  −  β Σ_m n_m / B  −  γ LC / max_m load_time_m
    subject to Σ_m λ_m = λ,   λ_m <= th_m(n_m),   Σ_m n_m <= B

LC is the largest load time among variants whose cores change to a new non-zero value (a new pod must start).

The MILP (all exact, no big-M):

* one binary ``y[m,k]`` per variant and *profiled* core count k (capacities are exact table points, never
  interpolated; a count the table lacks is not offered), ``Σ_k y[m,k] <= 1``; n_m = Σ_k k y[m,k];
* ``λ_m <= Σ_k th_m(k) y[m,k]``; λ_m is free, so the LP fills the most accurate variants first (InfAdapter's
  intent) without InfAdapter's bound that forces every variant but the cheapest to run at full capacity;
  λ_m is declared integer when λ and every capacity are whole numbers (exact: the accuracy-greedy split is then
  integral), which makes the model all-integer for CP-SAT;
* "changed to a new non-zero value" is ``Σ_{k != current} y[m,k]`` (a linear expression, no extra binary);
  LC uses one binary ``u_j`` per distinct load time t_1 > t_2 > ... : ``u_j`` = "LC >= t_j", with
  ``changed_m <= u_{j(m)}``, ``u_j <= u_{j+1}`` and LC = Σ_j (t_j − t_{j+1}) u_j.

The model maximises K = λ·B·max load time times the objective (a positive constant: same solutions), which
clears the divisions: decimal data give decimal coefficients, so CP-SAT takes integral instances with
``scale=10^k`` (:func:`~servopt.formulations.ties.integral_scale`). Plans report the true objective,
recomputed from the plan (:meth:`VariantSelection.evaluate`), with the served loads split greedily by accuracy
(the optimal split for the chosen cores).
"""

from __future__ import annotations

import math
from fractions import Fraction
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from servopt.exact import dec
from servopt.exceptions import ValidationError
from servopt.fields import as_int, as_number
from servopt.formulations.ties import refine_stable, tie_tolerance
from servopt.formulations.variant_selection.verify import exact_split
from servopt.formulations.variant_selection.types import Variant, VariantAllocation, VariantSelectionPlan
from servopt.model import Model
from servopt.result import Result

__all__ = ["VariantSelection", "Variant", "VariantAllocation", "VariantSelectionPlan"]


@dataclass(frozen=True)
class VariantSelection:
    """InfAdapter's variant-selection problem (SPEC §4.3).

    Parameters
    ----------
    workload_rps : float
        λ > 0.
    core_budget : int
        B.
    variants : sequence of Variant
    alpha, beta, gamma : float
        Weights of accuracy, cores and loading cost (InfAdapter's code: 1, 0.05, 0.001).
    prefer_stable : bool
        Among optimal plans, return one that changes the fewest variants' cores from the current deployment
        (exact second solve; see :mod:`servopt.formulations.ties`).
    name : str
    triton : Mapping, optional
        Triton settings, stored untouched for the repository writer.

    Examples
    --------
    >>> p = VariantSelection(50, 8, [Variant("small", 0.70, {2: 40, 4: 90}), Variant("big", 0.78, {2: 10, 4: 25})])
    >>> p.evaluate({"small": 2, "big": 2}).average_accuracy   # 10 RPS on big, 40 on small
    0.716
    """

    kind: ClassVar[str] = "variant_selection"
    #: exact special-purpose algorithm (servopt.formulations.variant_selection.dp); see ``default_backend``
    algorithms: ClassVar[tuple[str, ...]] = ("dp", "frontier")

    workload_rps: float
    core_budget: int
    variants: Sequence[Variant]
    alpha: float = 1.0
    beta: float = 0.05
    gamma: float = 0.001
    prefer_stable: bool = False
    name: str = "variant_selection"
    triton: Mapping[str, Any] | None = None
    _shared: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        as_number(self.workload_rps, "workload_rps", positive=True)
        as_int(self.core_budget, "core_budget", minimum=1)
        for key in ("alpha", "beta", "gamma"):
            object.__setattr__(self, key, as_number(getattr(self, key), key, minimum=0.0))
        variants = tuple(self.variants)
        if not variants or not all(isinstance(v, Variant) for v in variants):
            raise ValidationError("variants: give a non-empty list of Variant objects")
        names = [v.name for v in variants]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValidationError(f"variants: duplicate name(s) {', '.join(sorted(dup))}; names must be unique")
        object.__setattr__(self, "variants", variants)
        object.__setattr__(self, "workload_rps", float(self.workload_rps))
        object.__setattr__(self, "core_budget", int(self.core_budget))
        if not isinstance(self.prefer_stable, bool):
            raise ValidationError(f"prefer_stable={self.prefer_stable!r}: give true or false")

    # ----------------------------------------------------------------- re-planning
    @property
    def current(self) -> dict[str, int]:
        """The running deployment: variant name -> cores (0 when not loaded)."""
        return {v.name: v.current_cores for v in self.variants}

    def update(
        self,
        workload_rps: float | None = None,
        current: Any = None,
        **changes: Any,
    ) -> VariantSelection:
        """The same problem for a new workload and/or running deployment (one call per re-plan).

        ``current`` is the previous plan or a mapping name -> cores (variants not named run 0 cores; ``{}``:
        nothing runs); None (the default) keeps the current deployment. Other fields (``prefer_stable``,
        weights, ...) may be changed by keyword. The λ-independent structure (allowed core counts, capacities,
        the servable-load table) is shared with this problem, not rebuilt.

        Examples
        --------
        >>> p = VariantSelection(50, 8, [Variant("small", 0.70, {2: 40, 4: 90}), Variant("big", 0.78, {4: 25})])
        >>> p.update(workload_rps=60, current={"big": 4}).current
        {'small': 0, 'big': 4}
        """
        variants = self.variants
        if current is not None:
            cores = current.deployment if isinstance(current, VariantSelectionPlan) else dict(current)
            known = {v.name for v in variants}
            unknown = sorted(set(cores) - known)
            if unknown:
                raise ValidationError(f"current deployment names unknown variant(s) {', '.join(unknown)}; "
                                      f"known: {', '.join(sorted(known))}")
            variants = tuple(replace(v, current_cores=int(cores.get(v.name, 0))) for v in variants)
        if workload_rps is not None:
            changes["workload_rps"] = workload_rps
        structural = {"core_budget", "variants"} & set(changes)
        new = replace(self, variants=variants, **changes)
        if not structural:
            object.__setattr__(new, "_shared", self._shared)
        return new

    # -------------------------------------------------------------- shared structure
    def _structure(self) -> dict[str, Any]:
        s = self._shared
        if "allowed" not in s:
            s["allowed"] = [np.asarray(v.allowed_cores(self.core_budget), dtype=np.int64) for v in self.variants]
            s["capacity"] = [np.asarray([v.capacity[int(k)] for k in ks], dtype=float)
                             for v, ks in zip(self.variants, s["allowed"])]
            s["load_max"] = max(v.load_time_s for v in self.variants)
            s["thresholds"] = sorted({v.load_time_s for v in self.variants if v.load_time_s > 0}, reverse=True)
            s["integral_capacity"] = all(bool(np.all(c == np.round(c))) for c in s["capacity"])
            # the most cores any plan can use (each variant runs on one of its allowed counts): the budget binds
            # only below it, so tables over cores need this many rows, not B + 1 (B may be up to 2^53)
            s["usable_cores"] = min(self.core_budget, sum(int(ks.max(initial=0)) for ks in s["allowed"]))
        return s

    @property
    def usable_cores(self) -> int:
        """The most cores a plan can use: the budget, or the sum of each variant's largest allowed core count
        when that is smaller (then the budget cannot bind).

        >>> VariantSelection(50, 10**9, [Variant("a", 0.7, {1: 20, 2: 44, 3: 68})]).usable_cores
        3
        """
        return int(self._structure()["usable_cores"])

    def max_servable(self) -> tuple[float, dict[str, int]]:
        """The largest load the budget can serve, and one allocation (name -> cores) that serves it.

        A knapsack over whole cores up to :attr:`usable_cores` (not the budget, which may be up to 2^53), computed
        once per structure; where that table would be large (> :data:`_DENSE_CELLS` cells), over the Pareto front
        of (cores, load) instead, whose size does not depend on the budget either.
        """
        s = self._structure()
        if "servable" not in s and (s["usable_cores"] + 1) * (len(self.variants) + 3) > _DENSE_CELLS:
            s["servable"] = _servable_front(self.variants, s["allowed"], s["capacity"], self.core_budget)
        if "servable" not in s:
            budget = s["usable_cores"]
            best = np.zeros(budget + 1)
            choices = []
            for ks, th in zip(s["allowed"], s["capacity"]):
                new = best.copy()
                pick = np.zeros(budget + 1, dtype=np.int64)
                for k, cap in zip(ks.tolist(), th.tolist()):
                    cand = np.full(budget + 1, -np.inf)
                    cand[k:] = best[: budget + 1 - k] + cap
                    better = cand > new
                    new[better] = cand[better]
                    pick[better] = k
                best = new
                choices.append(pick)
            alloc: dict[str, int] = {}
            b = int(np.argmax(best))
            top = float(best[b])
            for v, pick in zip(reversed(self.variants), reversed(choices)):
                k = int(pick[b])
                if k:
                    alloc[v.name] = k
                    b -= k
            s["servable"] = (top, {v.name: alloc[v.name] for v in self.variants if v.name in alloc})
        top, alloc = s["servable"]
        return top, dict(alloc)

    # --------------------------------------------------------------------- evaluate
    def evaluate(self, cores: Mapping[str, int] | Sequence[int], *, exact: bool = True
                 ) -> VariantSelectionPlan | None:
        """The plan for given cores per variant, with its true objective; None if it cannot serve λ.

        Served loads are split greedily by accuracy (ties: the order of ``variants``), the optimal split for
        fixed cores. Core counts must be 0 or allowed for the variant. With ``exact=False`` a plan whose
        capacities fall short of λ (decided exactly) is still returned, with the loads they can take, so that the
        exact check (:meth:`verify`) reports it and :func:`servopt.solve` repairs it (a solver's answer within
        its feasibility tolerance, never returned as it is).
        """
        counts = self._counts(cores)
        lam = self.workload_rps
        if sum(counts) > self.core_budget and exact:
            return None
        caps = [v.capacity[c] if c else 0.0 for v, c in zip(self.variants, counts)]
        rps = exact_split(lam, caps, [v.accuracy for v in self.variants])
        if rps is None:
            if exact:
                return None
            rps = exact_split(float(sum(map(dec, caps), Fraction(0))), caps, [v.accuracy for v in self.variants])
        load_max = self._structure()["load_max"]
        changed = [v.load_time_s for v, c in zip(self.variants, counts) if c > 0 and c != v.current_cores]
        lc = max(changed, default=0.0)
        avg = sum(r * v.accuracy for r, v in zip(rps, self.variants)) / lam
        total = int(sum(counts))
        objective = self.alpha * avg - self.beta * total / self.core_budget
        if load_max > 0:
            objective -= self.gamma * lc / load_max
        allocations = tuple(
            VariantAllocation(v.name, c, r, cap, v.accuracy, v.current_cores)
            for v, c, r, cap in zip(self.variants, counts, rps, caps)
            if c > 0
        )
        return VariantSelectionPlan(
            objective=objective,
            average_accuracy=avg,
            cores=total,
            loading_cost_s=lc,
            variants=allocations,
            workload_rps=lam,
            core_budget=self.core_budget,
            changes=sum(1 for v, c in zip(self.variants, counts) if c != v.current_cores),
            unloaded=tuple(v.name for v, c in zip(self.variants, counts) if c == 0 and v.current_cores > 0),
        )

    def _counts(self, cores: Mapping[str, int] | Sequence[int]) -> list[int]:
        if isinstance(cores, Mapping):
            known = {v.name for v in self.variants}
            unknown = sorted(set(cores) - known)
            if unknown:
                raise ValidationError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            counts = [int(cores.get(v.name, 0)) for v in self.variants]
        else:
            counts = [int(c) for c in cores]
            if len(counts) != len(self.variants):
                raise ValidationError(f"give one core count per variant ({len(self.variants)}), got {len(counts)}")
        allowed = self._structure()["allowed"]
        for v, c, ks in zip(self.variants, counts, allowed):
            if c != 0 and c not in ks:
                raise ValidationError(
                    f"variant {v.name!r}: {c} cores is not allowed; allowed: 0, {', '.join(map(str, ks))}"
                )
        return counts

    # ------------------------------------------------------------------------ build
    def build(self) -> tuple[Model, Callable[[Result], VariantSelectionPlan]]:
        """The MILP of the module docstring and its decoder."""
        model, decode, _ = self._build()
        return model, decode

    def _build(self, stable_from: float | None = None):
        s = self._structure()
        lam = self.workload_rps
        budget = self.core_budget
        integral = s["integral_capacity"] and float(lam).is_integer()
        model = Model(f"variant_selection:{self.name}")
        y_index: list[np.ndarray] = []
        for v, ks in zip(self.variants, s["allowed"]):
            first = model.num_vars
            for k in ks.tolist():
                model.add_binary(f"y[{v.name},{k}]")
            y_index.append(np.arange(first, model.num_vars))
        lam_index = []
        for v, th in zip(self.variants, s["capacity"]):
            top = min(lam, float(th.max())) if th.size else 0.0
            if integral:
                top = math.floor(top)
            var = model.add_var(f"load[{v.name}]", kind="integer" if integral else "continuous", ub=top)
            lam_index.append(var.index)
        thresholds = s["thresholds"]
        u_index = [model.add_binary(f"lc>={t:g}").index for t in thresholds]

        for v, ys, ks, th, li in zip(self.variants, y_index, s["allowed"], s["capacity"], lam_index):
            if ys.size > 1:
                model.add_row(ys, np.ones(ys.size), ub=1.0, name=f"one_size[{v.name}]")
            model.add_row(np.r_[li, ys], np.r_[1.0, -th], ub=0.0, name=f"capacity[{v.name}]")
        model.add_row(lam_index, np.ones(len(lam_index)), lb=lam, ub=lam, name="demand")
        all_y = np.concatenate(y_index) if y_index else np.zeros(0, dtype=np.int64)
        all_k = np.concatenate(s["allowed"]).astype(float) if y_index else np.zeros(0)
        model.add_row(all_y, all_k, ub=float(budget), name="budget")
        for v, ys, ks in zip(self.variants, y_index, s["allowed"]):
            if v.load_time_s <= 0:
                continue
            moved = ys[ks != v.current_cores]
            if moved.size:
                j = thresholds.index(v.load_time_s)
                model.add_row(np.r_[moved, u_index[j]], np.r_[np.ones(moved.size), -1.0], ub=0.0,
                              name=f"loading[{v.name}]")
        for j in range(len(u_index) - 1):
            model.add_row([u_index[j], u_index[j + 1]], [1.0, -1.0], ub=0.0, name=f"lc_chain[{j}]")

        # the model maximises K times the §4.3 objective, K = λ·B·max load time (same argmax): this clears the
        # divisions, so decimal data give decimal coefficients (CP-SAT with scale=10^k); plans report the true value
        load_max = s["load_max"]
        scale = lam * budget * (load_max if load_max > 0 else 1.0)
        cols = [np.asarray(lam_index), all_y, np.asarray(u_index, dtype=np.int64)]
        acc = np.array([v.accuracy for v in self.variants])
        coefs = [self.alpha * acc * budget * (load_max if load_max > 0 else 1.0), -self.beta * all_k * lam * (
            load_max if load_max > 0 else 1.0)]
        steps = -np.diff(np.r_[thresholds, 0.0]) if thresholds else np.zeros(0)
        coefs.append(-self.gamma * steps * lam * budget if load_max > 0 else np.zeros(len(u_index)))
        obj_cols = np.concatenate(cols).astype(np.int64)
        obj_coefs = np.concatenate(coefs)

        if stable_from is None:
            model.set_objective_arrays(obj_cols, obj_coefs, "max")
        else:
            model.add_row(obj_cols, obj_coefs, lb=scale * (stable_from - tie_tolerance(stable_from)),
                          name="keep_optimum")
            change_cols, change_coefs, constant = [], [], 0.0
            for v, ys, ks in zip(self.variants, y_index, s["allowed"]):
                if v.current_cores == 0:
                    change_cols.extend(ys.tolist())
                    change_coefs.extend([1.0] * ys.size)
                elif v.current_cores in ks:
                    constant += 1.0
                    change_cols.append(int(ys[ks.tolist().index(v.current_cores)]))
                    change_coefs.append(-1.0)
                else:
                    constant += 1.0
            model.set_objective_arrays(change_cols, change_coefs, "min", constant=constant)

        def decode(result: Result) -> VariantSelectionPlan:
            values = np.asarray(result.values)
            counts = []
            for ys, ks in zip(y_index, s["allowed"]):
                if ys.size and values[ys].max() > 0.5:
                    counts.append(int(ks[int(np.argmax(values[ys]))]))
                else:
                    counts.append(0)
            # a plan the solver accepted within its tolerance but that fails exactly (capacities 1e-6 short of
            # λ) is decoded as it is: the exact check on the return path (servopt.solve) repairs it
            return self.evaluate(counts) or self.evaluate(counts, exact=False)

        return model, decode, y_index

    @property
    def default_backend(self) -> str:
        """``dp`` when its tables take the problem (capacities below λ with <= 3 decimals, any λ; no
        ``prefer_stable``), else ``auto`` (MILP).

        Evidence: benchmarks/results/variants.csv.
        """
        from servopt.formulations.variant_selection.dp import grid_scale

        return "dp" if not self.prefer_stable and grid_scale(self)[0] is not None else "auto"

    def solve_with(self, name: str, params: Any) -> tuple[Any, VariantSelectionPlan | None, str]:
        """Solve with the exact algorithm ``name``: ``dp`` (dynamic programming over cores and grid loads) or
        ``frontier`` (dominance search, any capacities); both reach the MILP's optimum, with a certificate."""
        if name == "dp":
            from servopt.formulations.variant_selection.dp import solve_dp

            return solve_dp(self, params)
        if name == "frontier":
            from servopt.formulations.variant_selection.frontier import solve_frontier

            return solve_frontier(self, params)
        raise ValidationError(f"variant_selection: unknown algorithm {name!r}; choose one of "
                              f"{', '.join(self.algorithms)}")

    def refine(self, plan: VariantSelectionPlan, result: Result, solve_model: Callable[[Model], Result]):
        """With ``prefer_stable``: among optimal plans, the one that changes the fewest variants (exact)."""
        if not self.prefer_stable:
            return plan, result

        def second(z: float):
            model, decode, _ = self._build(stable_from=z)
            return model, decode

        return refine_stable(plan, result, second, solve_model)

    def precheck(self) -> str | None:
        """The reason no plan can exist when λ exceeds the largest servable load (decided exactly), else None."""
        if dec(self.workload_rps) > self._servable_exact():
            return self.explain_infeasible()
        return None

    def _servable_exact(self) -> Fraction:
        """The largest servable load as an exact fraction: the exact sum of the capacities of
        :meth:`max_servable`'s allocation (a float sum such as 0.1 + 0.2 is not the load they serve)."""
        _, alloc = self.max_servable()
        caps = {v.name: v.capacity for v in self.variants}
        return sum((dec(caps[n][c]) for n, c in alloc.items()), Fraction(0))

    def verify(self, plan: VariantSelectionPlan) -> list[str]:
        """Every constraint ``plan`` breaks, decided exactly (:mod:`servopt.formulations.variant_selection.verify`)."""
        from servopt.formulations.variant_selection.verify import violations

        return violations(self, plan)

    def exact_fallbacks(self) -> list[tuple[str, dict[str, Any]]]:
        """Re-solve with the exact dynamic programme (grid capacities), then the frontier search (any
        capacities), when a plan fails :meth:`verify`."""
        return [("dp", {}), ("frontier", {})]

    def explain_infeasible(self) -> str:
        """Why no plan serves λ: the largest servable load under the budget."""
        _, alloc = self.max_servable()
        exact_top = self._servable_exact()
        top = float(exact_top)
        where = ", ".join(f"{n} on {c} cores" for n, c in alloc.items()) or "nothing"
        shown = (f"{self.workload_rps:g}", f"{top:g}")
        if shown[0] == shown[1]:  # equal when printed short: show the exact decimals (0.30000000000000004 > 0.3)
            shown = (repr(self.workload_rps), repr(top))
        if dec(self.workload_rps) > exact_top:  # the same exact rule as precheck, evaluate and verify
            return (
                f"workload_rps {shown[0]} exceeds the largest load the {self.core_budget}-core budget "
                f"can serve within the latency SLO: {shown[1]} RPS ({where}); lower the workload, raise core_budget "
                "or add capacity"
            )
        return (f"no plan found although {top:g} RPS is servable ({where}); the solver's answer is inconsistent "
                "with the model")


#: most cells (core counts x (variants + 3)) of the dense knapsack in :meth:`VariantSelection.max_servable`
_DENSE_CELLS = 4_000_000
#: most (cores, load) states of the Pareto knapsack
_MAX_FRONT = 2_000_000


def _servable_front(variants: Sequence[Variant], allowed: Sequence[np.ndarray], capacity: Sequence[np.ndarray],
                    budget: int) -> tuple[float, dict[str, int]]:
    """The largest load within ``budget`` cores and an allocation serving it, over the Pareto front of partial
    allocations (no allocation with fewer or as many cores serves more), fewest cores among the best.

    Exact: a partial allocation that another one dominates (no more cores, at least its load) can be replaced by
    it in any completion. The front never holds more states than distinct core sums within the budget.
    """
    cores = np.zeros(1, dtype=np.int64)
    load = np.zeros(1)
    steps: list[tuple[np.ndarray, np.ndarray]] = []  # per variant: (parent state, cores chosen) of each state
    for v, ks, th in zip(variants, allowed, capacity):
        parts_c, parts_l, parts_p, parts_k = [cores], [load], [np.arange(cores.size)], [np.zeros(cores.size, np.int64)]
        for k, cap in zip(ks.tolist(), th.tolist()):
            fits = np.flatnonzero(cores <= budget - k)
            if cap <= 0 or not fits.size:
                continue
            parts_c.append(cores[fits] + k)
            parts_l.append(load[fits] + cap)
            parts_p.append(fits)
            parts_k.append(np.full(fits.size, k, dtype=np.int64))
        c, l, p, kk = (np.concatenate(x) for x in (parts_c, parts_l, parts_p, parts_k))
        order = np.lexsort((-l, c))  # by cores, most load first
        c, l, p, kk = c[order], l[order], p[order], kk[order]
        keep = l > np.r_[-np.inf, np.maximum.accumulate(l)[:-1]]  # more load than every state with fewer cores
        cores, load = c[keep], l[keep]
        steps.append((p[keep], kk[keep]))
        if cores.size > _MAX_FRONT:
            raise ValidationError(f"variant_selection: the servable-load search holds {cores.size:,} partial "
                                  f"allocations (limit {_MAX_FRONT:,}); give fewer or smaller core counts")
    b = int(np.argmax(load))  # the first (fewest cores) of the best
    top = float(load[b])
    alloc: dict[str, int] = {}
    for v, (parent, chosen) in zip(reversed(variants), reversed(steps)):
        if chosen[b]:
            alloc[v.name] = int(chosen[b])
        b = int(parent[b])
    return top, {v.name: alloc[v.name] for v in variants if v.name in alloc}
