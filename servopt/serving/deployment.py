"""What serves the requests in a simulation: server pools, deployments, and the deployment that runs a plan.

A :class:`SimulatedDeployment` is a series of stages; each stage is one or more :class:`ServerPool` s in parallel with
routing weights. A pool is ``replicas`` identical servers behind one FIFO queue with Triton-style dynamic batching
(the queueing itself is in :mod:`servopt.simulate`). :func:`deployment_from_plan` turns a ``variant_selection`` or
``pipeline`` plan into the deployment that runs it (the service models are documented there and in
``docs/simulator.md``).

>>> pool = ServerPool("m", latency_s={1: 0.010, 8: 0.024}, replicas=2, batch_size=8)
>>> round(pool.capacity_rps, 1)
666.7
>>> SimulatedDeployment.series([pool, ServerPool("n", latency_s=0.005)], slo_ms=100).summary()
'm x2 b8 -> n x1 b1'
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from servopt.exceptions import ValidationError
from servopt.formulations.pipeline.problem import Pipeline
from servopt.formulations.pipeline.types import PipelinePlan, rank_normalize
from servopt.formulations.variant_selection.problem import VariantSelection
from servopt.formulations.variant_selection.types import VariantSelectionPlan

__all__ = [
    "SimulatedDeployment", "LatencySpec", "ServerPool", "deployment_from_plan", "servable", "serving_options",
]

LatencySpec = float | Mapping[int, float] | Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class ServerPool:
    """Identical servers (replicas) behind one queue with dynamic batching.

    Parameters
    ----------
    name : str
        Label (variant or stage name).
    latency_s : float, mapping or callable
        Time to run one batch, seconds: one number for every batch size; a mapping ``{batch_size: seconds}`` of
        profiled points (a batch of a size in between takes the linear interpolation, smaller than the smallest
        point the smallest point's time); or a callable taking an integer array of batch sizes ``1..batch_size``
        and returning their times.
    replicas : int
        Servers working in parallel on one shared queue.
    batch_size : int
        Largest batch a server takes.
    max_queue_delay_s : float
        How long the oldest queued request may wait for a batch to fill before a free server takes what is queued.
    cores : float
        Cores per replica (for ``core_seconds``).
    accuracy : float
        Accuracy of the model served by this pool (NaN if unknown).
    """

    name: str
    latency_s: LatencySpec
    replicas: int = 1
    batch_size: int = 1
    max_queue_delay_s: float = 0.0
    cores: float = 0.0
    accuracy: float = float("nan")

    def __post_init__(self) -> None:
        where = f"server pool {self.name!r}"
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, (int, np.integer)) or self.replicas < 1:
            raise ValidationError(f"{where}: replicas must be an integer >= 1, got {self.replicas!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) \
                or self.batch_size < 1:
            raise ValidationError(f"{where}: batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not (math.isfinite(self.max_queue_delay_s) and self.max_queue_delay_s >= 0):
            raise ValidationError(f"{where}: max_queue_delay_s must be a finite number >= 0, "
                                  f"got {self.max_queue_delay_s!r}")
        if not (math.isfinite(self.cores) and self.cores >= 0):
            raise ValidationError(f"{where}: cores must be a finite number >= 0, got {self.cores!r}")
        self.batch_latencies()  # validates latency_s

    def batch_latencies(self) -> np.ndarray:
        """Seconds to run a batch of ``k`` requests, at index ``k`` (index 0 is 0)."""
        b = int(self.batch_size)
        sizes = np.arange(1, b + 1)
        spec = self.latency_s
        where = f"server pool {self.name!r}: latency_s"
        if isinstance(spec, Mapping):
            if not spec:
                raise ValidationError(f"{where}: the table of batch latencies is empty")
            keys = np.array(sorted(int(k) for k in spec), dtype=float)
            vals = np.array([float(spec[k]) for k in sorted(spec, key=int)])
            if keys[0] < 1:
                raise ValidationError(f"{where}: batch sizes must be >= 1, got {int(keys[0])}")
            if b > keys[-1]:
                raise ValidationError(
                    f"{where}: batch_size {b} is above the largest profiled batch size {int(keys[-1])}"
                )
            lat = np.interp(sizes, keys, vals)
        elif callable(spec):
            lat = np.asarray(spec(sizes), dtype=float)
            if lat.shape != sizes.shape:
                raise ValidationError(f"{where}: the callable returned shape {lat.shape}, expected {sizes.shape}")
        else:
            try:
                lat = np.full(b, float(spec))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValidationError(f"{where}: expected seconds, a {{batch: seconds}} mapping or a callable, "
                                      f"got {type(spec).__name__}") from None
        if not np.all(np.isfinite(lat) & (lat > 0)):
            raise ValidationError(f"{where}: batch latencies must be finite and > 0, got {lat.tolist()}")
        return np.concatenate(([0.0], lat))

    @property
    def capacity_rps(self) -> float:
        """Saturation throughput: replicas running full batches back to back."""
        return float(self.replicas * self.batch_size / self.batch_latencies()[-1])


@dataclass(frozen=True)
class SimulatedDeployment:
    """Stages in series; each stage is pools in parallel with routing weights (shares of the requests).

    ``accuracy`` says how the accuracies of the pools a request passes through combine into its accuracy:
    ``average``, ``sum`` or ``product``. Build one with :meth:`parallel` (InfAdapter: variants side by side) or
    :meth:`series` (IPA: one pool per stage).
    """

    stages: tuple[tuple[ServerPool, ...], ...]
    weights: tuple[tuple[float, ...], ...]
    slo_ms: float | None = None
    accuracy: str = "average"
    label: str = ""

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValidationError("a deployment needs at least one stage")
        if len(self.weights) != len(self.stages):
            raise ValidationError(f"a deployment needs one weight list per stage: {len(self.stages)} stages, "
                                  f"{len(self.weights)} weight lists")
        for s, (pools, w) in enumerate(zip(self.stages, self.weights)):
            if not pools or len(pools) != len(w):
                raise ValidationError(f"stage {s}: {len(pools)} pools but {len(w)} routing weights")
            if not all(isinstance(p, ServerPool) for p in pools):
                raise ValidationError(f"stage {s}: every pool must be a ServerPool")
            arr = np.asarray(w, dtype=float)
            if not np.all(np.isfinite(arr) & (arr >= 0)) or arr.sum() <= 0:
                raise ValidationError(f"stage {s}: routing weights must be >= 0 with a positive sum, got {list(w)}")
        if self.accuracy not in ("average", "sum", "product"):
            raise ValidationError(f"deployment accuracy must be average, sum or product, got {self.accuracy!r}")
        if self.slo_ms is not None and not (math.isfinite(self.slo_ms) and self.slo_ms > 0):
            raise ValidationError(f"slo_ms must be a finite number > 0, got {self.slo_ms!r}")

    @classmethod
    def parallel(cls, pools: Sequence[ServerPool], weights: Sequence[float] | None = None, *,
                 slo_ms: float | None = None, label: str = "") -> SimulatedDeployment:
        """One stage of pools side by side (weights default to equal shares)."""
        w = tuple(float(x) for x in (weights if weights is not None else [1.0] * len(pools)))
        return cls((tuple(pools),), (w,), slo_ms=slo_ms, label=label)

    @classmethod
    def series(cls, pools: Sequence[ServerPool], *, slo_ms: float | None = None, accuracy: str = "average",
               label: str = "") -> SimulatedDeployment:
        """A chain: every request passes through every pool in order."""
        return cls(tuple((p,) for p in pools), tuple((1.0,) for _ in pools), slo_ms=slo_ms, accuracy=accuracy,
                   label=label)

    @property
    def cores(self) -> float:
        """Cores held by the whole deployment."""
        return float(sum(p.cores * p.replicas for pools in self.stages for p in pools))

    def summary(self) -> str:
        """One line, e.g. ``resnet18 x4 b1 | resnet50 x2 b1``."""
        return " -> ".join(
            " | ".join(f"{p.name} x{p.replicas} b{p.batch_size}" for p, w in zip(pools, ws) if w > 0)
            for pools, ws in zip(self.stages, self.weights)
        )


def deployment_from_plan(problem: Any, plan: Any, *, slo_ms: float | None = None, headroom: float = 0.8,
                         servers: str = "per_core") -> SimulatedDeployment:
    """The :class:`SimulatedDeployment` that runs a plan of a ``variant_selection`` or ``pipeline`` problem.

    ``variant_selection`` (InfAdapter: one TF Serving pod per variant, batch 1, ``n`` cores): the problem knows
    only the capacity th(n), the RPS the variant sustains *within its latency SLO*, which InfAdapter sets to 0.8 of
    the measured capacity. The pod is modelled as ``n`` servers (one per core, ``servers="per_core"``; or one
    server, ``"single"``) with a deterministic service time chosen so that the pod saturates at
    ``th(n) / headroom``: ``n * headroom / th(n)`` seconds per request per core. Requests are routed by the plan's
    ``rps`` shares. Variant-selection problems carry no SLO (it is built into th): pass ``slo_ms``.

    ``pipeline`` (IPA): stages in series, each ``replicas`` servers with the plan's batch size, a batch of ``k``
    taking the variant's profiled latency (interpolated between profiled batch sizes), and a dynamic-batching
    queue delay equal to the plan's queueing budget ``queue_ms`` (the time a batch takes to fill at the planned
    load). Accuracy per request combines the stage accuracies as the objective does (``sum``/``average``/
    ``product``, rank-normalised when the problem says so), so it matches the plan's ``accuracy``; the SLO is
    ``sla_ms``.
    """
    return _deployment_of(plan, problem, slo_ms=slo_ms, headroom=headroom, servers=servers)


@functools.singledispatch
def _deployment_of(plan: Any, problem: Any, *, slo_ms: float | None, headroom: float,
                   servers: str) -> SimulatedDeployment:
    kind = getattr(problem, "kind", None)
    raise ValidationError(f"cannot simulate a {kind or type(plan).__name__!r} plan: the simulator serves request "
                          "streams of variant_selection and pipeline plans (min_gpus/max_throughput plans are "
                          "batch jobs)")


@functools.singledispatch
def servable(problem: Any) -> bool:
    """Whether the simulator can serve plans of ``problem`` (request streams, not batch jobs).

    >>> servable(object())
    False
    """
    return False


@functools.singledispatch
def serving_options(problem: Any, headroom: float, servers: str) -> dict[str, Any]:
    """The keywords of :func:`deployment_from_plan` that apply to plans of ``problem`` (none by default)."""
    return {}


@servable.register
def _(problem: VariantSelection) -> bool:
    return True


@servable.register
def _(problem: Pipeline) -> bool:
    return True


@serving_options.register
def _(problem: VariantSelection, headroom: float, servers: str) -> dict[str, Any]:
    return {"headroom": headroom, "servers": servers}


@_deployment_of.register
def _(plan: VariantSelectionPlan, problem: Any, *, slo_ms: float | None, headroom: float,
      servers: str) -> SimulatedDeployment:
    return _variant_selection_deployment(problem, plan, slo_ms, headroom, servers)


@_deployment_of.register
def _(plan: PipelinePlan, problem: Any, *, slo_ms: float | None, headroom: float,
      servers: str) -> SimulatedDeployment:
    return _pipeline_deployment(problem, plan, slo_ms)


def _variant_selection_deployment(problem: Any, plan: VariantSelectionPlan, slo_ms: float | None, headroom: float,
                                  servers: str) -> SimulatedDeployment:
    if not (math.isfinite(headroom) and 0 < headroom <= 1):
        raise ValidationError(f"headroom must be in (0, 1] (InfAdapter serves 0.8 of capacity), got {headroom!r}")
    if servers not in ("per_core", "single"):
        raise ValidationError(f"servers must be per_core or single, got {servers!r}")
    variants = {v.name: v for v in problem.variants}
    pools, weights = [], []
    for alloc in plan.variants:
        name, cores = alloc.name, int(alloc.cores)
        if cores <= 0:
            continue
        if name not in variants:
            raise ValidationError(f"the plan names variant {name!r}, which the problem does not have")
        v = variants[name]
        if cores not in v.capacity:
            raise ValidationError(f"variant {name!r} has no capacity for {cores} cores; profiled: "
                                  f"{sorted(v.capacity)}")
        th = float(v.capacity[cores])
        if th <= 0:
            raise ValidationError(f"variant {name!r} on {cores} cores has capacity {th:g} RPS: cannot serve")
        c = cores if servers == "per_core" else 1
        pools.append(ServerPool(name, latency_s=c * headroom / th, replicas=c, cores=cores / c,
                                accuracy=float(v.accuracy)))
        weights.append(max(float(alloc.rps), 0.0))
    if not pools:
        raise ValidationError("the plan loads no variant")
    if sum(weights) <= 0:
        weights = [1.0] * len(pools)
    return SimulatedDeployment.parallel(pools, weights, slo_ms=slo_ms, label="variant_selection")


def _pipeline_deployment(problem: Any, plan: PipelinePlan, slo_ms: float | None) -> SimulatedDeployment:
    stages = {s.name: s for s in problem.stages}
    pools = []
    for sp in plan.stages:
        stage = stages.get(sp.name)
        if stage is None:
            raise ValidationError(f"the plan names stage {sp.name!r}, which the problem does not have")
        names = [v.name for v in stage.variants]
        if sp.variant not in names:
            raise ValidationError(f"stage {stage.name!r} has no variant {sp.variant!r}")
        accs = [v.accuracy for v in stage.variants]
        if problem.normalize == "rank":
            accs = rank_normalize(accs)
        i = names.index(sp.variant)
        v = stage.variants[i]
        table = {p.batch_size: p.latency_ms / 1000.0 for p in v.batches}
        pools.append(ServerPool(
            f"{stage.name}:{v.name}", latency_s=table, replicas=int(sp.replicas), batch_size=int(sp.batch_size),
            max_queue_delay_s=max(0.0, float(sp.queue_ms)) / 1000.0, cores=float(v.cores),
            accuracy=float(accs[i]),
        ))
    return SimulatedDeployment.series(pools, slo_ms=slo_ms if slo_ms is not None else float(problem.sla_ms),
                             accuracy=problem.accuracy, label="pipeline")
