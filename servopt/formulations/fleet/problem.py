"""``fleet``: the validated problem (models, GPU types, co-location, objective).

:meth:`FleetProblem.build` gives the exact pattern MILP (:mod:`servopt.formulations.fleet.formulation`); every
plan passes :func:`servopt.formulations.fleet.verify.violations` on the return path of ``servopt.solve``. When an
enumeration cap (``max_instances``, ``max_models`` per GPU/slice) cut feasible contents, an optimal solve of the
restricted MILP is reported as ``feasible``, not ``optimal``. Without caps the pattern set is complete (bounds
implied by memory, latency and capacity) or grown by column generation with a proven lower bound
(:mod:`servopt.formulations.fleet.colgen`); ``enumeration_budget`` (contents enumerated in all),
``pricing_budget`` (contents per pricing search) and ``search_time_s`` bound that work (an optimal solve over a
set that may miss the optimum is reported ``feasible`` with its lower bound and gap). The solver's ``best_bound``
over such a set bounds only that set: :meth:`FleetProblem.reported` replaces it by the plan's proven lower bound
(None when there is none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from servopt.exceptions import ValidationError
from servopt.fields import as_number
from servopt.formulations.fleet.types import OBJECTIVES, Colocation, FleetModel, GpuType, Performance

__all__ = ["FleetProblem"]


@dataclass(frozen=True)
class FleetProblem:
    """Many models sharing a fleet of GPUs of several types (``problem: fleet``; docs/fleet.md)."""

    kind: ClassVar[str] = "fleet"

    models: Sequence[FleetModel]
    gpu_types: Sequence[GpuType]
    objective: str = "cost"
    weights: Mapping[str, float] | None = None
    headroom: float = 0.0
    colocation: Colocation = Colocation()
    name: str = "fleet"
    triton: Mapping[str, Any] | None = None
    source: Path | None = None
    max_instances: int | None = None
    max_models: int | None = None
    enumeration_budget: int = 50_000
    pricing_budget: int = 1_000_000
    search_time_s: float = 60.0
    #: the margin planned on with ``latency_quantile:`` (:func:`servopt.performance.uncertainty.margin_record`)
    latency_margin: Mapping[str, Any] | None = field(default=None, compare=False)
    #: the memory planned with ``memory_mb: fit`` and the margin held back (one entry per model and GPU key)
    memory_margin: Mapping[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        models = tuple(self.models)
        gpus = tuple(self.gpu_types)
        if not models:
            raise ValidationError("models: give at least one model")
        if not gpus:
            raise ValidationError("gpu_types: give at least one GPU type")
        for what, names in (("models", [m.name for m in models]), ("gpu_types", [g.name for g in gpus])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValidationError(f"{what}: duplicate name(s) {', '.join(dup)}; names must be unique")
        if self.objective not in OBJECTIVES:
            raise ValidationError(f"objective: expected one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        weights = dict(self.weights or {})
        if self.objective == "weighted":
            unknown = sorted(set(weights) - {"cost", "gpus"})
            if unknown:
                raise ValidationError(f"weights: unknown key(s) {', '.join(unknown)}; allowed: cost, gpus")
            weights = {k: as_number(weights.get(k, 0.0), f"weights.{k}", minimum=0.0) for k in ("cost", "gpus")}
            if not any(weights.values()):
                raise ValidationError("weights: at least one of cost, gpus must be > 0")
        elif weights:
            raise ValidationError("weights: only used with objective: weighted")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "headroom", as_number(self.headroom, "headroom", minimum=0.0))
        by_type = {g.name: g for g in gpus}
        for m in models:
            for key in m.performance:
                gpu, _, profile = key.partition("/")
                if gpu not in by_type:
                    raise ValidationError(f"model {m.name!r}: performance names unknown GPU type {gpu!r}; known: "
                                          f"{', '.join(by_type)}")
                if profile:
                    by_type[gpu].profile(profile)
        known = {m.name for m in models}
        for a, b, gpu in self.colocation.pairs:
            for n in (a, b):
                if n not in known:
                    raise ValidationError(f"colocation.pairs: unknown model {n!r}; known: {', '.join(sorted(known))}")
            if gpu not in by_type:
                raise ValidationError(f"colocation.pairs: unknown gpu_type {gpu!r}; known: {', '.join(by_type)}")
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "gpu_types", gpus)
        from servopt.fields import as_int

        for key in ("max_instances", "max_models"):
            if getattr(self, key) is not None:
                as_int(getattr(self, key), key, minimum=1)
        as_int(self.enumeration_budget, "enumeration_budget", minimum=1)
        as_int(self.pricing_budget, "pricing_budget", minimum=1)
        as_number(self.search_time_s, "search_time_s", positive=True)

    def gpu_type(self, name: str) -> GpuType:
        """The GPU type called ``name``."""
        for g in self.gpu_types:
            if g.name == name:
                return g
        raise ValidationError(f"unknown gpu type {name!r}; known: {', '.join(g.name for g in self.gpu_types)}")

    def performance(self, model: FleetModel, gpu: str, profile: str | None = None) -> Performance | None:
        """``model``'s performance on ``gpu`` (or on one of its MIG slices); None when it cannot run there.

        A slice without its own entry uses the whole GPU's latencies scaled by ``7 / compute`` (an assumption,
        reported in ``Performance.scaled_from``) and the whole GPU's memory figures (with ``memory_mb: fit``,
        planned with the usable fraction of the whole GPU's memory).
        """
        if profile is None:
            return model.performance.get(gpu)
        own = model.performance.get(f"{gpu}/{profile}")
        if own is not None:
            return own
        whole = model.performance.get(gpu)
        if whole is None:
            return None
        factor = 7 / self.gpu_type(gpu).profile(profile).compute
        return Performance({b: lat * factor for b, lat in whole.latency_ms.items()}, whole.instance_mb,
                           whole.per_batch_mb, scaled_from=gpu, memory_table=whole.memory_table)

    def required_rps(self, model: FleetModel) -> float:
        """The capacity ``model`` needs: ``rate_rps * (1 + headroom)``."""
        return model.rate_rps * (1 + self.headroom)

    def with_time_limit(self, seconds: float) -> FleetProblem:
        """This problem with the pattern search bounded by ``seconds`` too (``servopt solve --time-limit``): the
        search takes at most ``min(search_time_s, seconds)``, the MILP solve its own ``seconds``."""
        from dataclasses import replace

        seconds = as_number(seconds, "time_limit_s", positive=True)
        if seconds >= self.search_time_s:
            return self
        return replace(self, search_time_s=float(seconds))

    def build(self) -> tuple[Any, Any]:
        """The pattern MILP and its decoder (the pattern set: :mod:`servopt.formulations.fleet.colgen`)."""
        from servopt.formulations.fleet.formulation import build

        model, decode, generated = build(self)
        object.__setattr__(self, "_generated", generated)
        return model, decode

    def refine(self, plan: Any, result: Any, solve_model: Any) -> tuple[Any, Any]:
        """An optimal solve over a pattern set that may miss the optimum proves nothing: report it as feasible,
        with the bound the fleet proves (:meth:`reported`), not the MILP's over that pattern set."""
        result = self.reported(plan, result)
        if not plan.proven_optimal:
            from dataclasses import replace

            from servopt.result import Status

            return plan, replace(result, status=Status.FEASIBLE)
        return plan, result

    def reported(self, plan: Any, result: Any) -> Any:
        """``result`` (the MILP's over the pattern set) with the best bound and status that hold for this problem.

        The MILP's ``best_bound`` bounds only plans made of the patterns it was given. That is a bound on the
        fleet problem when the pattern set is complete (full enumeration, or column generation with every column
        that could improve the incumbent); otherwise (column generation cut short, user caps) it is not, and the
        problem's bound is ``plan.lower_bound``: the larger of the complete set's MILP bound and column
        generation's LP bound (:func:`~servopt.formulations.fleet.formulation.build`), None when neither holds.
        ``best_bound`` becomes that value; where the MILP's own bound is dropped, ``message`` says so (a solver's
        message may quote its gap to that bound). Without a plan (``plan`` None) the bound is kept only for a
        complete set, and "infeasible" over the columns of a column generation cut short (no proof that no plan
        exists) becomes ``error`` with :meth:`explain_infeasible`'s reason.
        """
        from dataclasses import replace

        from servopt.result import Status

        gen = getattr(self, "_generated", None)
        complete = gen is not None and gen.complete
        old = result.best_bound
        if plan is None:
            if (result.status is Status.INFEASIBLE and gen is not None and not (complete or gen.truncated
                                                                                 or gen.infeasible)):
                from servopt.formulations.fleet.diagnose import reason

                if reason(self) is None:  # one model alone proves nothing: the columns may miss every plan
                    return replace(result, status=Status.ERROR, best_bound=None, message=self.explain_infeasible())
            return result if complete else replace(result, best_bound=None)
        bound = plan.lower_bound
        message = result.message
        if old is not None and math.isfinite(old) and not complete and (
                bound is None or old > bound + 1e-9 * max(1.0, abs(bound))):
            given = ("the capped pattern set" if gen is not None and gen.truncated else
                     "the columns generated so far" if gen is not None else "the patterns it was given")
            message = "; ".join(m for m in (message, (
                f"the solver's best bound {old:.6g} holds only over {given}, not for the fleet problem: "
                + ("no lower bound" if bound is None else f"lower bound {bound:.6g}"))) if m)
        return replace(result, best_bound=bound, message=message)

    def verify(self, plan: Any) -> list[str]:
        """Every constraint ``plan`` breaks, decided exactly."""
        from servopt.formulations.fleet.verify import violations

        return violations(self, plan)

    def explain_infeasible(self) -> str:
        """Why no plan exists (or was found): a model that no plan can serve, named with the cause
        (:mod:`servopt.formulations.fleet.diagnose`, decided from that model alone), or the models together
        exceeding the GPU counts."""
        from servopt.formulations.fleet.diagnose import reason
        from servopt.formulations.fleet.formulation import caps_text

        alone = reason(self)
        if alone is not None:
            return alone
        gen = getattr(self, "_generated", None)
        why = ("no fleet plan covers every model's rate * (1 + headroom) within the GPU counts, memory and "
               "latency SLOs")
        if gen is not None and gen.truncated:
            return why + f" with the capped pattern set ({caps_text(self)}); raise or remove the cap"
        if gen is None:
            return why
        if gen.infeasible or gen.complete:
            return (why + ": each model alone has a placement and enough GPUs for its rate, so together the models "
                    "need more GPUs than the counts give (sharing one is bounded by its memory and the SLOs); "
                    "raise a count or lower a rate")
        return (why + " among the columns generated; this is not a proof that none exists ("
                + "; ".join(gen.notes or ["column generation did not finish"]) + ")")
