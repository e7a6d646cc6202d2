"""Checks of ``servopt profile`` and ``servopt import`` found by a tester's walk through the commands: the torch
resume key holds the cores, an all-out-of-memory run says why, Ctrl-C says what the output file keeps, the Model
Analyzer / perf_analyzer importers refuse impossible cells where the file holds them, and ``import -o`` creates
missing folders as ``profile -o`` does."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from servopt.cli import main
from servopt.exceptions import ValidationError
from servopt.measure.sweep import ProfileRun

FAST = dict(repeats=2, min_repeats=1, time_budget_s=0.01)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------- 1: torch --resume and --cores
@pytest.fixture()
def torchscript(tmp_path: Path) -> Any:
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'servopt[torch]')")
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    path = tmp_path / "tiny_ts.pt"
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 3, 16, 16)), path)
    threads = torch.get_num_threads()
    yield path
    torch.set_num_threads(threads)  # profile_torch(cores=...) sets it process-wide


def test_torch_resume_measures_the_points_of_other_cores(torchscript, tmp_path):
    from servopt.measure.torch_runtime import profile_torch

    out = tmp_path / "p.csv"
    profile_torch(torchscript, [1, 2], [16], cores=1, hardware="hw", output=out, **FAST)
    # the cores=1 sweep ran out of memory at batch 4: that stops cores=1 only, not the cores=2 sweep
    rows = read_rows(out)
    for row in rows:
        row["oom_batch_size"] = "4"
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    run = profile_torch(torchscript, [1, 2, 4], [16], cores=2, hardware="hw", output=out, resume=True, **FAST)
    assert run.measured == 3
    points = sorted((r["cores"], r["batch_size"], r["oom_batch_size"]) for r in read_rows(out))
    assert points == [("1", "1", "4"), ("1", "2", "4"), ("2", "1", ""), ("2", "2", ""), ("2", "4", "")]


# ---------------------------------------------------------------- 2: every point out of memory is explained
def test_all_out_of_memory_prints_each_point_reason_and_memory(monkeypatch, tmp_path, capsys):
    import servopt.measure.profiler as profiler

    oom = [{"cores": 1, "input_size": 64, "batch_size": 1, "memory_mb": 12.4, "reason": "memory limit"},
           {"cores": 1, "input_size": 96, "batch_size": 1, "memory_mb": None,
            "reason": "allocation failure: bad_alloc"}]
    monkeypatch.setattr(profiler, "profile_model", lambda *a, **k: ProfileRun(rows=[], oom=oom, measured=2))
    out = tmp_path / "oom.csv"
    (tmp_path / "m.onnx").write_bytes(b"")  # MODEL must exist (profile_model, which would read it, is replaced)
    code = main(["profile", str(tmp_path / "m.onnx"), "--batch-sizes", "1,2", "--input-sizes", "64,96",
                 "--memory-limit-mb", "5", "-q", "-o", str(out)])
    printed, err = capsys.readouterr()
    assert code == 1 and not out.exists()
    assert "every point was out of memory" in err and len(err.strip().splitlines()) == 1
    assert "cores=1 input_size=64 batch_size=1 (memory limit, 12 MiB)" in printed
    assert "input_size=96 batch_size=1 (allocation failure: bad_alloc)" in printed
    assert "recorded as oom_batch_size" not in printed  # nothing was written


# ------------------------------------------------------------------------------------- 4: Ctrl-C
@pytest.fixture()
def tiny_onnx(tmp_path: Path) -> Path:
    pytest.importorskip("onnx", reason="needs the 'profile' extra (onnx)")
    pytest.importorskip("onnxruntime", reason="needs the 'profile' extra (onnxruntime)")
    from servopt.measure.onnx_models import save_model, tiny_cnn

    path = tmp_path / "tiny.onnx"
    save_model(tiny_cnn(), path)
    return path


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, points: int) -> None:
    """Measure ``points`` points for real, then raise KeyboardInterrupt as Ctrl-C would."""
    import servopt.measure.profiler as profiler

    real = profiler._measure_point
    calls = {"n": 0}

    def measure(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > points:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(profiler, "_measure_point", measure)


GRID = ["--batch-sizes", "1,2,4", "--input-sizes", "16", "--repeats", "2", "--min-repeats", "1",
        "--time-budget", "0.01", "--hardware", "hw", "-q"]


def test_interrupt_says_how_many_rows_are_kept_and_to_resume(tiny_onnx, monkeypatch, tmp_path, capsys):
    out = tmp_path / "p.csv"
    _interrupt_after(monkeypatch, 2)
    code = main(["profile", str(tiny_onnx), *GRID, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 130
    assert len(read_rows(out)) == 2
    assert f"kept 2 rows in {out}" in err and "--resume" in err
    monkeypatch.undo()
    assert main(["profile", str(tiny_onnx), *GRID, "--resume", "-o", str(out)]) == 0
    assert [r["batch_size"] for r in read_rows(out)] == ["1", "2", "4"]


def test_interrupt_before_the_first_point(tiny_onnx, monkeypatch, tmp_path, capsys):
    out = tmp_path / "p.csv"
    _interrupt_after(monkeypatch, 0)
    assert main(["profile", str(tiny_onnx), *GRID, "-o", str(out)]) == 130
    assert "no output written" in capsys.readouterr().err and not out.exists()
    out.write_text("old")  # --force: an interrupt before the first point leaves the old file as it was
    assert main(["profile", str(tiny_onnx), *GRID, "--force", "-o", str(out)]) == 130
    assert "is as it was" in capsys.readouterr().err and out.read_text() == "old"


# ----------------------------------------------------------------------- 3: importers' impossible cells
MA_HEADER = ("Model,Batch,Concurrency,Model Config Path,Instance Group,Max Batch Size,Satisfies Constraints,"
             "Throughput (infer/sec),p99 Latency (ms)\n")


def _ma(tmp_path: Path, row: str) -> Path:
    path = tmp_path / "metrics-model-inference.csv"
    path.write_text(MA_HEADER + "resnet50,1,1,cfg_0,1:GPU,8,Yes,300.5,4.2\n" + row + "\n")
    return path


@pytest.mark.parametrize("row, column, cell", [
    ("resnet50,1,2,cfg_0,1:GPU,1.5,Yes,520.0,5.1", "Max Batch Size", "'1.5'"),
    ("resnet50,1,2,cfg_0,1:GPU,-8,Yes,520.0,5.1", "Max Batch Size", "'-8'"),
    ("resnet50,1,2,cfg_0,0:GPU,8,Yes,520.0,5.1", "Instance Group", "'0:GPU'"),
    ("resnet50,1,2,cfg_0,1:GPU + 0:CPU,8,Yes,520.0,5.1", "Instance Group", "'0:CPU'"),
    ("resnet50,1,-2,cfg_0,1:GPU,8,Yes,520.0,5.1", "Concurrency", "'-2'"),
    ("resnet50,1,0,cfg_0,1:GPU,8,Yes,520.0,5.1", "Concurrency", "'0'"),
])
def test_model_analyzer_refuses_impossible_cells_naming_the_file_column(tmp_path, row, column, cell):
    from servopt.profiles import read_model_analyzer

    with pytest.raises(ValidationError) as err:
        read_model_analyzer(_ma(tmp_path, row), hardware="T4")
    message = str(err.value)
    assert f"row 2 (line 3), column {column!r}" in message and cell in message
    assert "derived" not in message


def test_model_analyzer_keeps_max_batch_size_zero(tmp_path):
    from servopt.profiles import read_model_analyzer

    frame = read_model_analyzer(_ma(tmp_path, "resnet50,1,2,cfg_1,2:GPU,0,Yes,520.0,5.1"), hardware="T4").frame
    assert list(frame["max_batch_size"]) == [8, 0] and list(frame["instances"]) == [1, 2]


def test_perf_analyzer_refuses_a_negative_load(tmp_path):
    from servopt.profiles import read_perf_analyzer

    path = tmp_path / "r_b1.csv"
    path.write_text("Concurrency,Inferences/Second,p50 latency\n1,800,9900\n-2,1400,11200\n")
    with pytest.raises(ValidationError, match=r"row 2 \(line 3\), column 'Concurrency'.*got '-2'"):
        read_perf_analyzer(path, model="r", hardware="T4")


# ------------------------------------------------------------------------ 5: import -o creates folders
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_import_creates_missing_output_folders(tmp_path, suffix, capsys):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow", reason="Parquet needs pyarrow")
    out = tmp_path / "no" / "such" / f"x{suffix}"
    source = _ma(tmp_path, "resnet50,1,2,cfg_0,1:GPU,8,Yes,520.0,5.1")
    assert main(["import", "model-analyzer", str(source), "--hardware", "T4", "-o", str(out)]) == 0
    assert out.is_file()
