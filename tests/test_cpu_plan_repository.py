"""A min_gpus / max_throughput plan written for CPU instances from a model file with free spatial axes.

Found by running the chain (servopt profile -> solve --out -> verify --start) on a CPU: the repository kept the ONNX
file's ``dims: [3, -1, -1]``, servopt verify's load generator filled each free axis with 1, and the "verified" plan
measured 1 x 1 images (14x the predicted throughput, reported as holding). Now the dims are the plan's input size,
and each CPU instance runs with the cores the profiles were measured with.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from servopt.cli import main
from servopt.measure.onnx_models import save_model, tiny_cnn


def _config(tmp_path: Path, extra: str, *, hardware: str = "cpu-x", kind: str | None = "KIND_CPU") -> mc.ModelConfig:
    onnx = save_model(tiny_cnn(), tmp_path / "tiny.onnx")
    (tmp_path / "p.yaml").write_text(
        f"problem: min_gpus\nname: tiny\nmodel_file: {onnx.name}\nimages: 1000\ndeadline_s: 60\n{extra}"
        f"gpus:\n  - hardware: {hardware}\n    max_count: 2\n    batches: {{8: {{latency_ms: 20}}}}\n"
        + "triton:\n" + (f"  instance_kind: {kind}\n" if kind else "") + "  backend: python\n")
    assert main(["solve", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "repo")]) == 0
    return text_format.Parse((tmp_path / "repo" / "tiny" / "config.pbtxt").read_text(), mc.ModelConfig())


def test_free_spatial_axes_take_the_plans_input_size(tmp_path: Path) -> None:
    import onnxruntime as ort

    shape = ort.InferenceSession(str(save_model(tiny_cnn(), tmp_path / "t.onnx"))).get_inputs()[0].shape
    assert [d if isinstance(d, int) else -1 for d in shape[1:]] == [3, -1, -1]  # the file leaves H and W free
    cfg = _config(tmp_path, "input_size: 48\ncores: 2\n")
    assert list(cfg.input[0].dims) == [3, 48, 48]
    assert cfg.parameters["intra_op_thread_count"].string_value == "2"  # the profiles' cores, per instance
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU


@pytest.mark.parametrize(("hardware", "kind", "expected"), [
    ("cpu-intel-xeon-6126", None, "KIND_CPU"),  # servopt profile's name for a CPU, no instance_kind given
    ("triton-cpu", "KIND_AUTO", "KIND_CPU"),
    ("cpu-x", "KIND_GPU", "KIND_GPU"),  # the file's word wins
    ("A100-80GB", None, "KIND_GPU"),
    ("A100-80GB", "KIND_AUTO", "KIND_GPU"),
])
def test_cpu_hardware_defaults_to_cpu_instances(tmp_path: Path, hardware: str, kind: str | None,
                                                expected: str) -> None:
    """A plan made from CPU profiles used to get KIND_GPU with ``gpus: [0]`` unless the file said KIND_CPU: a
    CPU-only Triton cannot load that. The hardware name now decides where the file is silent."""
    cfg = _config(tmp_path, "cores: 2\n", hardware=hardware, kind=kind)
    (group,) = cfg.instance_group
    assert mc.ModelInstanceGroup.Kind.Name(group.kind) == expected
    assert list(group.gpus) == ([] if expected == "KIND_CPU" else [0])
    assert ("intra_op_thread_count" in cfg.parameters) == (expected == "KIND_CPU")


def test_without_an_input_size_the_axes_stay_free(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "")
    assert list(cfg.input[0].dims) == [3, -1, -1] and "intra_op_thread_count" not in cfg.parameters


@pytest.mark.triton
@pytest.mark.slow
def test_real_server_serves_the_plan_at_its_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real server loads the plan written for 48 px and serves servopt verify's requests (of the config's
    dims: any other size would be refused)."""
    import json

    from servopt.testing.triton_env import TritonSetupError, ensure_env

    try:
        ensure_env()
    except TritonSetupError as exc:
        pytest.fail(f"could not set up the tritonserver environment:\n{exc}", pytrace=False)
    _config(tmp_path, "input_size: 48\ncores: 1\n")
    capsys.readouterr()
    code = main(["verify", str(tmp_path / "repo"), "--start", "--window", "0.3", "--max-windows", "3", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 3) and report["models"][0]["measured"]["server_batch_avg"] > 0
