"""A fleet plan built by hand (the formulation's own dataclasses), shared by test_fleet_output.py.

It has every shape the output must handle: whole GPUs running one model alone (replicas, on two types and two
nodes), whole GPUs shared by co-located models (two nodes' worth), MIG slices alone (replicas of one profile) and
a MIG slice shared by two models. Model files are the real ONNX files in examples/models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servopt.formulations.fleet.types import FleetGpu, FleetPlacement, FleetPlan

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"


@dataclass
class FleetModel:
    name: str
    rate_rps: float
    slo_ms: float
    slo: str = "p99"
    model_file: Any = None


@dataclass
class FleetGpuType:
    name: str
    count: int
    memory_mb: float
    price_per_hour: float
    gpus_per_node: int = 8
    mig: tuple = ()


@dataclass
class FleetProblem:
    """What the fleet output reads of a problem (``FleetProblem`` of the formulation has these fields)."""

    models: list[FleetModel]
    gpu_types: list[FleetGpuType]
    headroom: float = 0.2
    name: str | None = "fleet_demo"
    triton: Any = None
    source: Any = None
    input_size: int | None = None
    extra: dict = field(default_factory=dict)


def placement(model: str, gpu_type: str, gpu: int, batch: int, instances: int, latency_ms: float, *,
              profile: str | None = None, slice_index: int | None = None, slowdown: float = 1.0,
              co_located: tuple[str, ...] = (), memory_mb: float = 1000.0) -> FleetPlacement:
    capacity = instances * 1000.0 * batch / latency_ms
    return FleetPlacement(model=model, gpu_type=gpu_type, gpu_index=gpu, mig_profile=profile, slice_index=slice_index,
                          instances=instances, batch_size=batch, capacity_rps=capacity, latency_ms=latency_ms,
                          memory_mb=memory_mb, slowdown=slowdown,
                          slowdown_source="none" if not co_located else ("measured" if slowdown < 2 else "default"),
                          co_located=co_located)


def demo_problem(model_files: bool = True) -> FleetProblem:
    files = {"classifier": MODELS / "image_classifier.onnx", "langid": MODELS / "language_id.onnx",
             "detector": MODELS / "detector.onnx"}
    return FleetProblem(
        models=[FleetModel("classifier", 3000.0, 50.0, model_file=files["classifier"] if model_files else None),
                FleetModel("langid", 700.0, 40.0, "mean", model_file=files["langid"] if model_files else None),
                FleetModel("detector", 500.0, 100.0, model_file=files["detector"] if model_files else None)],
        gpu_types=[FleetGpuType("A100-80GB", 2, 81920, 3.67, 8), FleetGpuType("L4", 10, 23034, 0.8, 8)])


def demo_plan() -> FleetPlan:
    """A100 0: MIG 3g+2g+1g+1g (langid alone on 3g, classifier+detector on 2g, classifier alone on each 1g);
    A100 1: classifier + langid co-located; L4 0, 1: classifier alone (replicas); L4 2: detector + langid;
    L4 9 (node 1): detector alone; L4 8 (node 1): classifier alone (a replica on another node)."""
    a, l4 = "A100-80GB", "L4"
    placements = (
        placement("langid", a, 0, 8, 2, 6.0, profile="3g.40gb", slice_index=0),
        placement("classifier", a, 0, 8, 1, 10.0, profile="2g.20gb", slice_index=1, slowdown=1.25,
                  co_located=("detector",)),
        placement("detector", a, 0, 4, 1, 20.0, profile="2g.20gb", slice_index=1, slowdown=1.25,
                  co_located=("classifier",)),
        placement("classifier", a, 0, 4, 1, 12.0, profile="1g.10gb", slice_index=2),
        placement("classifier", a, 0, 4, 1, 12.0, profile="1g.10gb", slice_index=3),
        placement("classifier", a, 1, 16, 2, 8.0, slowdown=1.25, co_located=("langid",)),
        placement("langid", a, 1, 8, 1, 5.0, slowdown=1.25, co_located=("classifier",)),
        placement("classifier", l4, 0, 8, 2, 9.0),
        placement("classifier", l4, 1, 8, 2, 9.0),
        placement("detector", l4, 2, 4, 1, 30.0, slowdown=2.0, co_located=("langid",)),
        placement("langid", l4, 2, 4, 1, 16.0, slowdown=2.0, co_located=("detector",)),
        placement("classifier", l4, 8, 8, 2, 9.0),
        placement("detector", l4, 9, 4, 2, 25.0),
    )
    gpus = (FleetGpu(a, 0, 0, ("3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb")), FleetGpu(a, 1, 0, None),
            FleetGpu(l4, 0, 0, None), FleetGpu(l4, 1, 0, None), FleetGpu(l4, 2, 0, None), FleetGpu(l4, 8, 1, None),
            FleetGpu(l4, 9, 1, None))
    cost = 2 * 3.67 + 5 * 0.8
    return FleetPlan(placements=placements, gpus=gpus, cost_per_hour=cost, gpu_count=len(gpus), objective=cost)
