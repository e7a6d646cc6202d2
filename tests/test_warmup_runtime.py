"""Warm-up structured by runtime (``RuntimeWarmupModel``), what ``servopt fit`` uses for warm-up."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from servopt.exceptions import ValidationError
from servopt.performance import LatencyModel, RuntimeWarmupModel, WarmupModel, WorkLatencyModel
from servopt.performance.evaluate import fit_profile, make_model
from servopt.performance.warmup_runtime import OVERHEAD_RATIO, runtime_context, runtime_of, with_run_flags
from servopt.profiles import load_profile


@parametrize_with_checks([RuntimeWarmupModel()])
def test_sklearn_contract(estimator, check):
    check(estimator)


def _torch_run(source: str, setup: float, first: float) -> tuple[pd.DataFrame, np.ndarray]:
    """A torch-like run: ascending shapes, warm-up = max(setup, 1.02 x latency), the first point `first`."""
    sizes, batches = [224, 320], [1, 2, 4, 8, 16, 32, 64, 128, 256]
    rows = pd.DataFrame([(s, b) for s in sizes for b in batches], columns=["input_size", "batch_size"])
    rows = rows.assign(model="net", variant="net-fp16", hardware="H200", framework="torch 2.11.0", source=source)
    rows["latency_ms"] = 3.0 + rows["batch_size"] * rows["input_size"] ** 2 / 224**2 * 0.3
    warm = np.maximum(setup, 1.02 * rows["latency_ms"].to_numpy())
    warm[0] = first
    return rows, warm


def _features(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[["batch_size", "model", "variant", "hardware", "input_size"]].reset_index(drop=True)


def test_torch_structure_setup_latency_first_point_and_seen_shape():
    a, wa = _torch_run("run a", 60.0, 600.0)
    b, wb = _torch_run("run b", 60.0, 900.0)
    rows = pd.concat([a, b], ignore_index=True)
    warm = np.concatenate([wa, wb])
    model = RuntimeWarmupModel().fit(_features(rows), warm, profile=with_run_flags(rows))
    assert model.structured_ and model.setup_[("runtime", "torch")] == pytest.approx(60.0)
    assert model.k_ == pytest.approx(1.02)
    assert model.first_factor_ == pytest.approx(np.sqrt(10.0 * 15.0))  # geometric mean of 600/60 and 900/60
    query = _features(a)
    latency = model.latency_.predict(query)
    plain = model.predict(query)  # no labels: every row a new shape after the first
    assert plain == pytest.approx(np.maximum(60.0, 1.02 * latency))
    assert plain[-1] > 60.0 * OVERHEAD_RATIO  # a long batch hides the per-shape setup
    labelled = model.predict(query, profile=with_run_flags(a).drop(columns=["latency_ms"]))
    assert labelled[0] == pytest.approx(model.first_factor_ * 60.0)
    assert labelled[1:] == pytest.approx(plain[1:])
    seen = with_run_flags(a).drop(columns=["latency_ms", "seen_shape"])
    seen["oom_batch_size"] = np.where(seen["input_size"] == 224, 257, np.nan)  # the 224 px search found 256
    assert runtime_context(seen)["seen_shape"].tolist() == [False] * 8 + [True] + [False] * 9
    shaped = model.predict(query, profile=seen)
    assert shaped[8] == pytest.approx(1.02 * latency[8])  # the max-batch search ran the shape: no setup left


def test_onnxruntime_structure_is_a_ratio_of_the_latency_model():
    rows = pd.DataFrame([(s, b) for s in (64, 128, 224) for b in (1, 2, 4, 8, 16)], columns=["input_size",
                                                                                           "batch_size"])
    rows = rows.assign(model="cnn", variant="cnn", hardware="cpu", cores=2.0)
    rows["latency_ms"] = 0.5 * rows["batch_size"] * (rows["input_size"] / 64) ** 2
    warm = 1.7 * rows["latency_ms"].to_numpy()
    X = rows[["batch_size", "model", "variant", "hardware", "input_size", "cores"]]
    model = RuntimeWarmupModel().fit(X, warm, profile=rows)
    assert model.ratio_[("config", "cnn|cnn|cpu|2")] == pytest.approx(1.7)
    assert model.predict(X) == pytest.approx(1.7 * model.latency_.predict(X))
    assert model.predict(X) == pytest.approx(warm, rel=0.05)


def _ort_rows(batches=(1, 2, 4, 8, 16)) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = pd.DataFrame([(s, b) for s in (64, 128, 224) for b in batches], columns=["input_size", "batch_size"])
    rows = rows.assign(model="cnn", variant="cnn", hardware="cpu", cores=2.0)
    rows["latency_ms"] = 0.5 * rows["batch_size"] * (rows["input_size"] / 64) ** 2
    return rows, rows[["batch_size", "model", "variant", "hardware", "input_size", "cores"]]


def test_onnxruntime_ratio_follows_the_batch_and_is_held_beyond_the_grid():
    """The first run's extra cost is not a constant multiple of the steady state (fresh CPU graphs: MobileNet-like
    1.37 at batch 1, 1.81 at batch 64): a Theil-Sen line of log ratio in log batch, held beyond the batches."""
    rows, X = _ort_rows()
    ratio = 1.3 * rows["batch_size"].to_numpy(dtype=float) ** 0.1
    warm = ratio * rows["latency_ms"].to_numpy()
    model = RuntimeWarmupModel().fit(X, warm, profile=rows)
    low, high, intercept, slope = model.ratio_line_["cnn|cnn|cpu|2"]
    assert (low, high) == pytest.approx((0.0, np.log(16.0))) and slope == pytest.approx(0.1)
    assert intercept == pytest.approx(np.log(1.3))
    assert model.predict(X) == pytest.approx(ratio * model.latency_.predict(X))
    beyond, Xb = _ort_rows(batches=(64, 256))
    assert model.predict(Xb) == pytest.approx(1.3 * 16.0**0.1 * model.latency_.predict(Xb))  # held at batch 16
    constant = RuntimeWarmupModel(ratio="constant").fit(X, warm, profile=rows)
    assert not constant.ratio_line_
    assert constant.predict(X) == pytest.approx(np.median(ratio) * constant.latency_.predict(X))
    # a configuration profiled at one batch size has no line: its median ratio
    one, X1 = _ort_rows(batches=(4,))
    single = RuntimeWarmupModel().fit(X1, 1.6 * one["latency_ms"].to_numpy(), profile=one)
    assert not single.ratio_line_ and single.predict(X1) == pytest.approx(1.6 * single.latency_.predict(X1))


def test_latency_model_and_ratio_are_chosen_and_validated():
    rows, X = _ort_rows()
    warm = 1.5 * rows["latency_ms"].to_numpy()
    assert isinstance(RuntimeWarmupModel().fit(X, warm, profile=rows).latency_, WorkLatencyModel)
    assert isinstance(RuntimeWarmupModel(latency_model="hinge").fit(X, warm, profile=rows).latency_, LatencyModel)
    assert make_model("warmup", latency_model="hinge").latency_model == "hinge"  # servopt fit --latency-model
    assert make_model("warmup").latency_model == "work"
    with pytest.raises(ValidationError, match="latency_model='line'"):
        RuntimeWarmupModel(latency_model="line").fit(X, warm, profile=rows)
    with pytest.raises(ValidationError, match="ratio='median'"):
        RuntimeWarmupModel(ratio="median").fit(X, warm, profile=rows)


def test_models_saved_before_the_ratio_line_still_predict():
    rows, X = _ort_rows()
    warm = 1.5 * rows["latency_ms"].to_numpy() * rows["batch_size"].to_numpy() ** 0.05
    model = RuntimeWarmupModel().fit(X, warm, profile=rows)
    for name in ("ratio_line_", "ratio", "latency_model"):  # what a model pickled before this change lacks
        delattr(model, name)
    median = model.ratio_[("config", "cnn|cnn|cpu|2")]
    assert model.predict(X) == pytest.approx(median * model.latency_.predict(X))


def test_unprofiled_input_size_on_a_fresh_cpu_profile(root):
    """benchmarks/fresh_cpu.py set 1, fitted on 96-160 px, warm-up at 224 px (1.4x): on the hinge latency model the
    unprofiled size went to its LightGBM fallback, which cannot go past the largest profiled size (56 % off); on the
    work latency model (the family curve in batch x pixels, corrected per size) 14 %."""
    frame = load_profile(root / "profiles" / "measured_cpu_fresh.csv").frame
    X = frame[["batch_size", "model", "variant", "hardware", "input_size", "cores"]]  # servopt fit's warm-up features
    y = frame["warmup_ms"].to_numpy()
    train, test = (frame["input_size"] < 224).to_numpy(), (frame["input_size"] == 224).to_numpy()

    def error(**params) -> float:
        model = RuntimeWarmupModel(**params).fit(X[train].reset_index(drop=True), y[train],
                                                 profile=frame[train].reset_index(drop=True))
        return float(np.mean(np.abs(model.predict(X[test].reset_index(drop=True)) / y[test] - 1)))

    assert error() < 0.20
    assert error(latency_model="hinge", ratio="constant") > 0.40


def test_the_graphs_flops_carry_to_the_warm_up(root):
    """A profile with ``gflops`` gives them to the warm-up's work latency model too (ViT-like FLOPs grow faster than
    pixels): fresh set 1 fitted on 96-160 px, warm-up at 224 px queried without a graph (FLOPs from the polynomial
    in input size) 7.9 %, 14.0 % on pixels."""
    frame = load_profile(root / "profiles" / "measured_cpu_fresh.csv").frame
    train, test = frame[frame["input_size"] < 224], frame[frame["input_size"] == 224]
    models, _ = fit_profile(train, targets=["warmup"], cross_validate=False, source="fresh")
    assert "gflops" in models.targets["warmup"].features
    model = models.targets["warmup"].model
    assert model.design_[-1] == "gflops" and model.latency_.work_index_ is not None
    query = test[["batch_size", "model", "variant", "hardware", "input_size", "cores"]].reset_index(drop=True)
    predicted = models.predict(query, targets=["warmup"])["warmup_ms"].to_numpy()
    error = float(np.mean(np.abs(predicted / test["warmup_ms"].to_numpy() - 1)))
    pixels, _ = fit_profile(train.drop(columns="gflops"), targets=["warmup"], cross_validate=False, source="fresh")
    on_pixels = pixels.predict(query, targets=["warmup"])["warmup_ms"].to_numpy()
    assert error < 0.10 < float(np.mean(np.abs(on_pixels / test["warmup_ms"].to_numpy() - 1)))
    with_nan = models.predict(query.assign(gflops=np.nan), targets=["warmup"])["warmup_ms"].to_numpy()
    assert with_nan == pytest.approx(predicted)  # a missing column and missing values mean the same: unknown
    hinge = RuntimeWarmupModel(latency_model="hinge").fit(train[model.feature_names_in_].reset_index(drop=True),
                                                          train["warmup_ms"].to_numpy(),
                                                          profile=train.reset_index(drop=True))
    assert "gflops" not in hinge.design_  # the hinge knows no FLOPs


def test_without_profile_or_latency_it_is_the_lightgbm_model():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"batch_size": rng.integers(1, 64, 80).astype(float), "input_size": 224.0})
    y = 50 + 3 * X["batch_size"].to_numpy()
    plain = RuntimeWarmupModel().fit(X, y)
    assert not plain.structured_
    assert plain.predict(X) == pytest.approx(WarmupModel().fit(X, y).predict(X))
    assert plain.feature_importances_ == pytest.approx(plain.fallback_.feature_importances_)


def test_runtime_names_and_flags_of_a_subset():
    assert runtime_of("torch 2.11.0+cu130") == "torch" and runtime_of(None) == "onnxruntime"
    a, _ = _torch_run("run a", 60.0, 600.0)
    flagged = with_run_flags(a)
    subset = flagged.iloc[[3, 5, 0]]
    assert runtime_context(subset)["first_in_run"].tolist() == [False, False, True]  # the profile's, not the fold's
    assert runtime_context(a.iloc[[3, 5, 0]])["first_in_run"].tolist() == [True, False, False]


def test_servopt_fit_uses_it_and_meets_the_target_on_the_h200_profiles(root):
    paths = [root / "profiles" / f"measured_H200_{n}.csv" for n in ("resnet50_fp32", "mobilenet_v3_large_fp16")]
    frame = load_profile(paths).frame
    models, reports = fit_profile(frame, targets=["warmup"], source="h200")
    assert isinstance(models.targets["warmup"].model, RuntimeWarmupModel)
    report = reports["warmup"].to_dict(with_groups=False)
    assert report["model"] == "RuntimeWarmupModel"
    assert report["mape"] < 0.25 < report["baseline_mape"]  # leave one batch size out, against the line
    # bundles predict from the features alone (every row a later shape of a profiled configuration)
    predicted = models.predict(frame.iloc[[3, 35]].reset_index(drop=True), targets=["warmup"])["warmup_ms"]
    assert np.all(np.isfinite(predicted) & (predicted > 0))


def test_benchmark_quick_writes_both_models_per_runtime(root, tmp_path):
    spec = importlib.util.spec_from_file_location("warmup_features", root / "benchmarks" / "warmup_features.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    profiles = [str(root / "profiles" / n) for n in ("measured_H200_resnet50_fp32.csv",
                                                      "measured_H200_mobilenet_v3_large_fp16.csv",
                                                      "measured_mobilenet_like.csv", "measured_cpu_fresh.csv")]
    assert bench.main(["--quick", "--profiles", *profiles, "--out-dir", str(tmp_path)]) == 0
    cv = pd.read_csv(tmp_path / "warmup_cv_quick.csv")
    assert set(cv["data"]) == {"all", "torch", "onnxruntime", "fresh CPU graphs"}
    assert cv["model"].str.startswith("RuntimeWarmupModel").any() and cv["model"].str.startswith("LightGBM").any()
    assert (cv["mape_pct"] > 0).all()
    repeats = pd.read_csv(tmp_path / "warmup_repeats_quick.csv")
    assert repeats["data"].str.contains("cpu-amd-epyc").any()  # the shipped repeated CPU warm-ups
    assert repeats["data"].str.contains("fresh CPU graphs: 3 rounds").any()  # every round of fresh_cpu.py
    assert (repeats["one_run_predicts_another_mape_pct"] > 0).all()
    offgrid = pd.read_csv(tmp_path / "warmup_offgrid_quick.csv")
    assert set(offgrid["protocol"]) == {"batch_x4", "size_interior", "size_top"}
    assert set(offgrid["profile"]) == {"measured_cpu_fresh.csv"}
    by = offgrid.set_index(["protocol", "model"])["mape_pct"]
    assert by["size_top", "RuntimeWarmupModel"] < by["size_top", "RuntimeWarmupModel before"] / 2
    assert ("size_top", "RuntimeWarmupModel before 5b0c4a3") in by.index  # the model without the graph's FLOPs
    assert Path(tmp_path / "warmup_features.png").exists() is False  # --quick draws nothing


def test_predict_serves_a_gpu_profile_from_its_structured_model(root):
    """A query's feature frame gave the configuration key ``...|H200|0.0`` (and size ``224.0``) where the profile had
    given ``...|H200|`` (``224``): no configuration of a GPU profile matched, and ``servopt predict`` served every
    warm-up from the fallback regressor (74-78 ms at 224 px; measured 64-66)."""
    import pandas as pd

    from servopt.performance.evaluate import fit_profile
    from servopt.profiles import load_profile

    frame = load_profile([root / "profiles" / "measured_H200_resnet50_fp16.csv"]).frame
    models, _ = fit_profile(frame, targets=["latency", "warmup"], cross_validate=False)
    query = pd.DataFrame({"model": "resnet50", "variant": "resnet50-fp16", "hardware": "H200", "input_size": 224,
                          "batch_size": [4, 16, 64]})
    got = models.predict(query)["warmup_ms"].to_numpy()
    measured = frame[(frame.input_size == 224) & frame.batch_size.isin([4, 16, 64])].sort_values("batch_size")
    assert np.all(np.abs(got / measured["warmup_ms"].to_numpy() - 1) < 0.1), (got, measured["warmup_ms"].tolist())


def test_a_model_saved_with_the_old_keys_still_predicts():
    """Models saved before the keys' numbers were written one way hold ``cnn|cnn|cpu|2.0``: loading re-keys them, so
    they go on serving their configurations from the structured model."""
    import pickle

    rows, X = _ort_rows()
    warm = 1.5 * rows["latency_ms"].to_numpy() * rows["batch_size"].to_numpy() ** 0.05
    model = RuntimeWarmupModel().fit(X, warm, profile=rows)
    want = model.predict(X)
    old = {k.replace("|2", "|2.0"): v for k, v in model.ratio_line_.items()}
    assert old != model.ratio_line_
    model.ratio_line_ = old
    model.ratio_ = {(kind, key.replace("|2", "|2.0")): v for (kind, key), v in model.ratio_.items()}
    model.runtime_of_config_ = {k.replace("|2", "|2.0"): v for k, v in model.runtime_of_config_.items()}
    assert model.predict(X) != pytest.approx(want)  # as saved, its configurations no longer match
    assert pickle.loads(pickle.dumps(model)).predict(X) == pytest.approx(want)
