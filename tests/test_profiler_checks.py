"""The ONNX Runtime profiler's checks and files: Parquet output and its resume, the warm-up before the first
point's memory baseline, grids the model's inputs cannot take, and messages that name the CLI flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx", reason="the profiler tests need the 'profile' extra (onnx)")
ort = pytest.importorskip("onnxruntime", reason="the profiler tests need the 'profile' extra (onnxruntime)")

from onnx import TensorProto, helper  # noqa: E402

from servopt.cli import main  # noqa: E402
from servopt.exceptions import ValidationError  # noqa: E402
from servopt.measure.onnx_models import save_model, tiny_cnn  # noqa: E402
from servopt.measure.profiler import profile_model  # noqa: E402

FAST = dict(repeats=2, min_repeats=1, time_budget_s=0.01)
CLI_FAST = ["--repeats", "2", "--min-repeats", "1", "--time-budget", "0.01", "-q"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(tiny_cnn(), tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="module")
def fixed_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tiny_cnn()
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = 1
    return save_model(model, tmp_path_factory.mktemp("models") / "fixedb1.onnx")


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np

    weight = helper.make_tensor("w", TensorProto.FLOAT, [16, 4], np.ones(64, dtype=np.float32).tolist())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("models") / "mlp.onnx"
    onnx.save(model, path)
    return path


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: object) -> str:
    code = main(["profile", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------------------------ Parquet
@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_output_is_parquet_that_load_profile_and_resume_read(tiny, tmp_path, suffix):
    from servopt.profiles import load_profile

    out = tmp_path / f"p{suffix}"
    run = profile_model(tiny, [1], [16], output=out, **FAST)
    assert out.read_bytes()[:4] == b"PAR1" and len(run.rows) == 1
    assert len(load_profile(out).frame) == 1
    again = profile_model(tiny, [1, 2], [16], output=out, resume=True, **FAST)
    assert again.measured == 1 and [r["batch_size"] for r in again.rows] == [1, 2]
    frame = load_profile(out).frame
    assert sorted(frame["batch_size"].tolist()) == [1, 2]
    assert not list(tmp_path.glob(".*"))  # the atomic write left no temporary file


def test_parquet_resume_refuses_another_memory_limit(tiny, tmp_path):
    out = tmp_path / "p.parquet"
    profile_model(tiny, [1], [16], output=out, **FAST)
    with pytest.raises(ValidationError, match=r"row 1, column 'oom_limit_mb': empty differs from this run's 500\.0"):
        profile_model(tiny, [1, 2], [16], output=out, resume=True, memory_limit_mb=500, **FAST)


def test_an_output_that_is_neither_csv_nor_parquet_is_refused_before_measuring(tiny, tmp_path, capsys):
    out = tmp_path / "p.txt"
    err = one_line_error(capsys, tiny, "--batch-sizes", "1", "--input-sizes", "16", "-o", out, *CLI_FAST)
    assert "-o" in err and "'.txt'" in err and ".csv, .parquet, .pq" in err and not out.exists()


# -------------------------------------------------------------------------------------- the first point's memory
def test_the_warm_up_runs_before_the_first_points_baseline(tiny, monkeypatch):
    import servopt.measure.profiler as profiler

    events: list[str] = []
    real_warm_up, real_point = profiler._warm_up, profiler._measure_point
    monkeypatch.setattr(profiler, "_warm_up", lambda *a, **k: (events.append("warm-up"), real_warm_up(*a, **k)))
    monkeypatch.setattr(profiler, "_measure_point",
                        lambda *a, **k: (events.append("point"), real_point(*a, **k))[1])
    profile_model(tiny, [1, 2], [16, 24], **FAST)
    assert events == ["warm-up"] + ["point"] * 4  # once, before the first point, not again


def test_the_first_point_reads_like_the_same_point_measured_again():
    """In a fresh process the first point used to carry the process's one-time costs (ONNX Runtime's, numpy's
    statistics imported on first use): 2.3 MiB on this tiny graph, about 8 MiB on a MobileNet-like."""
    script = (
        "import pathlib, tempfile\n"
        "from servopt.measure.onnx_models import save_model, tiny_cnn\n"
        "from servopt.measure.profiler import profile_model\n"
        "model = save_model(tiny_cnn(), pathlib.Path(tempfile.mkdtemp()) / 't.onnx')\n"
        "kw = dict(repeats=2, min_repeats=1, time_budget_s=0.01)\n"
        "first = profile_model(model, [1], [16], **kw).rows[0]['memory_mb']\n"
        "again = profile_model(model, [1], [16], **kw).rows[0]['memory_mb']\n"
        "print(first, again)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, again = map(float, done.stdout.split())
    assert abs(first - again) < 1.0, (first, again)


# ------------------------------------------------------------------------------------ grids the inputs refuse
def test_a_fixed_batch_dimension_refuses_other_batch_sizes_before_measuring(fixed_batch, tmp_path, capsys):
    out = tmp_path / "p.csv"
    err = one_line_error(capsys, fixed_batch, "--batch-sizes", "1,2,4", "--input-sizes", "16", "-o", out,
                         *CLI_FAST)
    assert "has a fixed batch size 1, so batch size(s) 2, 4 cannot be profiled" in err and not out.exists()
    with pytest.raises(ValidationError, match="--find-max-batch"):
        profile_model(fixed_batch, [1], [16], memory_limit_mb=100, find_max_batch=True, **FAST)
    assert [r["batch_size"] for r in profile_model(fixed_batch, [1], [16], **FAST).rows] == [1]


def test_several_input_sizes_for_a_model_without_an_image_input_are_refused(mlp, tmp_path, capsys):
    out = tmp_path / "p.csv"
    err = one_line_error(capsys, mlp, "--batch-sizes", "1,2", "--input-sizes", "32,64", "-o", out, *CLI_FAST)
    assert "no input is a 4-D image" in err and "--input-sizes" in err and "give one value" in err
    assert not out.exists()
    rows = profile_model(mlp, [1, 2], [32], **FAST).rows  # one value is the input_size label
    assert [(r["input_size"], r["batch_size"]) for r in rows] == [(32, 1), (32, 2)]


# ------------------------------------------------------------------------------------------------- messages
@pytest.mark.parametrize("flag, value, where", [
    ("--seed", "-1", "--seed (seed)"),
    ("--repeats", "0", "--repeats (repeats)"),
    ("--min-repeats", "0", "--min-repeats (min_repeats)"),
    ("--time-budget", "0", "--time-budget (time_budget_s)"),
    ("--total-budget", "-1", "--total-budget (total_budget_s)"),
    ("--max-cv", "0", "--max-cv (max_cv)"),
])
def test_bad_options_are_refused_before_measuring_naming_the_flag(tiny, tmp_path, capsys, monkeypatch, flag, value,
                                                                  where):
    import servopt.measure.profiler as profiler

    measured: list[object] = []
    monkeypatch.setattr(profiler, "_measure_point", lambda *a, **k: measured.append(a))
    out = tmp_path / "p.csv"
    err = one_line_error(capsys, tiny, "--batch-sizes", "1", "--input-sizes", "16", "-o", out, *CLI_FAST,
                         f"{flag}={value}")
    assert where in err and "onnxruntime failed" not in err and measured == [] and not out.exists()


def test_the_seed_is_checked_in_the_library_too(tiny):
    for seed in (-1, 1.5, True):
        with pytest.raises(ValidationError, match=r"--seed \(seed\): expected a non-negative integer"):
            profile_model(tiny, [1], [16], seed=seed, **FAST)


def test_the_total_budget_note_names_the_flag(tiny, monkeypatch):
    import servopt.measure.profiler as profiler

    monkeypatch.setattr(profiler._Sweep, "out_of_time", lambda self: True)
    run = profile_model(tiny, [1], [16], total_budget_s=2, **FAST)
    assert run.stopped == "--total-budget (total_budget_s) 2 s reached" and run.rows == []


def test_resume_errors_number_data_rows_from_1_and_say_empty(tiny, tmp_path):
    out = tmp_path / "p.csv"
    profile_model(tiny, [1], [16], output=out, **FAST)
    with pytest.raises(ValidationError, match=r"row 1 \(line 2\), column 'oom_limit_mb': empty differs from this "
                                              r"run's 500\.0"):
        profile_model(tiny, [1, 2], [16], output=out, resume=True, memory_limit_mb=500, **FAST)
    with pytest.raises(ValidationError, match=r"row 1 \(line 2\), column 'model': 'tiny' differs from this run's "
                                              r"'other'"):
        profile_model(tiny, [1, 2], [16], output=out, resume=True, model_name="other", **FAST)
