"""``pipeline``: IPA's pipeline adaptation as an exact MILP (SPEC §4.4).

A chain of stages s; per stage choose a variant m (accuracy a_sm, cores per replica c_sm), a batch size b
(profiled latency l_smb in ms, throughput h_smb in RPS, default b / l) and replicas n_s with n_s h_smb >= λ:

    maximise   α Acc − β Σ_s c_sm n_s − δ Σ_s b_s
    subject to Σ_s (l_smb + q_sb) <= SLA,   q_sb = 1000 (b − 1) / λ ms (the time a batch takes to fill)

Acc is ``sum``, ``average`` or ``product`` of per-stage accuracies, each raw (``normalize: none``) or
rank-normalised (``rank``: worst variant of a stage 0, best 1, evenly spaced over distinct accuracies).

Exact reduction. For a fixed (variant, batch) the latency does not depend on n and the objective decreases in n,
so the optimal replica count is n* = ceil(λ / h) (infeasible above ``max_replicas``). What is left is a
multiple-choice knapsack: one binary ``x[o]`` per option o = (stage, variant, batch), ``Σ_{o in s} x[o] = 1``,
one latency row ``Σ_o (l_o + q_o) x[o] <= SLA``, and a linear objective for ``sum`` / ``average``.

``product`` is solved exactly with a chain of bounded continuous variables (no surrogate, no enumeration). It
runs on accuracies divided by their stage's best, a'_sm = a_sm / max_m a_sm (well scaled for long chains):
P'_1 = Σ_m a'_1m X_1m with X_sm = Σ_b x[s,m,b]; for k >= 2, ``z_km`` stands for P'_{k−1} X_km:

    Σ_m z_km = P'_{k−1},   L_{k−1} X_km <= z_km <= X_km,   P'_k = Σ_m a'_km z_km,   L_k = Π_{s<=k} min/max

Exactly one X_km is 1, so every other z_km is 0 and the chosen one equals P'_{k−1}; Acc = P'_S Π_s max_m a_sm.
``product`` multiplies raw accuracies (IPA's JSys configuration); ``product`` with ``rank`` is rejected, because
the rank of a stage's worst variant is 0 and would zero the whole product.

Scaling. The latency row is multiplied by λ (its queue terms become 1000 (b − 1)) and the objective by
K = lcm of the stages' rank denominators (x the number of stages for ``average``; K = 1 when that lcm exceeds
10^6): both positive constants, so the solutions are the same, and decimal data give decimal coefficients, which
CP-SAT takes with ``scale=10^k`` (:func:`~servopt.formulations.ties.integral_scale`). The model's
objective value is therefore K times the plan's; plans always carry the true objective, recomputed from the plan
(:meth:`Pipeline.evaluate`). CP-SAT cannot take ``product`` over two or more stages (continuous z).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from servopt.exact import BORDER_RTOL, ceil_div, dec, near
from servopt.exceptions import SolverError, ValidationError
from servopt.formulations.ties import refine_stable, tie_tolerance
from servopt.formulations.pipeline.types import (
    ACCURACY_METHODS,
    NORMALIZATIONS,
    BatchProfile,
    StageDeployment,
    PipelineOptions,
    PipelinePlan,
    Stage,
    StagePlan,
    StageVariant,
    latency_limit,
    rank_normalize,
)
from servopt.formulations.pipeline.verify import stage_latency
from servopt.model import Model
from servopt.result import Result

__all__ = [
    "ACCURACY_METHODS",
    "NORMALIZATIONS",
    "BatchProfile",
    "StageVariant",
    "Stage",
    "StageDeployment",
    "Pipeline",
    "PipelineOptions",
    "StagePlan",
    "PipelinePlan",
    "rank_normalize",
    "latency_limit",
]

@dataclass(frozen=True)
class Pipeline:
    """IPA's pipeline-adaptation problem (SPEC §4.4).

    Parameters
    ----------
    workload_rps, sla_ms : float
        λ > 0 and the end-to-end latency SLA in milliseconds.
    stages : sequence of Stage
        The chain, in order.
    alpha, beta, delta : float
        Weights of accuracy, cores and batch size (defaults: IPA's video configuration 2, 1, 1e-6).
    accuracy : {"sum", "average", "product"}
    normalize : {"rank", "none"}, optional
        Default ``rank`` for sum/average and ``none`` for product (``product`` with ``rank`` is an error).
    max_replicas : int
        Replica cap per stage (IPA's ``scaling_cap``).
    prefer_stable : bool
        Among optimal plans, one with the fewest variant and batch-size changes from ``current``.
    current : Mapping[str, StageDeployment], optional
        The running deployment per stage.
    name : str
    triton : Mapping, optional
        Triton settings, stored untouched.
    """

    kind: ClassVar[str] = "pipeline"
    #: exact special-purpose algorithms (servopt.formulations.pipeline.dp); "dp" is the default backend
    #: (benchmarks/results/pipeline.csv); any MILP backend name still solves the MILP below
    algorithms: ClassVar[tuple[str, ...]] = ("dp",)
    default_backend: ClassVar[str] = "dp"

    workload_rps: float
    sla_ms: float
    stages: Sequence[Stage]
    alpha: float = 2.0
    beta: float = 1.0
    delta: float = 1e-6
    accuracy: str = "sum"
    normalize: str | None = None
    max_replicas: int = 100
    prefer_stable: bool = False
    current: Mapping[str, StageDeployment] | None = None
    name: str = "pipeline"
    triton: Mapping[str, Any] | None = None
    _shared: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _fixed_variants: Mapping[str, str] | None = field(default=None, init=False, repr=False, compare=False)
    _fixed_replicas: Mapping[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key, positive in (("workload_rps", True), ("sla_ms", True), ("alpha", False), ("beta", False),
                              ("delta", False)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
                value <= 0 if positive else value < 0
            ):
                raise ValidationError(f"{key}={value!r}: give a finite number {'> 0' if positive else '>= 0'}")
            object.__setattr__(self, key, float(value))
        if self.accuracy not in ACCURACY_METHODS:
            raise ValidationError(f"accuracy={self.accuracy!r}: choose one of {', '.join(ACCURACY_METHODS)}")
        normalize = self.normalize or ("none" if self.accuracy == "product" else "rank")
        if normalize not in NORMALIZATIONS:
            raise ValidationError(f"normalize={self.normalize!r}: choose one of {', '.join(NORMALIZATIONS)}")
        if self.accuracy == "product" and normalize == "rank":
            raise ValidationError(
                "accuracy=product with normalize=rank: the rank of each stage's worst variant is 0, which zeroes "
                "the whole product; use normalize: none (IPA's JSys configuration multiplies raw accuracies)"
            )
        object.__setattr__(self, "normalize", normalize)
        if isinstance(self.max_replicas, bool) or not isinstance(self.max_replicas, int) or self.max_replicas < 1:
            raise ValidationError(f"max_replicas={self.max_replicas!r}: give an integer >= 1")
        if not isinstance(self.prefer_stable, bool):
            raise ValidationError(f"prefer_stable={self.prefer_stable!r}: give true or false")
        stages = tuple(self.stages)
        if not stages or not all(isinstance(s, Stage) for s in stages):
            raise ValidationError("stages: give a non-empty list of Stage objects")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValidationError(f"stages: names repeat ({names})")
        if self.accuracy == "product":
            for s in stages:
                for v in s.variants:
                    if v.accuracy < 0:
                        raise ValidationError(
                            f"stage {s.name!r} variant {v.name!r}: accuracy {v.accuracy:g} < 0 cannot be multiplied; "
                            "accuracy=product needs accuracies >= 0"
                        )
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "current", self._check_current(self.current))

    def _check_current(self, current: Any) -> Mapping[str, StageDeployment] | None:
        if current is None or (isinstance(current, Mapping) and not current):
            return None
        if isinstance(current, PipelinePlan):
            current = current.deployment
        out: dict[str, StageDeployment] = {}
        stages = {s.name: s for s in self.stages}
        for stage, dep in dict(current).items():
            if stage not in stages:
                raise ValidationError(f"current deployment: unknown stage {stage!r}; stages: {', '.join(stages)}")
            dep = StageDeployment(*dep) if not isinstance(dep, StageDeployment) else dep
            if dep.variant not in {v.name for v in stages[stage].variants}:
                raise ValidationError(f"current deployment: stage {stage!r} has no variant {dep.variant!r}")
            replicas = None if dep.replicas is None else int(dep.replicas)
            out[stage] = StageDeployment(dep.variant, int(dep.batch_size), replicas)
        return MappingProxyType(out)

    # ----------------------------------------------------------------- re-planning
    def update(
        self,
        workload_rps: float | None = None,
        current: Any = None,
        **changes: Any,
    ) -> Pipeline:
        """The same pipeline for a new workload and/or running deployment (one call per re-plan).

        ``current`` is the previous plan or a mapping stage -> (variant, batch_size[, replicas]); ``{}`` means
        nothing runs, None (the default) keeps the current deployment. The λ-independent option arrays are
        shared with this problem, not rebuilt.

        Examples
        --------
        >>> s = Stage("detect", [StageVariant("n", 0.457, 1, [BatchProfile(1, 59.0), BatchProfile(8, 328.0)])])
        >>> p = Pipeline(20, 2000, [s])
        >>> p.evaluate([("n", 8)]).stages[0].replicas, p.evaluate([("n", 1)]).stages[0].replicas
        (1, 2)
        >>> p.update(workload_rps=40, current={"detect": ("n", 8)}).current["detect"]
        StageDeployment(variant='n', batch_size=8, replicas=None)
        """
        if workload_rps is not None:
            changes["workload_rps"] = workload_rps
        if current is not None:
            changes["current"] = current
        new = replace(self, **changes)
        if not {"stages", "accuracy", "normalize"} & set(changes):
            object.__setattr__(new, "_shared", self._shared)
        object.__setattr__(new, "_fixed_variants", self._fixed_variants)
        object.__setattr__(new, "_fixed_replicas", self._fixed_replicas)
        return new

    def restricted(
        self, variants: Mapping[str, str] | None = None, replicas: Mapping[str, int] | int | None = None
    ) -> Pipeline:
        """The same problem with the variant and/or replicas of stages fixed (IPA's FA2 and RIM baselines).

        Normalisation and objective stay those of the full problem, so objectives remain comparable.
        """
        stages = {s.name: s for s in self.stages}
        if variants is not None:
            for stage, variant in variants.items():
                if stage not in stages or variant not in {v.name for v in stages[stage].variants}:
                    raise ValidationError(f"fixed variant {stage!r}: {variant!r} is not a variant of that stage")
        if isinstance(replicas, int):
            replicas = {s: replicas for s in stages}
        if replicas is not None:
            for stage, n in replicas.items():
                if stage not in stages:
                    raise ValidationError(f"fixed replicas: unknown stage {stage!r}")
                if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.max_replicas:
                    raise ValidationError(f"fixed replicas {stage!r}: {n!r}; give an integer in 1..{self.max_replicas}")
        new = replace(self)
        object.__setattr__(new, "_shared", self._shared)
        object.__setattr__(new, "_fixed_variants", MappingProxyType(dict(variants)) if variants else None)
        object.__setattr__(new, "_fixed_replicas", MappingProxyType(dict(replicas)) if replicas else None)
        return new

    # -------------------------------------------------------------------- options
    def _structure(self) -> dict[str, Any]:
        s = self._shared
        if "batch_size" not in s:
            ranks = [rank_normalize([v.accuracy for v in st.variants]) if self.normalize == "rank"
                     else [v.accuracy for v in st.variants] for st in self.stages]
            variants = [v for st in self.stages for v in st.variants]
            counts = np.array([len(v.batches) for v in variants], dtype=np.int64)
            points = [p for v in variants for p in v.batches]
            s["stage"] = np.repeat(np.repeat(np.arange(len(self.stages), dtype=np.int64),
                                             [len(st.variants) for st in self.stages]), counts)
            s["variant"] = np.repeat(np.array([vi for st in self.stages for vi in range(len(st.variants))],
                                              dtype=np.int64), counts)
            s["batch_size"] = np.array([p.batch_size for p in points], dtype=np.int64)
            s["latency_ms"] = np.array([p.latency_ms for p in points], dtype=float)
            s["throughput_rps"] = np.array([p.throughput_rps for p in points], dtype=float)
            s["cores_per_replica"] = np.repeat(np.array([v.cores for v in variants], dtype=float), counts)
            s["accuracy"] = np.repeat(np.array([a for r in ranks for a in r], dtype=float), counts)
            # where each variant's options start (its batch sizes follow in increasing order)
            first = np.concatenate(([0], np.cumsum(counts))).tolist()
            slices, starts, k = [], [], 0
            for st in self.stages:
                starts.append(first[k:k + len(st.variants)])
                k += len(st.variants)
                slices.append(slice(first[k - len(st.variants)], first[k]))
            s["variant_start"] = starts
            s["stage_slices"] = tuple(slices)
            s["stage_best"] = [max(r) for r in ranks]
            denominators = [len(set(r)) - 1 for r in ranks] if self.normalize == "rank" else []
            k = math.lcm(*[d for d in denominators if d > 0]) if self.normalize == "rank" else 1
            k = k if k <= 10**6 else 1  # many distinct variant counts: keep coefficients small instead
            s["objective_scale"] = k * (len(self.stages) if self.accuracy == "average" else 1)
            s["variant_accuracy"] = ranks
        return s

    def options(self, workload_rps: float | None = None) -> PipelineOptions:
        """The option arrays at ``workload_rps`` (default: this problem's λ; those are computed once, read-only)."""
        s = self._structure()
        lam = self.workload_rps if workload_rps is None else float(workload_rps)
        if lam != self.workload_rps:
            return self._options(s, lam)
        # updated and restricted copies share the structure: the key holds everything the arrays depend on
        key = (lam, self.alpha, self.beta, self.delta, self.max_replicas, _frozen(self._fixed_variants),
               _frozen(self._fixed_replicas))
        cache = s.setdefault("options", {})
        opts = cache.get(key)
        if opts is None:
            opts = self._options(s, lam)
            for name in ("queue_ms", "replicas", "cores", "value", "feasible"):
                getattr(opts, name).flags.writeable = False
            if len(cache) >= 8:
                cache.pop(next(iter(cache)))
            cache[key] = opts
        return opts

    def _options(self, s: dict[str, Any], lam: float) -> PipelineOptions:
        h = s["throughput_rps"]
        allowed = np.ones(h.size, dtype=bool)
        if self._fixed_replicas is None:
            n = _min_replicas(lam, h)
        else:
            n = np.ones(h.size, dtype=np.int64)
            for si, stage in enumerate(self.stages):
                fixed = self._fixed_replicas.get(stage.name)
                if fixed is not None:
                    sl = s["stage_slices"][si]
                    n[sl] = fixed
                    allowed[sl] &= np.array([fixed * dec(x) >= dec(lam) for x in h[sl].tolist()], dtype=bool)
                else:
                    sl = s["stage_slices"][si]
                    n[sl] = _min_replicas(lam, h[sl])
        if self._fixed_variants is not None:
            for si, stage in enumerate(self.stages):
                fixed = self._fixed_variants.get(stage.name)
                if fixed is not None:
                    vi = [v.name for v in stage.variants].index(fixed)
                    sl = s["stage_slices"][si]
                    allowed[sl] &= s["variant"][sl] == vi
        cores = s["cores_per_replica"] * n
        queue = 1000.0 * (s["batch_size"] - 1) / lam
        if self.accuracy == "sum":
            acc_value = self.alpha * s["accuracy"]
        elif self.accuracy == "average":
            acc_value = self.alpha * s["accuracy"] / len(self.stages)
        else:
            acc_value = np.zeros(h.size)
        value = acc_value - self.beta * cores - self.delta * s["batch_size"]
        return PipelineOptions(
            stage=s["stage"], variant=s["variant"], batch_size=s["batch_size"], latency_ms=s["latency_ms"],
            queue_ms=queue, throughput_rps=h, replicas=n, cores=cores, accuracy=s["accuracy"], value=value,
            feasible=allowed & (n <= self.max_replicas), stage_slices=s["stage_slices"],
        )

    # ------------------------------------------------------------------- evaluate
    def evaluate(
        self,
        choice: Mapping[str, tuple[str, int]] | Sequence[tuple[str, int]],
        replicas: Mapping[str, int] | Sequence[int] | None = None,
        *,
        exact: bool = True,
    ) -> PipelinePlan | None:
        """The plan for a (variant, batch) per stage with its true objective; None if it breaks a constraint.

        Replicas default to n* = ceil(λ / h) (the optimum for that choice), or the fixed replicas of a
        restricted problem. With ``exact=False`` a choice whose end-to-end latency exceeds the SLA (decided
        exactly) is still returned, so that the exact check (:meth:`verify`) reports it and
        :func:`servopt.solve` repairs it (a solver's answer within its feasibility tolerance).
        """
        pairs = [choice[s.name] for s in self.stages] if isinstance(choice, Mapping) else list(choice)
        if len(pairs) != len(self.stages):
            raise ValidationError(f"give one (variant, batch) per stage ({len(self.stages)}), got {len(pairs)}")
        if isinstance(replicas, Mapping):
            replicas = [replicas[s.name] for s in self.stages]
        opts = self.options()
        variant_start = self._structure()["variant_start"]
        lam = self.workload_rps
        stage_plans = []
        chosen = []
        for si, (stage, (variant, batch)) in enumerate(zip(self.stages, pairs)):
            names = [v.name for v in stage.variants]
            if variant not in names:
                raise ValidationError(f"stage {stage.name!r} has no variant {variant!r}; variants: {', '.join(names)}")
            vi = names.index(variant)
            sizes = [p.batch_size for p in stage.variants[vi].batches]
            if int(batch) not in sizes:
                raise ValidationError(f"stage {stage.name!r} variant {variant!r} has no profiled batch size {batch}")
            o = variant_start[si][vi] + sizes.index(int(batch))
            n = int(opts.replicas[o]) if replicas is None else int(replicas[si])
            if not opts.feasible[o] and replicas is None:
                return None
            if n < 1 or n > self.max_replicas:
                return None
            h = float(opts.throughput_rps[o])
            if (n * dec(h) < dec(lam)) if near(n * h, lam) else n * h < lam:  # exact only where floats cannot tell
                return None
            if self._fixed_replicas is not None and self._fixed_replicas.get(stage.name, n) != n:
                return None
            if self._fixed_variants is not None and self._fixed_variants.get(stage.name, variant) != variant:
                return None
            v = stage.variants[vi]
            chosen.append(vi)
            stage_plans.append(StagePlan(
                name=stage.name, variant=variant, batch_size=int(batch), replicas=n,
                latency_ms=float(opts.latency_ms[o]), queue_ms=float(opts.queue_ms[o]),
                throughput_rps=float(opts.throughput_rps[o]), cores=v.cores * n, accuracy=v.accuracy,
                previous=None if self.current is None else self.current.get(stage.name),
            ))
        latency = sum(p.latency_ms + p.queue_ms for p in stage_plans)
        if exact and latency > self.sla_ms * (1 - BORDER_RTOL) and sum(
            (stage_latency(BatchProfile(p.batch_size, p.latency_ms, p.throughput_rps), lam) for p in stage_plans),
            Fraction(0),
        ) > dec(self.sla_ms):
            return None
        table = self._structure()["variant_accuracy"]
        used = [table[si][vi] for si, vi in enumerate(chosen)]
        if self.accuracy == "sum":
            acc = sum(used)
        elif self.accuracy == "average":
            acc = sum(used) / len(used)
        else:
            acc = math.prod(used)
        cores = sum(p.cores for p in stage_plans)
        objective = self.alpha * acc - self.beta * cores - self.delta * sum(p.batch_size for p in stage_plans)
        changes = 0
        for p in stage_plans:
            if p.previous is not None:
                changes += (p.variant != p.previous.variant) + (p.batch_size != p.previous.batch_size)
        return PipelinePlan(objective=objective, accuracy=acc, cores=cores, latency_ms=latency,
                            stages=tuple(stage_plans), workload_rps=lam, sla_ms=self.sla_ms, changes=changes)

    # ---------------------------------------------------------------------- build
    def build(self) -> tuple[Model, Callable[[Result], PipelinePlan]]:
        """The MILP of the module docstring and its decoder."""
        return self._build()

    def _build(self, stable_from: float | None = None):
        opts = self.options()
        s = self._structure()
        model = Model(f"pipeline:{self.name}")
        x0 = model.num_vars
        for o in range(opts.stage.size):
            stage = self.stages[int(opts.stage[o])]
            model.add_var(f"x[{stage.name},{stage.variants[int(opts.variant[o])].name},b{int(opts.batch_size[o])}]",
                          kind="binary", ub=1.0 if opts.feasible[o] else 0.0)
        x = np.arange(x0, model.num_vars)
        for si, sl in enumerate(opts.stage_slices):
            model.add_row(x[sl], np.ones(sl.stop - sl.start), lb=1.0, ub=1.0,
                          name=f"one_option[{self.stages[si].name}]")
        # rows and objective are multiplied by positive constants that clear divisions (same solutions): the
        # latency row by λ (queue 1000(b-1)/λ), the objective by K = lcm of the rank denominators (x S for
        # average); decimal data then give decimal coefficients (CP-SAT with scale=10^k)
        lam = self.workload_rps
        model.add_row(x, lam * opts.latency_ms + 1000.0 * (opts.batch_size - 1), ub=lam * latency_limit(self.sla_ms),
                      name="latency_sla")
        scale = float(s["objective_scale"])
        obj_cols, obj_coefs = [x], [scale * opts.value]
        if self.accuracy == "product":
            cols, coefs = self._product_chain(model, opts, x, s)
            obj_cols.append(cols)
            obj_coefs.append(scale * self.alpha * coefs)
        obj_cols_arr = np.concatenate(obj_cols).astype(np.int64)
        obj_coefs_arr = np.concatenate(obj_coefs)
        if stable_from is None:
            model.set_objective_arrays(obj_cols_arr, obj_coefs_arr, "max")
        else:
            model.add_row(obj_cols_arr, obj_coefs_arr, lb=scale * (stable_from - tie_tolerance(stable_from)),
                          name="keep_optimum")
            cols_c, coefs_c, constant = [], [], 0.0
            for si, stage in enumerate(self.stages):
                dep = None if self.current is None else self.current.get(stage.name)
                if dep is None:
                    continue
                sl = opts.stage_slices[si]
                vi = [v.name for v in stage.variants].index(dep.variant)
                constant += 2.0
                same_variant = x[sl][opts.variant[sl] == vi]
                same_batch = x[sl][opts.batch_size[sl] == dep.batch_size]
                cols_c += same_variant.tolist() + same_batch.tolist()
                coefs_c += [-1.0] * (same_variant.size + same_batch.size)
            model.set_objective_arrays(cols_c, coefs_c, "min", constant=constant)

        def decode(result: Result) -> PipelinePlan:
            values = np.asarray(result.values)
            pairs = []
            for si, sl in enumerate(opts.stage_slices):
                o = sl.start + int(np.argmax(values[x[sl]]))
                stage = self.stages[si]
                pairs.append((stage.variants[int(opts.variant[o])].name, int(opts.batch_size[o])))
            # a choice the solver accepted within its tolerance but whose exact latency is above the SLA is
            # decoded as it is: the exact check on the return path (servopt.solve) repairs it
            plan = self.evaluate(pairs) or self.evaluate(pairs, exact=False)
            if plan is None:
                raise SolverError(f"backend {result.backend!r} returned choices {pairs} that break the pipeline's "
                                  "constraints; the solver answer violates the model")
            return plan

        return model, decode

    def _product_chain(
        self, model: Model, opts: PipelineOptions, x: np.ndarray, s: dict
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add the exact product-of-accuracies chain; returns (columns, coefficients) of P_S.

        The chain runs on accuracies divided by their stage's best (a'_sm = a_sm / max_m a_sm, so every P'_k
        lies in [L_k, 1] with L_k = Π min/max): well scaled even for long chains. P_S = P'_S Π_s max_m a_sm.
        """
        best = s["stage_best"]
        if min(best) <= 0:  # every accuracy of some stage is 0: the product is 0 whatever is chosen
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        acc = opts.accuracy
        sl0 = opts.stage_slices[0]
        p_cols, p_coefs = x[sl0], acc[sl0] / best[0]  # P'_1 as an expression over x
        low = float(acc[sl0].min()) / best[0]
        for si in range(1, len(self.stages)):
            stage = self.stages[si]
            sl = opts.stage_slices[si]
            z_cols, z_acc = [], []
            for vi, v in enumerate(stage.variants):
                z = model.add_continuous(f"z[{stage.name},{v.name}]", ub=1.0).index
                mine = x[sl][opts.variant[sl] == vi]
                model.add_row(np.r_[z, mine], np.r_[1.0, -np.ones(mine.size)], ub=0.0,
                              name=f"z_on[{stage.name},{v.name}]")
                if low > 0:
                    model.add_row(np.r_[z, mine], np.r_[1.0, -low * np.ones(mine.size)], lb=0.0,
                                  name=f"z_low[{stage.name},{v.name}]")
                z_cols.append(z)
                z_acc.append(v.accuracy / best[si])
            model.add_row(np.r_[z_cols, p_cols], np.r_[np.ones(len(z_cols)), -p_coefs], lb=0.0, ub=0.0,
                          name=f"carry[{stage.name}]")
            p_cols, p_coefs = np.asarray(z_cols, dtype=np.int64), np.asarray(z_acc)
            low *= float(acc[sl].min()) / best[si]
        return p_cols, p_coefs * math.prod(best)

    def solve_with(self, name: str, params: Any) -> tuple[Any, PipelinePlan | None, str]:
        """Solve with the exact algorithm ``name`` (``dp``: Pareto dynamic programming, same optimum as the MILP)."""
        from servopt.formulations.pipeline.dp import solve_dp

        if name != "dp":
            raise ValidationError(f"pipeline: unknown algorithm {name!r}; choose one of {', '.join(self.algorithms)}")
        return solve_dp(self, params)

    def refine(self, plan: PipelinePlan, result: Result, solve_model: Callable[[Model], Result]):
        """With ``prefer_stable``: among optimal plans, the one with the fewest variant/batch changes (exact)."""
        if not self.prefer_stable or self.current is None:
            return plan, result
        return refine_stable(plan, result, lambda z: self._build(stable_from=z), solve_model)

    def verify(self, plan: PipelinePlan) -> list[str]:
        """Every constraint ``plan`` breaks, decided exactly (:mod:`servopt.formulations.pipeline.verify`)."""
        from servopt.formulations.pipeline.verify import violations

        return violations(self, plan)

    def exact_fallbacks(self) -> list[tuple[str, dict[str, Any]]]:
        """Re-solve with the dynamic programme when a MILP plan fails :meth:`verify`."""
        return [("dp", {})]

    def precheck(self) -> str | None:
        """The reason no plan can exist when some stage cannot sustain λ even at max_replicas, else None."""
        s = self._structure()
        h = s["throughput_rps"]
        lam = self.workload_rps
        for stage, sl in zip(self.stages, s["stage_slices"]):
            # the fastest float is the fastest exact decimal too (dec keeps the order of floats)
            fastest = float(h[sl].max())
            if not near(fastest * self.max_replicas, lam) and fastest * self.max_replicas >= lam:
                continue  # floats decide it (far from the border)
            best = dec(fastest)
            if best * self.max_replicas < dec(lam):
                return (
                    f"stage {stage.name!r} cannot serve {self.workload_rps:g} RPS: its fastest option sustains "
                    f"{float(best):g} RPS per replica, {float(best * self.max_replicas):g} RPS at max_replicas "
                    f"{self.max_replicas}; lower workload_rps or raise max_replicas"
                )
        return None

    def explain_infeasible(self) -> str:
        """Which stage cannot keep up with λ, or how far the fastest choices are from the SLA."""
        opts = self.options()
        lam = self.workload_rps
        parts = []
        total = 0.0
        for si, (stage, sl) in enumerate(zip(self.stages, opts.stage_slices)):
            ok = np.flatnonzero(opts.feasible[sl])
            if not ok.size:
                best = float(opts.throughput_rps[sl].max())
                return (
                    f"stage {stage.name!r} cannot serve {lam:g} RPS: its fastest option sustains {best:g} RPS per "
                    f"replica, {best * self.max_replicas:g} RPS at max_replicas {self.max_replicas}"
                    + (" with the fixed variant/replicas" if self._fixed_variants or self._fixed_replicas else "")
                )
            lat = (opts.latency_ms + opts.queue_ms)[sl][ok]
            o = sl.start + int(ok[int(np.argmin(lat))])
            total += float(lat.min())
            parts.append(f"{stage.name}: {stage.variants[int(opts.variant[o])].name} b{int(opts.batch_size[o])} "
                         f"{opts.latency_ms[o]:g}+{opts.queue_ms[o]:.4g} ms")
        if total > latency_limit(self.sla_ms):
            return (f"the fastest choices take {total:.6g} ms end to end ({'; '.join(parts)}), above sla_ms "
                    f"{self.sla_ms:g}; raise the SLA, lower the workload or add faster variants")
        return (f"no plan found although the fastest choices meet the SLA ({total:.6g} ms); the solver answer is "
                "inconsistent")


def _frozen(mapping: Mapping[str, Any] | None) -> tuple | None:
    return None if mapping is None else tuple(sorted(mapping.items()))


def _min_replicas(lam: float, h: np.ndarray) -> np.ndarray:
    """n* = ceil(λ / h) per option, at least 1; decided exactly where floating point is too close to call."""
    n = np.maximum(1, np.minimum(np.ceil(lam / h), float(2**62))).astype(np.int64)  # huge λ: no int64 wrap
    tol = BORDER_RTOL * max(1.0, lam)
    near = (np.abs(n * h - lam) <= tol) | (np.abs((n - 1) * h - lam) <= tol)
    for i in np.flatnonzero(near).tolist():
        n[i] = max(1, ceil_div(dec(lam), dec(float(h[i]))))
    return n
