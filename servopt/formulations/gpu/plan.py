"""A decoded ``min_gpus`` / ``max_throughput`` plan: groups of GPUs of one type running one batch size, and what the
plan expects of each group when served (``servopt solve --json``, ``servopt.json``, the table for people).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servopt.formulations.gpu.types import GPUOption

__all__ = ["GPUGroup", "GPUPlan", "plan_from_counts"]


@dataclass(frozen=True)
class GPUGroup:
    """GPUs of one type running the same batch size for the same number of batches.

    ``instances_per_gpu`` is the GPU type's :attr:`GPUType.instances_per_gpu`: the model instances each GPU
    runs (Triton's ``instance_group`` count), as in the configuration that was measured.
    """

    hardware: str
    gpus: int
    batch_size: int
    batches_per_gpu: int
    images: int
    busy_s: float
    latency_ms: float
    warmup_ms: float
    instances_per_gpu: int = 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hardware": self.hardware,
            "gpus": self.gpus,
            "batch_size": self.batch_size,
            "batches_per_gpu": self.batches_per_gpu,
            "images": self.images,
        }
        if self.instances_per_gpu != 1:
            out["instances_per_gpu"] = self.instances_per_gpu
        return out


@dataclass(frozen=True)
class GPUPlan:
    """A decoded ``min_gpus`` / ``max_throughput`` plan.

    ``images`` is what the chosen GPUs process within the deadline when each runs ``batches_per_gpu`` batches;
    for ``min_gpus`` it is at least the images requested and may exceed them (a GPU simply runs out of work).
    ``objective`` is the formulation's objective value: GPUs, cost per hour, or images.
    """

    kind: str
    objective_name: str
    objective: float
    gpus: int
    images: int
    cost_per_hour: float | None
    groups: tuple[GPUGroup, ...]
    deadline_s: float
    requested_images: int | None = None
    budget_per_hour: float | None = None
    formulation: str = "aggregated"

    @property
    def exact_objective(self) -> Any:
        """``objective`` without rounding: the integer GPUs or images, or the cost as the decimal it prints as
        (what ``servopt.solve`` compares with a problem's ``exact_optimum()``)."""
        if self.objective_name == "cost":
            from servopt.exact import dec

            return dec(self.objective)
        return self.gpus if self.objective_name == "gpus" else self.images

    def to_dict(self) -> dict[str, Any]:
        """The ``plan`` object of ``servopt solve --json`` (SPEC §5)."""
        return {
            "gpus": self.gpus,
            "images": self.images,
            "cost_per_hour": self.cost_per_hour,
            "groups": [g.to_dict() for g in self.groups],
        }

    def predictions(self) -> dict[str, Any]:
        """What the plan expects of each group when served (``servopt solve --json`` and ``servopt.json``).

        Per group (one Triton model per GPU type, one instance per GPU): the batch latency and each GPU's
        throughput the plan was made with, the load that keeps every instance busy (requests of ``batch_size``
        items, 2 in flight per GPU: one running, one queued), the queueing delay that load gives (one batch
        latency: a request waits for the batch ahead of it), and ``max_queue_delay_us`` for clients that send
        single images: at the planned rate ``batch_size`` requests arrive within (b - 1) / b of one batch
        latency, so waiting that long lets the dynamic batcher form the planned batch while the previous batch
        runs (with 0, the batcher takes what is queued: batches of 3.5-3.9 instead of 8 were measured).
        ``perf_analyzer`` is the command line that reproduces the load (``-u`` to be set to the server).
        """
        groups = []
        for g in self.groups:
            per_gpu = g.batch_size * 1000.0 / g.latency_ms
            delay_us = int(math.ceil(1000.0 * g.latency_ms * (g.batch_size - 1) / g.batch_size))
            groups.append({
                "hardware": g.hardware, "model_instances": g.gpus, "batch_size": g.batch_size,
                "batch_latency_ms": g.latency_ms, "throughput_rps_per_gpu": per_gpu,
                "throughput_rps": per_gpu * g.gpus, "queue_delay_ms": g.latency_ms,
                "latency_ms": 2 * g.latency_ms, "busy_s": g.busy_s, "images": g.images,
                "load": {"concurrency": 2 * g.gpus, "request_batch_size": g.batch_size,
                         "single_image_concurrency": 2 * g.gpus * g.batch_size},
                "max_queue_delay_us": delay_us,
                "perf_analyzer": (f"perf_analyzer -m MODEL -i grpc -u 127.0.0.1:8001 -b {g.batch_size} "
                                  f"--concurrency-range {2 * g.gpus}:{2 * g.gpus}"),
            })
        return {"deadline_s": self.deadline_s, "requested_images": self.requested_images,
                "throughput_rps": sum(x["throughput_rps"] for x in groups), "groups": groups}

    def to_table(self) -> str:
        """The plan for people: one line per group, totals, and what the numbers mean."""
        if self.requested_images is not None:
            head = f"{self.kind}: {self.requested_images:,} images within {self.deadline_s:g} s"
        else:
            head = f"{self.kind}: most images within {self.deadline_s:g} s"
            if self.budget_per_hour is not None:
                head += f" for at most {self.budget_per_hour:g} per hour"
        value = f"{self.objective:,.4g}" if self.objective_name == "cost" else f"{int(self.objective):,}"
        lines = [f"{head} -> {self.objective_name} = {value}"]
        header = ("hardware", "GPUs", "batch", "batches/GPU", "images", "busy s")
        rows = [header] + [
            (g.hardware, f"{g.gpus:,}", f"{g.batch_size:,}", f"{g.batches_per_gpu:,}", f"{g.images:,}",
             f"{g.busy_s:,.2f}")
            for g in self.groups
        ]
        rows.append(("total", f"{self.gpus:,}", "", "", f"{self.images:,}", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for n, r in enumerate(rows):
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
            if n == len(rows) - 1:
                lines.append("  " + "  ".join("-" * w for w in widths))
            lines.append("  " + "  ".join(cells).rstrip())
        if self.cost_per_hour is not None:
            lines.append(f"cost per hour: {self.cost_per_hour:,.4g}")
        multi = sorted({(g.hardware, g.instances_per_gpu) for g in self.groups if g.instances_per_gpu != 1})
        if multi:
            lines.append("model instances per GPU (as measured): "
                         + ", ".join(f"{hw} {n}" for hw, n in multi))
        if self.requested_images is not None and self.images > self.requested_images:
            lines.append(
                f"note: the GPUs can process {self.images - self.requested_images:,} images more than requested "
                "within the deadline; batches/GPU is each GPU's capacity, not a quota"
            )
        return "\n".join(lines)


def plan_from_counts(
    problem: Any, counts: Iterable[tuple[GPUOption, int, int]], objective_name: str, formulation: str
) -> GPUPlan:
    """Build a :class:`GPUPlan` from ``(option, gpus, batches_per_gpu)`` triples (same triples are merged)."""
    merged: dict[tuple[int, int, int], int] = {}
    by_key: dict[tuple[int, int, int], GPUOption] = {}
    for option, n, k in counts:
        if n <= 0:
            continue
        key = (option.type_index, option.batch_size, k)
        merged[key] = merged.get(key, 0) + n
        by_key[key] = option
    groups = []
    for key in sorted(merged, key=lambda t: (t[0], -t[1], -t[2])):
        o, n, k = by_key[key], merged[key], key[2]
        groups.append(GPUGroup(o.hardware, n, o.batch_size, k, n * o.batch_size * k,
                               (o.warmup_ms + (k - 1) * o.latency_ms) / 1000.0, o.latency_ms, o.warmup_ms,
                               instances_per_gpu=problem.gpus[o.type_index].instances_per_gpu))
    gpus = sum(g.gpus for g in groups)
    images = sum(g.images for g in groups)
    costs = [problem.gpus[key[0]].cost_per_hour for key in merged]
    cost = None
    if all(c is not None for c in costs):
        cost = round(sum(problem.gpus[key[0]].cost_per_hour * n for key, n in merged.items()), 9)
    objective = {"gpus": float(gpus), "cost": cost, "images": float(images)}[objective_name]
    return GPUPlan(
        kind=problem.kind,
        objective_name=objective_name,
        objective=float(objective) if objective is not None else math.nan,
        gpus=gpus,
        images=images,
        cost_per_hour=cost,
        groups=tuple(groups),
        deadline_s=problem.deadline_s,
        requested_images=getattr(problem, "images", None),
        budget_per_hour=getattr(problem, "budget_per_hour", None),
        formulation=formulation,
    )
