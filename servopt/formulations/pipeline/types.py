"""The data of a ``pipeline`` problem and its plans: stages, variants, batch profiles, option arrays, plans.

Split from :mod:`servopt.formulations.pipeline.problem` (which re-exports every name) to keep modules small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from servopt.exceptions import ValidationError
from servopt.fields import is_number
from servopt.formulations.perf_command import rate_command
from servopt.formulations.ties import RATE_RTOL, format_table

__all__ = [
    "ACCURACY_METHODS",
    "NORMALIZATIONS",
    "BatchProfile",
    "StageVariant",
    "Stage",
    "StageDeployment",
    "PipelineOptions",
    "StagePlan",
    "PipelinePlan",
    "rank_normalize",
    "latency_limit",
]


ACCURACY_METHODS = ("sum", "average", "product")
NORMALIZATIONS = ("rank", "none")


def latency_limit(sla_ms: float) -> float:
    """The SLA with the shared tolerance :data:`RATE_RTOL` (used by the model, evaluation and the checker)."""
    return sla_ms + RATE_RTOL * max(1.0, sla_ms)


def rank_normalize(accuracies: Sequence[float]) -> list[float]:
    """IPA's rank normalisation: worst 0, best 1, evenly spaced; equal accuracies share a rank; one value -> 1.

    >>> rank_normalize([0.5, 0.9, 0.7, 0.9])
    [0.0, 1.0, 0.5, 1.0]
    """
    distinct = sorted(set(accuracies))
    if len(distinct) == 1:
        return [1.0] * len(accuracies)
    rank = {a: i / (len(distinct) - 1) for i, a in enumerate(distinct)}
    return [rank[a] for a in accuracies]


@dataclass(frozen=True)
class BatchProfile:
    """Latency (ms) of one batch and throughput (RPS) of one replica at a batch size (default b / latency)."""

    batch_size: int
    latency_ms: float
    throughput_rps: float | None = None

    def __post_init__(self) -> None:
        b, lat = self.batch_size, self.latency_ms
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ValidationError(f"batch_size {b!r}: give an integer >= 1")
        if not _is_positive(lat):
            raise ValidationError(f"batch {b}: latency_ms {lat!r}: give a finite number > 0")
        if self.throughput_rps is None:
            object.__setattr__(self, "throughput_rps", 1000.0 * b / float(lat))
        elif not _is_positive(self.throughput_rps):
            raise ValidationError(f"batch {b}: throughput_rps {self.throughput_rps!r}: give a finite number > 0")
        object.__setattr__(self, "batch_size", int(b))
        object.__setattr__(self, "latency_ms", float(lat))
        object.__setattr__(self, "throughput_rps", float(self.throughput_rps))

    @classmethod
    def checked(cls, batch_size: int, latency_ms: float, throughput_rps: float | None = None) -> BatchProfile:
        """The profile of values a reader has already checked: ``batch_size`` an int >= 1, the others finite
        floats > 0 (what ``__post_init__`` would make of them, without its checks: 17,500 points of a 50 x 50
        problem file)."""
        obj = object.__new__(cls)
        fields = obj.__dict__
        fields["batch_size"] = batch_size
        fields["latency_ms"] = latency_ms
        fields["throughput_rps"] = 1000.0 * batch_size / latency_ms if throughput_rps is None else throughput_rps
        return obj


@dataclass(frozen=True)
class StageVariant:
    """A variant of a stage: accuracy, cores per replica and its profiled batch sizes."""

    name: str
    accuracy: float
    cores: float
    batches: Sequence[BatchProfile]
    #: the model file that serves this variant (``model_file:``, checked when the problem file is read)
    model_file: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"variant name {self.name!r}: give a non-empty string")
        if isinstance(self.accuracy, bool) or not isinstance(self.accuracy, (int, float)) or not math.isfinite(
            self.accuracy
        ):
            raise ValidationError(f"variant {self.name!r}: accuracy {self.accuracy!r}: give a finite number")
        if not _is_positive(self.cores):
            raise ValidationError(f"variant {self.name!r}: cores {self.cores!r}: give a number > 0 (per replica)")
        batches = tuple(sorted(self.batches, key=lambda p: p.batch_size))
        if not batches:
            raise ValidationError(f"variant {self.name!r}: give at least one batch size")
        sizes = [p.batch_size for p in batches]
        if len(set(sizes)) != len(sizes):
            raise ValidationError(f"variant {self.name!r}: batch sizes repeat ({sizes})")
        object.__setattr__(self, "batches", batches)
        object.__setattr__(self, "accuracy", float(self.accuracy))
        object.__setattr__(self, "cores", float(self.cores))


@dataclass(frozen=True)
class Stage:
    """One stage of the chain and its variants."""

    name: str
    variants: Sequence[StageVariant]

    def __post_init__(self) -> None:
        variants = tuple(self.variants)
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"stage name {self.name!r}: give a non-empty string")
        if not variants:
            raise ValidationError(f"stage {self.name!r}: give at least one variant")
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ValidationError(f"stage {self.name!r}: variant names repeat ({names})")
        object.__setattr__(self, "variants", variants)


class StageDeployment(NamedTuple):
    """What runs in a stage now: variant, batch size and (optionally) replicas."""

    variant: str
    batch_size: int
    replicas: int | None = None


@dataclass(frozen=True)
class PipelineOptions:
    """Every (stage, variant, batch) option at one workload, as flat arrays (one entry per option).

    ``replicas`` is n* = ceil(λ / h) (or the fixed replicas of a restricted problem), ``cores`` = c·n,
    ``accuracy`` the per-stage accuracy used by the objective (normalised or raw), ``value`` the option's
    objective contribution without the ``product`` accuracy term, ``feasible`` whether n is within the cap
    (and the option is allowed). Options of stage s are ``stage_slices[s]``. Intended for other exact
    algorithms (dynamic programming) as much as for the MILP.
    """

    stage: np.ndarray
    variant: np.ndarray
    batch_size: np.ndarray
    latency_ms: np.ndarray
    queue_ms: np.ndarray
    throughput_rps: np.ndarray
    replicas: np.ndarray
    cores: np.ndarray
    accuracy: np.ndarray
    value: np.ndarray
    feasible: np.ndarray
    stage_slices: tuple[slice, ...]


@dataclass(frozen=True)
class StagePlan:
    """The decision for one stage."""

    name: str
    variant: str
    batch_size: int
    replicas: int
    latency_ms: float
    queue_ms: float
    throughput_rps: float
    cores: float
    accuracy: float
    previous: StageDeployment | None = None


@dataclass(frozen=True)
class PipelinePlan:
    """A decision per stage; ``objective`` is §4.4's score recomputed from the plan.

    ``accuracy`` is the Acc term of the objective (sum / average / product of the per-stage accuracies the
    objective uses), so ``objective == α accuracy − β cores − δ Σ batch_size``.
    """

    objective: float
    accuracy: float
    cores: float
    latency_ms: float
    stages: tuple[StagePlan, ...]
    workload_rps: float
    sla_ms: float
    changes: int

    @property
    def deployment(self) -> dict[str, StageDeployment]:
        """Stage -> (variant, batch_size, replicas): what ``update(current=...)`` accepts."""
        return {s.name: StageDeployment(s.variant, s.batch_size, s.replicas) for s in self.stages}

    def to_dict(self) -> dict[str, Any]:
        """The ``plan`` object of ``servopt solve --json`` (SPEC §5)."""
        return {
            "accuracy": self.accuracy,
            "cores": self.cores,
            "latency_ms": self.latency_ms,
            "stages": [
                {"name": s.name, "variant": s.variant, "batch_size": s.batch_size, "replicas": s.replicas,
                 "latency_ms": s.latency_ms, "queue_ms": s.queue_ms}
                for s in self.stages
            ],
        }

    def predictions(self) -> dict[str, Any]:
        """What the plan expects of each stage's model when served (``servopt solve --json`` and ``servopt.json``).

        Per stage (one Triton model, ``replicas`` instances): the planned batch and its latency, each replica's
        throughput and the stage's (``throughput_rps``, its capacity), the queueing delay the plan counts
        (``queue_ms``), the load the stage sees (every stage of the chain sees the workload, ``load_rps``),
        ``max_queue_delay_us`` as the Triton writer sets it without a ``triton: max_queue_delay_us`` override
        (``round(1000 queue_ms)`` when the batch exceeds 1, else 0), and the ``perf_analyzer`` command line
        that sends that load as single items.
        """
        models = []
        for s in self.stages:
            delay_us = int(round(float(s.queue_ms) * 1000)) if s.batch_size > 1 else 0
            models.append({
                "stage": s.name, "variant": s.variant, "model_instances": s.replicas, "batch_size": s.batch_size,
                "batch_latency_ms": s.latency_ms, "throughput_rps_per_instance": s.throughput_rps,
                "throughput_rps": s.throughput_rps * s.replicas, "queue_delay_ms": s.queue_ms,
                "latency_ms": s.latency_ms + s.queue_ms, "load_rps": self.workload_rps,
                "load": {"request_rate": self.workload_rps, "request_batch_size": 1},
                "max_queue_delay_us": delay_us, "perf_analyzer": rate_command(self.workload_rps),
            })
        return {"workload_rps": self.workload_rps, "sla_ms": self.sla_ms, "latency_ms": self.latency_ms,
                "models": models}

    def to_table(self) -> str:
        """The plan for people."""
        rows = []
        for s in self.stages:
            prev = "-" if s.previous is None else f"{s.previous.variant} b{s.previous.batch_size}"
            rows.append((s.name, s.variant, s.batch_size, s.replicas, round(s.latency_ms, 3), round(s.queue_ms, 3),
                         round(s.cores, 3), s.accuracy, prev))
        text = format_table(("stage", "variant", "batch", "replicas", "latency_ms", "queue_ms", "cores",
                             "accuracy", "previous"), rows)
        return (
            f"{text}\nworkload {self.workload_rps:g} RPS; end-to-end latency {self.latency_ms:.6g} ms of "
            f"{self.sla_ms:g}; cores {self.cores:g}; accuracy term {self.accuracy:.6g}; changes {self.changes}; "
            f"objective {self.objective:.6g}"
        )


def _is_positive(value: Any) -> bool:
    if type(value) is float:  # the common case, without the numbers.Real ABC check
        return 0.0 < value < math.inf
    return is_number(value) and value > 0
