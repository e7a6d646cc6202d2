"""The data of ``variant_selection``: a model variant, and the typed plan (one allocation per loaded variant)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from servopt.exceptions import ValidationError
from servopt.fields import as_int, as_number
from servopt.formulations.ties import format_table

__all__ = ["Variant", "VariantAllocation", "VariantSelectionPlan"]


@dataclass(frozen=True)
class Variant:
    """One model variant.

    Parameters
    ----------
    name : str
    accuracy : float
        Task accuracy a_m (any real; higher is better).
    capacity : Mapping[int, float]
        Cores -> RPS the variant sustains within the latency SLO on that many cores (exact profiled points).
    load_time_s : float
        Time to load the variant (start a pod), seconds.
    current_cores : int
        Cores in the running deployment (0: not loaded).
    min_cores, max_cores : int
        Allowed core counts are {0} ∪ [min_cores, max_cores] intersected with the capacity table
        (max_cores defaults to the core budget).
    """

    name: str
    accuracy: float
    capacity: Mapping[int, float]
    load_time_s: float = 0.0
    current_cores: int = 0
    min_cores: int = 1
    max_cores: int | None = None
    #: the model file that serves this variant (``model_file:``, checked when the problem file is read)
    model_file: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = f"variant {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"variant name {self.name!r}: give a non-empty string")
        as_number(self.accuracy, f"{where}: accuracy")
        as_number(self.load_time_s, f"{where}: load_time_s", minimum=0.0)
        as_int(self.current_cores, f"{where}: current_cores", minimum=0)
        as_int(self.min_cores, f"{where}: min_cores", minimum=1)
        if self.max_cores is not None:
            as_int(self.max_cores, f"{where}: max_cores", minimum=self.min_cores)
        if not isinstance(self.capacity, Mapping) or not self.capacity:
            raise ValidationError(f"{where}: capacity must be a non-empty mapping cores -> RPS")
        table: dict[int, float] = {}
        for cores, rps in self.capacity.items():
            as_int(cores, f"{where}: capacity core count", minimum=1)
            table[int(cores)] = as_number(rps, f"{where}: capacity[{cores}]", minimum=0.0)
        object.__setattr__(self, "capacity", MappingProxyType(dict(sorted(table.items()))))
        object.__setattr__(self, "accuracy", float(self.accuracy))
        object.__setattr__(self, "load_time_s", float(self.load_time_s))

    def allowed_cores(self, budget: int) -> list[int]:
        """Profiled core counts within [min_cores, max_cores] and the budget."""
        top = min(budget, self.max_cores if self.max_cores is not None else budget)
        return [k for k in self.capacity if self.min_cores <= k <= top]


@dataclass(frozen=True)
class VariantAllocation:
    """One loaded variant of a plan."""

    name: str
    cores: int
    rps: float
    capacity_rps: float
    accuracy: float
    previous_cores: int


@dataclass(frozen=True)
class VariantSelectionPlan:
    """Cores and served load per variant; ``objective`` is §4.3's score recomputed from the plan."""

    objective: float
    average_accuracy: float
    cores: int
    loading_cost_s: float
    variants: tuple[VariantAllocation, ...]
    workload_rps: float
    core_budget: int
    changes: int
    unloaded: tuple[str, ...] = ()

    @property
    def deployment(self) -> dict[str, int]:
        """Variant name -> cores, loaded variants only (what ``update(current=...)`` accepts)."""
        return {v.name: v.cores for v in self.variants}

    def to_dict(self) -> dict[str, Any]:
        """The ``plan`` object of ``servopt solve --json`` (SPEC §5)."""
        return {
            "average_accuracy": self.average_accuracy,
            "cores": self.cores,
            "loading_cost_s": self.loading_cost_s,
            "variants": [{"name": v.name, "cores": v.cores, "rps": v.rps} for v in self.variants],
        }

    def predictions(self) -> dict[str, Any]:
        """What the plan expects of each loaded variant when served (``servopt solve --json``, ``servopt.json``).

        Per variant: its cores, the load routed to it (requests per second, the plan's ``rps``, split from the
        workload by the routing weights ``rps / workload``), the throughput its cores sustain within the latency
        SLO (the profiled capacity the plan was made with) and the ``perf_analyzer`` command line that drives the
        routed load as a Poisson open loop (``-u`` to be set to the server). The capacity table holds requests per
        second within the SLO, with no batch or per-batch latency: batching is the served model's own.
        """
        total = self.workload_rps
        models = []
        for v in self.variants:
            models.append({
                "variant": v.name, "cores": v.cores, "load_rps": v.rps, "throughput_rps": v.capacity_rps,
                "weight": (v.rps / total) if total > 0 else 0.0,
                "utilization": (v.rps / v.capacity_rps) if v.capacity_rps > 0 else None,
                "perf_analyzer": (f"perf_analyzer -m {v.name} -i grpc -u 127.0.0.1:8001 -b 1 "
                                  f"--request-rate-range {v.rps:g}:{v.rps:g} --request-distribution poisson"),
            })
        return {"kind": "variant_selection", "workload_rps": total, "models": models}

    def to_table(self) -> str:
        """The plan for people."""
        rows = []
        for v in self.variants:
            change = "kept" if v.cores == v.previous_cores else f"was {v.previous_cores}"
            rows.append((v.name, v.cores, round(v.rps, 3), round(v.capacity_rps, 3), v.accuracy, change))
        text = format_table(("variant", "cores", "rps", "capacity_rps", "accuracy", "change"), rows)
        lines = [text]
        if self.unloaded:
            lines.append(f"unloaded: {', '.join(self.unloaded)}")
        lines.append(
            f"workload {self.workload_rps:g} RPS; average accuracy {self.average_accuracy:.6g}; cores "
            f"{self.cores}/{self.core_budget}; loading cost {self.loading_cost_s:g} s; changes {self.changes}; "
            f"objective {self.objective:.6g}"
        )
        return "\n".join(lines)
