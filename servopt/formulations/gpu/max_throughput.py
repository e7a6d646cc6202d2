"""``max_throughput``: the most images a GPU pool processes within T (SPEC §4.2, seed eq. 2).

Optional ``budget_per_hour`` turns the choice of GPUs into a knapsack; optional ``latency_slo_ms`` offers only
batch sizes whose per-batch latency meets the SLO (soft real-time). At least one GPU must be used, so a problem
where nothing fits (deadline, SLO, budget) is reported infeasible with the reason, not as an empty plan.

>>> import servopt
>>> a100 = servopt.GPUType("A100", max_count=2, cost_per_hour=4.0,
...                        batches={64: {"latency_ms": 20.0, "warmup_ms": 1500.0}})
>>> t4 = servopt.GPUType("T4", max_count=4, cost_per_hour=1.0, batches={64: {"latency_ms": 60.0}})
>>> problem = servopt.MaxThroughput(deadline_s=10, gpus=[a100, t4], budget_per_hour=5.0)
>>> plan = servopt.solve(problem, backend="highs").plan
>>> plan.images, [(g.hardware, g.gpus) for g in plan.groups]
(42496, [('T4', 4)])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from servopt.exceptions import ValidationError
from servopt.formulations.gpu.plan import GPUPlan
from servopt.formulations.gpu.types import GPUProblemBase
from servopt.model import Model
from servopt.result import Result

__all__ = ["MaxThroughput"]


@dataclass(frozen=True, kw_only=True)
class MaxThroughput(GPUProblemBase):
    """Most images processed within ``deadline_s`` over the GPUs chosen from the pool.

    Parameters
    ----------
    deadline_s : float
        T, seconds.
    gpus : sequence of GPUType
        The pool.
    budget_per_hour : float, optional
        Most total cost per hour of the GPUs used (every type then needs ``cost_per_hour``).
    latency_slo_ms : float, optional
        Offer only batch sizes whose per-batch latency is within this SLO.
    formulation : {"aggregated", "per_gpu"}
        As for :class:`~servopt.formulations.gpu.min_gpus.MinGPUs`.
    name, model, input_size, triton
        Model name for the Triton repository, profile selectors, and the ``triton:`` settings of the file.
    """

    kind: ClassVar[str] = "max_throughput"
    #: exact special-purpose algorithms (servopt.formulations.gpu.greedy), without a budget
    algorithms: ClassVar[tuple[str, ...]] = ("greedy",)

    budget_per_hour: float | None = None

    def __post_init__(self) -> None:
        self._check_common()
        if self.budget_per_hour is not None:
            b = self.budget_per_hour
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not (0 <= b < float("inf")):
                raise ValidationError(f"budget_per_hour={b!r}; give a number >= 0 or None")
            object.__setattr__(self, "budget_per_hour", float(b))
            unpriced = [g.hardware for g in self.gpus if g.cost_per_hour is None and g.max_count > 0]
            if unpriced:
                raise ValidationError(
                    f"budget_per_hour needs cost_per_hour for every GPU type; missing for {', '.join(unpriced)}"
                )
        if self.formulation == "per_gpu":
            self.per_gpu_blocks()  # a pool too large for the per-GPU model is refused here, naming max_count

    @property
    def objective(self) -> str:
        """Always ``images`` (maximised)."""
        return "images"

    @property
    def default_backend(self) -> str | None:
        """``greedy`` (exact, certified) without a budget in the aggregated formulation; else the MILP."""
        return "greedy" if self.budget_per_hour is None and self.formulation == "aggregated" else None

    def solve_with(self, name: str, params: Any) -> tuple[Any, GPUPlan | None, str]:
        """Solve with an exact algorithm by name (``greedy``: every GPU at its best batch, with its certificate)."""
        from servopt.formulations.gpu.greedy import applies, solve_greedy_max

        if name not in self.algorithms:
            raise ValidationError(f"max_throughput: unknown algorithm {name!r}; choose one of "
                                  f"{', '.join(self.algorithms)}")
        if not applies(self):
            raise ValidationError("max_throughput: algorithm 'greedy' is exact only without budget_per_hour "
                                  "(with a budget the choice is a knapsack: use a MILP backend, e.g. 'highs')")
        return solve_greedy_max(self, params)

    def build(self) -> tuple[Model, Callable[[Result], GPUPlan]]:
        """The MILP in ``self.formulation`` and its decoder (no solver involved)."""
        from servopt.formulations.gpu.milp import build_gpu_model

        return build_gpu_model(self, objective="images", budget=self.budget_per_hour, require_one=True)

    def feasible_plan(self) -> tuple[GPUPlan, str] | None:
        """A plan found without a solver, and how, or None when no GPU fits the deadline (and SLO).

        One GPU of the cheapest type that fits (prices compared exactly as the decimals they print as; unpriced
        types cost nothing) at its best batch size: every plan needs at least one GPU, and this one is within any
        budget that some single GPU is within. ``servopt.solve`` checks it with :meth:`verify` (which decides the
        budget) and, when it passes, refuses a solver's claim that the problem is infeasible.
        """
        from servopt.exact import dec
        from servopt.formulations.gpu.arrays import pool_arrays
        from servopt.formulations.gpu.plan import plan_from_counts

        options = pool_arrays(self).options
        if not options:
            return None
        best = min(options, key=lambda o: (dec(self.gpus[o.type_index].cost_per_hour or 0), o.type_index))
        plan = plan_from_counts(self, [(best, 1, best.batches)], "images", self.formulation)
        return plan, f"one {best.hardware} GPU at batch size {best.batch_size} processes {plan.images:,} images"

    def exact_optimum(self) -> tuple[int, str] | None:
        """The most images computed without a solver, and why (without ``budget_per_hour``; else None).

        Every GPU of the pool at its best batch size (:func:`~servopt.formulations.gpu.greedy.exact_most_images`);
        ``servopt.solve`` compares an ``optimal`` claim with it exactly. None also when no GPU fits the deadline.
        """
        from servopt.formulations.gpu.greedy import exact_most_images

        return exact_most_images(self) if self.budget_per_hour is None else None

    def _gpu_bounds(self) -> dict[int, int]:
        """With a budget, at most floor(budget / price) GPUs of a priced type (exactly, on the decimals); every
        plan within the budget respects it. Without a budget the optimum uses every GPU: no bound."""
        if self.budget_per_hour is None:
            return {}
        from servopt.exact import dec, floor_div

        budget = dec(self.budget_per_hour)
        return {g: floor_div(budget, dec(gpu.cost_per_hour)) for g, gpu in enumerate(self.gpus)
                if gpu.cost_per_hour}

    def explain_infeasible(self) -> str:
        """Why no plan exists, in one sentence a person can act on."""
        why = self._why_no_option()
        if why is not None:
            return why
        if self.budget_per_hour is not None:
            fitting = {o.type_index for o in self.options()}
            g = min((self.gpus[i] for i in fitting), key=lambda gpu: gpu.cost_per_hour or 0.0)
            if (g.cost_per_hour or 0.0) > self.budget_per_hour:
                return (
                    f"budget_per_hour {self.budget_per_hour:g} buys no GPU that fits the deadline (cheapest: "
                    f"{g.hardware} at {g.cost_per_hour:g} per hour); raise the budget"
                )
        return "the solver found no plan although a GPU fits; please report this with the problem file"
