"""servopt.measure.profiler, servopt.measure.onnx_models and ``servopt profile``: tiny graphs, tiny grids, small time budgets."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the profiler tests need the 'profile' extra (onnx)")
ort = pytest.importorskip("onnxruntime", reason="the profiler tests need the 'profile' extra (onnxruntime)")

from servopt.cli import main  # noqa: E402
from servopt.exceptions import ServoptError, ValidationError  # noqa: E402
from servopt.measure.onnx_models import mobilenet_like, resnet_like, save_model, tiny_cnn  # noqa: E402
from servopt.measure.profiler import PROFILE_COLUMNS, is_oom_error, profile_model  # noqa: E402

FAST = dict(repeats=5, min_repeats=2, time_budget_s=0.05)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(tiny_cnn(), tmp_path_factory.mktemp("models") / "tiny.onnx")


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------------ models
@pytest.mark.parametrize(
    "build", [lambda: resnet_like(width=8, blocks=(1, 1)), lambda: mobilenet_like(width_mult=0.25), tiny_cnn],
    ids=["resnet_like", "mobilenet_like", "tiny_cnn"],
)
def test_builders_make_valid_graphs_with_dynamic_batch_and_size(build):
    model = build()
    onnx.checker.check_model(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    classes = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    for batch, size in ((1, 32), (3, 64)):
        (out,) = session.run(None, {"input": np.random.default_rng(0).random((batch, 3, size, size), np.float32)})
        assert out.shape == (batch, classes)
        assert np.isfinite(out).all()


def test_builders_are_seeded_and_structured():
    a, b = resnet_like(width=8, blocks=(1, 1), seed=1), resnet_like(width=8, blocks=(1, 1), seed=1)
    assert a.SerializeToString() == b.SerializeToString()
    assert a.SerializeToString() != resnet_like(width=8, blocks=(1, 1), seed=2).SerializeToString()
    ops = [n.op_type for n in resnet_like(width=8, blocks=(2, 1)).graph.node]
    assert ops.count("Add") == 3  # one residual add per basic block
    depthwise = [n for n in mobilenet_like(width_mult=0.25).graph.node
                 if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)]
    assert depthwise
    with pytest.raises(ValidationError, match="width"):
        resnet_like(width=0)
    with pytest.raises(ValidationError, match="width_mult"):
        mobilenet_like(width_mult=-1)


# ---------------------------------------------------------------------------------------------- profiler
def test_profile_columns_types_and_statistics(tiny, tmp_path):
    out = tmp_path / "p.csv"
    run = profile_model(tiny, [2, 1], [32, 16], cores=[1], output=out, **FAST)
    rows = read_rows(out)
    assert len(rows) == len(run.rows) == run.measured == 4
    header = list(rows[0])
    assert header[: len(PROFILE_COLUMNS)] == list(PROFILE_COLUMNS)
    hw = [c for c in header if c.startswith("hw.")]
    assert "hw.cpu/util/total_percent" in hw and "hw.memory/used_memory_sys_MB" in hw
    # grid order: input sizes ascending, batch sizes ascending within each size
    assert [(int(r["input_size"]), int(r["batch_size"])) for r in rows] == [(16, 1), (16, 2), (32, 1), (32, 2)]
    for r in rows:
        assert r["model"] == r["variant"] == "tiny"
        assert r["hardware"].startswith("cpu-") and r["source"].startswith("servopt profile tiny.onnx")
        assert r["oom_batch_size"] == "" and int(r["cores"]) == 1
        lat, p99 = float(r["latency_ms"]), float(r["latency_p99_ms"])
        assert 0 < lat <= p99
        assert math.isclose(float(r["throughput_rps"]), int(r["batch_size"]) * 1000 / lat, rel_tol=1e-6)
        assert float(r["warmup_ms"]) > 0 and float(r["load_time_s"]) > 0 and float(r["memory_mb"]) >= 0
        assert FAST["min_repeats"] <= int(r["repeats"]) <= FAST["repeats"]
        for c in hw:
            assert math.isfinite(float(r[c])), c


def test_profile_loads_with_load_profile(tiny, tmp_path):
    profiles = pytest.importorskip("servopt.profiles", reason="servopt.profiles is another engineer's module")
    out = tmp_path / "p.csv"
    profile_model(tiny, [1, 2], [16], output=out, **FAST)
    table = profiles.load_profile(out)
    frame = getattr(table, "frame", table)
    assert len(frame) == 2
    assert {"latency_ms", "warmup_ms", "memory_mb"} <= set(frame.columns)


def test_interrupted_run_keeps_rows_and_resume_finishes(tiny, tmp_path):
    out = tmp_path / "p.csv"
    seen = []

    def boom(row):
        seen.append(row)
        if len(seen) == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises between two points

    with pytest.raises(KeyboardInterrupt):
        profile_model(tiny, [1, 2, 4], [16], output=out, on_point=boom, **FAST)
    rows = read_rows(out)
    assert [int(r["batch_size"]) for r in rows] == [1, 2]
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind"

    with pytest.raises(ValidationError, match="exists"):
        profile_model(tiny, [1, 2, 4], [16], output=out, **FAST)
    run = profile_model(tiny, [1, 2, 4], [16], output=out, resume=True, **FAST)
    assert run.measured == 1
    resumed = read_rows(out)
    assert [int(r["batch_size"]) for r in resumed] == [1, 2, 4]
    assert resumed[:2] == rows


def test_memory_limit_ends_that_input_size_sweep(tiny, tmp_path):
    # size 16: every batch is well under 40 MiB; size 128: the inputs alone are 48 MiB at batch 256
    out = tmp_path / "p.csv"
    run = profile_model(tiny, [1, 256, 512], [16, 128], memory_limit_mb=40, output=out,
                        repeats=2, min_repeats=1, time_budget_s=0.01)
    rows = read_rows(out)
    points = [(int(r["input_size"]), int(r["batch_size"]), r["oom_batch_size"]) for r in rows]
    assert points == [(16, 1, ""), (16, 256, ""), (16, 512, ""), (128, 1, "256")]
    assert run.oom_points == [(1, 128, 256)]
    assert run.oom[0]["memory_mb"] > 40 and run.oom[0]["reason"] == "memory limit"
    for r in rows:
        assert float(r["memory_mb"]) <= 40 and float(r["latency_ms"]) > 0
    # resuming knows the 128 px sweep stopped and measures nothing more
    assert profile_model(tiny, [1, 256, 512], [16, 128], memory_limit_mb=40, output=out, resume=True,
                         repeats=2, min_repeats=1, time_budget_s=0.01).measured == 0
    profiles = pytest.importorskip("servopt.profiles", reason="servopt.profiles is another engineer's module")
    frame = profiles.load_profile(out).frame
    assert frame["oom_batch_size"].fillna(0).tolist() == [0, 0, 0, 256]
    assert frame["oom_limit_mb"].tolist() == [40.0] * 4  # the limit the boundary holds for (fit calibrates on it)


def test_allocation_failure_from_onnxruntime_is_recorded_as_oom(tiny, tmp_path, profiler_session):
    class FailingSession(ort.InferenceSession):
        def run(self, output_names, feeds, run_options=None):
            if next(iter(feeds.values())).shape[0] >= 4:
                raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory "
                                   "for requested buffer of size 1073741824")
            return super().run(output_names, feeds, run_options)

    profiler_session(FailingSession)
    run = profile_model(tiny, [1, 2, 4, 8], [16, 32], output=tmp_path / "p.csv", **FAST)
    assert [(r["input_size"], r["batch_size"], r["oom_batch_size"]) for r in run.rows] == [
        (16, 1, 4), (16, 2, 4), (32, 1, 4), (32, 2, 4)]
    assert run.oom_points == [(1, 16, 4), (1, 32, 4)]
    assert run.oom[0]["reason"].startswith("allocation failure: [ONNXRuntimeError]")


def test_other_onnxruntime_failures_are_errors_not_oom(tiny, tmp_path, profiler_session):
    class BrokenSession(ort.InferenceSession):
        def run(self, output_names, feeds, run_options=None):
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : bad input")

    profiler_session(BrokenSession)
    with pytest.raises(ServoptError, match="INVALID_ARGUMENT"):
        profile_model(tiny, [1], [16], **FAST)


def test_is_oom_error():
    assert is_oom_error(MemoryError())
    assert is_oom_error(RuntimeError("CUDA failure 2: out of memory"))
    assert is_oom_error(RuntimeError("std::bad_alloc"))
    assert not is_oom_error(RuntimeError("INVALID_ARGUMENT: Got invalid dimensions"))


def test_total_budget_stops_the_grid(tiny, tmp_path):
    run = profile_model(tiny, [1, 2, 4, 8], [16], total_budget_s=1e-9, output=tmp_path / "p.csv", **FAST)
    assert run.stopped and "total_budget_s" in run.stopped
    assert run.measured <= 1


def test_bad_inputs_are_validation_errors(tiny, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValidationError, match="junk.onnx"):
        profile_model(junk, [1], [16])
    with pytest.raises(ValidationError, match="no such ONNX file"):
        profile_model(tmp_path / "missing.onnx", [1], [16])
    with pytest.raises(ValidationError, match="batch_sizes"):
        profile_model(tiny, [0], [16])
    with pytest.raises(ValidationError, match="time_budget_s"):
        profile_model(tiny, [1], [16], time_budget_s=-1)
    fixed = tiny_cnn()
    for axis in (2, 3):
        fixed.graph.input[0].type.tensor_type.shape.dim[axis].dim_value = 32
    path = save_model(fixed, tmp_path / "fixed.onnx")
    with pytest.raises(ValidationError, match="fixed size 32"):
        profile_model(path, [1], [16], **FAST)
    assert len(profile_model(path, [1], [32], **FAST).rows) == 1


# --------------------------------------------------------------------------------------------------- CLI
def test_cli_profile_writes_csv(tiny, tmp_path, capsys):
    out = tmp_path / "cli.csv"
    code = main(["profile", str(tiny), "--batch-sizes", "1,2", "--input-sizes", "16", "--repeats", "3",
                 "--time-budget", "0.05", "--hardware", "cpu-test", "-q", "-o", str(out)])
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    rows = read_rows(out)
    assert [r["hardware"] for r in rows] == ["cpu-test", "cpu-test"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-sizes", "1,x", "--input-sizes", "16"], "--batch-sizes: expected comma-separated positive"),
        (["--batch-sizes", "1", "--input-sizes", "0"], "--input-sizes: expected comma-separated positive"),
        (["--batch-sizes", "1", "--input-sizes", "16", "--time-budget", "-1"], "time_budget_s"),
        (["--batch-sizes", "1", "--input-sizes", "16", "--memory-limit-mb", "0"],
         "--memory-limit-mb 0: expected a memory limit in MiB > 0"),
    ],
)
def test_cli_bad_arguments_exit_2_with_message(tiny, tmp_path, capsys, args, message):
    code = main(["profile", str(tiny), *args, "-q", "-o", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.csv").exists()


def test_cli_missing_model_and_missing_output_flag(tmp_path, capsys):
    assert main(["profile", str(tmp_path / "nope.onnx"), "--batch-sizes", "1", "--input-sizes", "16",
                 "-o", str(tmp_path / "x.csv")]) == 2
    assert "no such ONNX file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: a required option is missing
        main(["profile", str(tmp_path / "nope.onnx"), "--batch-sizes", "1", "--input-sizes", "16"])
    assert exc.value.code == 2
    assert "-o/--output" in capsys.readouterr().err


def test_resume_refuses_a_profile_of_other_hardware(tiny, tmp_path):
    out = tmp_path / "p.csv"
    profile_model(tiny, [1], [16], output=out, hardware="cpu-a", **FAST)
    with pytest.raises(ValidationError, match="column 'hardware'.*cpu-a"):
        profile_model(tiny, [1, 2], [16], output=out, resume=True, hardware="cpu-b", **FAST)


@pytest.mark.parametrize("name", ["resnet_like", "mobilenet_like"])
def test_shipped_measured_profiles(root, name):
    profiles = pytest.importorskip("servopt.profiles", reason="servopt.profiles is another engineer's module")
    frame = profiles.load_profile(root / "profiles" / f"measured_{name}.csv").frame
    grid = {(c, s, b) for c in (1, 2) for s in (64, 128, 224, 320, 512) for b in (1, 2, 4, 8, 16, 32, 64)}
    assert set(zip(frame["cores"].astype(int), frame["input_size"], frame["batch_size"])) == grid
    assert len(frame) == len(grid) and (frame["model"] == name).all()
    assert (frame["warmup_ms"] > 0).all() and (frame["memory_mb"] > 0).all()
    assert (frame["latency_ms"] <= frame["latency_p99_ms"]).all()
    assert frame["source"].str.startswith(f"servopt profile {name}.onnx").all()
    assert len(profiles.hw_columns(frame)) >= 30
    # activations dominate at large inputs: memory grows with the batch there
    for (_, size), sweep in frame[frame["input_size"] >= 224].groupby(["cores", "input_size"]):
        memory = sweep.sort_values("batch_size")["memory_mb"].to_numpy()
        assert memory[-1] > 2 * memory[0], size


# ------------------------------------------------------------------------------------ --find-max-batch
def _fake_point(memory: Any, calls: list[tuple[int, int, int]]) -> Any:
    """A ``_measure_point`` whose peak memory is ``memory(cores, batch)`` MiB; records (cores, batch, repeats)."""

    def point(ort, model_bytes, providers, feeds, cores, batch, repeats, min_repeats, budget, limit, monitor,
              device, max_cv, *, mem_pattern=True):
        assert mem_pattern is True  # the default session options unless --mem-pattern off
        calls.append((cores, batch, repeats))
        mem = float(memory(cores, batch))
        if limit is not None and mem > limit:
            return {"oom_reason": "memory limit", "memory_mb": mem, "repeats": 0}
        assert max_cv is None if repeats == 1 else max_cv == 0.5  # a trial is never re-measured
        return {"oom_reason": None, "load_time_s": 0.01, "warmup_ms": 2.0, "latency_ms": float(batch),
                "latency_p99_ms": float(batch), "latency_cv": 0.0, "repeats": repeats, "unstable": 0,
                "throughput_rps": 1e3, "memory_mb": mem}

    return point


def test_find_max_batch_bisects_each_sweep_and_records_the_boundary(tiny, tmp_path, monkeypatch):
    import servopt.measure.profiler as profiler

    calls: list[tuple[int, int, int]] = []
    # 1 core: 10 + 3 b MiB fits 100 MiB up to b = 30; 2 cores: 10 + 4 b up to b = 22
    monkeypatch.setattr(profiler, "_measure_point", _fake_point(lambda c, b: 10 + (2 + c) * b, calls))
    out = tmp_path / "p.csv"
    run = profile_model(tiny, [1, 2, 4, 8], [16], cores=[1, 2], memory_limit_mb=100, find_max_batch=True,
                        output=out, repeats=5, max_cv=0.5)
    # doubling past the grid (16 fits, 32 does not), then upward in steps of (32 - 16) / 16 = 1
    assert run.max_batch == [
        {"cores": 1, "input_size": 16, "max_batch": 30, "oom_batch": 31, "trials": [16, 32, *range(17, 32)]},
        {"cores": 2, "input_size": 16, "max_batch": 22, "oom_batch": 23, "trials": [16, 32, *range(17, 24)]}]
    # the trials run once (repeats 1); the boundary batch is then measured as a row with the full repeats
    assert calls[4:6] == [(1, 16, 1), (1, 32, 1)] and calls[6 + 15] == (1, 30, 5)
    rows = read_rows(out)
    assert [(int(r["cores"]), int(r["batch_size"]), int(r["oom_batch_size"])) for r in rows] == [
        (1, 1, 31), (1, 2, 31), (1, 4, 31), (1, 8, 31), (1, 30, 31),
        (2, 1, 23), (2, 2, 23), (2, 4, 23), (2, 8, 23), (2, 22, 23)]
    assert run.oom == []  # the trials that ran out of memory are not points of the profile
    # resuming finds both boundaries in the file: nothing is measured or tried again
    calls.clear()
    again = profile_model(tiny, [1, 2, 4, 8], [16], cores=[1, 2], memory_limit_mb=100, find_max_batch=True,
                          output=out, resume=True, repeats=5, max_cv=0.5)
    assert calls == [] and [m["trials"] for m in again.max_batch] == [[], []]


def test_find_max_batch_starts_from_an_oom_in_the_grid_and_needs_a_limit(tiny, tmp_path, monkeypatch):
    import servopt.measure.profiler as profiler

    calls: list[tuple[int, int, int]] = []
    monkeypatch.setattr(profiler, "_measure_point", _fake_point(lambda c, b: 10 + 3 * b, calls))
    run = profile_model(tiny, [1, 8, 64], [16], memory_limit_mb=100, find_max_batch=True, repeats=5, max_cv=0.5)
    assert run.oom_points == [(1, 16, 64)]  # the grid point that ran out bounds the search
    # steps of (64 - 8) / 16 = 4 upward until 32 runs out, then bisection between 28 and 32
    assert run.max_batch[0]["trials"] == [12, 16, 20, 24, 28, 32, 30, 31]
    assert [r["batch_size"] for r in run.rows] == [1, 8, 30] and {r["oom_batch_size"] for r in run.rows} == {31}
    with pytest.raises(ValidationError, match="needs memory_limit_mb"):
        profile_model(tiny, [1], [16], find_max_batch=True)


def test_find_max_batch_finds_the_first_batch_that_runs_out_of_a_saw_tooth(tiny, monkeypatch):
    """ONNX Runtime's arena: a stretch of batches needs more memory than larger ones (here 17-20 need 40 MiB
    more). Bisection between 16 and 32 would try 24, 28, 30, 31 and answer 30; the upward steps stop at 17."""
    import servopt.measure.profiler as profiler
    from servopt.measure.max_batch_search import find_oom_boundary

    def memory(c: int, b: int) -> float:
        return 10 + 3 * b + (40 if 17 <= b <= 20 else 0)

    monkeypatch.setattr(profiler, "_measure_point", _fake_point(memory, []))
    run = profile_model(tiny, [1, 2, 4, 8, 16], [16], memory_limit_mb=100, find_max_batch=True, repeats=5,
                        max_cv=0.5)
    assert (run.max_batch[0]["max_batch"], run.max_batch[0]["oom_batch"]) == (16, 17)
    assert {r["oom_batch_size"] for r in run.rows} == {17}
    assert find_oom_boundary(lambda b: memory(1, b) <= 100, 16, 32)[:2] == (30, 31)  # plain bisection


def test_find_max_batch_on_onnxruntime(tiny, tmp_path, capsys):
    # a real search: at 128 px the inputs alone are 0.19 MiB per sample, so 40 MiB is reached near batch 200
    out = tmp_path / "p.csv"
    code = main(["profile", str(tiny), "--batch-sizes", "1,2", "--input-sizes", "128", "--memory-limit-mb", "40",
                 "--find-max-batch", "--repeats", "2", "--min-repeats", "1", "--time-budget", "0.01", "-q",
                 "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    rows = read_rows(out)
    largest = max(int(r["batch_size"]) for r in rows)
    assert 8 < largest < 256 and {int(r["oom_batch_size"]) for r in rows} == {largest + 1}
    assert all(float(r["memory_mb"]) <= 40 for r in rows)
    assert f"cores=1 input_size=128: largest batch that fits {largest} (out of memory from {largest + 1}" in printed
    assert main(["profile", str(tiny), "--batch-sizes", "1", "--input-sizes", "16", "--find-max-batch", "-q",
                 "-o", str(tmp_path / "x.csv")]) == 2
    assert "needs memory_limit_mb" in capsys.readouterr().err
