"""Shared by test_triton.py and test_triton_server.py: small problems and typed plans of every plan type, and
configs that break one Triton load rule each (with the message servopt must report, which Triton must print).

The plans are the formulations' own plan dataclasses (what ``decode`` returns), built directly so each case pins
exactly the groups, variants or stages its golden files show; the Triton builder dispatches on their type.
"""

from __future__ import annotations

import os
import re
import shutil

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servopt.exceptions import ValidationError
from servopt.formulations.gpu.types import GPUGroup, GPUPlan
from servopt.formulations.pipeline.types import PipelinePlan, StagePlan
from servopt.formulations.variant_selection.types import VariantAllocation, VariantSelectionPlan

GOLDEN = Path(__file__).parent / "golden" / "triton"


@dataclass
class FakeProblem:
    """What the Triton builder reads from a problem: its name, ``triton:`` section, file and input size."""

    name: str | None = None
    triton: Any = None
    source: Any = None
    input_size: int | None = None


@dataclass
class FakeSolution:
    plan: Any
    status: str = "optimal"


def gpu_plan(groups: Sequence[tuple[str, int, int]], kind: str = "min_gpus", objective_name: str = "gpus"
             ) -> GPUPlan:
    """A GPU plan of (hardware, GPUs, batch size) groups, each GPU running 10 batches."""
    rows = tuple(GPUGroup(hardware=h, gpus=g, batch_size=b, batches_per_gpu=10, images=g * b * 10, busy_s=1.0,
                          latency_ms=100.0, warmup_ms=100.0) for h, g, b in groups)
    gpus, images = sum(r.gpus for r in rows), sum(r.images for r in rows)
    return GPUPlan(kind=kind, objective_name=objective_name, objective=float(gpus if objective_name == "gpus"
                                                                               else images),
                   gpus=gpus, images=images, cost_per_hour=1.0, groups=rows, deadline_s=1.0)


def variant_plan(variants: Sequence[tuple[str, int, float]], *, average_accuracy: float = 0.74,
                 loading_cost_s: float = 6.4) -> VariantSelectionPlan:
    """A variant-selection plan of (name, cores, rps) allocations."""
    allocations = tuple(VariantAllocation(name=n, cores=c, rps=r, capacity_rps=r, accuracy=0.7, previous_cores=0)
                        for n, c, r in variants)
    return VariantSelectionPlan(objective=1.0, average_accuracy=average_accuracy,
                                cores=sum(a.cores for a in allocations), loading_cost_s=loading_cost_s,
                                variants=allocations, workload_rps=sum(a.rps for a in allocations),
                                core_budget=16, changes=0)


def stage(name: str, variant: str, batch_size: int, replicas: int, latency_ms: float, queue_ms: float) -> StagePlan:
    return StagePlan(name=name, variant=variant, batch_size=batch_size, replicas=replicas, latency_ms=latency_ms,
                     queue_ms=queue_ms, throughput_rps=1000.0 * batch_size / latency_ms, cores=float(replicas),
                     accuracy=0.5)


def pipeline_plan(stages: Sequence[StagePlan], *, cores: float, accuracy: float = 1.2,
                  latency_ms: float = 900.0) -> PipelinePlan:
    return PipelinePlan(objective=1.0, accuracy=accuracy, cores=cores, latency_ms=latency_ms, stages=tuple(stages),
                        workload_rps=10.0, sla_ms=1000.0, changes=0)


VARIANTS = variant_plan([("resnet18", 4, 30.0), ("resnet50", 6, 90.0), ("resnet152", 0, 0.0)])

PIPELINE = pipeline_plan([stage("detect", "yolov5s", 8, 3, 300.0, 350.0), stage("crop", "crop-v1", 2, 1, 5.0, 50.0),
                          stage("classify", "resnet50", 4, 2, 100.0, 150.0)], cores=12)

PIPELINE_TRITON = {
    "name": "video",
    "inputs": [{"name": "IMAGE", "data_type": "UINT8", "dims": [3, 640, 640]}],
    "models": {
        "detect": {"outputs": [{"name": "BOXES", "data_type": "FP32", "dims": [100, 4]},
                               {"name": "SCORES", "data_type": "FP32", "dims": [100]}]},
        "crop": {"inputs": [{"name": "BOXES", "data_type": "FP32", "dims": [100, 4]},
                            {"name": "SCORES", "data_type": "FP32", "dims": [100]}],
                 "outputs": [{"name": "CROPS", "data_type": "FP32", "dims": [3, 224, 224]}]},
        "classify": {"outputs": [{"name": "LABELS", "data_type": "INT64", "dims": [5]}]},
    },
    "kserve": {"namespace": "vision", "memory": "8Gi"},
}

#: name -> (problem, solution, write_repository keyword arguments); every plan type, every layout
CASES: dict[str, tuple[FakeProblem, FakeSolution, dict]] = {
    "min_gpus_one_type": (FakeProblem("effnet_b0", input_size=380),
                          FakeSolution(gpu_plan([("A100-80GB", 3, 64)])), {}),
    "min_gpus_mixed": (FakeProblem("effnet_b0"),
                       FakeSolution(gpu_plan([("A100-80GB", 3, 64), ("A100-80GB", 1, 8), ("T4", 2, 16)])),
                       {"kserve": True, "storage_uri": "gs://models/effnet"}),
    "max_throughput": (FakeProblem("bert", triton={
        "backend": "tensorrt_plan", "max_queue_delay_us": 100,
        "inputs": [{"name": "input_ids", "data_type": "INT32", "dims": [128]},
                   {"name": "attention_mask", "data_type": "INT32", "dims": [128]}],
        "outputs": [{"name": "logits", "data_type": "FP16", "dims": [2]}]}),
        FakeSolution(gpu_plan([("H100", 2, 32), ("H100", 1, 4)], kind="max_throughput", objective_name="images")),
        {}),
    "variant_selection": (FakeProblem("resnets"), FakeSolution(VARIANTS),
                          {"kserve": True, "storage_uri": "s3://bucket/resnets/"}),
    "pipeline": (FakeProblem("pipeline", triton=PIPELINE_TRITON), FakeSolution(PIPELINE),
                 {"kserve": True, "storage_uri": "pvc://models/video"}),
    "pipeline_template": (FakeProblem("video_tmpl", triton={"warmup": False}),
                          FakeSolution(PIPELINE),
                          {"triton_backend": "python", "template": {"detect": GOLDEN / "_templates" / "stage.pbtxt"}}),
}


def build(case: str) -> tuple[Any, dict, list]:
    from servopt.triton import build_repository

    problem, solution, kwargs = CASES[case]
    return build_repository(problem, solution, **kwargs)


def configs_of(case: str) -> dict[str, Any]:
    deployment, _, _ = build(case)
    return {m.name: m.config for repo in deployment.repositories for m in repo.models}


# ---------------------------------------------------------------------------------------------------------------
# one broken rule per case: (case name, mutate(configs) -> name of the broken model, Triton's message template)


def _stage(configs: dict, name: str, new: str) -> Any:
    cfg = configs[name]
    cfg.name = new
    configs[new] = cfg
    del configs[name]
    return cfg


def _bad_preferred(c):
    _stage(c, "detect", "X").dynamic_batching.preferred_batch_size[:] = [16]


def _bad_preferred_zero(c):
    _stage(c, "detect", "X").dynamic_batching.preferred_batch_size[:] = [0]


def _bad_mbs(c):
    cfg = _stage(c, "detect", "X")
    cfg.max_batch_size = -1
    cfg.ClearField("dynamic_batching")
    cfg.ClearField("model_warmup")


def _cpu_gpus(c):
    _stage(c, "detect", "X").instance_group[0].gpus.append(0)


def _warm_big(c):
    cfg = _stage(c, "detect", "X")
    cfg.model_warmup[0].batch_size = 16
    cfg.instance_group[0].count = 1  # Triton names the instance that fails: X_0_0 when there is one


def _warm_missing(c):
    cfg = _stage(c, "detect", "X")
    value = cfg.model_warmup[0].inputs["IMAGE"]
    cfg.model_warmup[0].inputs["OTHER"].CopyFrom(value)
    del cfg.model_warmup[0].inputs["IMAGE"]


def _bad_dims(c):
    _stage(c, "detect", "X").output[0].dims[0] = 0


def _priority(c):
    db = _stage(c, "detect", "X").dynamic_batching
    db.priority_levels = 2
    db.default_priority_level = 3


def _ens_instances(c):
    _stage(c, "video", "X").instance_group.add(count=1)


def _ens_warmup(c):
    _stage(c, "video", "X").model_warmup.add(name="w", batch_size=1)


def _ens_optimization(c):
    _stage(c, "video", "X").optimization.priority = 1


def _ens_mbs(c):
    _stage(c, "video", "X").max_batch_size = 8


def _ens_dtype(c):
    from tritonclient.grpc import model_config_pb2 as mc

    _stage(c, "video", "X").input[0].data_type = mc.TYPE_FP32


def _ens_shape(c):
    _stage(c, "video", "X").input[0].dims[1] = 320


def _ens_unused_input(c):
    from tritonclient.grpc import model_config_pb2 as mc

    _stage(c, "video", "X").input.add(name="Z", data_type=mc.TYPE_FP32, dims=[1])


def _ens_not_written(c):
    step = _stage(c, "video", "X").ensemble_scheduling.step[2]
    (key,) = list(step.input_map)
    step.input_map[key] = "crop_typo"


def _ens_missing_member(c):
    _stage(c, "video", "X").ensemble_scheduling.step[1].model_name = "ghost"


def _missing_version(c):
    _stage(c, "detect", "X").version_policy.specific.versions[:] = [7]


BROKEN: dict[str, tuple[Callable[[dict], None], str]] = {
    "preferred_above_max": (_bad_preferred, "dynamic batching preferred size must be <= max batch size for X"),
    "preferred_zero": (_bad_preferred_zero, "dynamic batching preferred size must be positive for X"),
    "negative_max_batch": (_bad_mbs, "'max_batch_size' must be non-negative value for X"),
    "cpu_with_gpus": (_cpu_gpus, "instance group X_0 of model X has kind KIND_CPU but specifies one or more GPUs"),
    "warmup_batch_above_max": (_warm_big, "failed to run warmup sample 'detect_warmup': batch size 16 for 'X_0_0', "
                                          "max allowed is 8"),
    "warmup_missing_input": (_warm_missing, "expected 1 inputs but got 0 inputs for model 'X'. Got input(s) [], but "
                                            "missing required input(s) ['IMAGE']. Please provide all required "
                                            "input(s)."),
    "zero_dim": (_bad_dims, "model output 'BOXES' dimension must be integer >= 1, or -1 to indicate a variable-size "
                            "dimension for X"),
    "priority_level": (_priority, "default priority level must be in range [1, 2] for X"),
    "ensemble_instance_group": (_ens_instances, "instance group should not be specified for ensemble 'X'"),
    "ensemble_warmup": (_ens_warmup, "model_warmup can not be specified for ensemble 'X'"),
    "ensemble_optimization": (_ens_optimization, "optimization should not be specified for ensemble 'X'"),
    "ensemble_max_batch": (_ens_mbs, "ensemble X allows maximum batch size 8, but it contains model crop which only "
                                     "allows maximum batch size to be 2"),
    "ensemble_dtype": (_ens_dtype, "in ensemble X, ensemble tensor IMAGE: inconsistent data type: TYPE_FP32 is "
                                   "inferred from model X while TYPE_UINT8 is inferred from model detect"),
    "ensemble_shape": (_ens_shape, "in ensemble X, ensemble tensor IMAGE: inconsistent shape: [-1,3,320,640] is "
                                   "inferred from model X while [-1,3,640,640] is inferred from model detect"),
    "ensemble_unused_input": (_ens_unused_input, "ensemble input 'Z' for ensemble X' is not used"),
    "ensemble_not_written": (_ens_not_written, "output 'LABELS' for ensemble 'X' is not written: at least one of its "
                                               "depending tensors, 'crop_typo', is not connected"),
    "ensemble_missing_member": (_ens_missing_member, "ensemble X contains models that are not available or "
                                                     "ambiguous: ghost"),
    "version_not_available": (_missing_version, "at least one version must be available under the version policy "
                                                "of model 'X'"),
}


def broken(case: str, name: str = "X") -> tuple[dict, str]:
    """The pipeline case's configs with one rule broken on a model renamed ``name``, and Triton's message."""
    configs = configs_of("pipeline")
    mutate, message = BROKEN[case]
    mutate(configs)
    if name != "X":
        cfg = configs.pop("X")
        cfg.name = name
        configs[name] = cfg
    return configs, re.sub(r"(?<![A-Za-z])X(?![A-Za-z])", name, message)


def rule_error(configs: dict) -> str:
    """The Triton message servopt reports for ``configs`` (ValidationError expected)."""
    from servopt.triton.rules import TritonRuleError, check_repository

    try:
        check_repository(configs, {n: (1,) for n in configs})
    except TritonRuleError as exc:
        return exc.triton_message
    raise ValidationError("no rule broken")  # pragma: no cover - the tests assert this never happens


#: cases not loaded on the test server: Triton 2.51 sometimes dies (SIGSEGV) while a model fails its warm-up,
#: taking every other model down with it (seen 4 times in ~10 loads; a lone model with 3 instances crashed in 2 of
#: 3 starts). Their messages were checked once by hand on Triton 2.51 (docs/triton.md).
NOT_ON_SERVER = ("warmup_batch_above_max", "warmup_missing_input")


def write_broken_repository(path: Path) -> dict[str, str]:
    """A repository with valid stage models and one model per broken rule (``neg_<case>``); returns
    model name -> the message servopt reports, which Triton must print when it refuses the model."""
    from servopt.triton.write import config_text

    members = configs_of("pipeline")
    expected = {}
    models = {name: cfg for name, cfg in members.items() if name != "video"}
    for case in BROKEN:
        if case in NOT_ON_SERVER:
            continue
        name = f"neg_{case}"
        configs, message = broken(case, name)
        assert rule_error(configs) == message
        models[name] = configs[name]
        expected[name] = message
    for name, cfg in models.items():
        (path / name / "1").mkdir(parents=True)
        (path / name / "config.pbtxt").write_text(config_text(cfg))
    return expected


def tree(path: Path) -> dict[str, str]:
    """Every file under ``path``: relative POSIX path -> text."""
    return {p.relative_to(path).as_posix(): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


def assert_golden(written: dict[str, str], golden_dir: Path) -> None:
    """``written`` equals the golden files in ``golden_dir`` (rewritten first when SERVOPT_UPDATE_GOLDEN is set)."""
    if os.environ.get("SERVOPT_UPDATE_GOLDEN"):
        shutil.rmtree(golden_dir, ignore_errors=True)
        for rel, text in written.items():
            (golden_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden_dir / rel).write_text(text)
    assert written == tree(golden_dir)
