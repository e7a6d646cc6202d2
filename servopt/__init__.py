"""servopt: provably optimal ML inference serving configuration.

The whole public API is listed here. Heavy modules (pandas, scikit-learn, solvers) are imported only when the
name that needs them is first used, so ``import servopt`` stays fast.

>>> import servopt
>>> m = servopt.Model("toy")
>>> x = m.add_var("x", kind="integer", ub=5)
>>> m.maximize(x)
>>> servopt.solve(m, "highs").objective
5.0
"""

from __future__ import annotations

import importlib
from typing import Any

from servopt.exceptions import (
    BackendUnavailableError,
    CapabilityError,
    LicenseLimitError,
    ModelError,
    ServoptError,
    SolverError,
    ValidationError,
)
from servopt.model import LinExpr, Model, ModelArrays, Sense, Var, VarKind, quicksum
from servopt.result import Result, SolveParams, Status
from servopt.solve import Solution, solve

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first use)
_LAZY: dict[str, str] = {
    "load_problem": "servopt.formulations.registry",
    "problem_from_mapping": "servopt.formulations.registry",
    "MinGPUs": "servopt.formulations.gpu.min_gpus",
    "MaxThroughput": "servopt.formulations.gpu.max_throughput",
    "GPUType": "servopt.formulations.gpu.types",
    "GPUPlan": "servopt.formulations.gpu.types",
    "VariantSelection": "servopt.formulations.variant_selection.problem",
    "VariantSelectionPlan": "servopt.formulations.variant_selection.problem",
    "Pipeline": "servopt.formulations.pipeline.problem",
    "PipelinePlan": "servopt.formulations.pipeline.problem",
    "run_policy": "servopt.policies",
    "load_profile": "servopt.profiles",
    "ProfileTable": "servopt.profiles",
    "read_infadapter_capacity": "servopt.profiles",
    "LatencyModel": "servopt.performance",
    "WarmupModel": "servopt.performance",
    "MaxBatchModel": "servopt.performance",
    "CapacityModel": "servopt.performance",
    "TableModel": "servopt.performance",
    "batch_table": "servopt.performance",
    "capacity_table": "servopt.performance",
    "write_repository": "servopt.triton",
    "Adapter": "servopt.serving.adapt",
    "simulate": "servopt.serving.simulate",
    "profile_model": "servopt.measure.profiler",
    "HardwareMonitor": "servopt.measure.hwmon",
}

__all__ = [
    "__version__",
    "ServoptError",
    "ValidationError",
    "ModelError",
    "CapabilityError",
    "BackendUnavailableError",
    "LicenseLimitError",
    "SolverError",
    "Model",
    "ModelArrays",
    "Var",
    "VarKind",
    "LinExpr",
    "Sense",
    "quicksum",
    "Result",
    "SolveParams",
    "Status",
    "Solution",
    "solve",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'servopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
