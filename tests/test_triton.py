"""servopt.triton: plan -> ModelConfig messages, Triton's load rules, atomic writing, KServe manifests.

Golden files live in tests/golden/triton/<case>/; regenerate them with SERVOPT_UPDATE_GOLDEN=1 after an intended
change and review the diff. The real-server check of the same output is tests/test_triton_server.py.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from _triton_cases import BROKEN, CASES, GOLDEN, PIPELINE, FakeProblem, FakeSolution, broken, build, configs_of, \
    assert_golden, gpu_plan, pipeline_plan, rule_error, stage, variant_plan
from _triton_cases import tree as _tree
from google.protobuf import text_format
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.grpc import model_config_pb2 as mc

from servopt.exceptions import ServoptError, ValidationError
from servopt.formulations.fleet.types import FleetPlan
from servopt.formulations.gpu.types import GPUPlan
from servopt.formulations.pipeline.types import PipelinePlan
from servopt.formulations.variant_selection.types import VariantSelectionPlan
from servopt.triton import build_repository, write_repository
from servopt.triton.rules import TritonRuleError, check_repository
from servopt.triton.spec import parse_triton_section

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------------
# golden files: every plan type and layout


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, tmp_path: Path) -> None:
    problem, solution, kwargs = CASES[case]
    out = write_repository(problem, solution, tmp_path / "repo", **kwargs)
    written = _tree(out)
    golden_dir = GOLDEN / case
    assert_golden(written, golden_dir)
    # every config parses back into the same message, and every model has its (empty) version folder
    for rel, text in written.items():
        if rel.endswith("config.pbtxt"):
            cfg = text_format.Parse(text, mc.ModelConfig())
            assert cfg.name == Path(rel).parent.name
            assert (out / Path(rel).parent / "1").is_dir()


def test_golden_layouts() -> None:
    """The layouts docs/triton.md promises, read from the golden trees."""
    one = _tree(GOLDEN / "min_gpus_one_type")
    assert sorted(one) == ["effnet_b0/config.pbtxt", "servopt.json"]
    mixed = _tree(GOLDEN / "min_gpus_mixed")
    assert {"A100-80GB/effnet_b0_b64/config.pbtxt", "A100-80GB/effnet_b0_b8/config.pbtxt",
            "T4/effnet_b0/config.pbtxt", "kserve.yaml", "servopt.json"} == set(mixed)
    b64 = text_format.Parse(mixed["A100-80GB/effnet_b0_b64/config.pbtxt"], mc.ModelConfig())
    b8 = text_format.Parse(mixed["A100-80GB/effnet_b0_b8/config.pbtxt"], mc.ModelConfig())
    assert list(b64.instance_group[0].gpus) == [0, 1, 2] and list(b8.instance_group[0].gpus) == [3]
    assert b64.max_batch_size == 64 and list(b64.dynamic_batching.preferred_batch_size) == [64]
    assert b64.model_warmup[0].batch_size == 64
    assert "routing.json" in _tree(GOLDEN / "variant_selection")


# ---------------------------------------------------------------------------------------------------------------
# mapping from plans


def test_pipeline_mapping() -> None:
    configs = configs_of("pipeline")
    detect, crop, classify, video = (configs[n] for n in ("detect", "crop", "classify", "video"))
    for cfg, step in zip((detect, crop, classify), PIPELINE.stages):
        assert cfg.max_batch_size == step.batch_size
        assert cfg.dynamic_batching.max_queue_delay_microseconds == round(step.queue_ms * 1000)
        assert cfg.instance_group[0].count == step.replicas
        assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
        assert cfg.default_model_filename == step.variant + ".onnx"
    assert video.platform == "ensemble" and video.max_batch_size == 2  # the smallest stage batch
    assert not video.instance_group and not video.model_warmup and not video.HasField("dynamic_batching")
    steps = video.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["detect", "crop", "classify"]
    assert dict(steps[0].input_map) == {"IMAGE": "IMAGE"}
    assert dict(steps[0].output_map) == {"BOXES": "detect_BOXES", "SCORES": "detect_SCORES"}
    assert dict(steps[1].input_map) == {"BOXES": "detect_BOXES", "SCORES": "detect_SCORES"}
    # crop's single output feeds classify's derived input (same type and dims)
    assert dict(steps[2].input_map) == {"INPUT": "crop_CROPS"}
    assert list(classify.input[0].dims) == [3, 224, 224]
    assert dict(steps[2].output_map) == {"LABELS": "LABELS"}
    assert [o.name for o in video.output] == ["LABELS"]


def test_variant_selection_mapping_and_routing() -> None:
    deployment, files, _ = build("variant_selection")
    names = [m.name for m in deployment.repositories[0].models]
    assert names == ["resnet18", "resnet50"]  # resnet152 has no cores: not deployed
    routing = json.loads(files["routing.json"])
    weights = {r["model"]: r["weight"] for r in routing["routes"]}
    assert weights == {"resnet18": 0.25, "resnet50": 0.75}
    assert routing["workload_rps"] == 120.0
    cfg = deployment.repositories[0].models[1].config
    assert cfg.parameters["intra_op_thread_count"].string_value == "6"
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU


def test_gpu_plan_defaults_use_input_size_and_warmup() -> None:
    configs = configs_of("min_gpus_one_type")
    cfg = configs["effnet_b0"]
    assert list(cfg.input[0].dims) == [3, 380, 380]
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert cfg.model_warmup[0].inputs["INPUT"].zero_data
    assert list(cfg.version_policy.specific.versions) == [1]


@pytest.mark.parametrize("backend,field,value", [
    ("tensorrt_plan", "platform", "tensorrt_plan"), ("pytorch_libtorch", "platform", "pytorch_libtorch"),
    ("python", "backend", "python"), ("onnxruntime", "backend", "onnxruntime")])
def test_triton_backend_override(backend: str, field: str, value: str) -> None:
    problem = FakeProblem("m", triton={"backend": "onnxruntime"})
    _, files, _ = build_repository(problem, FakeSolution(gpu_plan([("T4", 1, 8)])), triton_backend=backend)
    cfg = text_format.Parse(files["m/config.pbtxt"], mc.ModelConfig())
    assert getattr(cfg, field) == value
    assert (cfg.backend == "") == (backend in ("tensorrt_plan", "pytorch_libtorch"))


def test_template_fields_are_kept_and_plan_fields_replaced() -> None:
    configs = configs_of("pipeline_template")
    detect = configs["detect"]
    assert detect.parameters["custom_key"].string_value == "kept"
    assert detect.optimization.input_pinned_memory.enable is False
    assert detect.backend == "python"  # triton_backend= wins over the template's onnxruntime
    assert detect.max_batch_size == 8 and detect.instance_group[0].count == 3
    assert detect.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert not detect.model_warmup  # warmup: false
    assert list(detect.input[0].dims) == [3, 224, 224] and list(detect.output[0].dims) == [1000]
    assert "custom_key" not in configs["crop"].parameters  # the template was given for detect only
    assert list(configs["crop"].input[0].dims) == [1000]  # fed by detect's output


def test_template_with_sequence_batching_is_refused(tmp_path: Path) -> None:
    tmpl = tmp_path / "seq.pbtxt"
    tmpl.write_text('backend: "python"\nsequence_batching { max_sequence_idle_microseconds: 5 }\n')
    problem = FakeProblem("m")
    with pytest.raises(ValidationError, match='another member of oneof "scheduling_choice"'):
        build_repository(problem, FakeSolution(gpu_plan([("T4", 1, 8)])), template=tmpl)


def test_template_parse_error_names_the_file(tmp_path: Path) -> None:
    tmpl = tmp_path / "bad.pbtxt"
    tmpl.write_text("max_queue_delay_us: 5\n")
    with pytest.raises(ValidationError, match=re.escape(str(tmpl))):
        build_repository(FakeProblem("m"), FakeSolution(gpu_plan([("T4", 1, 8)])),
                         template=tmpl)


def test_template_relative_to_problem_file(tmp_path: Path) -> None:
    (tmp_path / "t.pbtxt").write_text('platform: "tensorrt_plan"\n')
    problem = FakeProblem("m", triton={"template": "t.pbtxt"}, source=tmp_path / "p.yaml")
    _, files, _ = build_repository(problem, FakeSolution(gpu_plan([("T4", 1, 8)])))
    assert 'platform: "tensorrt_plan"' in files["m/config.pbtxt"]


def test_stages_are_wired_by_tensor_name() -> None:
    triton = {"models": {"detect": {"outputs": [{"name": "A", "data_type": "FP32", "dims": [4]},
                                                {"name": "B", "data_type": "FP32", "dims": [4]}]},
                         "crop": {"inputs": [{"name": "B", "data_type": "FP32", "dims": [4]}]}}}
    _, files, _ = build_repository(FakeProblem("p", triton=triton), FakeSolution(PIPELINE))
    step = _ensemble_steps(files["p/config.pbtxt"])
    assert step["crop"]["input_map"] == {"B": "detect_B"}
    assert step["detect"]["output_map"] == {"B": "detect_B"}  # A feeds nobody: not mapped (Triton: "unused")


def test_unfed_stage_input_is_refused() -> None:
    triton = {"models": {"detect": {"outputs": [{"name": "A", "data_type": "FP32", "dims": [4]},
                                                {"name": "B", "data_type": "FP32", "dims": [4]}]},
                         "crop": {"inputs": [{"name": "C", "data_type": "FP32", "dims": [4]}]}}}
    with pytest.raises(ValidationError, match=r"stage 'crop' input 'C' is fed by no tensor: the previous stage "
                                              r"'detect' outputs A, B.*connect: \{C: <output>\}"):
        build_repository(FakeProblem("p", triton=triton), FakeSolution(PIPELINE))


def test_connect_maps_inputs_to_outputs() -> None:
    triton = {"models": {"detect": {"outputs": [{"name": "A", "data_type": "FP32", "dims": [4]},
                                                {"name": "B", "data_type": "FP32", "dims": [4]}]},
                         "crop": {"inputs": [{"name": "C", "data_type": "FP32", "dims": [4]},
                                             {"name": "IMAGE", "data_type": "FP32", "dims": [3, 224, 224]}],
                                  "connect": {"C": "A", "IMAGE": "INPUT"}},
                         "classify": {"connect": {"INPUT": "detect.B"},
                                      "inputs": [{"name": "INPUT", "data_type": "FP32", "dims": [4]},
                                                 {"name": "OUTPUT", "data_type": "FP32", "dims": [1000]}]}}}
    _, files, _ = build_repository(FakeProblem("p", triton=triton), FakeSolution(PIPELINE))
    step = _ensemble_steps(files["p/config.pbtxt"])
    assert step["crop"]["input_map"] == {"C": "detect_A", "IMAGE": "INPUT"}
    assert step["classify"]["input_map"] == {"INPUT": "detect_B", "OUTPUT": "crop_OUTPUT"}
    for bad, message in (({"X": "A"}, "stage 'crop' has no input 'X'"), ({"C": "nothing"}, "'nothing' is no output"),
                         ({"C": "classify.OUTPUT"}, "not an earlier stage's output")):
        broken = {**triton, "models": {**triton["models"], "crop": {**triton["models"]["crop"], "connect": bad}}}
        with pytest.raises(ValidationError, match=re.escape(message)):
            build_repository(FakeProblem("p", triton=broken), FakeSolution(PIPELINE))


def _ensemble_steps(text: str) -> dict:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    cfg = text_format.Parse(text, mc.ModelConfig())
    return {s.model_name: {"input_map": dict(s.input_map), "output_map": dict(s.output_map)}
            for s in cfg.ensemble_scheduling.step}


def test_stage_types_must_agree() -> None:
    triton = {"models": {"crop": {"inputs": [{"name": "X", "data_type": "FP16", "dims": [1000]}]}}}
    with pytest.raises(ValidationError, match=re.escape(
            "ensemble 'p': output 'OUTPUT' of stage 'detect' (TYPE_FP32 [1000]) cannot feed input 'X' of stage "
            "'crop' (TYPE_FP16 [1000]): the data type differs")):
        build_repository(FakeProblem("p", triton=triton), FakeSolution(PIPELINE))
    triton = {"models": {"crop": {"inputs": [{"name": "X", "data_type": "FP32", "dims": [999]}]}}}
    with pytest.raises(ValidationError, match=re.escape(
            "output 'OUTPUT' of stage 'detect' (TYPE_FP32 [1000]) cannot feed input 'X' of stage 'crop' (TYPE_FP32 "
            "[999]): the shape differs")):
        build_repository(FakeProblem("p", triton=triton), FakeSolution(PIPELINE))


def test_ensemble_named_like_a_stage_is_refused() -> None:
    with pytest.raises(ValidationError, match="set triton.name"):
        build_repository(FakeProblem("detect"), FakeSolution(PIPELINE))


def test_no_plan_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no plan to deploy"):
        write_repository(FakeProblem("m"), FakeSolution(None), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_empty_plans_are_refused() -> None:
    for plan in (gpu_plan([]), gpu_plan([("T4", 0, 8)]), variant_plan([]), variant_plan([("a", 0, 0.0)]),
                 pipeline_plan([], cores=0)):
        with pytest.raises(ValidationError, match="no model to deploy|no stage"):
            build_repository(FakeProblem("m"), FakeSolution(plan))


@pytest.mark.parametrize("plan", [gpu_plan([("T4", 1, 8)]).to_dict(), PIPELINE.to_dict(), object()],
                         ids=["gpu_dict", "pipeline_dict", "object"])
def test_untyped_plans_are_refused(plan: object) -> None:
    """The builder dispatches on the plan's type: a plan's dict (or anything else) names the known types."""
    with pytest.raises(ValidationError, match="cannot write a Triton repository for a .* plan; known plan types: "
                                              "FleetPlan, GPUPlan, PipelinePlan, VariantSelectionPlan"):
        build_repository(FakeProblem("m"), FakeSolution(plan))


def test_warmup_true_needs_fixed_dims() -> None:
    triton = {"warmup": True, "inputs": [{"name": "T", "data_type": "STRING", "dims": [-1]}]}
    with pytest.raises(ValidationError, match="variable"):
        build_repository(FakeProblem("m", triton=triton), FakeSolution(gpu_plan([("T4", 1, 8)])))
    triton["warmup"] = "auto"  # auto: no warm-up for a variable-size input
    _, files, _ = build_repository(FakeProblem("m", triton=triton),
                                   FakeSolution(gpu_plan([("T4", 1, 8)])))
    assert "model_warmup" not in files["m/config.pbtxt"]


# ---------------------------------------------------------------------------------------------------------------
# the triton: section


@pytest.mark.parametrize("section,match", [
    ({"backend": "tensorflow"}, r"key 'triton.backend': expected one of onnxruntime"),
    ({"colour": 1}, r"key 'triton.colour': unknown key"),
    ({"inputs": [{"name": "x", "data_type": "FLOAT", "dims": [1]}]}, r"triton.inputs\[0\].data_type"),
    ({"inputs": [{"name": "x", "data_type": "FP32", "dims": [0]}]}, r"dims\[0\]': dimension must be integer >= 1"),
    ({"inputs": [{"name": "x", "data_type": "FP32"}]}, r"triton.inputs\[0\].dims': missing"),
    ({"outputs": [{"name": "y", "data_type": "FP32", "dims": [1]}] * 2}, "listed twice"),
    ({"warmup": "sometimes"}, "expected auto, true or false"),
    ({"version": 0}, r"triton.version': expected an integer >= 1"),
    ({"template": "nowhere.pbtxt"}, "does not exist"),
    ({"name": "bad name"}, "not a valid model name"),
    ({"instance_kind": "KIND_TPU"}, "expected one of KIND_GPU"),
    ({"models": {"detect": {"dims": 1}}}, r"triton.models.detect.dims': unknown key"),
    ({"kserve": {"replicas": 2}}, r"triton.kserve.replicas': unknown key"),
])
def test_section_errors_name_file_and_key(section: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match) as info:
        parse_triton_section(section, "problems/p.yaml")
    assert str(info.value).startswith("problems/p.yaml: ")


def test_section_defaults() -> None:
    spec = parse_triton_section(None, "p.yaml")
    assert spec.backend is None and spec.version == 1 and spec.warmup == "auto" and not spec.models


def test_unknown_model_key_is_refused() -> None:
    problem = FakeProblem("p", triton={"models": {"detcet": {}}}, source="p.yaml")
    with pytest.raises(ValidationError, match=r"triton.models.detcet': no stage of that name \(known: detect"):
        build_repository(problem, FakeSolution(PIPELINE))


def test_bad_triton_backend_argument() -> None:
    with pytest.raises(ValidationError, match="--triton-backend: expected one of"):
        build_repository(FakeProblem("m"), FakeSolution(gpu_plan([("T4", 1, 8)])),
                         triton_backend="tensorflow")


# ---------------------------------------------------------------------------------------------------------------
# Triton's rules, with Triton's messages (each also confirmed on a real Triton 2.51 by test_triton_server.py)


def test_generated_repositories_pass_the_rules() -> None:
    for case in CASES:
        deployment, _, _ = build(case)  # build_repository runs the checks
        assert deployment.repositories


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_rule_messages_are_tritons(case: str) -> None:
    configs, message = broken(case)
    assert rule_error(configs) == message


def test_rule_error_is_a_validation_error() -> None:
    configs, _ = broken("preferred_above_max")
    with pytest.raises(ServoptError, match="Triton would refuse to load model 'X': dynamic batching"):
        check_repository(configs)


def test_rule_platform_backend_pair() -> None:
    configs = configs_of("pipeline")
    configs["detect"].platform = "tensorrt_plan"
    with pytest.raises(TritonRuleError, match="unexpected 'platform' and 'backend' pair, got:tensorrt_plan, "
                                              "onnxruntime"):
        check_repository(configs)
    configs["detect"].platform = configs["detect"].backend = ""
    with pytest.raises(TritonRuleError, match="must specify 'platform' or 'backend' for 'detect'"):
        check_repository(configs)


def test_rule_scheduling_choice() -> None:
    configs = configs_of("pipeline")
    configs["video"].ClearField("ensemble_scheduling")
    with pytest.raises(TritonRuleError, match="ensemble scheduling must be set for ensemble video whose platform is "
                                              "ensemble"):
        check_repository(configs)
    configs = configs_of("pipeline")
    configs["detect"].ensemble_scheduling.step.add(model_name="crop")
    assert not configs["detect"].HasField("dynamic_batching")  # protobuf's oneof: one scheduling choice
    with pytest.raises(TritonRuleError, match="ensemble scheduling cannot be set for model 'detect' whose platform "
                                              "is not ensemble"):
        check_repository(configs)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 2, 4, 8, 16, 32]), st.integers(1, 12),
                          st.floats(0, 2000, allow_nan=False)), min_size=1, max_size=6))
def test_any_pipeline_plan_gives_a_valid_ensemble(stages: list) -> None:
    plan = pipeline_plan([stage(f"s{i}", f"v{i}", b, r, 1.0, q) for i, (b, r, q) in enumerate(stages)], cores=1)
    deployment, _, _ = build_repository(FakeProblem("ens"), FakeSolution(plan))
    configs = {m.name: m.config for m in deployment.repositories[0].models}
    assert configs["ens"].max_batch_size == min(b for b, _, _ in stages)
    for i, (b, r, q) in enumerate(stages):
        cfg = configs[f"s{i}"]
        assert cfg.max_batch_size == b and cfg.instance_group[0].count == r
        if b > 1:
            assert cfg.dynamic_batching.max_queue_delay_microseconds == round(q * 1000)
            assert list(cfg.dynamic_batching.preferred_batch_size) == [b]
        else:
            assert not cfg.HasField("dynamic_batching")


# ---------------------------------------------------------------------------------------------------------------
# atomic writes


def test_existing_directory_needs_force(tmp_path: Path) -> None:
    problem, solution, _ = CASES["min_gpus_one_type"]
    out = tmp_path / "repo"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(ValidationError, match="already exists; pass --force"):
        write_repository(problem, solution, out)
    assert _tree(out) == {"mine.txt": "keep me"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    write_repository(problem, solution, out, force=True)
    assert "mine.txt" not in _tree(out) and "effnet_b0/config.pbtxt" in _tree(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no temporary or backup folder left


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    problem, solution, _ = CASES["min_gpus_one_type"]
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValidationError, match="not a directory"):
        write_repository(problem, solution, tmp_path / "f", force=True)


def test_nested_out_is_created(tmp_path: Path) -> None:
    problem, solution, _ = CASES["min_gpus_one_type"]
    out = write_repository(problem, solution, tmp_path / "a" / "b" / "repo")
    assert (out / "effnet_b0" / "config.pbtxt").is_file()


@pytest.mark.parametrize("fail_at", [1, 3])
@pytest.mark.parametrize("existing", [False, True])
def test_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int,
                                          existing: bool) -> None:
    import servopt.triton.write as writer

    problem, solution, kwargs = CASES["pipeline"]
    out = tmp_path / "deep" / "repo"
    if existing:
        out.mkdir(parents=True)
        (out / "old.txt").write_text("previous repository")
    real = writer._write_file
    calls = []

    def flaky(path: Path, text: str) -> None:
        calls.append(path)
        if len(calls) == fail_at:
            raise OSError("disk full (injected)")
        real(path, text)

    monkeypatch.setattr(writer, "_write_file", flaky)
    with pytest.raises(OSError, match="injected"):
        write_repository(problem, solution, out, force=existing, **kwargs)
    if existing:
        assert _tree(out) == {"old.txt": "previous repository"}
        assert sorted(p.name for p in out.parent.iterdir()) == ["repo"]
    else:
        assert not (tmp_path / "deep").exists()  # not even the parent folder it had created
    assert len(calls) == fail_at


def test_failure_while_swapping_restores_the_old_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import servopt.triton.write as writer

    problem, solution, _ = CASES["min_gpus_one_type"]
    out = tmp_path / "repo"
    out.mkdir()
    (out / "old.txt").write_text("previous")
    real = os.replace

    def flaky(src, dst):
        if Path(dst) == out and ".servopt-tmp-" in str(src):  # the swap in, not the restore
            raise OSError("rename failed (injected)")
        return real(src, dst)

    monkeypatch.setattr(writer.os, "replace", flaky)
    with pytest.raises(OSError, match="injected"):
        write_repository(problem, solution, out, force=True)
    monkeypatch.setattr(writer.os, "replace", real)
    assert _tree(out) == {"old.txt": "previous"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_rule_failure_writes_nothing(tmp_path: Path) -> None:
    tmpl = tmp_path / "t.pbtxt"  # the template's priority levels are kept, so Triton's rule applies to them
    tmpl.write_text("dynamic_batching { priority_levels: 2 default_priority_level: 3 }")
    with pytest.raises(TritonRuleError, match="default priority level must be in range"):
        write_repository(FakeProblem("p"), FakeSolution(PIPELINE), tmp_path / "repo", template=tmpl)
    assert list(tmp_path.iterdir()) == [tmpl]


# ---------------------------------------------------------------------------------------------------------------
# KServe


_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _manifests(case: str) -> list[dict]:
    _, files, _ = build(case)
    return list(yaml.safe_load_all(files["kserve.yaml"]))


def _check_shape(doc: dict) -> dict:
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    assert _DNS1035.match(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63
    model = doc["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "triton"}
    assert re.match(r"^\d\d\.\d\d-py3$", model["runtimeVersion"])
    res = model["resources"]
    assert res["requests"] == res["limits"]
    return model


def test_kserve_gpu_plan() -> None:
    docs = _manifests("min_gpus_mixed")
    assert [d["metadata"]["name"] for d in docs] == ["effnet-b0-a100-80gb", "effnet-b0-t4"]
    models = [_check_shape(d) for d in docs]
    assert [m["storageUri"] for m in models] == ["gs://models/effnet/A100-80GB", "gs://models/effnet/T4"]
    assert [m["resources"]["limits"]["nvidia.com/gpu"] for m in models] == ["4", "2"]  # GPUs per hardware type


def test_kserve_variant_selection_one_service_per_variant() -> None:
    *docs, graph = _manifests("variant_selection")
    models = [_check_shape(d) for d in docs]
    assert [m["resources"]["limits"]["cpu"] for m in models] == ["4", "6"]
    assert [m["args"] for m in models] == [["--model-control-mode=explicit", "--load-model=resnet18"],
                                           ["--model-control-mode=explicit", "--load-model=resnet50"]]
    assert all(m["storageUri"] == "s3://bucket/resnets" for m in models)
    # the load shares route through an InferenceGraph (tests/test_kserve.py checks it in detail)
    assert [s["weight"] for s in graph["spec"]["nodes"]["root"]["steps"]] == [25, 75]


def test_kserve_pipeline() -> None:
    (doc,) = _manifests("pipeline")
    model = _check_shape(doc)
    assert doc["metadata"]["namespace"] == "vision"
    assert model["resources"]["limits"] == {"cpu": "12", "memory": "8Gi"}
    assert doc["metadata"]["annotations"]["servopt.io/entry-model"] == "video"


def test_kserve_needs_a_storage_uri(tmp_path: Path) -> None:
    problem, solution, _ = CASES["pipeline"]
    with pytest.raises(ValidationError, match="--kserve needs --storage-uri"):
        write_repository(problem, solution, tmp_path / "r", kserve=True)
    with pytest.raises(ValidationError, match="--storage-uri: expected a storage URI"):
        write_repository(problem, solution, tmp_path / "r", kserve=True, storage_uri="bucket/path")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------------------------
# the shipped examples


EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_examples_exist() -> None:
    assert EXAMPLES, "examples/*.yaml are the problems whose repositories are checked here"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_writes_a_repository(path: Path, tmp_path: Path) -> None:
    import servopt

    problem = servopt.load_problem(path)
    solution = servopt.solve(problem, time_limit_s=60)
    if solution.plan is None:
        with pytest.raises(ValidationError, match="no plan to deploy"):
            write_repository(problem, solution, tmp_path / "repo", source=path)
        return
    out = write_repository(problem, solution, tmp_path / "repo", source=path, kserve=True,
                           storage_uri="gs://bucket/" + path.stem)
    summary = json.loads((out / "servopt.json").read_text())
    assert summary["plan"] == solution.plan.to_dict()
    configs = {}
    for repo in summary["repositories"]:
        for model in repo["models"]:
            text = (out / repo["path"] / model["name"] / "config.pbtxt").read_text()
            configs[model["name"], repo["path"]] = text_format.Parse(text, mc.ModelConfig())
            assert (out / repo["path"] / model["name"] / "1").is_dir()
    plan = solution.plan
    if isinstance(plan, GPUPlan):
        used = [g for g in plan.groups if g.gpus > 0]
        gpus = sum(len(c.instance_group[0].gpus) for c in configs.values())
        assert gpus == sum(g.gpus for g in used) == plan.gpus
        assert {c.max_batch_size for c in configs.values()} == {g.batch_size for g in used}
    elif isinstance(plan, PipelinePlan):
        for step in plan.stages:
            cfg = configs[step.name, "."]
            assert cfg.max_batch_size == step.batch_size
            assert cfg.instance_group[0].count == step.replicas
        (entry,) = [r["entry"] for r in summary["repositories"]]
        assert configs[entry, "."].platform == "ensemble"
    elif isinstance(plan, FleetPlan):  # layouts in detail: tests/test_fleet_output.py
        planned = {(pl.model, pl.batch_size) for pl in plan.placements}
        assert {(c.name, c.max_batch_size) for c in configs.values()} == planned
        served = {(srv["gpu_type"], i) for srv in summary["servers"] for i in srv["gpu_indices"]}
        assert served == {(g.gpu_type, g.gpu_index) for g in plan.gpus}
    else:
        assert isinstance(plan, VariantSelectionPlan)
        routing = json.loads((out / "routing.json").read_text())
        assert abs(sum(r["weight"] for r in routing["routes"]) - 1) < 1e-5
        served = [v for v in plan.variants if v.cores > 0]
        assert len(configs) == len(served)
    for doc in yaml.safe_load_all((out / "kserve.yaml").read_text()):
        if doc["kind"] == "InferenceService":  # the variants' InferenceGraph: tests/test_kserve.py
            _check_shape(doc)
