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
:func:`check_certificate` re-derives from the problem's capacities (re-sorted, independently of the greedy).
The per-type best options and counts are numpy arrays built once when the problem is constructed
(:mod:`servopt.formulations.gpu.arrays`, sorted by decreasing capacity with a cumulative sum), so the solve is a
binary search over T types plus the plan for the types it uses: O(log T + types used), whatever the counts
(10,000 GPUs cost nothing; benchmarks/results/gpus.csv).

``max_throughput`` without a budget is the same bound read the other way: every GPU at its best batch size
processes the most images (:func:`solve_greedy_max`, certificate :class:`UpperBound`). With a budget it is a
bounded knapsack and is not solved here (the MILP stays its backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from servopt.formulations.gpu.arrays import pool_arrays
from servopt.formulations.gpu.plan import GPUPlan, plan_from_counts
from servopt.result import SolveParams, Status

__all__ = ["ALGORITHMS", "Certificate", "UpperBound", "applies", "solve_greedy", "solve_greedy_max", "check_certificate",
           "check_upper_bound", "largest_capacities", "describe_largest", "exact_fewest_gpus", "exact_most_images"]

#: the exact algorithms this module offers, by the names ``servopt.solve(problem, backend=...)`` accepts
ALGORITHMS = ("greedy",)


@dataclass(frozen=True)
class Certificate:
    """Why no plan with fewer GPUs exists: the ``lower_bound - 1`` largest capacities fall ``short_by`` images."""

    lower_bound: int
    short_by: int

    def describe(self) -> str:
        """The bound in words (``lower_bound`` 1 needs no capacities: no GPU processes no image).

        >>> Certificate(lower_bound=1, short_by=6_000).describe()
        'optimal by the capacity bound: every plan needs at least 1 GPU'
        >>> Certificate(lower_bound=2, short_by=1).describe()  # doctest: +NORMALIZE_WHITESPACE
        'optimal by the capacity bound: the largest per-GPU capacity processes 1 image fewer than requested, so 2
         GPUs are needed'
        >>> Certificate(lower_bound=8, short_by=18_417_556_231).describe()  # doctest: +NORMALIZE_WHITESPACE
        'optimal by the capacity bound: the 7 largest per-GPU capacities together process 18,417,556,231 images
         fewer than requested, so 8 GPUs are needed'
        """
        return "optimal by the capacity bound: " + self.reason()

    def reason(self) -> str:
        """Why no plan uses fewer than ``lower_bound`` GPUs (the sentence after "optimal by the capacity bound")."""
        m = self.lower_bound
        if m <= 1:
            return "every plan needs at least 1 GPU"
        short = f"{self.short_by:,} image{'s' if self.short_by != 1 else ''} fewer than requested"
        largest = ("the largest per-GPU capacity processes" if m == 2 else
                   f"the {m - 1:,} largest per-GPU capacities together process")
        return f"{largest} {short}, so {m:,} GPUs are needed"


def applies(problem: Any) -> bool:
    """Whether the greedy is exact for ``problem``: ``min_gpus`` minimising GPUs, or ``max_throughput`` unbudgeted."""
    if getattr(problem, "kind", None) == "max_throughput":
        return getattr(problem, "budget_per_hour", None) is None
    return getattr(problem, "images", None) is not None and getattr(problem, "objective", None) == "gpus"


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
    taken = largest_capacities(problem)
    if taken is None:
        return Status.INFEASIBLE, None, ""
    counts, short_by = taken
    plan = plan_from_counts(problem, counts, "gpus", problem.formulation)
    certificate = Certificate(lower_bound=plan.gpus, short_by=short_by)
    _refuse_broken(check_certificate(problem, plan, certificate))
    return Status.OPTIMAL, plan, certificate.describe()


def largest_capacities(problem: Any) -> tuple[list[tuple[Any, int, int]], int] | None:
    """The fewest GPUs of largest capacity that process ``problem.images``, or None when the whole pool falls short.

    Returns ``(counts, short_by)``: ``(option, gpus, batches_per_gpu)`` triples for
    :func:`~servopt.formulations.gpu.plan.plan_from_counts`, and how many images the same GPUs less one process
    fewer than requested (> 0: the certificate of :func:`solve_greedy`). Integers throughout.
    """
    arrays = pool_arrays(problem)
    need = problem.images
    if arrays.total < need:
        return None
    i = int(np.searchsorted(arrays.cumulative, need))  # first type whose GPUs complete the images
    done_before = int(arrays.cumulative[i - 1]) if i else 0
    cap_i = int(arrays.capacity[i])
    take = -(-(need - done_before) // cap_i)
    counts = [(o, int(n), o.batches) for o, n in zip(arrays.options[:i], arrays.count[:i].tolist())]
    counts.append((arrays.options[i], take, arrays.options[i].batches))
    return counts, need - (done_before + (take - 1) * cap_i)


def exact_fewest_gpus(problem: Any) -> tuple[int, str] | None:
    """The fewest GPUs that process ``problem.images`` (the claim above), and why; None when the pool falls short.

    Exact for ``min_gpus`` with ``objective: gpus`` (:func:`applies`), in any formulation: every rule of the
    problem acts on one GPU at a time (its type's batch sizes within ``max_batch_size``, ``memory_limit_mb`` and the
    latency SLO, ``max_batches``, the deadline; ``instances_per_gpu`` does not change a GPU's capacity), except
    ``max_count``, which the multiset of capacities respects. O(log T + types used) on the problem's arrays.

    >>> import servopt
    >>> a100 = servopt.GPUType("A100", max_count=4, batches={64: {"latency_ms": 20.0, "warmup_ms": 1500.0}})
    >>> exact_fewest_gpus(servopt.MinGPUs(images=50_000, deadline_s=10, gpus=[a100]))  # doctest: +NORMALIZE_WHITESPACE
    (2, '2 GPUs: the 2 GPUs of largest capacity process 54,528 images, at least the 50,000 requested, and the
     largest per-GPU capacity processes 22,736 images fewer than requested, so 2 GPUs are needed')
    """
    taken = largest_capacities(problem)
    if taken is None:
        return None
    counts, short_by = taken
    m = sum(n for _, n, _ in counts)
    images = sum(o.images * n for o, n, _ in counts)
    return m, (f"{m:,} GPU{'s' if m != 1 else ''}: {describe_largest(m, images, problem.images)}, and "
               f"{Certificate(lower_bound=m, short_by=short_by).reason()}")


def describe_largest(gpus: int, images: int, requested: int) -> str:
    """The words for :func:`largest_capacities`' GPUs: how many, what they process, against what was requested.

    >>> describe_largest(1, 27_264, 20_000)
    'the GPU of largest capacity processes 27,264 images, at least the 20,000 requested'
    """
    lead = "the GPU of largest capacity processes" if gpus == 1 else f"the {gpus:,} GPUs of largest capacity process"
    return f"{lead} {images:,} images, at least the {requested:,} requested"


def exact_most_images(problem: Any) -> tuple[int, str] | None:
    """The most images a pool processes (``max_throughput`` without a budget), and why; None when no GPU fits.

    No GPU processes more than its type's best capacity whatever the others do, and nothing limits how many GPUs
    are used but ``max_count``, so the whole pool at its best batch sizes is the optimum. O(1) on the problem's
    arrays.

    >>> import servopt
    >>> a100 = servopt.GPUType("A100", max_count=2, batches={64: {"latency_ms": 20.0, "warmup_ms": 1500.0}})
    >>> exact_most_images(servopt.MaxThroughput(deadline_s=10, gpus=[a100]))  # doctest: +NORMALIZE_WHITESPACE
    (54528, '54,528 images: what the whole pool (2 GPUs) processes with each GPU at its best batch size, and no GPU
     processes more')
    """
    arrays = pool_arrays(problem)
    if not arrays.options:
        return None
    gpus = int(arrays.count.sum())
    return arrays.total, (f"{arrays.total:,} images: what the whole pool ({gpus:,} GPU{'s' if gpus != 1 else ''}) "
                          "processes with each GPU at its best batch size, and no GPU processes more")


def solve_greedy_max(problem: Any, params: SolveParams | None = None) -> tuple[Status, GPUPlan | None, str]:
    """Most images for ``problem`` (a ``max_throughput`` without a budget): every GPU at its best batch size.

    Each GPU processes at most its type's capacity whatever the others do, so the whole pool at its best options
    is optimal, certified by the bound it meets (:class:`UpperBound`).

    Examples
    --------
    >>> import servopt
    >>> a100 = servopt.GPUType("A100", max_count=2, batches={64: {"latency_ms": 20.0, "warmup_ms": 1500.0}})
    >>> t4 = servopt.GPUType("T4", max_count=4, batches={64: 60.0})
    >>> status, plan, _ = solve_greedy_max(servopt.MaxThroughput(deadline_s=10, gpus=[a100, t4]))
    >>> status.value, plan.images, [(g.hardware, g.gpus) for g in plan.groups]
    ('optimal', 97024, [('A100', 2), ('T4', 4)])
    """
    arrays = pool_arrays(problem)
    if not arrays.options:
        return Status.INFEASIBLE, None, ""
    counts = [(o, int(n), o.batches) for o, n in zip(arrays.options, arrays.count.tolist())]
    plan = plan_from_counts(problem, counts, "images", problem.formulation)
    certificate = UpperBound(images=plan.images)
    _refuse_broken(check_upper_bound(problem, plan, certificate))
    return Status.OPTIMAL, plan, certificate.describe()


def _refuse_broken(broken: str | None) -> None:
    if broken:  # never expected: the MILP is the way out
        from servopt.exceptions import SolverError

        raise SolverError(f"greedy: the certificate does not hold ({broken}); please report this problem")


def check_certificate(problem: Any, plan: GPUPlan, certificate: Certificate) -> str | None:
    """Check that ``plan`` is optimal by ``certificate``, from the problem's numbers alone (None: it holds).

    Re-derives every type's best per-GPU capacity, sums the ``lower_bound - 1`` largest (the bound on any choice
    of that many GPUs) and checks it falls short of the requested images by ``short_by``, and that the plan uses
    ``lower_bound`` GPUs. Feasibility of the plan is :meth:`verify`'s job.
    """
    arrays = pool_arrays(problem)
    order = np.argsort(-arrays.capacity, kind="stable")  # re-sorted here: the check does not trust the order
    caps, counts = arrays.capacity[order].tolist(), arrays.count[order].tolist()
    left = certificate.lower_bound - 1
    total = 0
    for cap, count in zip(caps, counts):
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


@dataclass(frozen=True)
class UpperBound:
    """Why no plan processes more images: every GPU of the pool at its best batch size processes ``images``."""

    images: int

    def describe(self) -> str:
        return (f"optimal by the capacity bound: the whole pool, each GPU at its best batch size, processes "
                f"{self.images:,} images")


def check_upper_bound(problem: Any, plan: GPUPlan, certificate: UpperBound) -> str | None:
    """Check that ``plan`` (of a ``max_throughput`` without budget) meets the pool's capacity bound (None: it does).

    The bound is re-summed from the per-type capacities (count x best capacity); a plan meeting it is optimal
    because no GPU processes more than its type's best capacity. Feasibility of the plan is :meth:`verify`'s job.
    """
    arrays = pool_arrays(problem)
    bound = sum(int(c) * int(n) for c, n in zip(arrays.capacity.tolist(), arrays.count.tolist()))
    if bound != certificate.images:
        return f"the pool processes at most {bound} images, the certificate says {certificate.images}"
    if plan.images != bound:
        return f"the plan processes {plan.images} images, the bound is {bound}"
    return None
