# LOCAL SHIM (not committed): the contract's types until w22a commits its own
from __future__ import annotations
from dataclasses import dataclass, asdict


@dataclass(frozen=True)
class FleetPlacement:
    model: str
    gpu_type: str
    gpu_index: int
    mig_profile: str | None
    slice_index: int | None
    instances: int
    batch_size: int
    capacity_rps: float
    latency_ms: float
    memory_mb: float
    slowdown: float
    slowdown_source: str
    co_located: tuple[str, ...]


@dataclass(frozen=True)
class FleetGpu:
    gpu_type: str
    gpu_index: int
    node: int
    mig_layout: tuple[str, ...] | None


@dataclass(frozen=True)
class FleetPlan:
    placements: tuple[FleetPlacement, ...]
    gpus: tuple[FleetGpu, ...]
    cost_per_hour: float
    gpu_count: int
    objective: float

    def to_dict(self) -> dict:
        return {"placements": [asdict(p) for p in self.placements], "gpus": [asdict(g) for g in self.gpus],
                "cost_per_hour": self.cost_per_hour, "gpu_count": self.gpu_count, "objective": self.objective}

    def predictions(self) -> dict:
        return {}
