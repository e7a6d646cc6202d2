"""An exact combinatorial algorithm for ``min_gpus`` with ``objective: gpus``, with a certificate of optimality.

Every GPU works on its own: a GPU of type g processes at most ``cap_g = max_b b k_max(g, b)`` images within the
deadline (its best batch size, :func:`~servopt.formulations.gpu.types.gpu_options`), whatever the others do. So
any m GPUs process at most the sum of the m largest capacities of the multiset in which type g appears
``max_count_g`` times.

**Claim.** With capacities sorted in decreasing order c_1 >= c_2 >= ..., the fewest GPUs that process N images
is the smallest m with c_1 + ... + c_m >= N (infeasible when even all of them fall short).

**Proof.** Taking the m largest reaches N, so m GPUs suffice. Any m - 1 GPUs process at most
c_1 + ... + c_{m-1} < N (the m - 1 largest bound every choice of m - 1), so fewer do not. ∎

The certificate is that bound: ``lower_bound`` = m and ``short_by`` = N − (c_1 + ... + c_{m-1}) > 0, which
:func:`check_certificate` re-derives from the problem independently of the greedy. Taking whole types in
decreasing capacity makes the algorithm O(T log T) for T types, whatever the counts (10,000 GPUs cost nothing).
``max_throughput`` with a budget is a knapsack and is not solved here (the MILP stays its backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from servopt.formulations.gpu.types import GPUOption, GPUPlan, gpu_options, plan_from_counts
from servopt.result import SolveParams, Status

__all__ = ["ALGORITHMS", "Certificate", "applies", "solve_greedy", "check_certificate"]

#: the exact algorithms this module offers, by the names ``servopt.solve(problem, backend=...)`` accepts
ALGORITHMS = ("greedy",)


@dataclass(frozen=True)
class Certificate:
    """Why no plan with fewer GPUs exists: the ``lower_bound - 1`` largest capacities fall ``short_by`` images."""

    lower_bound: int
    short_by: int

    def describe(self) -> str:
        return (f"optimal by the capacity bound: the {self.lower_bound - 1:,} largest per-GPU capacities process "
                f"{self.short_by:,} images fewer than requested, so {self.lower_bound:,} GPUs are needed")


def applies(problem: Any) -> bool:
    """Whether the greedy is exact for ``problem``: ``min_gpus`` minimising the number of GPUs."""
    return getattr(problem, "images", None) is not None and getattr(problem, "objective", None) == "gpus"


def _best_options(problem: Any) -> list[GPUOption]:
    """Each GPU type's option with the most images (ties: the smaller batch, then pool order)."""
    best: dict[int, GPUOption] = {}
    for o in gpu_options(problem.gpus, problem.deadline_s, problem.latency_slo_ms):
        held = best.get(o.type_index)
        if held is None or (o.images, -o.batch_size) > (held.images, -held.batch_size):
            best[o.type_index] = o
    return sorted(best.values(), key=lambda o: (-o.images, o.type_index))


def solve_greedy(problem: Any, params: SolveParams | None = None) -> tuple[Status, GPUPlan | None, str]:
    """Fewest GPUs for ``problem`` (a ``min_gpus`` with ``objective: gpus``), proven optimal by its certificate.

    Returns
    -------
    (Status, GPUPlan or None, message)
        ``optimal`` with the plan and the certificate in the message, or ``infeasible``.

    Examples
    --------
    >>> import servopt
    >>> a100 = servopt.GPUType("A100", max_count=4, batches={64: {"latency_ms": 20.0, "warmup_ms": 1500.0}})
    >>> t4 = servopt.GPUType("T4", max_count=8, batches={64: {"latency_ms": 60.0, "warmup_ms": 900.0}})
    >>> status, plan, _ = solve_greedy(servopt.MinGPUs(images=50_000, deadline_s=10, gpus=[a100, t4]))
    >>> status.value, plan.gpus, [(g.hardware, g.gpus) for g in plan.groups]
    ('optimal', 2, [('A100', 2)])
    """
    need = problem.images
    counts: list[tuple[GPUOption, int, int]] = []
    done = 0
    for o in _best_options(problem):
        if done >= need:
            break
        available = problem.gpus[o.type_index].max_count
        take = min(available, -(-(need - done) // o.images))
        counts.append((o, take, o.batches))
        done += take * o.images
    if done < need:
        return Status.INFEASIBLE, None, ""
    plan = plan_from_counts(problem, counts, "gpus", problem.formulation)
    certificate = Certificate(lower_bound=plan.gpus, short_by=need - (done - counts[-1][0].images))
    broken = check_certificate(problem, plan, certificate)
    if broken:  # never expected: the MILP is the way out
        from servopt.exceptions import SolverError

        raise SolverError(f"greedy: the certificate does not hold ({broken}); please report this problem")
    return Status.OPTIMAL, plan, certificate.describe()


def check_certificate(problem: Any, plan: GPUPlan, certificate: Certificate) -> str | None:
    """Check that ``plan`` is optimal by ``certificate``, from the problem's numbers alone (None: it holds).

    Re-derives every type's best per-GPU capacity, sums the ``lower_bound - 1`` largest (the bound on any choice
    of that many GPUs) and checks it falls short of the requested images by ``short_by``, and that the plan uses
    ``lower_bound`` GPUs. Feasibility of the plan is :meth:`verify`'s job.
    """
    caps = sorted(((o.images, problem.gpus[o.type_index].max_count) for o in _best_options(problem)), reverse=True)
    left = certificate.lower_bound - 1
    total = 0
    for cap, count in caps:
        take = min(count, left)
        total += take * cap
        left -= take
        if not left:
            break
    if left > 0:
        return f"the pool has fewer than {certificate.lower_bound - 1} GPUs"
    if problem.images - total != certificate.short_by or certificate.short_by <= 0:
        return (f"the {certificate.lower_bound - 1} largest capacities process {total} images, "
                f"not {problem.images - certificate.short_by} < {problem.images}")
    if plan.gpus != certificate.lower_bound:
        return f"the plan uses {plan.gpus} GPUs, the bound is {certificate.lower_bound}"
    return None
