"""MaxBatchModel under limits other than its boundaries', lines that do not rise, and the exact own boundary.

* Under a limit larger than one of a configuration's own boundaries, its answer is at least that boundary (what ran
  under a smaller limit fits), so the largest batch never falls as the limit grows (before: 77 under 100 MiB, then
  71 under 101 MiB from the same profile; with a second profile under 150 MiB, 4 under 101 MiB).
* A configuration whose line in batch does not rise (one batch size, or noise that would make it fall) is predicted
  by its family's line: before, it got the 4096 cap, and after calibration its tiny ratio drove the family's
  usable fraction below 0, so every profiled size got 0 under any limit but the calibrated one.
* The measured boundary comes back exactly under its own limit (need / limit x limit could lose the last bit).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from servopt.exceptions import ValidationError
from servopt.performance import MaxBatchModel
from servopt.performance.memory import boundaries_from_profile

COLS = ["batch_size", "model", "input_size"]


def _family(limits: dict[float, dict[int, int]], batches=(1, 2, 4, 8, 16, 32), per=1e-3, static=100.0,
            noise=0.0, seed=0) -> pd.DataFrame:
    """Rows of one graph at each input size (``limits``: limit -> {size: largest batch found there}), memory
    ``static + per x size^2 x batch`` (times 1 +- ``noise``), each limit's run with its boundaries."""
    rng = np.random.default_rng(seed)
    rows = []
    for limit, found in limits.items():
        for size, largest in found.items():
            for b in batches:
                memory = (static + per * size * size * b) * (1 + rng.uniform(-noise, noise))
                rows.append({"model": "net", "input_size": float(size), "batch_size": float(b),
                             "memory_mb": memory, "oom_batch_size": largest + 1, "oom_limit_mb": limit})
    return pd.DataFrame(rows)


def _model(frame: pd.DataFrame) -> MaxBatchModel:
    model = MaxBatchModel(structure="family", pressure_rows="keep").fit(frame[COLS], frame["memory_mb"])
    return model.calibrate(*boundaries_from_profile(frame, COLS, with_limits=True))


def _query(size: float, batches=(1.0,)) -> pd.DataFrame:
    return pd.DataFrame({"batch_size": [float(b) for b in batches], "model": "net", "input_size": float(size)})


def test_the_answer_never_falls_as_the_limit_grows() -> None:
    # stepped like the CPU arena: 160 px ran up to 77 under 100 MiB, then up to 136 under 150 MiB
    frame = _family({100.0: {128: 45, 160: 77, 192: 30}, 150.0: {128: 70, 160: 136, 192: 52}}, per=2e-5)
    model = _model(frame)
    got = {limit: model.largest_batch(_query(160), limit) for limit in (90, 100, 101, 125, 149, 150, 151, 400)}
    answers = [int(g["max_batch"][0]) for g in got.values()]
    assert answers == sorted(answers)  # never falls as the limit grows
    assert answers[1] == 77 and answers[5] == 136  # each boundary under its own limit
    assert all(77 <= int(got[limit]["max_batch"][0]) <= 136 for limit in (101, 125, 149))
    assert got[101]["basis"][0] == "own boundary under a lower limit"
    assert int(got[90]["max_batch"][0]) <= 77 and int(got[400]["max_batch"][0]) >= 136
    # the fraction says the same as the batch: planned memory fits exactly up to the answer
    for limit, g in got.items():
        b = int(g["max_batch"][0])
        at = _query(160, (b, b + 1))
        planned = model.planned_memory(at, limit)["memory_mb"]
        assert planned[1] > limit and (b == 0 or planned[0] <= limit), (limit, b, planned)


def test_a_line_that_does_not_rise_takes_its_family_line() -> None:
    truth = lambda s, limit: int(np.floor((limit - 100) / (1e-3 * s * s)))  # noqa: E731
    frame = _family({2000.0: {s: truth(s, 2000) for s in (128, 192, 256)}}, batches=(1, 2), per=1e-3)
    frame.loc[(frame.input_size == 128) & (frame.batch_size == 2), "memory_mb"] = 116.0  # noise: below batch 1
    uncalibrated = MaxBatchModel(structure="family").fit(frame[COLS], frame["memory_mb"])
    assert sorted(line.slope == 0 for line in uncalibrated.lines_.values()) == [False, False, True]  # 128 px: mean
    assert 100 <= int(uncalibrated.largest_batch(_query(128), 2000)["max_batch"][0]) <= 120  # truth 115, not 4096
    model = _model(frame)
    (fraction,) = model.usable_fraction_.values()
    assert 0.8 < fraction <= 1.0  # before: below 0
    for limit in (2000, 4000):
        got = model.largest_batch(pd.concat([_query(s) for s in (128, 192, 256)]), limit)["max_batch"]
        want = [truth(s, limit) for s in (128, 192, 256)]
        assert all(0.8 * w <= g <= w for g, w in zip(got, want)), (limit, got, want)


@pytest.mark.parametrize("limit", [1000.0 + k for k in range(100)])
def test_the_own_boundary_comes_back_exactly(limit: float) -> None:
    rows = pd.DataFrame({"batch_size": [1.0, 2, 4, 8, 16], "model": "net", "input_size": 224.0})
    model = MaxBatchModel(structure="family").fit(rows, 100 + 7.3 * rows["batch_size"])
    model.calibrate(_query(224).assign(batch_size=60.0), [60], limit)
    got = model.largest_batch(_query(224), limit)
    assert int(got["max_batch"][0]) == 60 and got["basis"][0] == "own boundary"
    planned = model.planned_memory(_query(224, (60, 61)), limit)["memory_mb"]
    assert planned[0] <= limit < planned[1]


def test_repeated_searches_keep_the_smaller_boundary_either_way() -> None:
    frame = _family({400.0: {128: 61}})
    again = frame.assign(oom_batch_size=52)  # the same configuration searched again under the same limit
    for both in (pd.concat([frame, again]), pd.concat([again, frame])):
        rows, largest, limits = boundaries_from_profile(both, COLS, with_limits=True)
        assert list(largest) == [51] and list(limits) == [400.0]


@pytest.mark.parametrize("size", [0.0, -128.0])
def test_an_input_size_that_is_not_a_size_is_refused(size: float) -> None:
    model = _model(_family({400.0: {128: 61, 192: 30}}))
    for call in (model.largest_batch, model.planned_memory):
        with pytest.raises(ValidationError, match="row 1: input_size .*: expected a size > 0"):
            call(_query(size), 400.0)


def test_fit_refuses_a_limit_the_profile_contradicts() -> None:
    """``servopt fit --oom-limit-mb`` is for profiles that do not record their limit; before, 200 silently replaced
    the 100 MiB the searches ran under, and the model then answered 0 under 100 MiB."""
    from servopt.performance.evaluate import fit_profile
    from servopt.profiles import profile_from_frame

    frame = _family({100.0: {128: 61, 192: 30}}).assign(hardware="cpu", latency_ms=1.0)
    profile = profile_from_frame(frame, source="p.csv").frame
    with pytest.raises(ValidationError, match=r"p.csv: oom_limit_mb=200 .* ran under 100 MiB"):
        fit_profile(profile, source="p.csv", targets=["memory"], cross_validate=False, oom_limit_mb=200.0)
    same, _ = fit_profile(profile, source="p.csv", targets=["memory"], cross_validate=False, oom_limit_mb=100.0)
    unlabelled = profile_from_frame(frame.drop(columns="oom_limit_mb"), source="p.csv").frame
    given, _ = fit_profile(unlabelled, source="p.csv", targets=["memory"], cross_validate=False, oom_limit_mb=100.0)
    query = _query(128).assign(hardware="cpu", variant="net")
    assert [int(m.largest_batch(query, 100.0)["max_batch"].iloc[0]) for m in (same, given)] == [61, 61]


def test_the_ceiling_is_called_a_ceiling(tmp_path, capsys) -> None:
    """A profile whose memory does not grow with the batch (noise at small batches) lets every batch fit: predict
    and solve say that the answer is the model's ceiling, not a boundary."""
    from servopt.cli import main

    rows = pd.DataFrame({"model": "m", "hardware": "cpu-x", "cores": 2, "input_size": 128, "batch_size": [1, 2, 4],
                         "latency_ms": [1.0, 2.0, 4.0], "memory_mb": [46.9, 36.9, 39.1]})
    rows.to_csv(tmp_path / "p.csv", index=False)
    assert main(["fit", str(tmp_path / "p.csv"), "--targets", "memory", "-o", str(tmp_path / "m.joblib")]) == 0
    (tmp_path / "q.csv").write_text("model,hardware,cores,input_size,batch_size\nm,cpu-x,2,128,1\n")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "m.joblib"), str(tmp_path / "q.csv"), "--memory-limit-mb", "100"]) == 0
    err = capsys.readouterr().err
    assert "1 row(s) get max_batch 4096" in err and "the memory model's ceiling (batch 4096), not a boundary" in err
    assert "the predicted memory does not grow with the batch" in err
    (tmp_path / "s.yaml").write_text("problem: min_gpus\nmodel: m\nprofiles: [p.csv]\ninput_size: 128\ncores: 2\n"
                                     "images: 100\ndeadline_s: 60\ngpus:\n  - hardware: cpu-x\n    max_count: 2\n"
                                     "    memory_limit_mb: 100\n")
    assert main(["solve", str(tmp_path / "s.yaml")]) == 0
    out = capsys.readouterr().out
    assert "capped at 4096" in out and "the memory model's ceiling (batch 4096), not a boundary" in out


@pytest.mark.parametrize("value", ["0", "-5", "inf", "nan"])
def test_cli_limits_that_are_not_limits_name_the_option(tmp_path, capsys, value: str) -> None:
    from servopt.cli import main
    from servopt.measure.onnx_models import save_model, tiny_cnn

    onnx = save_model(tiny_cnn(), tmp_path / "t.onnx")
    assert main(["profile", str(onnx), "--batch-sizes", "1", "--input-sizes", "32", "--memory-limit-mb", value,
                 "-o", str(tmp_path / "p.csv")]) == 2
    assert f"--memory-limit-mb {float(value):g}: expected a memory limit in MiB > 0" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("limit", [300.0, 400.0, 600.0])
def test_the_answer_never_grows_with_the_input_size(limit: float) -> None:
    """An unprofiled size between profiled ones is bounded by their answers under the same limit: before, 130 px
    got 106 where a profiled 128 px got 99 (another limit), and 158 px got 109 under the calibrated limit where 160 px's
    own boundary is 117 (fresh set 25 had the same: 127 px 52, 128 px 55)."""
    frame = _family({400.0: {128: 170, 160: 117, 192: 75}}, per=1e-4, noise=0.05, seed=3)
    model = _model(frame)
    sizes = np.arange(96, 260, 2.0)
    query = pd.concat([_query(s) for s in sizes])
    got = model.largest_batch(query, limit)
    answers = [int(b) for b in got["max_batch"]]
    assert answers == sorted(answers, reverse=True)
    bounded = {"a larger profiled size's largest batch", "a smaller profiled size's largest batch"}
    assert bounded & set(got["basis"])
    # the fraction says the same as the batch: each row's planned memory fits up to its answer, not one more
    for k in np.flatnonzero(np.isin(got["basis"], list(bounded))):
        b = answers[k]
        planned = model.planned_memory(_query(sizes[k], (b, b + 1)), limit)["memory_mb"]
        assert planned[1] > limit and (b == 0 or planned[0] <= limit), (sizes[k], b, planned)


def test_memory_is_never_predicted_below_zero(root) -> None:
    """The ViT-like of fresh set 21 has a family line whose least-squares intercept is -3.5 MB: 112 px at batch 1
    was predicted at -1.7 MB (interval -1.56 to -1.84, lo above hi), which a fleet's ``memory_mb: fit`` packed by.
    A line whose static memory would be below 0 goes through the origin instead."""
    from servopt.performance._curves import rising_line
    from servopt.performance.evaluate import fit_profile
    from servopt.profiles import load_profile

    x = np.array([1.0, 2, 4, 8])
    line = rising_line(x, np.array([0.5, 2.0, 5.5, 12.0]))  # least squares: -1.0 + 1.6 x
    assert line.intercept == 0.0 and line.slope > 0
    assert rising_line(x, 3 + 2 * x).intercept == pytest.approx(3.0)  # a line above 0 is kept
    frame = load_profile([root / "profiles" / "measured_cpu_fresh21.csv"]).frame
    models, _ = fit_profile(frame, targets=["memory"])
    query = pd.DataFrame({"model": "vit_fresh21", "variant": "vit_fresh21", "hardware": "cpu-amd-epyc", "cores": 1,
                          "input_size": [100, 112, 120, 144], "batch_size": 1})
    got = models.predict(query, intervals=True)
    assert (got["memory_mb"] > 0).all() and (got["memory_mb_lo"] <= got["memory_mb_hi"]).all()


def test_predicted_memory_never_falls_as_the_input_size_grows(root) -> None:
    """The family line (unprofiled sizes) and a profiled size's own line differ in their static part, so the memory
    jumped at each profiled size: fresh set 21's MobileNet-like at batch 1 was 32.7 MB at 104 px and 22.7 MB at a
    profiled 108 px (37 drops over 80-300 px, the largest 52 %). An unprofiled size now lies between its profiled
    neighbours' memory at the same batch."""
    from servopt.performance.evaluate import fit_profile
    from servopt.profiles import load_profile

    frame = load_profile([root / "profiles" / "measured_cpu_fresh21.csv"]).frame
    models, _ = fit_profile(frame, targets=["memory"], cross_validate=False)
    for model in sorted(frame["model"].unique()):
        rows = frame[frame["model"] == model]
        for batch in (1, 8, 64, 256):
            query = pd.DataFrame({"model": model, "variant": model, "hardware": rows["hardware"].iloc[0],
                                  "cores": rows["cores"].iloc[0], "input_size": np.arange(80.0, 300.0, 2.0),
                                  "batch_size": batch})
            memory = models.predict(query)["memory_mb"].to_numpy()
            assert np.all(memory[1:] >= memory[:-1]), (model, batch)
