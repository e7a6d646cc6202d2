"""Issue 19: work-aware latency (floor-plus-roofline, hardware table), prediction intervals and coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from servopt.exceptions import ValidationError
from servopt.performance import LatencyModel, WorkLatencyModel
from servopt.performance.evaluate import fit_profile
from servopt.performance.hardware import hardware_spec
from servopt.performance.uncertainty import conformal_interval, coverage
from servopt.performance.roofline import fit_roofline


@parametrize_with_checks([WorkLatencyModel()])
def test_sklearn_contract(estimator, check):
    check(estimator)


def _synthetic(sizes=(128, 224, 320), batches=(1, 2, 4, 8, 16, 32, 64), hardware="A100", floor=3.0, per_px=2e-5):
    rows = [{"batch_size": b, "model": "m", "hardware": hardware, "input_size": s,
             "latency_ms": max(floor, 0.5 + per_px * b * s * s)} for s in sizes for b in batches]
    frame = pd.DataFrame(rows)
    return frame.drop(columns="latency_ms"), frame["latency_ms"].to_numpy()


def test_a_fit_on_the_floor_still_grows_beyond_the_largest_batch():
    b = np.array([1, 2, 4, 8, 16, 32, 64.0])
    flat = np.full(7, 5.0)
    work = WorkLatencyModel().fit(b[:, None], flat).predict(np.array([[64.0], [128.0], [256.0]]))
    hinge = LatencyModel().fit(b[:, None], flat).predict(np.array([[256.0]]))
    assert hinge[0] == pytest.approx(5.0, rel=0.05)  # the old model: the floor for ever
    # between the bounds latency-does-not-fall (5) and throughput-does-not-fall (5 * 256 / 64)
    assert work[0] == pytest.approx(5.0, rel=0.05) and 5.0 < work[1] < work[2] < 20.0
    assert work[2] == pytest.approx(10.0, rel=0.05)  # log-midpoint of the two bounds


def test_unprofiled_input_size_follows_the_work():
    X, y = _synthetic()
    model = WorkLatencyModel().fit(X, y)
    query = X[X.input_size == 224].assign(input_size=272)
    truth = np.maximum(3.0, 0.5 + 2e-5 * query.batch_size * 272 ** 2)
    got = model.predict(query)
    assert np.mean(np.abs(got - truth) / truth) < 0.05
    # the old model sends it to LightGBM, which cannot see the work
    old = LatencyModel().fit(X, y).predict(query)
    assert np.mean(np.abs(got - truth) / truth) < np.mean(np.abs(old - truth) / truth)


def test_monotone_in_batch_and_input_size():
    X, y = _synthetic()
    model = WorkLatencyModel().fit(X, y)
    for size in (96, 128, 200, 224, 400, 600):
        q = pd.DataFrame({"batch_size": np.arange(1, 513.0), "model": "m", "hardware": "A100", "input_size": size})
        assert np.all(np.diff(model.predict(q)) >= -1e-9)
    q = pd.DataFrame({"batch_size": 32.0, "model": "m", "hardware": "A100", "input_size": np.arange(64, 640.0, 8)})
    assert np.all(np.diff(model.predict(q)) >= -1e-9)


def test_slope_is_carried_from_another_gpu_by_the_peak_ratio():
    Xa, ya = _synthetic(sizes=(224,), hardware="A100-80GB", floor=1.0)
    Xt, yt = _synthetic(sizes=(224,), hardware="T4", floor=500.0)  # every T4 point on the floor
    model = WorkLatencyModel().fit(pd.concat([Xa, Xt], ignore_index=True), np.r_[ya, yt])
    t4 = [r for r in model.families_.values() if r.floor > 100][0]
    assert t4.carried_slope == pytest.approx(2e-5 * 312 / 65, rel=0.2)
    assert hardware_spec("NVIDIA T4").fp16_tflops == 65.0 and hardware_spec("A10").name == "A10"
    assert hardware_spec("cpu-amd-epyc") is None


def test_roofline_line_with_few_points():
    r = fit_roofline(np.array([1.0, 2, 4]), np.array([2.0, 3.0, 5.0]))
    assert r.sharpness == 1.0 and r(8.0) == pytest.approx(9.0, rel=0.05)


def test_conformal_interval_covers_at_its_level():
    rng = np.random.default_rng(0)
    p = np.full(400, 10.0)
    y = p * np.exp(rng.normal(0, 0.1, 400))
    iv = conformal_interval(y[:200], p[:200], np.zeros(200, dtype=bool), level=0.9)
    inside = (y[200:] >= p[200:] * iv["interior"]["lo"]) & (y[200:] <= p[200:] * iv["interior"]["hi"])
    assert 0.83 <= inside.mean() <= 0.97 and iv["interior"]["exact"]
    assert iv["edge"]["lo"] <= iv["interior"]["lo"] and iv["edge"]["hi"] >= iv["interior"]["hi"]


def test_coverage_says_profiled_interpolated_extrapolated():
    X, _ = _synthetic()
    q = pd.DataFrame({"batch_size": [4.0, 6, 128, 4, 4, 4], "model": ["m"] * 5 + ["other"],
                      "hardware": ["A100", "A100", "A100", "T4", "T4", "A100"],
                      "input_size": [224.0, 256, 224, 512, 224, 224]})
    got = coverage(X, q, "batch_size")
    assert got["batch_size"].tolist() == ["profiled", "interpolated", "extrapolated", "profiled", "profiled",
                                          "profiled"]
    # an unseen GPU or model at a profiled size: the size is profiled (before: "extrapolated"), the GPU or model
    # unseen (before: nothing said so of the model)
    assert got["input_size"].tolist() == ["profiled", "interpolated", "profiled", "extrapolated", "profiled",
                                          "profiled"]
    assert got["hardware"].tolist() == ["profiled", "profiled", "profiled", "unseen", "unseen", "profiled"]
    assert got["model"].tolist() == ["profiled"] * 5 + ["unseen"]


def test_fit_profile_stores_intervals_and_predicts_them(root):
    from servopt.profiles import load_profile

    frame = load_profile([root / "profiles" / "nvidia_resnet50_triton.csv"]).frame
    models, reports = fit_profile(frame, targets=["latency"], level=0.8)
    assert reports["latency"].model == "WorkLatencyModel"
    iv = models.targets["latency"].interval
    assert iv["level"] == 0.8 and iv["interior"]["lo"] <= 1.0 <= iv["interior"]["hi"]
    query = frame[["batch_size", "model", "variant", "hardware", "input_size"]].head(3)
    out = models.predict(query, intervals=True)
    assert list(out.columns) == ["latency_ms", "latency_ms_lo", "latency_ms_hi"]
    assert np.all(out.latency_ms_lo <= out.latency_ms) and np.all(out.latency_ms <= out.latency_ms_hi)
    assert list(models.predict(query).columns) == ["latency_ms"]
    _, old = fit_profile(frame, targets=["latency"], latency_model="hinge")
    assert old["latency"].model == "LatencyModel"
    with pytest.raises(ValidationError, match="latency_model"):
        fit_profile(frame, targets=["latency"], latency_model="nope")


def test_onnx_work_columns_become_the_work_feature():
    from servopt.measure.onnx_models import tiny_cnn
    from servopt.performance.work import add_work_columns

    X, y = _synthetic(sizes=(32, 48))
    X = add_work_columns(X.assign(model="m"), {"m": tiny_cnn()})
    assert X.gflops.nunique() == 2 and (X.gflops > 0).all() and X.param_mb.nunique() == 1
    model = WorkLatencyModel().fit(X[["batch_size", "model", "hardware", "input_size", "gflops"]], y)
    assert model.feature_names_in_[model.work_index_] == "gflops"
    with pytest.raises(ValidationError, match="no such model"):
        add_work_columns(X, {"other": tiny_cnn()})


def test_an_unprofiled_gpu_of_the_table_scales_the_slope_by_the_peak_ratio():
    X, y = _synthetic(sizes=(224,), hardware="A100-80GB", floor=1.0)
    model = WorkLatencyModel().fit(X, y)
    q = pd.DataFrame({"batch_size": [1.0, 64.0, 256.0], "model": "m", "hardware": "H100", "input_size": 224.0})
    got = model.predict(q)
    a100 = model.predict(q.assign(hardware="A100-80GB"))
    assert got[0] <= a100[0]  # the intercept (launch overhead) is kept, the per-work slope scaled
    assert got[0] == pytest.approx(0.5 + 2e-5 * 224 ** 2 * 312 / 989, rel=0.15)
    assert got[2] == pytest.approx(0.5 + 2e-5 * 256 * 224 ** 2 * 312 / 989, rel=0.15)
    assert np.all(np.diff(got) > 0)


def test_max_batch_margin_errs_towards_too_small_and_blocks_round_up():
    from servopt.performance import MaxBatchModel

    b = np.array([1, 2, 4, 8, 16.0])
    rng = np.random.default_rng(1)
    memory = 300 + 10 * b * np.exp(rng.normal(0, 0.05, 5))
    X = np.c_[b, np.full(5, 224.0)]
    plain = MaxBatchModel().fit(X, memory)
    safe = MaxBatchModel(upper_quantile=0.9).fit(X, memory)
    assert plain.margin_ == 1.0 and safe.margin_ > 1.0
    assert safe.max_batch(224, 1000) < plain.max_batch(224, 1000)
    blocks = MaxBatchModel(block_mb=64).fit(X, 300 + 10 * b)
    assert blocks.max_batch(224, 1000) == 66  # 300 + 10 b rounded up to 64 MB: 960 at b = 66, 1024 at 67
    with pytest.raises(ValidationError, match="upper_quantile"):
        MaxBatchModel(upper_quantile=2.0).fit(X, memory)


def test_extrapolation_beyond_grid_is_monotone_and_at_most_linear():
    """Above the largest profiled batch B the prediction lies in [L(B), L(B) * b / B]."""
    from servopt.performance.work_latency import WorkLatencyModel

    batches = np.array([1, 2, 4, 8, 16, 32], dtype=float)
    lat = 2.0 + 0.05 * batches ** 1.3
    model = WorkLatencyModel().fit(batches[:, None], lat)
    top = model.predict([[32.0]])[0]
    big = np.array([48.0, 64.0, 128.0, 256.0])
    pred = model.predict(big[:, None])
    assert np.all(pred >= top - 1e-9)
    assert np.all(pred <= top * big / 32.0 + 1e-9)
    assert np.all(np.diff(pred) >= -1e-9)


def test_edge_residuals_are_also_scored_per_octave_of_extrapolation():
    # edge points 1 and 3 octaves from the nearest batch of their fit: log errors 0.1 and 0.3 are 0.1 per octave
    y = np.exp(np.r_[np.zeros(20), 0.1, 0.3])
    edge = np.r_[np.zeros(20, dtype=bool), True, True]
    iv = conformal_interval(y, np.ones(22), edge, level=0.5, octaves=np.r_[np.zeros(20), 1.0, 3.0])
    assert iv["octave"]["n"] == 2 and iv["octave"]["hi"] == pytest.approx(np.exp(0.1))
    assert "octave" not in conformal_interval(y, np.ones(22), edge, level=0.5)  # the form before: edge only


def test_an_edge_next_to_its_neighbour_is_not_scored_per_octave(root):
    """An out-of-memory search leaves batches 1343 and 1344 side by side; the top one held out lay 0.001 octave
    from the fit, and its residual / 0.001 was the whole per-octave factor (memory at batch 2688 of the H200
    resnet50 fp16 profile: 1.6e-85 to 1.03 times the prediction)."""
    y = np.exp(np.r_[np.zeros(20), 0.1, -0.2])
    edge = np.r_[np.zeros(20, dtype=bool), True, True]
    iv = conformal_interval(y, np.ones(22), edge, level=0.5, octaves=np.r_[np.zeros(20), 1.0, np.log2(1344 / 1343)])
    assert iv["octave"]["n"] == 1 and iv["octave"]["lo"] == 1.0  # only the point an octave away
    assert iv["edge"]["lo"] == pytest.approx(np.exp(-0.2))  # its residual still widens the edge interval
    from servopt.profiles import load_profile

    frame = load_profile([root / "profiles" / "measured_H200_resnet50_fp16.csv"]).frame
    models, _ = fit_profile(frame, targets=["memory"])
    query = pd.DataFrame({"model": "resnet50", "variant": "resnet50-fp16", "hardware": "H200", "input_size": 224,
                          "batch_size": [2688, 4096]})
    got = models.predict(query, intervals=True)
    assert (got["memory_mb_lo"] / got["memory_mb"]).min() > 0.5


def test_edge_octaves_of_a_configuration_are_the_gaps_at_its_ends():
    from servopt.performance.evaluate import _edge_octaves

    assert _edge_octaves(np.array([1.0, 8, 16, 64])).tolist() == [3.0, 0.0, 0.0, 2.0]
    assert _edge_octaves(np.array([4.0])).tolist() == [0.0]


def test_intervals_widen_with_the_distance_beyond_the_profiled_batches(root):
    """A batch 2 octaves beyond the profile gets the per-octave factors squared; 1 octave, the edge factors; the
    point prediction stays the same (fresh CPU graphs, set 1: per-octave factors from its own edge residuals)."""
    from servopt.profiles import load_profile

    frame = load_profile([root / "profiles" / "measured_cpu_fresh.csv"]).frame
    frame = frame[(frame.model == "resnet_fresh") & (frame.batch_size <= 16)].reset_index(drop=True)
    models, _ = fit_profile(frame, targets=["latency"], level=0.9)
    iv = models.targets["latency"].interval
    per = iv["octave"]
    assert per["n"] == 8 and per["hi"] > 1.0 and per["lo"] < 1.0  # 4 sizes x 2 ends, one octave each
    query = frame[frame.input_size == 128].iloc[[0, 0, 0, 0]].reset_index(drop=True).assign(
        batch_size=[8.0, 32.0, 64.0, 256.0])
    out = models.predict(query, intervals=True)
    hi = (out.latency_ms_hi / out.latency_ms).to_numpy()
    lo = (out.latency_ms_lo / out.latency_ms).to_numpy()
    assert hi[0] == pytest.approx(iv["interior"]["hi"]) and hi[1] == pytest.approx(iv["edge"]["hi"])
    assert hi[2] == pytest.approx(max(iv["edge"]["hi"], per["hi"] ** 2))
    assert hi[3] == pytest.approx(max(iv["edge"]["hi"], per["hi"] ** 4)) and hi[3] > hi[2] >= hi[1]
    assert lo[3] == pytest.approx(min(iv["edge"]["lo"], per["lo"] ** 4)) and lo[3] < lo[2]


def test_an_unprofiled_input_size_takes_the_held_out_size_residuals(root, monkeypatch):
    """``servopt fit`` also holds out each input size (latency): a query at an unprofiled size between the
    profiled ones gets the ``size`` factors, beyond them ``size_edge`` (each at least ``interior``), a profiled
    size the batch ones; the held-out size is predicted without its FLOPs."""
    from servopt.performance.uncertainty import interval_factors
    from servopt.profiles import load_profile

    frame = load_profile([root / "profiles" / "measured_cpu_fresh.csv"]).frame
    frame = frame[frame.model == "vit_fresh"].reset_index(drop=True)
    queried = []
    predict = WorkLatencyModel.predict

    def spy(self, X):
        queried.append(X)
        return predict(self, X)

    monkeypatch.setattr(WorkLatencyModel, "predict", spy)
    models, _ = fit_profile(frame, targets=["latency"], level=0.9)
    size_queries = [X for X in queried if "gflops" in X and X["gflops"].isna().all()]
    assert {float(v) for X in size_queries for v in X["input_size"]} == {96.0, 128.0, 160.0, 224.0}
    iv = models.targets["latency"].interval
    assert iv["size"]["n"] == 2 * 7 and iv["size_edge"]["n"] == 2 * 7  # 128, 160 inside; 96, 224 beyond
    assert iv["size"]["hi"] >= iv["interior"]["hi"] and iv["size_edge"]["hi"] >= iv["size"]["hi"]
    assert iv["size_edge"]["lo"] < iv["interior"]["lo"]  # the sizes beyond the others: their own, wider residuals
    query = frame.iloc[[0, 0, 0]].drop(columns=["latency_ms"]).reset_index(drop=True).assign(
        input_size=[128.0, 144.0, 288.0], batch_size=8.0)
    out = models.predict(query, intervals=True)
    hi = (out.latency_ms_hi / out.latency_ms).to_numpy()
    lo = (out.latency_ms_lo / out.latency_ms).to_numpy()
    assert hi[0] == pytest.approx(iv["interior"]["hi"])
    assert hi[1] == pytest.approx(iv["size"]["hi"])
    assert hi[2] >= iv["size_edge"]["hi"] - 1e-12 and lo[2] <= iv["size_edge"]["lo"] + 1e-12
    # a models file saved before the size pools: the batch intervals as they were
    old = {k: v for k, v in iv.items() if not k.startswith("size")}
    _, hi_old = interval_factors(old, np.array([False, False, True]),
                                 sizes=["profiled", "interpolated", "extrapolated"])
    assert list(hi_old) == [iv["interior"]["hi"], iv["interior"]["hi"], iv["edge"]["hi"]]


def test_size_pools_widen_to_the_interior_and_borrow_when_a_kind_is_missing():
    from servopt.performance.uncertainty import with_size_pools

    iv = {"level": 0.9, "interior": {"lo": 0.8, "hi": 1.25, "n": 40, "exact": True}}
    y, p = np.linspace(95, 105, 21), np.full(21, 100.0)
    out = with_size_pools(iv, y, p, np.zeros(21, dtype=bool))
    assert out["size"]["hi"] == 1.25 and out["size"]["lo"] == 0.8  # narrower residuals: the interior's
    # no row beyond the sizes: borrowed, and not a guarantee at the level
    assert (out["size_edge"]["lo"], out["size_edge"]["hi"]) == (out["size"]["lo"], out["size"]["hi"])
    assert out["size"]["exact"] and not out["size_edge"]["exact"]
    assert with_size_pools(iv, np.empty(0), np.empty(0), np.empty(0, dtype=bool)) == iv
