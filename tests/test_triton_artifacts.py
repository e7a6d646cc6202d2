"""Deployable repositories: model files (``model_file:``), tensors read from ONNX, the Python-backend ``model.py``,
Triton's instance-group semantics, template fields kept, and the examples' own models."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from _triton_cases import PIPELINE, FakeProblem, FakeSolution, gpu_plan, pipeline_plan, stage, variant_plan
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

import servopt
from servopt.exceptions import ValidationError
from servopt.triton import build_repository, write_repository

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _onnx(path: Path, inputs: list[tuple[str, int, list]], outputs: list[tuple[str, int, list]]) -> Path:
    """A tiny ONNX graph: each output is the first input cast (Identity when types agree)."""
    import onnx
    from onnx import helper

    nodes = []
    for name, elem, dims in outputs:
        src = inputs[0][0]
        if elem == inputs[0][1]:
            nodes.append(helper.make_node("Identity", [src], [name]))
        else:
            nodes.append(helper.make_node("Cast", [src], [name], to=elem))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, e, d) for n, e, d in inputs],
                              [helper.make_tensor_value_info(n, e, d) for n, e, d in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def _gpu_problem(tmp_path: Path, extra: str = "", model_file: str | None = "m.onnx") -> Path:
    text = ("problem: min_gpus\nname: m\nimages: 1000\ndeadline_s: 10\n"
            + (f"model_file: {model_file}\n" if model_file else "") + extra
            + "gpus:\n  - hardware: T4\n    max_count: 4\n    batches: {8: {latency_ms: 100}}\n")
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "servopt", *args], capture_output=True, text=True, cwd=ROOT)


def _cfg(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


# ---------------------------------------------------------------------------------------------------------------
# model files in problem files


@pytest.mark.parametrize("kind", ["gpu", "variant", "stage"])
def test_missing_model_file_is_an_error_before_solving(tmp_path: Path, kind: str) -> None:
    if kind == "gpu":
        path, key = _gpu_problem(tmp_path, model_file="nowhere.onnx"), "model_file"
    elif kind == "variant":
        path, key = tmp_path / "v.yaml", "variants[0].model_file"
        path.write_text("problem: variant_selection\nworkload_rps: 10\ncore_budget: 4\nvariants:\n"
                        "  - {name: a, accuracy: 0.5, capacity: {1: 20}, model_file: nowhere.onnx}\n")
    else:
        path, key = tmp_path / "s.yaml", "stages[0].variants[0].model_file"
        path.write_text("problem: pipeline\nworkload_rps: 1\nsla_ms: 1000\nstages:\n  - name: s\n    variants:\n"
                        "      - {name: a, accuracy: 0.5, cores: 1, batches: {1: {latency_ms: 10}}, "
                        "model_file: nowhere.onnx}\n")
    out = _cli("solve", str(path), "--out", str(tmp_path / "repo"))
    assert out.returncode == 2 and out.stdout == ""
    assert f"{path}: key '{key}': 'nowhere.onnx': {tmp_path / 'nowhere.onnx'} does not exist" in out.stderr
    assert not (tmp_path / "repo").exists()


def test_unknown_model_format_and_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(ValidationError, match=r"key 'model_file': 'm.bin': unknown model format '.bin'"):
        servopt.load_problem(_gpu_problem(tmp_path, model_file="m.bin"))
    (tmp_path / "d.onnx").mkdir()
    with pytest.raises(ValidationError, match="is a folder"):
        servopt.load_problem(_gpu_problem(tmp_path, model_file="d.onnx"))


@pytest.mark.parametrize("link", [False, True])
def test_artefact_is_copied_or_linked_with_its_checksum(tmp_path: Path, link: bool) -> None:
    onnx_path = _onnx(tmp_path / "m.onnx", [("images", 1, ["N", 3, 32, 32])], [("probs", 1, ["N", 3, 32, 32])])
    args = ["solve", str(_gpu_problem(tmp_path)), "--out", str(tmp_path / "repo")] + (["--link"] if link else [])
    out = _cli(*args)
    assert out.returncode == 0, out.stderr
    assert "config only" not in out.stdout
    written = tmp_path / "repo" / "m" / "1" / "model.onnx"
    assert written.read_bytes() == onnx_path.read_bytes()
    assert written.is_symlink() == link
    summary = json.loads((tmp_path / "repo" / "servopt.json").read_text())
    assert summary["config_only"] is False and summary["missing"] == []
    info = summary["repositories"][0]["models"][0]
    assert info["model_file"]["sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert info["model_file"]["file"] == "model.onnx" and info["tensors_from"] == {"inputs": "model_file",
                                                                                     "outputs": "model_file"}


def test_repository_without_artefact_says_config_only(tmp_path: Path) -> None:
    out = _cli("solve", str(_gpu_problem(tmp_path, model_file=None)), "--out", str(tmp_path / "repo"))
    assert out.returncode == 0
    assert "config only" in out.stdout and "model 'm': no model_file" in out.stdout
    summary = json.loads((tmp_path / "repo" / "servopt.json").read_text())
    assert summary["config_only"] is True
    assert any("placeholder" in m for m in summary["missing"])


# ---------------------------------------------------------------------------------------------------------------
# tensors


def test_onnx_tensors_batch_axis_and_dynamic_dims(tmp_path: Path) -> None:
    _onnx(tmp_path / "m.onnx", [("ids", 7, ["batch", "seq"])], [("f", 1, ["batch", "seq"])])
    path = _gpu_problem(tmp_path)
    problem = servopt.load_problem(path)
    _, files, _ = build_repository(problem, servopt.solve(problem), source=path)
    cfg = text_format.Parse(files["m/config.pbtxt"], mc.ModelConfig())
    assert cfg.max_batch_size == 8
    assert [(i.name, mc.DataType.Name(i.data_type), list(i.dims)) for i in cfg.input] == [("ids", "TYPE_INT64", [-1])]
    assert [(o.name, mc.DataType.Name(o.data_type), list(o.dims)) for o in cfg.output] == [("f", "TYPE_FP32", [-1])]
    assert not cfg.model_warmup  # a variable dim cannot be warmed with zeros


def test_onnx_without_batch_axis_is_refused(tmp_path: Path) -> None:
    _onnx(tmp_path / "m.onnx", [("x", 1, [1, 4])], [("y", 1, [1, 4])])
    path = _gpu_problem(tmp_path)
    problem = servopt.load_problem(path)
    with pytest.raises(ValidationError, match="input 'x' has a fixed first axis 1; Triton batches on the first axis"):
        build_repository(problem, servopt.solve(problem), source=path)


def test_tensorrt_artefact_needs_tensors(tmp_path: Path) -> None:
    (tmp_path / "m.plan").write_bytes(b"engine")
    path = _gpu_problem(tmp_path, model_file="m.plan")
    problem = servopt.load_problem(path)
    with pytest.raises(ValidationError, match=r"model 'm': its model_file '.*m.plan' is a TensorRT plan, whose "
                                              r"tensors servopt cannot read; give them under triton: \(inputs"):
        build_repository(problem, servopt.solve(problem), source=path)
    path = _gpu_problem(tmp_path, model_file="m.plan", extra=(
        "triton:\n  inputs: [{name: x, data_type: FP16, dims: [4]}]\n"
        "  outputs: [{name: y, data_type: FP16, dims: [2]}]\n"))
    problem = servopt.load_problem(path)
    write_repository(problem, servopt.solve(problem), tmp_path / "repo", source=path)
    assert (tmp_path / "repo" / "m" / "1" / "model.plan").read_bytes() == b"engine"
    assert _cfg(tmp_path / "repo" / "m" / "config.pbtxt").platform == "tensorrt_plan"


def test_backend_must_load_the_artefact(tmp_path: Path) -> None:
    _onnx(tmp_path / "m.onnx", [("x", 1, ["N", 4])], [("y", 1, ["N", 4])])
    path = _gpu_problem(tmp_path)
    problem = servopt.load_problem(path)
    with pytest.raises(ValidationError, match="--triton-backend is tensorrt_plan, which cannot load its model_file "
                                              r"'.*m.onnx' \(a onnxruntime model\); use onnxruntime or python"):
        build_repository(problem, servopt.solve(problem), source=path, triton_backend="tensorrt_plan")


def test_python_backend_model_runs_the_onnx_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated model.py, run against a stand-in of Triton's pb_utils, answers with ONNX Runtime."""
    _onnx(tmp_path / "m.onnx", [("x", 1, ["N", 4])], [("y", 7, ["N", 4])])
    path = _gpu_problem(tmp_path)
    problem = servopt.load_problem(path)
    write_repository(problem, servopt.solve(problem), tmp_path / "repo", source=path, triton_backend="python")
    model_dir = tmp_path / "repo" / "m"
    cfg = _cfg(model_dir / "config.pbtxt")
    assert cfg.backend == "python" and not cfg.default_model_filename
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == ["model.onnx", "model.py"]

    class Tensor:
        def __init__(self, name, array):
            self.name, self.array = name, array

        def as_numpy(self):
            return self.array

    class Request:
        def __init__(self, feed):
            self.feed = feed

    pb = types.ModuleType("triton_python_backend_utils")
    pb.Tensor = Tensor
    pb.InferenceResponse = lambda output_tensors: output_tensors
    pb.get_input_tensor_by_name = lambda request, name: Tensor(name, request.feed[name])
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    namespace: dict = {}
    exec(compile((model_dir / "1" / "model.py").read_text(), "model.py", "exec"), namespace)
    from google.protobuf import json_format

    model = namespace["TritonPythonModel"]()
    model.initialize({"model_config": json_format.MessageToJson(cfg), "model_repository": str(model_dir),
                      "model_version": "1"})
    (response,) = model.execute([Request({"x": np.array([[1.7, 2, 3, 4]], dtype=np.float32)})])
    assert response[0].name == "y" and response[0].array.tolist() == [[1, 2, 3, 4]]


# ---------------------------------------------------------------------------------------------------------------
# Triton semantics: instance groups, nodes, templates


def _groups(files: dict, name: str) -> list:
    return list(text_format.Parse(files[name], mc.ModelConfig()).instance_group)


def test_gpu_groups_always_name_kind_and_gpus() -> None:
    plan = gpu_plan([("T4", 6, 8)])
    for kind in (None, "KIND_GPU", "KIND_AUTO"):
        triton = {"instance_kind": kind} if kind else None
        _, files, _ = build_repository(FakeProblem("m", triton=triton), FakeSolution(plan))
        (group,) = _groups(files, "m/config.pbtxt")
        assert mc.ModelInstanceGroup.Kind.Name(group.kind) == "KIND_GPU"
        assert list(group.gpus) == [0, 1, 2, 3, 4, 5] and group.count * len(group.gpus) == 6
    _, files, _ = build_repository(FakeProblem("m", triton={"instance_kind": "KIND_GPU"}), FakeSolution(PIPELINE))
    (group,) = _groups(files, "detect/config.pbtxt")
    assert list(group.gpus) == [0] and group.count == 3  # a CPU plan asked onto a GPU: replicas on GPU 0
    _, files, _ = build_repository(FakeProblem("m", triton={"instance_kind": "KIND_AUTO"}), FakeSolution(PIPELINE))
    assert mc.ModelInstanceGroup.Kind.Name(_groups(files, "detect/config.pbtxt")[0].kind) == "KIND_CPU"


def test_gpu_indices_split_per_node() -> None:
    plan = gpu_plan([("T4", 10, 64), ("T4", 6, 8), ("A100", 2, 32)])
    deployment, files, _ = build_repository(FakeProblem("m", triton={"gpus_per_node": 8}), FakeSolution(plan))
    paths = {r.path: r for r in deployment.repositories}
    assert sorted(paths) == ["A100", "T4/node0", "T4/node1"]
    gpus = {(p, m.name): list(m.config.instance_group[0].gpus) for p, r in paths.items() for m in r.models}
    assert gpus == {("T4/node0", "m_b64"): [0, 1, 2, 3, 4, 5, 6, 7], ("T4/node1", "m_b64"): [0, 1],
                    ("T4/node1", "m_b8"): [2, 3, 4, 5, 6, 7], ("A100", "m"): [0, 1]}
    assert sum(len(g) for g in gpus.values()) == 18  # every planned GPU once
    assert paths["T4/node1"].gpus == 8
    summary = json.loads(files["servopt.json"])
    assert {r["path"] for r in summary["repositories"]} == set(paths)
    with pytest.raises(ValidationError, match="gpus_per_node"):
        build_repository(FakeProblem("m", triton={"gpus_per_node": 0}), FakeSolution(plan))


def test_template_batching_and_instance_fields_are_kept(tmp_path: Path) -> None:
    tmpl = tmp_path / "t.pbtxt"
    tmpl.write_text("""
dynamic_batching {
  preferred_batch_size: [99]
  max_queue_delay_microseconds: 1234
  priority_levels: 3
  default_priority_level: 2
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 5000 allow_timeout_override: true }
  priority_queue_policy { key: 1 value { max_queue_size: 4 } }
}
instance_group [{ count: 9 kind: KIND_CPU rate_limiter { resources [{ name: "R" count: 2 }] priority: 3 }
                  host_policy: "numa0" }]
model_warmup [{ name: "real" batch_size: 1 inputs { key: "INPUT" value { data_type: TYPE_FP32 dims: [3, 224, 224]
                random_data: true } } }]
""")
    _, files, _ = build_repository(FakeProblem("m"), FakeSolution(gpu_plan([("T4", 2, 8)])), template=tmpl)
    cfg = text_format.Parse(files["m/config.pbtxt"], mc.ModelConfig())
    db = cfg.dynamic_batching
    assert list(db.preferred_batch_size) == [8]  # the plan's
    assert db.max_queue_delay_microseconds == 1234
    assert (db.priority_levels, db.default_priority_level) == (3, 2)
    assert db.default_queue_policy.default_timeout_microseconds == 5000
    assert db.priority_queue_policy[1].max_queue_size == 4
    (group,) = cfg.instance_group
    assert (group.count, list(group.gpus), group.host_policy) == (1, [0, 1], "numa0")
    assert group.kind == mc.ModelInstanceGroup.KIND_GPU and group.rate_limiter.priority == 3
    assert [w.name for w in cfg.model_warmup] == ["real"]
    ordered = tmp_path / "o.pbtxt"
    ordered.write_text("dynamic_batching { preserve_ordering: true }")
    _, files, _ = build_repository(FakeProblem("m"), FakeSolution(gpu_plan([("T4", 2, 8)])), template=ordered)
    assert text_format.Parse(files["m/config.pbtxt"], mc.ModelConfig()).dynamic_batching.preserve_ordering
    two = tmp_path / "two.pbtxt"
    two.write_text("instance_group [{ count: 1 }, { count: 2 }]")
    with pytest.raises(ValidationError, match="2 instance_group entries"):
        build_repository(FakeProblem("m"), FakeSolution(gpu_plan([("T4", 2, 8)])), template=two)


# ---------------------------------------------------------------------------------------------------------------
# pipelines wired by the artefacts' tensors


def _pipeline_file(tmp_path: Path, detect_out: int = 1, triton: str = "") -> Path:
    _onnx(tmp_path / "detect.onnx", [("IMAGE", 1, ["N", 3, 8, 8])], [("BOXES", detect_out, ["N", 3, 8, 8])])
    _onnx(tmp_path / "cls.onnx", [("BOXES", 1, ["N", 3, 8, 8])], [("LABELS", 7, ["N", 3, 8, 8])])
    path = tmp_path / "p.yaml"
    path.write_text(
        "problem: pipeline\nname: vid\nworkload_rps: 1\nsla_ms: 1000\n" + triton + "stages:\n"
        "  - name: detect\n    variants:\n      - {name: d, accuracy: 0.5, cores: 1, batches: {1: {latency_ms: 10}},"
        " model_file: detect.onnx}\n"
        "  - name: classify\n    variants:\n      - {name: c, accuracy: 0.5, cores: 1, batches: {1: {latency_ms: 10}}"
        ", model_file: cls.onnx}\n")
    return path


def test_pipeline_stages_wired_by_artefact_tensors(tmp_path: Path) -> None:
    path = _pipeline_file(tmp_path)
    problem = servopt.load_problem(path)
    out = write_repository(problem, servopt.solve(problem), tmp_path / "repo", source=path)
    ens = _cfg(out / "vid" / "config.pbtxt")
    assert [i.name for i in ens.input] == ["IMAGE"] and [o.name for o in ens.output] == ["LABELS"]
    assert dict(ens.ensemble_scheduling.step[1].input_map) == {"BOXES": "detect_BOXES"}
    assert (out / "detect" / "1" / "model.onnx").is_file() and (out / "classify" / "1" / "model.onnx").is_file()
    assert not _cfg(out / "detect" / "config.pbtxt").default_model_filename
    assert json.loads((out / "servopt.json").read_text())["config_only"] is False


def test_pipeline_dtype_mismatch_names_both_tensors_and_stages(tmp_path: Path) -> None:
    path = _pipeline_file(tmp_path, detect_out=10)  # FP16 boxes into an FP32 input
    problem = servopt.load_problem(path)
    with pytest.raises(ValidationError, match=r"ensemble 'vid': output 'BOXES' of stage 'detect' \(TYPE_FP16 "
                                              r"\[3, 8, 8\]\) cannot feed input 'BOXES' of stage 'classify' "
                                              r"\(TYPE_FP32 \[3, 8, 8\]\): the data type differs"):
        build_repository(problem, servopt.solve(problem), source=path)


def test_variant_artefacts_per_variant(tmp_path: Path) -> None:
    _onnx(tmp_path / "a.onnx", [("x", 1, ["N", 4])], [("y", 1, ["N", 2])])
    _onnx(tmp_path / "b.onnx", [("x", 1, ["N", 4])], [("z", 1, ["N", 3])])
    path = tmp_path / "v.yaml"
    path.write_text("problem: variant_selection\nworkload_rps: 30\ncore_budget: 4\nvariants:\n"
                    "  - {name: a, accuracy: 0.5, capacity: {1: 20, 2: 40}, model_file: a.onnx}\n"
                    "  - {name: b, accuracy: 0.9, capacity: {1: 20, 2: 40}, model_file: b.onnx}\n")
    problem = servopt.load_problem(path)
    plan = variant_plan([("a", 1, 10.0), ("b", 2, 20.0)])
    _, files, _ = build_repository(problem, FakeSolution(plan), source=path)
    assert [o.name for o in text_format.Parse(files["a/config.pbtxt"], mc.ModelConfig()).output] == ["y"]
    assert [o.name for o in text_format.Parse(files["b/config.pbtxt"], mc.ModelConfig()).output] == ["z"]


# ---------------------------------------------------------------------------------------------------------------
# the examples deploy


def test_example_models_are_current_small_and_deterministic() -> None:
    out = subprocess.run([sys.executable, str(EXAMPLES / "build_models.py"), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert sum(p.stat().st_size for p in (EXAMPLES / "models").glob("*.onnx")) < 1_000_000


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_writes_a_complete_repository(name: str) -> None:
    path = EXAMPLES / name
    problem = servopt.load_problem(path)
    solution = servopt.solve(problem, time_limit_s=60)
    if solution.plan is None:
        pytest.skip("no plan")  # pragma: no cover - every example has one today
    _, files, _ = build_repository(problem, solution, source=path)
    summary = json.loads(files["servopt.json"])
    assert summary["config_only"] is False, summary["missing"]
    sources = {m["tensors_from"]["inputs"] for r in summary["repositories"] for m in r["models"] if "tensors_from" in m}
    assert sources == {"model_file"}


def test_examples_have_realistic_tensors() -> None:
    def configs(name: str) -> dict:
        path = EXAMPLES / name
        problem = servopt.load_problem(path)
        deployment, _, _ = build_repository(problem, servopt.solve(problem), source=path)
        return {m.name: m.config for r in deployment.repositories for m in r.models}

    nlp = configs("pipeline_nlp.yaml")
    assert mc.DataType.Name(nlp["pipeline_nlp"].input[0].data_type) == "TYPE_INT64"
    video = configs("pipeline_video.yaml")
    step = {s.model_name: dict(s.input_map) for s in video["pipeline_video"].ensemble_scheduling.step}
    assert step["classify"] == {"IMAGE": "IMAGE", "BOXES": "detect_BOXES"}  # boxes from the detector
    assert [list(o.dims) for o in video["classify"].output] == [[16, 1000]]


def test_unbatched_stages_get_no_dynamic_batching() -> None:
    """Stages with b = 1 get no dynamic batching, also with artefacts (regression guard for the new paths)."""
    plan = pipeline_plan([stage("detect", "d", 1, 1, 10.0, 0.0), stage("crop", "c", 1, 1, 10.0, 0.0),
                          stage("classify", "k", 1, 1, 10.0, 0.0)], cores=3)
    _, files, _ = build_repository(FakeProblem("v"), FakeSolution(plan))
    assert not text_format.Parse(files["detect/config.pbtxt"], mc.ModelConfig()).HasField("dynamic_batching")
