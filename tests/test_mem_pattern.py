"""ONNX Runtime's memory pattern off (``servopt profile --mem-pattern off``): the profiler's sessions, the label its
rows carry, the served repository's parameter and the Python-backend wrapper that reads it as Triton's ONNX
Runtime backend does (benchmarks/arena_sawtooth.py measures why: a smooth, lower CPU peak at the same latency)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from servopt.cli import main
from servopt.measure import profiler
from servopt.measure.onnx_models import save_model, tiny_cnn


def _recording_ort(profiler_session) -> list[bool]:
    """The profiler's sessions recording ``enable_mem_pattern`` of every one it creates."""
    import onnxruntime as ort

    seen: list[bool] = []

    class Session(ort.InferenceSession):
        def __init__(self, model, options=None, **kwargs):
            seen.append(options.enable_mem_pattern)
            super().__init__(model, options, **kwargs)

    profiler_session(Session)
    return seen


@pytest.mark.parametrize("mem_pattern", [True, False])
def test_profiler_sessions_and_label(tmp_path: Path, profiler_session, mem_pattern: bool) -> None:
    seen = _recording_ort(profiler_session)
    onnx = save_model(tiny_cnn(), tmp_path / "tiny.onnx")
    run = profiler.profile_model(onnx, [1, 2], [32], repeats=1, min_repeats=1, time_budget_s=0.01,
                                 output=tmp_path / "p.csv", mem_pattern=mem_pattern)
    # the warm-up's session and both points' (the first one only reads the inputs)
    assert seen[1:] == [mem_pattern, mem_pattern, mem_pattern]
    labels = [r.get("mem_pattern") for r in run.rows]
    assert labels == ([None, None] if mem_pattern else ["off", "off"])
    from servopt.profiles import load_profile

    frame = load_profile(tmp_path / "p.csv").frame
    assert ("mem_pattern" in frame.columns) == (not mem_pattern)


def test_rows_with_and_without_are_different_configurations(tmp_path: Path) -> None:
    """The label keeps runs with and without the pattern apart: one file may hold both, and they do not clash."""
    onnx = save_model(tiny_cnn(), tmp_path / "tiny.onnx")
    common = dict(repeats=1, min_repeats=1, time_budget_s=0.01)
    on = profiler.profile_model(onnx, [1], [32], output=tmp_path / "on.csv", **common)
    off = profiler.profile_model(onnx, [1], [32], output=tmp_path / "off.csv", mem_pattern=False, **common)
    import pandas as pd

    from servopt.profiles import profile_from_frame

    both = pd.concat([pd.DataFrame(on.rows), pd.DataFrame(off.rows)], ignore_index=True)
    frame = profile_from_frame(both, source="both").frame
    assert sorted(frame["mem_pattern"].fillna("on")) == ["off", "on"]


def test_cli_refuses_where_it_does_not_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx = save_model(tiny_cnn(), tmp_path / "tiny.onnx")
    assert main(["profile", str(onnx), "--runtime", "torch", "--batch-sizes", "1", "--input-sizes", "32",
                 "--mem-pattern", "off", "-o", str(tmp_path / "t.csv")]) == 2
    assert "--mem-pattern off needs --runtime onnxruntime" in capsys.readouterr().err
    assert main(["profile", "--triton", "127.0.0.1:1", "--model", "m", "--batch-sizes", "1", "--mem-pattern", "off",
                 "-o", str(tmp_path / "u.csv")]) == 2
    assert "--mem-pattern off applies only with --triton start" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "u.csv").exists()


def test_served_repository_parameter(tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from servopt.measure.served_onnx import write_onnx_repository

    onnx = save_model(tiny_cnn(), tmp_path / "tiny.onnx")
    for mem_pattern, want in ((True, None), (False, "0")):
        repo = write_onnx_repository(onnx, tmp_path / f"r{mem_pattern}", name="tiny", max_batch_size=4,
                                     input_size=32, mem_pattern=mem_pattern)
        cfg = text_format.Parse((repo / "tiny" / "config.pbtxt").read_text(), mc.ModelConfig())
        got = cfg.parameters["enable_mem_pattern"].string_value if "enable_mem_pattern" in cfg.parameters else None
        assert got == want


def _wrapper(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The generated model.py, importable here: a stand-in for the Python backend's utilities module."""
    from servopt.triton.artifacts import PYTHON_ONNX_MODEL

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    module = types.ModuleType("servopt_model_py")
    exec(compile(PYTHON_ONNX_MODEL, "model.py", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("value, pattern", [(None, True), ("0", False), ("off", False), ("FALSE", False),
                                            ("1", True), ("On", True)])
def test_python_backend_wrapper_reads_the_parameter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    value: str | None, pattern: bool) -> None:
    module = _wrapper(monkeypatch)
    save_model(tiny_cnn(), tmp_path / "1" / "model.onnx")
    parameters = {"intra_op_thread_count": {"string_value": "1"}}
    if value is not None:
        parameters["enable_mem_pattern"] = {"string_value": value}
    config = {"input": [{"name": "input"}], "output": [{"name": "output"}], "parameters": parameters}
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"})
    options = model.session.get_session_options()
    assert options.enable_mem_pattern is pattern
    assert options.enable_cpu_mem_arena is True  # untouched unless enable_mem_arena is given


def test_python_backend_wrapper_refuses_what_triton_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _wrapper(monkeypatch)
    save_model(tiny_cnn(), tmp_path / "1" / "model.onnx")
    config = {"input": [], "output": [], "parameters": {"enable_mem_arena": {"string_value": "maybe"}}}
    with pytest.raises(ValueError, match="enable_mem_arena: failed to convert 'maybe' to boolean"):
        module.TritonPythonModel().initialize({"model_config": json.dumps(config),
                                               "model_repository": str(tmp_path), "model_version": "1"})


@pytest.mark.parametrize("value", [None, "cpu:0"])
def test_python_backend_wrapper_runs_with_arena_shrinkage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          value: str | None) -> None:
    """``memory.enable_memory_arena_shrinkage``: Triton's ONNX Runtime backend puts it on every run's RunOptions;
    so does the wrapper, and a request runs with it."""
    import numpy as np

    module = _wrapper(monkeypatch)
    utils = sys.modules["triton_python_backend_utils"]
    utils.get_input_tensor_by_name = lambda request, name: types.SimpleNamespace(as_numpy=lambda: request[name])
    utils.Tensor = lambda name, value: (name, value)
    utils.InferenceResponse = lambda output_tensors: output_tensors
    save_model(tiny_cnn(), tmp_path / "1" / "model.onnx")
    parameters = {} if value is None else {"memory.enable_memory_arena_shrinkage": {"string_value": value}}
    config = {"input": [{"name": "input"}], "output": [{"name": "logits"}], "parameters": parameters}
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"})
    if value is None:
        with pytest.raises(RuntimeError):  # no entry
            model.run_options.get_run_config_entry("memory.enable_memory_arena_shrinkage")
    else:
        assert model.run_options.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    (((name, out),),) = model.execute([{"input": x}])
    assert name == "logits" and out.shape[0] == 3 and np.allclose(out, model.session.run(None, {"input": x})[0])


@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
def test_plan_repository_keeps_the_template_parameter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      backend: str) -> None:
    """``servopt solve --out`` with a template that turns the pattern off: the config keeps the parameter beside
    the plan's threads, and the Python-backend wrapper servopt writes runs its session with the pattern off."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2 as mc

    examples = Path(__file__).resolve().parent.parent / "examples"
    text = (examples / "variant_selection_infadapter.yaml").read_text().replace("models/", f"{examples}/models/")
    (tmp_path / "t.pbtxt").write_text('parameters { key: "enable_mem_pattern" value { string_value: "0" } }\n')
    (tmp_path / "p.yaml").write_text(text + "triton:\n  template: t.pbtxt\n")
    assert main(["solve", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "repo"), "--triton-backend",
                 backend]) == 0
    [folder] = [d for d in (tmp_path / "repo").iterdir() if (d / "config.pbtxt").is_file()]
    cfg = text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.parameters["enable_mem_pattern"].string_value == "0"
    assert int(cfg.parameters["intra_op_thread_count"].string_value) >= 1
    if backend == "python":  # what the server would run: the wrapper on the repository's own config
        module = _wrapper(monkeypatch)
        config = json_format.MessageToDict(cfg, preserving_proto_field_name=True)
        model = module.TritonPythonModel()
        model.initialize({"model_config": json.dumps(config), "model_repository": str(folder),
                          "model_version": "1"})
        assert model.session.get_session_options().enable_mem_pattern is False


@pytest.mark.triton
@pytest.mark.slow
def test_real_server_serves_with_arena_shrinkage(tmp_path: Path) -> None:
    """A plan's Python-backend repository whose template asks for ``memory.enable_memory_arena_shrinkage``: a real
    tritonserver loads it and a request goes through (the wrapper puts the entry on every run's RunOptions; a value
    ONNX Runtime refuses would fail the request)."""
    from servopt.testing.triton_env import TritonSetupError, ensure_env
    from servopt.testing.triton_server import TritonCheckError, check_repositories, find_repositories

    try:
        env = ensure_env()
    except TritonSetupError as exc:
        pytest.fail(f"could not set up the tritonserver environment:\n{exc}", pytrace=False)
    examples = Path(__file__).resolve().parent.parent / "examples"
    text = (examples / "variant_selection_infadapter.yaml").read_text().replace("models/", f"{examples}/models/")
    (tmp_path / "t.pbtxt").write_text(
        'parameters { key: "memory.enable_memory_arena_shrinkage" value { string_value: "cpu:0" } }\n')
    (tmp_path / "p.yaml").write_text(text + "triton:\n  template: t.pbtxt\n")
    assert main(["solve", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "repo"), "--triton-backend",
                 "python"]) == 0
    try:
        report = check_repositories(find_repositories(tmp_path / "repo"), env=env, workdir=tmp_path / "server",
                                    max_instances=1)
    except TritonCheckError as exc:
        print(exc.log, file=sys.stderr)
        pytest.fail(str(exc), pytrace=False)
    assert report.models >= 1 and report.ready == report.models == len(report.inferences)


@pytest.mark.triton
@pytest.mark.slow
def test_started_server_serves_with_the_pattern_off(tmp_path: Path) -> None:
    """``servopt profile --triton start --mem-pattern off`` on a real tritonserver: the model loads with the
    parameter (the wrapper parses it at load; a bad value would fail the load) and the rows carry the label."""
    import csv

    from servopt.serving.tritonserver import TritonSetupError, ensure_env

    try:
        ensure_env()
    except TritonSetupError as exc:
        pytest.fail(f"could not set up the tritonserver environment:\n{exc}", pytrace=False)
    models = Path(__file__).resolve().parent.parent / "examples" / "models"
    out = tmp_path / "p.csv"
    assert main(["profile", str(models / "language_id.onnx"), "--triton", "start", "--mem-pattern", "off",
                 "--batch-sizes", "1,2", "--window", "0.3", "--max-windows", "3", "-q", "-o", str(out)]) == 0
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["batch_size"]) for r in rows] == [1, 2]
    assert {r["mem_pattern"] for r in rows} == {"off"} and all(float(r["throughput_rps"]) > 0 for r in rows)


def test_fit_keeps_runs_with_and_without_the_pattern_apart() -> None:
    """One profile with both: the memory model keeps two families and answers each query with its own boundary
    (a query names the setting: mem_pattern off, or empty for the default)."""
    import numpy as np
    import pandas as pd

    from servopt.performance.evaluate import fit_profile
    from servopt.profiles import profile_from_frame

    rows = []
    for label, per_pixel in ((None, 2.0e-3), ("off", 1.1e-3)):  # the pattern's block nearly doubles the peak
        for size in (64, 96, 128):
            need = lambda b: 20.0 + per_pixel * b * size * size / 16  # noqa: E731
            boundary = max(b for b in range(1, 4096) if need(b) <= 100.0)
            for b in (1, 2, 4, 8, 16):
                rows.append({"model": "m", "hardware": "cpu", "cores": 2, "input_size": size, "batch_size": b,
                             "latency_ms": 1.0 + b, "memory_mb": need(b), "oom_batch_size": boundary + 1,
                             "oom_limit_mb": 100.0, "mem_pattern": label})
    frame = profile_from_frame(pd.DataFrame(rows), source="both").frame
    models, _ = fit_profile(frame, targets=["memory"], cross_validate=False)
    query = pd.DataFrame({"model": ["m", "m"], "variant": ["m", "m"], "hardware": ["cpu", "cpu"], "cores": [2, 2],
                          "input_size": [96, 96],
                          "batch_size": [1, 1], "mem_pattern": [None, "off"]})
    got = models.largest_batch(query, 100.0)
    truth = [int(r["oom_batch_size"]) - 1 for r in rows if r["input_size"] == 96 and r["batch_size"] == 1]
    assert list(got["max_batch"]) == truth and truth[1] > 1.5 * truth[0]
    assert list(got["max_batch_basis"]) == ["own boundary", "own boundary"]
    assert np.isfinite(got["max_batch_oom_margin"]).all()


def test_resume_refuses_another_setting(tmp_path: Path) -> None:
    """A resumed profile keeps its rows and measures only the missing points, so rows of another memory pattern or
    memory limit would pass for this run's: refused, naming the row, the column and the flag."""
    from servopt.exceptions import ValidationError

    onnx = save_model(tiny_cnn(), tmp_path / "tiny.onnx")
    common = dict(repeats=1, min_repeats=1, time_budget_s=0.01)
    out = tmp_path / "p.csv"
    profiler.profile_model(onnx, [1], [32], output=out, mem_pattern=False, **common)
    before = out.read_bytes()
    with pytest.raises(ValidationError, match=r"row 1 \(line 2\), column 'mem_pattern': 'off' differs from this "
                                              r"run's empty; resume with the --mem-pattern"):
        profiler.profile_model(onnx, [1, 2], [32], output=out, resume=True, **common)
    with pytest.raises(ValidationError, match=r"column 'oom_limit_mb': empty differs from this run's 500.0; resume "
                                              r"with the --memory-limit-mb"):
        profiler.profile_model(onnx, [1, 2], [32], output=out, resume=True, mem_pattern=False, memory_limit_mb=500,
                               **common)
    assert out.read_bytes() == before  # nothing measured, nothing written
    run = profiler.profile_model(onnx, [1, 2], [32], output=out, resume=True, mem_pattern=False, **common)
    assert run.measured == 1 and [r["mem_pattern"] for r in run.rows] == ["off", "off"]


def _two_settings(tmp_path: Path) -> Path:
    """One CPU configuration profiled with the pattern (no label) and without it (mem_pattern = off), each under
    100 MiB with its own boundary."""
    import pandas as pd

    rows = []
    for label, per_batch, boundary in ((None, 1.2, 41), ("off", 0.7, 79)):
        for b in (1, 2, 4, 8, 16, 32):
            rows.append({"model": "m", "hardware": "cpu-x", "cores": 2, "input_size": 96, "batch_size": b,
                         "latency_ms": 1.0 + b, "memory_mb": 45.0 + per_batch * b, "oom_batch_size": boundary + 1,
                         "oom_limit_mb": 100.0, "mem_pattern": label})
    pd.DataFrame(rows).to_csv(tmp_path / "both.csv", index=False)
    return tmp_path / "both.csv"


def _solve_file(tmp_path: Path, where: str, extra: str = "") -> Path:
    _two_settings(tmp_path)
    text = ("problem: min_gpus\nmodel: m\nprofiles: [both.csv]\nperformance: table\ninput_size: 96\ncores: 2\n"
            "images: 1000\ndeadline_s: 60\ngpus:\n  - hardware: cpu-x\n    max_count: 4\n    memory_limit_mb: 100\n"
            f"{where}{extra}")
    (tmp_path / "p.yaml").write_text(text)
    return tmp_path / "p.yaml"


@pytest.mark.parametrize("where, want", [("where: {mem_pattern: 'off'}\n", "0"), ("where: {mem_pattern: ''}\n", None)])
def test_plan_from_rows_without_the_pattern_is_served_without_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  where: str, want: str | None) -> None:
    """``solve --out`` on rows measured with ``--mem-pattern off`` writes ``enable_mem_pattern "0"`` itself; the
    empty label selects the rows measured with the default setting, and their plan gets no parameter."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    assert main(["solve", str(_solve_file(tmp_path, where)), "--out", str(tmp_path / "repo")]) == 0
    assert f"capped at {79 if want else 41}" in capsys.readouterr().out  # each setting's own boundary
    cfg = text_format.Parse((tmp_path / "repo" / "m" / "config.pbtxt").read_text(), mc.ModelConfig())
    got = cfg.parameters["enable_mem_pattern"].string_value if "enable_mem_pattern" in cfg.parameters else None
    assert got == want


def test_a_template_keeps_its_own_pattern_setting(tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    (tmp_path / "t.pbtxt").write_text('parameters { key: "enable_mem_pattern" value { string_value: "1" } }\n')
    path = _solve_file(tmp_path, "where: {mem_pattern: 'off'}\n", "triton:\n  template: t.pbtxt\n")
    assert main(["solve", str(path), "--out", str(tmp_path / "repo")]) == 0
    cfg = text_format.Parse((tmp_path / "repo" / "m" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.parameters["enable_mem_pattern"].string_value == "1"


def test_rows_of_both_settings_name_the_label_to_select_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not oom_batch_size (what each setting measured), but mem_pattern, and how to pick the default rows."""
    assert main(["solve", str(_solve_file(tmp_path, ""))]) == 2
    err = capsys.readouterr().err
    assert "select on column 'mem_pattern' (values: off and rows without it, which {mem_pattern: ''} selects)" in err
