"""``min_gpus``: the fewest GPUs (or the cheapest pool) that process N images within T (SPEC §4.1, seed eq. 1).

>>> import servopt
>>> a100 = servopt.GPUType("A100", max_count=4, batches={64: {"latency_ms": 20.0, "warmup_ms": 1500.0}})
>>> t4 = servopt.GPUType("T4", max_count=8, batches={64: {"latency_ms": 60.0, "warmup_ms": 900.0}})
>>> problem = servopt.MinGPUs(images=50_000, deadline_s=10, gpus=[a100, t4])
>>> solution = servopt.solve(problem, backend="highs")
>>> solution.status.value, solution.objective, [(g.hardware, g.gpus) for g in solution.plan.groups]
('optimal', 2.0, [('A100', 2)])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from servopt.exceptions import ValidationError
from servopt.fields import MAX_EXACT_INT
from servopt.formulations.gpu.plan import GPUPlan
from servopt.formulations.gpu.types import GPUProblemBase, fmt_count
from servopt.model import Model
from servopt.result import Result

__all__ = ["MinGPUs", "OBJECTIVES"]

#: what ``objective`` may minimise
OBJECTIVES = ("gpus", "cost")


@dataclass(frozen=True, kw_only=True)
class MinGPUs(GPUProblemBase):
    """Fewest GPUs, or lowest cost per hour, that process ``images`` within ``deadline_s``.

    Parameters
    ----------
    images : int
        N, images to process.
    deadline_s : float
        T, seconds.
    gpus : sequence of GPUType
        The pool: types with counts, costs, batch tables.
    objective : {"gpus", "cost"}
        Minimise the number of GPUs (default) or the cost per hour (every type then needs ``cost_per_hour``).
    latency_slo_ms : float, optional
        Offer only batch sizes whose per-batch latency is within this SLO.
    formulation : {"aggregated", "per_gpu"}
        ``aggregated`` (default; one integer per GPU type and batch size) or the seed's per-GPU binaries.
        Both are exact; see docs/formulations.md and benchmarks/results/gpus.csv.
    name, model, input_size, triton
        Model name for the Triton repository, profile selectors, and the ``triton:`` settings of the file.
    """

    kind: ClassVar[str] = "min_gpus"
    #: exact special-purpose algorithms (servopt.formulations.gpu.greedy), for ``objective: gpus``
    algorithms: ClassVar[tuple[str, ...]] = ("greedy",)

    images: int
    objective: str = "gpus"

    def __post_init__(self) -> None:
        self._check_common()
        if isinstance(self.images, bool) or not isinstance(self.images, int) or self.images < 1:
            if isinstance(self.images, float) and self.images.is_integer() and self.images >= 1:
                object.__setattr__(self, "images", int(self.images))
            else:
                raise ValidationError(f"images={self.images!r}; give a whole number of images >= 1")
        if self.images > MAX_EXACT_INT:
            raise ValidationError(f"images={self.images}; at most 2^53 = {MAX_EXACT_INT:,} (the solvers compute in "
                                  "double precision, where larger integers are not exact)")
        if self.objective not in OBJECTIVES:
            raise ValidationError(f"objective={self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.objective == "cost":
            unpriced = [g.hardware for g in self.gpus if g.cost_per_hour is None and g.max_count > 0]
            if unpriced:
                raise ValidationError(
                    f"objective 'cost' needs cost_per_hour for every GPU type; missing for {', '.join(unpriced)}"
                )
        if self.formulation == "per_gpu":
            self.per_gpu_blocks()  # a pool too large for the per-GPU model is refused here, naming max_count

    @property
    def default_backend(self) -> str | None:
        """``greedy`` (exact, certified) when minimising GPUs in the aggregated formulation; else the MILP."""
        return "greedy" if self.objective == "gpus" and self.formulation == "aggregated" else None

    def solve_with(self, name: str, params: Any) -> tuple[Any, GPUPlan | None, str]:
        """Solve with an exact algorithm by name (``greedy``: fewest GPUs, with its certificate in the message)."""
        from servopt.formulations.gpu.greedy import applies, solve_greedy

        if name not in self.algorithms:
            raise ValidationError(f"min_gpus: unknown algorithm {name!r}; choose one of {', '.join(self.algorithms)}")
        if not applies(self):
            raise ValidationError("min_gpus: algorithm 'greedy' is exact only for objective 'gpus'; "
                                  f"objective is {self.objective!r} (use a MILP backend, e.g. 'highs')")
        return solve_greedy(self, params)

    def build(self) -> tuple[Model, Callable[[Result], GPUPlan]]:
        """The MILP in ``self.formulation`` and its decoder (no solver involved)."""
        from servopt.formulations.gpu.milp import build_gpu_model

        return build_gpu_model(self, objective=self.objective, demand=self.images)

    def feasible_plan(self) -> tuple[GPUPlan, str] | None:
        """A plan found without a solver, and how, or None when the whole pool falls short of ``images``.

        The fewest GPUs of largest capacity (:func:`~servopt.formulations.gpu.greedy.largest_capacities`; optimal
        for ``objective: gpus``, feasible for ``cost``). ``servopt.solve`` checks it with :meth:`verify` and, when
        it passes, refuses a solver's claim that the problem is infeasible.

        >>> import servopt
        >>> a100 = servopt.GPUType("A100", max_count=4, batches={64: {"latency_ms": 20.0, "warmup_ms": 1500.0}})
        >>> plan, how = servopt.MinGPUs(images=50_000, deadline_s=10, gpus=[a100]).feasible_plan()
        >>> plan.gpus, how
        (2, 'the 2 GPUs of largest capacity process 54,528 images, at least the 50,000 requested')
        """
        from servopt.formulations.gpu.greedy import describe_largest, largest_capacities
        from servopt.formulations.gpu.plan import plan_from_counts

        taken = largest_capacities(self)
        if taken is None:
            return None
        plan = plan_from_counts(self, taken[0], self.objective, self.formulation)
        return plan, describe_largest(plan.gpus, plan.images, self.images)

    def exact_optimum(self) -> tuple[int, str] | None:
        """The optimal number of GPUs computed without a solver, and why (``objective: gpus``; else None).

        ``servopt.solve`` compares an ``optimal`` claim with it exactly and re-solves a worse plan with the exact
        fallbacks (:func:`~servopt.formulations.gpu.greedy.exact_fewest_gpus` says why it is exact). None also
        when the whole pool falls short of ``images`` (no plan exists).

        >>> import servopt
        >>> a100 = servopt.GPUType("A100", max_count=4, batches={64: {"latency_ms": 20.0, "warmup_ms": 1500.0}})
        >>> servopt.MinGPUs(images=50_000, deadline_s=10, gpus=[a100]).exact_optimum()[0]
        2
        """
        from servopt.formulations.gpu.greedy import exact_fewest_gpus

        return exact_fewest_gpus(self) if self.objective == "gpus" else None

    def _gpu_bounds(self) -> dict[int, int]:
        """At most ceil(images / capacity) GPUs of each type, and for ``objective: gpus`` at most the optimum.

        Exact: take an optimal plan, run every GPU at its type's best capacity and drop GPUs while the rest still
        process ``images`` (neither costs more): the plan stays optimal, and without any one of its GPUs it falls
        short. Its n GPUs of a type process n x capacity images, so n x capacity <= images - 1 + capacity. With
        ``objective: gpus`` every optimal plan uses exactly the optimum's GPUs.
        """
        from servopt.formulations.gpu.arrays import pool_arrays
        from servopt.formulations.gpu.greedy import largest_capacities

        bounds = {o.type_index: -(-self.images // o.images) for o in pool_arrays(self).options}
        taken = largest_capacities(self) if self.objective == "gpus" else None
        if taken is not None:
            fewest = sum(n for _, n, _ in taken[0])
            bounds = {g: min(b, fewest) for g, b in bounds.items()}
        return bounds

    def explain_infeasible(self) -> str:
        """Why no plan exists, in one sentence a person can act on."""
        why = self._why_no_option()
        if why is not None:
            return why
        capacity = self.capacity()
        if capacity < self.images:
            return (
                f"the whole pool processes at most {fmt_count(capacity)} images within {self.deadline_s:g} s; "
                f"{fmt_count(self.images)} requested (add GPUs, extend the deadline or raise max_batches)"
            )
        return (
            f"the solver found no plan although the pool can process {fmt_count(capacity)} images within "
            f"{self.deadline_s:g} s; please report this with the problem file"
        )
