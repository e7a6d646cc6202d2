"""Issue 15, every bad input a clean error: exit 2, one stderr line naming file/key/value, nothing written.

Outputs (checked before any work, one overwrite rule), --json answers on errors, replay's argument order, plain
values and one file prefix in messages, predict's query checks, profile's device and nothing-measured cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from servopt.cli import main

PA_CSV = """Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,\
Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency
1,100.0,10,100,5,20,9000,20,5,9500,9800,9900,10000
2,180.0,10,100,5,20,10000,20,5,10500,10800,10900,11000
"""


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_clean_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A regular file: nothing can be created below it (root included)."""
    path = tmp_path / "afile"
    path.write_text("x")
    return path


@pytest.fixture
def video(root: Path) -> Path:
    return root / "examples" / "pipeline_video.yaml"


@pytest.fixture
def trace(reference_data: Path) -> Path:
    return reference_data / "ipa" / "traces" / "twitter_slice_bursty_damping8.csv"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Latency models fitted on a profile without a variant column (variant = model)."""
    folder = tmp_path_factory.mktemp("models")
    rows = [f"m,{hw},224,{b},{scale * (2 + b):.3f}" for hw, scale in (("T4", 3.0), ("A100", 1.0))
            for b in (1, 2, 4, 8, 16)]
    (folder / "p.csv").write_text("model,hardware,input_size,batch_size,latency_ms\n" + "\n".join(rows) + "\n")
    assert main(["fit", str(folder / "p.csv"), "-o", str(folder / "m.joblib")]) == 0
    return folder / "m.joblib"


# ------------------------------------------------------------------------------- 1. unwritable outputs
def _writers(root: Path, video: Path, trace: Path, tmp_path: Path, out: str) -> dict[str, list[str]]:
    profile = root / "profiles" / "nvidia_resnet50_triton.csv"
    return {
        "solve": ["solve", str(video), "--out", out],
        "import": ["import", "profile", str(profile), "-o", out + ".csv"],
        "fit": ["fit", str(profile), "-o", out + ".joblib"],
        "replay": ["replay", str(trace), str(video), "--trace-end", "20", "--interval", "10", "--series",
                   out + ".csv"],
        "profile": ["profile", str(tmp_path / "missing.onnx"), "--batch-sizes", "1", "--input-sizes", "16",
                    "-o", out + ".csv"],
    }


@pytest.mark.parametrize("command", ["solve", "import", "fit", "replay", "profile"])
@pytest.mark.parametrize("where", ["under_a_file", "proc", "existing_dir"])
def test_unwritable_output_is_exit_2_one_line_before_any_work(capsys, root, video, trace, tmp_path, blocker,
                                                            command, where):
    if where == "under_a_file":
        out = str(blocker / "sub" / "out")
    elif where == "proc":
        out = "/proc/servopt-no-such-dir/out"
    else:
        out = str(tmp_path / "adir")
        for suffix in ("", ".csv", ".joblib"):
            Path(out + suffix).mkdir()
        if command == "solve":
            out = str(blocker)  # --out must be a folder: an existing file is refused, even with --force
    argv = _writers(root, video, trace, tmp_path, out)[command]
    if where == "existing_dir" or command == "solve":
        argv.append("--force")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stdout, err = run(capsys, *argv)
    line = one_clean_line(err)
    assert code == 2 and stdout == ""
    assert ("-o" in line or "--out" in line or "--series" in line) and "missing.onnx" not in line  # checked first
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# -------------------------------------------------------------------------------- 2. one overwrite rule
@pytest.mark.parametrize("command", ["solve", "import", "fit", "replay"])
def test_existing_output_refused_unless_force(capsys, root, video, trace, tmp_path, command):
    out = str(tmp_path / "out")
    argv = _writers(root, video, trace, tmp_path, out)[command]
    target = Path(argv[-1])
    if command == "solve":
        target.mkdir()
        (target / "keep").write_text("old")
    else:
        target.write_text("old")
    code, stdout, err = run(capsys, *argv)
    assert code == 2 and "--force" in one_clean_line(err) and stdout == ""
    assert (target / "keep" if command == "solve" else target).read_text() == "old"
    code, _, err = run(capsys, *argv, "--force")
    assert code == 0, err
    assert not (target / "keep").exists() if command == "solve" else target.read_bytes() != b"old"


def test_force_without_an_output_is_a_usage_error(capsys, root, trace, video):
    profile = root / "profiles" / "nvidia_resnet50_triton.csv"
    for argv in (["import", "profile", profile, "--force"], ["fit", profile, "--force"],
                 ["replay", trace, video, "--force"]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "--force only applies" in one_clean_line(err)


def test_profile_existing_output_refused_unless_force_or_resume(capsys, tmp_path):
    out = tmp_path / "p.csv"
    out.write_text("old")
    argv = ["profile", tmp_path / "missing.onnx", "--batch-sizes", "1", "--input-sizes", "16", "-o", out]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "--force" in one_clean_line(err)
    for extra in ("--force", "--resume"):  # consent given: the next check (the model file) speaks
        code, _, err = run(capsys, *argv, extra)
        assert code == 2 and "no such ONNX file" in one_clean_line(err)
    code, _, err = run(capsys, *argv, "--force", "--resume")
    assert code == 2 and "not both" in one_clean_line(err)
    assert out.read_text() == "old"


# ------------------------------------------------------------------------------------ 3. --json on errors
@pytest.mark.parametrize("argv", [
    ["solve", "{missing}", "--json"],
    ["solve", "{bad}", "--json"],
    ["solve", "{video}", "--json", "--bogus"],
    ["simulate", "{bad}", "--trace", "{trace}", "--json"],
    ["replay", "{trace}", "{bad}", "--json"],
    ["fit", "{missing}", "--json"],
    ["predict", "{missing}", "{missing}", "--json"],
])
def test_json_errors_are_one_json_object_on_stdout(capsys, tmp_path, video, trace, argv):
    bad = tmp_path / "bad.yaml"
    bad.write_text("problem: pipeline\nsla_ms: -1\n")
    names = {"missing": tmp_path / "nope.yaml", "bad": bad, "video": video, "trace": trace}
    code, out, err = run(capsys, *[a.format(**names) for a in argv])
    assert code == 2 and "Traceback" not in err and err.strip()
    data = json.loads(out)
    assert data["status"] == "error" and data["exit_code"] == 2 and data["message"]
    assert data["message"] in err or "unrecognized arguments" in data["message"]


def test_json_infeasible_solve_says_why(capsys, tmp_path):
    problem = {"problem": "min_gpus", "images": 10_000_000, "deadline_s": 1, "objective": "gpus",
               "gpus": [{"hardware": "T4", "max_count": 1, "batches": {8: {"latency_ms": 60.0}}}]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(problem))
    code, out, err = run(capsys, "solve", path, "--json")
    data = json.loads(out)
    assert code == 1 and data["status"] == "infeasible" and data["exit_code"] == 1
    assert data["message"] and data["message"] in err and data["plan"] is None


# ------------------------------------------------------------------------------ 4. replay argument order
def test_replay_accepts_simulates_order(capsys, video, trace):
    args = ["--trace-end", "20", "--interval", "10", "--json"]
    code, out, err = run(capsys, "replay", trace, video, *args)
    assert code == 0, err
    code2, out2, err2 = run(capsys, "replay", video, trace, *args)
    assert code2 == 0, err2
    timeless = [[{k: v for k, v in p.items() if not k.startswith("decision_")} for p in json.loads(o)["policies"]]
                for o in (out, out2)]
    assert timeless[0] == timeless[1]


def test_replay_two_problem_files_says_the_order(capsys, video):
    code, _, err = run(capsys, "replay", video, video)
    assert code == 2 and "takes TRACE PROBLEM" in one_clean_line(err)


# ----------------------------------------------------- 5. import values, plain numbers, one file prefix
@pytest.mark.parametrize("flag, value, message", [
    ("--cores", "nan", "--cores: expected a number of CPU cores > 0, got nan"),
    ("--cores", "-2", "--cores: expected a number of CPU cores > 0, got -2.0"),
    ("--input-size", "-1", "--input-size: expected an integer >= 1 (pixels), got -1"),
])
def test_import_refuses_bad_metadata(capsys, tmp_path, flag, value, message):
    csv = tmp_path / "pa.csv"
    csv.write_text(PA_CSV)
    out = tmp_path / "out.csv"
    code, stdout, err = run(capsys, "import", "perf-analyzer", csv, "--model", "r", "--hardware", "T4",
                            flag, value, "-o", out)
    assert code == 2 and stdout == "" and one_clean_line(err) == f"servopt: error: {message}"
    assert not out.exists()


def test_profile_messages_show_plain_numbers(capsys, tmp_path):
    import pandas as pd

    path = tmp_path / "p.parquet"
    pd.DataFrame({"model": ["r"], "hardware": ["T4"], "input_size": [-1], "batch_size": [1],
                  "latency_ms": [5.0]}).to_parquet(path)
    code, _, err = run(capsys, "import", "profile", path)
    line = one_clean_line(err)
    assert code == 2 and "got -1" in line and "np." not in line


@pytest.mark.parametrize("variant, key", [
    ("{name: v1, accuracy: abc, cores: 1, batches: {1: {latency_ms: 5}}}", "stages[0].variants[0].accuracy"),
    ("{name: v1, accuracy: 0.5, cores: -1, batches: {1: {latency_ms: 5}}}", "stages[0].variants[0].cores"),
])
def test_nested_key_errors_name_the_file_once(capsys, tmp_path, variant, key):
    path = tmp_path / "pipe.yaml"
    path.write_text(f"problem: pipeline\nsla_ms: 500\nworkload_rps: 10\nstages:\n  - name: a\n    variants:\n"
                    f"      - {variant}\n")
    code, _, err = run(capsys, "solve", path)
    line = one_clean_line(err)
    assert code == 2 and line.count("pipe.yaml") == 1 and f"key '{key}'" in line


def test_variant_selection_nested_errors_name_the_file_once(capsys, tmp_path, root):
    doc = yaml.safe_load((root / "examples" / "variant_selection_infadapter.yaml").read_text())
    doc["variants"][0]["accuracy"] = "abc"
    path = tmp_path / "vs.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, _, err = run(capsys, "solve", path)
    assert code == 2 and one_clean_line(err).count("vs.yaml") == 1


# ------------------------------------------------------------------------------------------ 6. predict
def _query(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "q.csv"
    path.write_text(text)
    return path


def test_predict_variant_defaults_to_model(capsys, tmp_path, models):
    q = _query(tmp_path, "model,hardware,input_size,batch_size\nm,T4,224,8\n")
    code, out, err = run(capsys, "predict", models, q, "--json")
    assert code == 0 and err == ""
    (pred,) = json.loads(out)["predictions"]
    assert pred["extrapolated"] is False and pred["latency_ms"] == pytest.approx(30.0, rel=0.1)
    q = _query(tmp_path, "model,variant,hardware,input_size,batch_size\nm,,T4,224,8\n")  # a blank cell too
    code, out2, err = run(capsys, "predict", models, q, "--json")
    assert code == 0 and err == "" and json.loads(out2) == json.loads(out)


def test_predict_flags_unknown_names(capsys, tmp_path, models):
    q = _query(tmp_path, "model,variant,hardware,input_size,batch_size\n"
                         "m,m,T4,224,8\nnope,nope,T4,224,8\n")
    code, out, err = run(capsys, "predict", models, q, "--json")
    assert code == 0
    assert [p["extrapolated"] for p in json.loads(out)["predictions"]] == [False, True]
    line = one_clean_line(err)
    assert "warning" in line and "row 2" in line and "'nope'" in line
    code, out, err = run(capsys, "predict", models, q)
    assert code == 0 and out.splitlines()[0].split()[-1] == "extrapolated"
    assert [r.split()[-1] for r in out.splitlines()[1:]] == ["no", "yes"]


@pytest.fixture(scope="module")
def gpu_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models fitted on a GPU profile at two input sizes with a monitored ``hw.*`` column (varies per row)."""
    folder = tmp_path_factory.mktemp("gpu_models")
    rows = [f"m,H200,{s},{b},{0.5 + 0.01 * b * (s / 224) ** 2:.4f},{50 + 3 * b:.1f},{40 + b % 7}"
            for s in (224, 320) for b in (1, 2, 4, 8, 16, 32)]
    (folder / "p.csv").write_text("model,hardware,input_size,batch_size,latency_ms,warmup_ms,hw.gpu_util_percent\n"
                                  + "\n".join(rows) + "\n")
    assert main(["fit", str(folder / "p.csv"), "-o", str(folder / "m.joblib"), "-q"]) == 0
    return folder / "m.joblib"


def test_predict_says_which_curve_served_each_row(capsys, tmp_path, gpu_models):
    q = _query(tmp_path, "model,hardware,input_size,batch_size\nm,H200,224,8\nm,H200,288,8\nm,A100,224,8\n"
                         "m,Xeon,224,8\n")
    code, out, err = run(capsys, "predict", gpu_models, q, "--json")
    assert code == 0
    assert [p["extrapolated"] for p in json.loads(out)["predictions"]] == [False, True, True, True]
    line = one_clean_line(err)
    assert "3 row(s) outside the fitted profiles" in line and "row 2" in line
    assert "1 by the family's profiled input sizes at the same work" in line and "(input size not profiled)" in line
    assert "1 by the model's curves on profiled GPUs scaled by datasheet peaks" in line
    assert "1 by the monotone fallback regressor" in line


def test_routes_of_the_work_model(gpu_models):
    import pandas as pd

    from servopt.performance.evaluate import PerformanceModels

    fitted = PerformanceModels.load(gpu_models).targets["latency"]
    query = pd.DataFrame({"model": ["m"] * 4, "variant": ["m"] * 4, "hardware": ["H200", "H200", "A100", "Xeon"],
                          "input_size": [224, 288, 224, 224], "batch_size": [8, 8, 8, 8]})
    X = fitted.frame(query)
    assert fitted.model.routes(X).tolist() == ["configuration", "family", "other_gpu", "fallback"]
    assert fitted.model.routes(X[:1]).tolist() == ["configuration"]


def test_predict_query_may_leave_out_monitored_columns(capsys, tmp_path, gpu_models):
    """A query cannot know what the monitors would see: absent hw.* columns take the profile's median."""
    import statistics

    util = statistics.median(40 + b % 7 for b in (1, 2, 4, 8, 16, 32) for _ in (224, 320))
    without = _query(tmp_path, "model,hardware,input_size,batch_size\nm,H200,320,4\n")
    code, out, err = run(capsys, "predict", gpu_models, without, "--json")
    assert code == 0 and err == ""
    given = tmp_path / "given.csv"
    given.write_text(f"model,hardware,input_size,batch_size,hw.gpu_util_percent\nm,H200,320,4,{util}\n")
    code, out2, err = run(capsys, "predict", gpu_models, given, "--json")
    assert code == 0 and json.loads(out2) == json.loads(out)
    import pandas as pd

    from servopt.performance.evaluate import PerformanceModels

    warmup = PerformanceModels.load(gpu_models).targets["warmup"]
    assert "hw.gpu_util_percent" in warmup.features
    query = pd.DataFrame({"model": ["m"], "variant": ["m"], "hardware": ["H200"], "input_size": [320], "batch_size": [4]})
    assert warmup.frame(query)["hw.gpu_util_percent"].tolist() == [util]
    assert warmup.frame(query.assign(**{"hw.gpu_util_percent": 99}))["hw.gpu_util_percent"].tolist() == [99]
    missing = _query(tmp_path, "model,hardware,batch_size\nm,H200,4\n")
    code, out, err = run(capsys, "predict", gpu_models, missing)
    assert code == 2 and "'input_size'" in one_clean_line(err)  # a design column stays required


@pytest.mark.parametrize("column, value", [("batch_size", "-4"), ("batch_size", "0"), ("input_size", "-224"),
                                           ("input_size", "0")])
def test_predict_refuses_sizes_not_positive(capsys, tmp_path, models, column, value):
    cells = {"model": "m", "hardware": "T4", "input_size": "224", "batch_size": "8"}
    cells[column] = value
    q = _query(tmp_path, ",".join(cells) + "\n" + ",".join(cells.values()) + "\n")
    code, out, err = run(capsys, "predict", models, q)
    line = one_clean_line(err)
    assert code == 2 and out == "" and "row 1" in line and repr(column) in line and f"got {int(value)}" in line


def test_predict_header_only_query_is_a_clean_error(capsys, tmp_path, models):
    q = _query(tmp_path, "model,variant,hardware,input_size,batch_size\n")
    code, _, err = run(capsys, "predict", models, q)
    assert code == 2 and "q.csv: query file has no rows" in one_clean_line(err)


# ------------------------------------------------------------------------------------------ 7. profile
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    from servopt.measure.onnx_models import save_model, tiny_cnn

    return save_model(tiny_cnn(), tmp_path_factory.mktemp("models") / "tiny.onnx")


def test_profile_cuda_without_the_provider_refused_before_measuring(capsys, tmp_path, tiny, monkeypatch):
    import onnxruntime

    import servopt.measure.profiler as profiler

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    measured = []
    monkeypatch.setattr(profiler, "_measure_point", lambda *a, **k: measured.append(a))
    out = tmp_path / "p.csv"
    code, _, err = run(capsys, "profile", tiny, "--batch-sizes", "1", "--input-sizes", "16", "--device", "cuda",
                       "-q", "-o", out)
    line = one_clean_line(err)
    assert code == 2 and "CPUExecutionProvider" in line and "onnxruntime-gpu" in line
    assert measured == [] and not out.exists()


def test_profile_that_measures_nothing_exits_1_and_writes_nothing(capsys, tmp_path, tiny):
    out = tmp_path / "p.csv"
    code, stdout, err = run(capsys, "profile", tiny, "--batch-sizes", "1,2", "--input-sizes", "16",
                            "--memory-limit-mb", "0.0001", "--repeats", "2", "--min-repeats", "1",
                            "--time-budget", "0.01", "-q", "-o", out)
    assert code == 1 and "measured nothing" in one_clean_line(err) and "out of memory" in err
    assert not out.exists()
    out.write_text("old")  # --force: a run that measures nothing leaves the old file as it was
    code, _, _ = run(capsys, "profile", tiny, "--batch-sizes", "1", "--input-sizes", "16", "--memory-limit-mb",
                     "0.0001", "--repeats", "2", "--min-repeats", "1", "--time-budget", "0.01", "-q", "-o", out,
                     "--force")
    assert code == 1 and out.read_text() == "old"
