"""Verify around pipeline and variant_selection plans and finding a tritonserver (no server needed).

What their predictions carry: tests/test_plan_predictions.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servopt.exceptions import ValidationError
from servopt.formulations.pipeline.types import PipelinePlan, StagePlan
from servopt.formulations.variant_selection.types import VariantAllocation, VariantSelectionPlan
from servopt.serving.verify import add_predictions, load_summary


def _pipeline() -> PipelinePlan:
    stages = (
        StagePlan("detect", "yolov5n", 1, 2, 77.0, 0.0, 12.5, 2.0, 0.5),
        StagePlan("classify", "resnet50", 4, 1, 90.0, 30.0, 40.0, 1.0, 0.7),
    )
    return PipelinePlan(objective=1.0, accuracy=1.2, cores=3.0, latency_ms=197.0, stages=stages,
                        workload_rps=20.0, sla_ms=500.0, changes=0)


def _variants() -> VariantSelectionPlan:
    variants = (VariantAllocation("resnet18", 2, 30.0, 40.0, 0.69, 0),
                VariantAllocation("resnet50", 4, 90.0, 100.0, 0.76, 4))
    return VariantSelectionPlan(objective=1.0, average_accuracy=0.74, cores=6, loading_cost_s=0.0,
                                variants=variants, workload_rps=120.0, core_budget=8, changes=1)


def test_predictions_are_json(tmp_path: Path) -> None:
    for plan in (_pipeline(), _variants()):
        assert json.loads(json.dumps(plan.predictions())) == plan.predictions()


def test_verify_takes_per_model_predictions(tmp_path: Path) -> None:
    (tmp_path / "servopt.json").write_text(json.dumps({"problem": "pipeline"}))
    add_predictions(tmp_path, _pipeline().predictions())
    assert load_summary(tmp_path)["predictions"]["models"][0]["stage"] == "detect"
    add_predictions(tmp_path, _variants().predictions())
    assert load_summary(tmp_path)["predictions"]["models"][0]["share"] == pytest.approx(0.25)
    add_predictions(tmp_path, {"workload_rps": 1.0})
    with pytest.raises(ValidationError, match="no 'groups', 'placements' or 'models'"):
        load_summary(tmp_path)


def test_tritonserver_lookup_explicit_path_then_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from servopt.serving import tritonserver as ts

    root = tmp_path / "tritonserver"
    (root / "bin").mkdir(parents=True)
    (root / "backends" / "python").mkdir(parents=True)
    binary = root / "bin" / "tritonserver"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    env = ts.resolve_env(binary)
    assert env.server == binary and env.backends == root / "backends"
    with pytest.raises(ts.TritonSetupError, match="no such file"):
        ts.resolve_env(tmp_path / "missing")
    monkeypatch.setenv("PATH", str(root / "bin"))
    assert ts.resolve_env().server == binary
    (tmp_path / "bare" / "bin").mkdir(parents=True)
    (tmp_path / "bare" / "bin" / "tritonserver").write_text("")
    with pytest.raises(ts.TritonSetupError, match="no backends folder"):
        ts.resolve_env(tmp_path / "bare" / "bin" / "tritonserver")


def test_tritonserver_lookup_error_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from servopt.serving import tritonserver as ts

    monkeypatch.setattr(ts.shutil, "which", lambda name: None)

    def fail(*a: object, **k: object) -> None:
        raise ts.TritonSetupError("pip failed")

    monkeypatch.setattr(ts, "ensure_env", fail)
    with pytest.raises(ts.TritonSetupError, match="--tritonserver PATH.*nvidia-pytriton.*pip failed"):
        ts.resolve_env()


def test_cpu_copy_keeps_the_models_on_cpu_instances(tmp_path: Path) -> None:
    pytest.importorskip("tritonclient.grpc")
    from servopt.serving.verify import make_cpu_copy

    model = tmp_path / "repo" / "m"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.onnx").write_bytes(b"onnx")
    (model / "config.pbtxt").write_text(
        'name: "m"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        'instance_group [{ kind: KIND_GPU count: 1 gpus: [0, 1, 2] }]\n'
        'dynamic_batching { max_queue_delay_microseconds: 0 }\n')
    make_cpu_copy(tmp_path / "repo", tmp_path / "out", max_instances=2, max_queue_delay_us=700)
    text = (tmp_path / "out" / "m" / "config.pbtxt").read_text()
    assert "KIND_CPU" in text and "KIND_GPU" not in text and "onnxruntime_onnx" in text
    assert "max_queue_delay_microseconds: 700" in text
    assert (tmp_path / "out" / "m" / "1" / "model.onnx").read_bytes() == b"onnx"


def test_backend_of_config(tmp_path: Path) -> None:
    from servopt.serving.verify import backend_of

    cfg = tmp_path / "config.pbtxt"
    cfg.write_text('name: "m"\nplatform: "onnxruntime_onnx"\n')
    assert backend_of(cfg) == "onnxruntime"
    cfg.write_text('name: "m"\nbackend: "python"\n')
    assert backend_of(cfg) == "python"
    cfg.write_text('name: "e"\nplatform: "ensemble"\n')
    assert backend_of(cfg) is None


def test_verify_without_a_server_there_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tritonclient.grpc")
    import servopt
    from servopt.cli import main

    gpu = servopt.GPUType("cpu-standin", max_count=2, batches={8: {"latency_ms": 20.0}})
    problem = servopt.MinGPUs(images=4000, deadline_s=10, gpus=[gpu], objective="gpus", name="timed")
    solution = servopt.solve(problem, "highs")
    servopt.write_repository(problem, solution, tmp_path / "out", triton_backend="python")
    add_predictions(tmp_path / "out", solution.plan.predictions())
    assert main(["verify", str(tmp_path / "out"), "--server", "127.0.0.1:1", "--window", "0.2"]) == 2
    assert "is a Triton server serving this repository there?" in capsys.readouterr().err
